"""One placement round: the offers to columns, the jobs to classes, each class ranked, the
walk, and the outcome as a :class:`Plan` that explains its decisions on demand.

Invariant: :func:`plan` and :func:`place` read only their arguments and never change them;
``now`` is the only time they know. The one thing a round touches outside itself is the
garbage collector, paused while it runs and set back as it was.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import ParamSpec

from gridbridge.adapter import Offer
from gridbridge.spec import Policy

from ._classes import group
from ._explain import Plan
from ._fair import Shares
from ._models import Decision, PendingJob
from ._offers import Offers, Static
from ._ranking import Rankings
from ._walk import Walker

_P = ParamSpec("_P")


def plan(
    jobs: Sequence[PendingJob],
    offers: Sequence[Offer],
    now: datetime,
    policy: Policy = Policy(),  # noqa: B008 -- frozen, so sharing one default is safe
    budgets: Mapping[str, float] | None = None,
    site_slots: Mapping[str, int] | None = None,
    shares: Shares | None = None,
) -> Plan:
    """Decide a site for every pending job, highest priority first; explanations on demand.

    Feasibility of a job on an offer: site allowed and not denied, tier allowed, preemptible
    only if the job accepts it, labels and latency, enough free cpus/memory/gpus (consumed by
    earlier jobs in this call), walltime within the site limit (or the job resumes), a finite
    expected run time, expected finish (``now + queue_wait + expected runtime``) by the
    deadline, expected cost within ``max_cost``, what its team and project have left
    (``budgets``: ``{"team:NAME" or "NAME": money, "project:NAME": money}``), a slot on its
    site (``site_slots``: attempts a site may still start), and, for the ``deadline`` policy, a
    good enough chance of meeting the deadline, and room under its user's
    ``shares.max_running_per_user``. Jobs go in order of priority, fair share (``_fair``:
    ``shares`` has what runs already and the teams' weights; None: no fair share, the
    simulator's and admission's plain order) and submission time. Among
    feasible offers the job's policy (or ``policy``) picks; ties go to the earlier finish (or
    lower cost), then site and offer key.
    ``now`` and deadlines must be both timezone-aware or both naive.
    """
    # The round allocates many small objects and no cycles; with 100,000 jobs alive the
    # collector's full passes cost more than the round itself, so it waits until the end.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _plan(jobs, offers, now, policy, budgets, site_slots, shares)
    finally:
        if enabled:
            gc.enable()


def _plan(jobs: Sequence[PendingJob], offers: Sequence[Offer], now: datetime, policy: Policy,
          budgets: Mapping[str, float] | None, site_slots: Mapping[str, int] | None,
          shares: Shares | None) -> Plan:
    left = dict(budgets or {})
    o = Offers.of(offers)
    g = group(jobs, policy, left, shares)
    static: Static = {}
    rk = Rankings.of(g.classes, o, now, static)
    cap = None if shares is None else shares.max_running_per_user
    room = None if shares is None or cap is None else [
        float(cap - shares.running_users.get(u, 0)) for u in g.users]
    choice, events = Walker(o, g, rk, left, site_slots or {}, room).run(now, static)
    return Plan(jobs=jobs, offers=offers, now=now, policy=policy, budgets=dict(budgets or {}),
                order=g.order, choice=choice, site_slots=dict(site_slots or {}),
                classes=len(g.classes), _classes=g.classes, _class_of=g.class_of, _arrays=o,
                _events=events, _static=static, shares=shares or Shares())


def _every_decision(plan: Callable[_P, Plan]) -> Callable[_P, list[Decision]]:
    """``plan`` with every decision explained: the same arguments (one signature to keep)."""

    def place(*args: _P.args, **kwargs: _P.kwargs) -> list[Decision]:
        """:func:`plan`, with every decision explained, in placement order."""
        return plan(*args, **kwargs).decisions()

    place.__qualname__ = "place"  # what it is bound to below: it pickles and prints as such
    return place


place = _every_decision(plan)
