"""The jobs of a round as columns: each job's class, its walk and the order they are placed in.

Invariant: jobs with the same numbers on every offer (resources, work, checkpoints,
constraints, max_cost, sites to avoid, policy) share one class, scored and ranked once; a
class's jobs that draw on the same budgets share one walk. Grouping reads the jobs once and
changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any

import numpy as np

from gridbridge.spec import JobSpec, Policy, Tier

from ._fair import Shares, fair_order
from ._models import PendingJob


@dataclass(frozen=True)
class JobClass:
    """Jobs with the same numbers on every offer: resources, work, checkpoints, constraints,
    max_cost, sites to avoid and policy. Their offers are ranked once."""

    spec: JobSpec
    work: float
    resumable: bool
    cost_c: float | None
    avoid: dict[str, str]
    policy: Policy

    @classmethod
    def of(cls, job: PendingJob, policy: Policy) -> JobClass:
        spec = job.spec
        work = (spec.resources.runtime_estimate_s if job.remaining_work_s is None
                else job.remaining_work_s)
        return cls(spec=spec, work=work,
                   resumable=spec.checkpoint.resumable or job.remaining_work_s is not None,
                   cost_c=job.checkpoint_cost_s, avoid=dict(job.avoid),
                   policy=spec.policy or policy)


OTHER_TEAMS = "teams:*"
"""The budget every team without one of its own shares (``budgets.default``): one pool, so a
made-up ``--team`` name gains nothing."""


def budget_keys(spec: JobSpec, left: Mapping[str, float]) -> list[str]:
    """The budgets a job draws on, those of them ``left`` has: its team's (``NAME`` or
    ``team:NAME``; else the pool of teams without one, :data:`OTHER_TEAMS`) and its project's
    (``project:NAME``)."""
    team = spec.owner.team
    own = [key for key in (team, f"team:{team}") if key in left]
    pool = [OTHER_TEAMS] if not own and OTHER_TEAMS in left else []
    return [*own, *pool, *(key for key in (f"project:{spec.owner.project}",) if key in left)]


# Readers of several fields at once for the pass that puts each job in its class. A pydantic
# model keeps its fields in its __dict__; one itemgetter call there costs about what one
# attribute read does, and the class key needs some twenty fields of every job.
_JOB_FIELDS = itemgetter("spec", "submitted_at", "job_id", "remaining_work_s",
                         "checkpoint_cost_s", "avoid")
_SPEC_FIELDS = itemgetter("resources", "checkpoint", "constraints", "max_cost", "policy",
                          "priority", "owner")
_OWNER_FIELDS = itemgetter("user", "team")
_RESOURCE_KEY = itemgetter("cpus", "memory_gb", "gpus", "walltime_s", "expected_runtime_s")
_CHECKPOINT_KEY = itemgetter("interval_s", "resumable")
_CONSTRAINT_KEY = itemgetter("allowed_sites", "denied_sites", "deadline", "preemptible_ok",
                             "max_latency_ms", "tiers", "labels")
_ALL_TIERS = frozenset(Tier)
"""Each job's tiers are its own frozenset, and hashing one hashes every Tier in Python: a set
as long as this one is this one, whose hash is kept."""
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class Groups:
    """The jobs of a round as columns. A *walk* is a class's jobs of one team and project
    (where a budget applies): jobs that are interchangeable, each taking the first offer down
    the class's ranking that still fits it."""

    classes: list[JobClass]
    class_of: list[int]
    walk_of: list[int]
    walk_class: list[int]
    walk_keys: list[tuple[str, ...]]
    """The budgets each walk's jobs draw on."""
    order: list[int]
    """The jobs' indices by priority (highest first), fair share (``_fair``; only where
    ``Shares`` are given), submission time, then id."""
    user_of: list[int]
    """Each job's user, numbered (for ``limits.max_running_per_user``)..."""
    users: list[str]
    """...and the users by number."""


