"""Fair share: the order among pending jobs of one priority, and the per-user cap.

Invariant: the order is priority first (highest first), then fair share, then submission time
and id; it is a pure function of the jobs and :class:`Shares`, computed with a few numpy sorts
(no per-pair work). Fair share is Slurm's fair-share factor or Kueue's fair sharing made
small enough to explain in one sentence:

    a job's *share* is what its team would run, per unit of weight, were it and every job of
    its team ahead of it started: ``(running + jobs ahead + 1) / weight``; the lowest share
    goes first, ties to the user with the fewest running and ahead, then the earliest submitted.

A team's own jobs are lined up the same way one level down, by user (``running + ahead + 1``
of the job's user), so a user with fifty jobs queued does not hold a team-mate's two back::

    user columns ──> rank within each user (priority, submitted)   ──> user share
    team columns ──> rank within each team (priority, user share)  ──> team share / weight
    all jobs     ──> (priority, team share, user share, submitted, id)

``max_running_per_user`` is not part of the order: the walk skips a job whose user already
runs that many attempts (those running before the round, plus those it starts).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

__all__ = ["Shares", "fair_order", "user_cap_reason"]


@dataclass(frozen=True)
class Shares:
    """What fair share knows of the world outside the round: attempts already running (active:
    submitted, queued or running) per user and per team, each team's weight (default 1) and
    the most attempts one user may run at once (None: no limit)."""

    running_users: Mapping[str, int] = field(default_factory=dict)
    running_teams: Mapping[str, int] = field(default_factory=dict)
    weights: Mapping[str, float] = field(default_factory=dict)
    max_running_per_user: int | None = None

    def weight(self, team: str) -> float:
        return float(self.weights.get(team, 1.0))


def user_cap_reason(user: str, running: int, cap: int) -> str:
    """Why a job waits for its user's limit: the words ``explain`` shows."""
    return (f"waiting: user {user} already runs {running} attempt(s), the most "
            f"limits.max_running_per_user ({cap}) allows")


def fair_order(base: NDArray[np.int64], rank: NDArray[np.int64], users: Sequence[str],
               teams: Sequence[str], shares: Shares) -> list[int]:
    """The placement order: ``base`` is the jobs' order by (priority, submitted, id) and
    ``rank`` their priority key (smaller first); ``users``/``teams`` name each job's owner."""
    n = len(base)
    pos = np.empty(n, dtype=np.int64)
    pos[base] = np.arange(n, dtype=np.int64)
    u, user_names = _codes(users)
    t, team_names = _codes(teams)
    if len(user_names) == 1 and len(team_names) == 1:
        order: list[int] = base.tolist()  # one owner: fair share changes nothing
        return order
    running_u = np.asarray([shares.running_users.get(x, 0) for x in user_names], np.float64)
    user_share = running_u[u] + _ahead(u, (pos,)) + 1.0
    running_t = np.asarray([shares.running_teams.get(x, 0) for x in team_names], np.float64)
    weight = np.asarray([shares.weight(x) for x in team_names], np.float64)
    team_share = (running_t[t] + _ahead(t, (pos, user_share, rank)) + 1.0) / weight[t]
    order = np.lexsort((pos, user_share, team_share, rank)).tolist()
    return order


def _codes(names: Sequence[str]) -> tuple[NDArray[np.intp], list[str]]:
    """Each name's number (first seen, first numbered) and the names in that order."""
    number: dict[str, int] = {}
    codes = np.fromiter((number.setdefault(x, len(number)) for x in names), np.intp,
                        count=len(names))
    return codes, list(number)


def _ahead(group: NDArray[np.intp], keys: tuple[NDArray[np.generic], ...]
           ) -> NDArray[np.float64]:
    """How many jobs of the same group come before each one, ordered by ``keys`` (the last is
    the primary key, as in :func:`numpy.lexsort`)."""
    idx = np.lexsort((*keys, group))
    g = group[idx]
    start = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    counts = np.diff(np.r_[start, len(g)])
    within = np.arange(len(g)) - np.repeat(start, counts)
    out = np.empty(len(g), dtype=np.float64)
    out[idx] = within
    return out