def group(jobs: Sequence[PendingJob], policy: Policy, left: Mapping[str, float],
          shares: Shares | None = None) -> Groups:
    """One pass over the jobs: the class and walk of each, then the placement order."""
    own = (policy.name, policy.weight, policy.target)
    teams = set(left) | {key[5:] for key in left if key.startswith("team:")}
    projects = {key[8:] for key in left if key.startswith("project:")}
    classes: list[JobClass] = []
    index: dict[tuple[Any, ...], int] = {}
    walks: dict[tuple[int, str | None, str | None], int] = {}
    walk_class: list[int] = []
    walk_keys: list[tuple[str, ...]] = []
    class_of: list[int] = []
    walk_of: list[int] = []
    priority: list[int] = []
    submitted: list[datetime] = []
    ids: list[str] = []
    users: list[str] = []
    owner_teams: list[str] = []
    for job in jobs:
        spec, at, job_id, remaining, save_s, avoid = _JOB_FIELDS(job.__dict__)
        res, ckpt, con, max_cost, pol, prio, owner = _SPEC_FIELDS(spec.__dict__)
        allowed, denied, deadline, preemptible, latency, tiers, labels = _CONSTRAINT_KEY(
            con.__dict__)
        key = (_RESOURCE_KEY(res.__dict__), _CHECKPOINT_KEY(ckpt.__dict__), allowed, denied,
               deadline, preemptible, latency,
               _ALL_TIERS if len(tiers) == len(_ALL_TIERS) else tiers,
               tuple(sorted(labels.items())) if labels else (),
               max_cost, remaining, save_s, tuple(sorted(avoid.items())) if avoid else (),
               own if pol is None else (pol.name, pol.weight, pol.target))
        c = index.get(key)
        if c is None:
            c = index[key] = len(classes)
            classes.append(JobClass.of(job, policy))
        class_of.append(c)
        if left:
            team, project = owner.team, owner.project
            at_walk = (c, team if team in teams else None,
                       project if project in projects else None)
            w = walks.get(at_walk)
            if w is None:
                w = walks[at_walk] = len(walk_class)
                walk_class.append(c)
                walk_keys.append(tuple(budget_keys(spec, left)))
            walk_of.append(w)
        priority.append(prio)
        submitted.append(at)
        ids.append(job_id)
        user, team = _OWNER_FIELDS(owner.__dict__)
        users.append(user)
        owner_teams.append(team)
    if not left:
        walk_of, walk_class, walk_keys = class_of, list(range(len(classes))), [()] * len(classes)
    base, rank = _order(priority, submitted, ids)
    order = base.tolist() if shares is None else fair_order(base, rank, users, owner_teams,
                                                            shares)
    number: dict[str, int] = {}
    user_of = [number.setdefault(u, len(number)) for u in users]
    return Groups(classes, class_of, walk_of, walk_class, walk_keys, order, user_of,
                  list(number))


def _order(priority: list[int], submitted: list[datetime], ids: list[str]
           ) -> tuple[np.ndarray[Any, np.dtype[np.int64]], np.ndarray[Any, np.dtype[np.int64]]]:
    """The order ``sorted(range(n), key=lambda i: (-priority[i], submitted[i], ids[i]))`` and
    each job's priority key (smaller first), as arrays: one stable numpy sort of integer
    columns where the times are all naive or all share one tzinfo (then a difference of two
    of them orders them as comparing them does)."""
    n = len(ids)
    try:
        rank = ~np.array(priority, dtype=np.int64)  # ~p = -p - 1: descending, no overflow
    except OverflowError:  # a priority beyond 64 bits (a row from before the bound): levels
        level = {p: k for k, p in enumerate(sorted(set(priority), reverse=True))}
        rank = np.array([level[p] for p in priority], dtype=np.int64)
    tz = submitted[0].tzinfo if n else None
    if n and all(at.tzinfo is tz for at in submitted):
        first = submitted[0]
        since = np.array([(at - first) // _MICROSECOND for at in submitted], dtype=np.int64)
        by_id = np.empty(n, dtype=np.int64)
        by_id[sorted(range(n), key=ids.__getitem__)] = np.arange(n)
        return np.lexsort((by_id, since, rank)), rank
    keys = [(-p, at, i) for p, at, i in zip(priority, submitted, ids, strict=True)]
    return np.asarray(sorted(range(n), key=keys.__getitem__), dtype=np.int64), rank
