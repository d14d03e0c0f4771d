"""Placement: a pure function from (pending jobs, offers, now, policy, budgets) to decisions.

Invariant: ``place`` and ``plan`` read only their arguments -- no I/O, no clock, no randomness,
no globals -- and never mutate them, so the same inputs always give the same decisions. That
is what lets the simulator and the live reconciler share them::

    jobs ──> classes of jobs that score alike (resources, work, checkpoints, constraints,
             policy, owner where a budget applies)
    class x offers ──> numpy: expected run time and cost (gridbridge.costs' exact model),
             expected finish, the chance of meeting a deadline, what rules an offer out
             ──> each class's feasible offers, ranked by its policy
    jobs by (priority desc, submitted_at, job_id) ──> each takes the best ranked offer that
             still has the cpus/memory/gpus, the site a slot (``site_slots``) and its team and
             project the money (``budgets``) it needs; what it takes comes off for later jobs

Capacity, slots and budgets only ever shrink within a call, so an offer that once failed a
job stays failed for every later job of its class, team and project (a *walk*): each walk
moves down its class's ranking and never back. The jobs are read once into columns, the
classes' rankings are one flat array, and the walk goes a window of jobs at a time: numpy
finds each job's next few offers that fit, and one plain loop takes the first that still does
(`_Walker`). No object is made per (job, offer) pair. Candidates (every offer with its numbers
and the reason it won, lost or could not run the job) are built only for the decisions asked
for: ``Plan.decision(i)``; ``place`` asks for all of them.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from gridbridge.adapter import Offer
from gridbridge.spec import JobSpec, Policy, Tier

__all__ = ["Candidate", "Decision", "PendingJob", "Plan", "Policy", "place", "plan"]

_COST_DIGITS = 9
"""Costs equal to a billionth of a dollar count as the same cost (float noise is not a reason)."""
_HOUR_S = 3600.0
_CENT = 0.01
_MINUTE_S = 60.0
_TOP = 96
"""How many ranked offers a class keeps at first; it ranks them all again if it runs out."""
_Array = NDArray[np.float64]


class PendingJob(BaseModel):
    """A job waiting for a site; ``attempt`` is the number its next attempt will get."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: str
    spec: JobSpec
    submitted_at: datetime
    attempt: int = Field(default=1, ge=1)
    avoid: dict[str, str] = Field(default_factory=dict)
    """Sites not to use for this job now, with why (e.g. it just rejected the submission)."""
    remaining_work_s: float | None = Field(default=None, ge=0)
    """Work left after its last checkpoint (a job that has one); None: it has none yet."""
    checkpoint_cost_s: float | None = Field(default=None, ge=0)
    """How long the job's saves took, as its checkpoint store recorded them; the checkpoint
    interval on a preemptible offer is Young's optimum for it (None: the offer's restart
    overhead stands in)."""


class Candidate(BaseModel):
    """One site considered for one job: the numbers, and why it won, lost or could not run it.

    The estimates are None only where they are not finite (preemption too frequent to finish).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    site: str
    offer_key: str = "default"
    feasible: bool
    expected_cost: float | None
    on_demand_cost: float | None
    expected_runtime_s: float | None
    expected_finish: datetime | None
    reason: str
    on_time_chance: float | None = None
    """For a job with a deadline: the chance (a lower bound) of finishing by it there."""


class Decision(BaseModel):
    """Where one job goes (``site`` None: nowhere this tick, it stays pending).

    ``candidates`` lists the feasible sites best first, then the infeasible ones by site name.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: str
    site: str | None
    candidates: tuple[Candidate, ...]
    reason: str
    offer_key: str | None = None
    """Which of the site's offers (instance type and zone, partition) was chosen."""
    checkpoint_interval_s: float | None = None
    """How often the job should checkpoint there (handed to it as
    ``GRIDBRIDGE_CHECKPOINT_INTERVAL``)."""
    policy: str = "cheapest"

    @property
    def chosen(self) -> Candidate | None:
        """The winning candidate, or None when no site was feasible."""
        if self.site is None:
            return None
        return next((c for c in self.candidates if c.feasible and c.site == self.site
                     and c.offer_key == self.offer_key), None)


# the offers, as arrays ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Offers:
    items: Sequence[Offer]
    cpus: _Array
    memory: _Array
    gpus: _Array
    per_hour: _Array
    per_core: _Array
    per_gpu: _Array
    od_hour: _Array
    od_core: _Array
    od_gpu: _Array
    lam: _Array
    """Preemptions per second."""
    restart: _Array
    wait: _Array
    limit: _Array
    """max_walltime_s, inf where none."""
    preemptible: NDArray[np.bool_]
    order: NDArray[np.int64]
    """Rank of (site, key): the last tie-break."""
    site_of: list[int]
    site_idx: NDArray[np.int64]
    sites: list[str]
    tier: NDArray[np.str_]
    latency: _Array
    """nan where the offer cannot say."""

    @classmethod
    def of(cls, offers: Sequence[Offer]) -> _Offers:
        def arr(values: Sequence[float]) -> _Array:
            return np.asarray(values, dtype=np.float64)

        sites = sorted({o.site for o in offers})
        index = {s: i for i, s in enumerate(sites)}
        names = sorted(range(len(offers)), key=lambda i: (offers[i].site, offers[i].key, i))
        order = np.empty(len(offers), dtype=np.int64)
        order[names] = np.arange(len(offers))
        return cls(
            items=offers,
            cpus=arr([o.cpus for o in offers]), memory=arr([o.memory_gb for o in offers]),
            gpus=arr([o.gpus for o in offers]),
            per_hour=arr([o.price.per_hour for o in offers]),
            per_core=arr([o.price.per_core_hour for o in offers]),
            per_gpu=arr([o.price.per_gpu_hour for o in offers]),
            od_hour=arr([o.on_demand.per_hour for o in offers]),
            od_core=arr([o.on_demand.per_core_hour for o in offers]),
            od_gpu=arr([o.on_demand.per_gpu_hour for o in offers]),
            lam=arr([o.preemption_rate_per_hour / _HOUR_S for o in offers]),
            restart=arr([o.restart_overhead_s for o in offers]),
            wait=arr([o.queue_wait_s for o in offers]),
            limit=arr([math.inf if o.max_walltime_s is None else o.max_walltime_s
                       for o in offers]),
            preemptible=np.asarray([o.preemptible for o in offers], dtype=np.bool_),
            order=order, site_of=[index[o.site] for o in offers],
            site_idx=np.asarray([index[o.site] for o in offers], dtype=np.int64), sites=sites,
            tier=np.asarray([o.tier.value for o in offers], dtype=np.str_),
            latency=arr([math.nan if o.latency_ms is None else o.latency_ms for o in offers]),
        )

    def static_ok(self, spec: JobSpec, avoid: Mapping[str, str]) -> NDArray[np.bool_]:
        """Site, tier, preemption, label and latency rules (and sites to avoid), per offer:
        the vector form of :func:`_site_problems`."""
        c = spec.constraints
        allowed = np.ones(len(self.sites), dtype=np.bool_)
        for i, site in enumerate(self.sites):
            if (site in c.denied_sites or site in avoid
                    or (c.allowed_sites is not None and site not in c.allowed_sites)):
                allowed[i] = False
        ok = allowed[self.site_idx] if len(self.items) else np.zeros(0, dtype=np.bool_)
        ok &= np.isin(self.tier, [t.value for t in c.tiers])
        if not c.preemptible_ok:
            ok &= ~self.preemptible
        for key, value in c.labels.items():
            ok &= np.asarray([o.labels.get(key) == value for o in self.items], dtype=np.bool_)
        if c.max_latency_ms is not None:
            with np.errstate(invalid="ignore"):
                ok &= self.latency <= c.max_latency_ms  # nan (unknown) compares False
        return ok


# classes of jobs that score alike ------------------------------------------------------------


@dataclass(frozen=True)
class _Class:
    """Jobs with the same numbers on every offer: resources, work, checkpoints, constraints,
    max_cost, sites to avoid and policy. Their offers are ranked once."""

    spec: JobSpec
    work: float
    resumable: bool
    cost_c: float | None
    avoid: dict[str, str]
    policy: Policy

    @classmethod
    def of(cls, job: PendingJob, policy: Policy) -> _Class:
        spec = job.spec
        work = (spec.resources.runtime_estimate_s if job.remaining_work_s is None
                else job.remaining_work_s)
        return cls(spec=spec, work=work,
                   resumable=spec.checkpoint.resumable or job.remaining_work_s is not None,
                   cost_c=job.checkpoint_cost_s, avoid=dict(job.avoid),
                   policy=spec.policy or policy)


# Readers of several fields at once for the pass that puts each job in its class. A pydantic
# model keeps its fields in its __dict__; one itemgetter call there costs about what one
# attribute read does, and the class key needs some twenty fields of every job.
_JOB_FIELDS = itemgetter("spec", "submitted_at", "job_id", "remaining_work_s",
                         "checkpoint_cost_s", "avoid")
_SPEC_FIELDS = itemgetter("resources", "checkpoint", "constraints", "max_cost", "policy",
                          "priority", "owner")
_RESOURCE_KEY = itemgetter("cpus", "memory_gb", "gpus", "walltime_s", "expected_runtime_s")
_CHECKPOINT_KEY = itemgetter("interval_s", "resumable")
_CONSTRAINT_KEY = itemgetter("allowed_sites", "denied_sites", "deadline", "preemptible_ok",
                             "max_latency_ms", "tiers", "labels")
_ALL_TIERS = frozenset(Tier)
"""Each job's tiers are its own frozenset, and hashing one hashes every Tier in Python: a set
as long as this one is this one, whose hash is kept."""
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class _Groups:
    """The jobs of a round as columns. A *walk* is a class's jobs of one team and project
    (where a budget applies): jobs that are interchangeable, each taking the first offer down
    the class's ranking that still fits it."""

    classes: list[_Class]
    class_of: list[int]
    walk_of: list[int]
    walk_class: list[int]
    walk_keys: list[tuple[str, ...]]
    """The budgets each walk's jobs draw on."""
    order: list[int]
    """The jobs' indices by priority (highest first), submission time, then id."""


def _group(jobs: Sequence[PendingJob], policy: Policy, left: Mapping[str, float]) -> _Groups:
    """One pass over the jobs: the class and walk of each, then the placement order."""
    own = (policy.name, policy.weight, policy.target)
    teams = set(left) | {key[5:] for key in left if key.startswith("team:")}
    projects = {key[8:] for key in left if key.startswith("project:")}
    classes: list[_Class] = []
    index: dict[tuple[Any, ...], int] = {}
    walks: dict[tuple[int, str | None, str | None], int] = {}
    walk_class: list[int] = []
    walk_keys: list[tuple[str, ...]] = []
    class_of: list[int] = []
    walk_of: list[int] = []
    priority: list[int] = []
    submitted: list[datetime] = []
    ids: list[str] = []
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
            classes.append(_Class.of(job, policy))
        class_of.append(c)
        if left:
            team, project = owner.team, owner.project
            at_walk = (c, team if team in teams else None,
                       project if project in projects else None)
            w = walks.get(at_walk)
            if w is None:
                w = walks[at_walk] = len(walk_class)
                walk_class.append(c)
                walk_keys.append(tuple(_budget_keys(spec, left)))
            walk_of.append(w)
        priority.append(prio)
        submitted.append(at)
        ids.append(job_id)
    if not left:
        walk_of, walk_class, walk_keys = class_of, list(range(len(classes))), [()] * len(classes)
    return _Groups(classes, class_of, walk_of, walk_class, walk_keys,
                   _order(priority, submitted, ids))


def _order(priority: list[int], submitted: list[datetime], ids: list[str]) -> list[int]:
    """``sorted(range(n), key=lambda i: (-priority[i], submitted[i], ids[i]))``: one stable
    numpy sort of integer columns where the times are all naive or all share one tzinfo
    (then a difference of two of them orders them as comparing them does)."""
    n = len(ids)
    tz = submitted[0].tzinfo if n else None
    if n and all(at.tzinfo is tz for at in submitted):
        first = submitted[0]
        try:
            since = np.array([(at - first) // _MICROSECOND for at in submitted], dtype=np.int64)
            rank = ~np.array(priority, dtype=np.int64)  # ~p = -p - 1: descending, no overflow
        except OverflowError:  # a priority beyond 64 bits
            pass
        else:
            by_id = np.empty(n, dtype=np.int64)
            by_id[sorted(range(n), key=ids.__getitem__)] = np.arange(n)
            order: list[int] = np.lexsort((by_id, since, rank)).tolist()
            return order
    keys = [(-p, at, i) for p, at, i in zip(priority, submitted, ids, strict=True)]
    return sorted(range(n), key=keys.__getitem__)



@dataclass(frozen=True)
class _Rows:
    """Classes against every offer (one row per class)."""

    runtime: _Array
    cost: _Array
    on_demand: _Array
    finish: _Array
    """Seconds from now to the expected finish (inf: never)."""
    interval: _Array
    chance: _Array
    """Lower bound of the chance of finishing by the deadline (1 without one)."""
    ok: NDArray[np.bool_]
    """Feasible before capacity, slots and budgets are counted."""
    has_deadline: bool = False


def _rows(ks: Sequence[_Class], o: _Offers, now: datetime,
          static: dict[tuple[Any, ...], NDArray[np.bool_]]) -> _Rows:
    """Each class's numbers on every offer, with gridbridge.costs' formulas, as arrays of
    shape (classes, offers)."""
    n = len(o.items)

    def col(values: Sequence[float]) -> _Array:
        out: _Array = np.asarray(values, dtype=np.float64)[:, None]
        return out

    work = col([k.work for k in ks])
    own = col([k.spec.checkpoint.interval_s for k in ks])
    lam, restart = o.lam[None, :], o.restart[None, :]
    cost_c = np.where(np.isnan(col([math.nan if k.cost_c is None else k.cost_c for k in ks])),
                      restart, col([0.0 if k.cost_c is None else k.cost_c for k in ks]))
    cpus = col([k.spec.resources.cpus for k in ks])
    gpus = col([k.spec.resources.gpus for k in ks])
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        young = np.sqrt(2 * cost_c / lam)
        interval = np.where((lam > 0) & (cost_c > 0), np.minimum(own, young), own)
        tau = np.where(work > 0, np.minimum(interval, work), interval)
        full = np.where(work > 0, np.floor(work / tau), 0.0)
        rest = np.maximum(work - full * tau, 0.0)
        grow = np.exp(lam * restart) / lam
        runtime = grow * (full * np.expm1(lam * tau) + np.expm1(lam * rest))
        runtime = np.where((lam == 0) | (work == 0), work, runtime)
        runtime = np.where(np.isfinite(runtime), runtime, np.inf)
        limit = o.limit[None, :]
        walls = (work > limit) & np.isfinite(runtime)
        restarts = (np.ceil(work / np.where(np.isfinite(limit), limit, 1.0)) - 1) * restart
        runtime = np.where(walls, runtime + restarts, runtime)
        hourly = o.per_hour[None, :] + cpus * o.per_core[None, :] + gpus * o.per_gpu[None, :]
        cost = np.where(hourly == 0, 0.0, hourly * runtime / _HOUR_S)
        od = o.od_hour[None, :] + cpus * o.od_core[None, :] + gpus * o.od_gpu[None, :]
        on_demand = np.where(od == 0, 0.0, od * work / _HOUR_S)
        finish = o.wait[None, :] + runtime
    # an offer too small for the job even when empty can never take it
    ok = (np.isfinite(finish) & (o.cpus[None, :] >= cpus) & (o.gpus[None, :] >= gpus)
          & (o.memory[None, :] >= col([k.spec.resources.memory_gb for k in ks])))
    chance = np.ones((len(ks), n))
    for r, k in enumerate(ks):
        spec = k.spec
        c = spec.constraints
        key = (c.allowed_sites, c.denied_sites, c.tiers, c.preemptible_ok,
               tuple(sorted(c.labels.items())), c.max_latency_ms, tuple(sorted(k.avoid)))
        if key not in static:
            static[key] = o.static_ok(spec, k.avoid)
        ok[r] &= static[key]
        if not k.resumable:
            ok[r] &= ~(spec.resources.walltime_s > o.limit)
        if c.deadline is not None:
            left = (c.deadline - now).total_seconds()
            ok[r] &= finish[r] <= left
            chance[r] = _on_time_chance(k.work, left - o.wait, o.lam, interval[r], o.restart)
            if k.policy.name == "deadline":
                ok[r] &= chance[r] >= k.policy.target
        if spec.max_cost is not None:
            ok[r] &= cost[r] <= spec.max_cost
    has_deadline = len(ks) == 1 and ks[0].spec.constraints.deadline is not None
    return _Rows(runtime, cost, on_demand, finish, interval, chance, ok, has_deadline)


def _walltime_problem(k: _Class, offer: Offer) -> str | None:
    limit = offer.max_walltime_s
    if limit is not None and k.spec.resources.walltime_s > limit and not k.resumable:
        return (f"walltime {_duration(k.spec.resources.walltime_s)} exceeds site limit "
                f"{_duration(limit)} and the job does not resume from checkpoints")
    return None


def _on_time_chance(work: float, window: _Array, lam: _Array, interval: _Array,
                    restart: _Array) -> _Array:
    """A lower bound of P(the job finishes within ``window`` seconds of starting).

    Each interruption costs at most one interval of work plus the restart, so the job is on
    time whenever at most ``k = floor((window - work) / (interval + R))`` interruptions strike
    during ``window``; interruptions are Poisson with rate ``lam``: ``P >= P(Poisson(lam *
    window) <= k)``."""
    slack = window - work
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        k = np.floor(slack / (np.minimum(interval, max(work, 1e-9)) + restart))
    mu = lam * np.maximum(window, 0.0)
    out = np.zeros_like(mu)
    out[slack >= 0] = 1.0
    risky = (slack >= 0) & (mu > 0)
    sure = risky & (k >= mu + 12 * np.sqrt(mu) + 12)
    calc = risky & ~sure
    if calc.any():
        kk, mm = k[calc], mu[calc]
        top = int(min(kk.max(), 10_000))
        term = np.exp(-mm)
        total = np.where(kk >= 0, term, 0.0)
        for i in range(1, top + 1):
            term = term * mm / i
            total += np.where(kk >= i, term, 0.0)
        out[calc] = np.minimum(total, 1.0)
    return out


def _primary(k: _Class, rows: _Rows, r: int) -> _Array:
    """What the class's policy minimises first, per offer (inf where infeasible)."""
    ok = rows.ok[r]
    if k.policy.name == "fastest":
        score = np.round(rows.finish[r], 6)
    elif k.policy.name == "balanced" and ok.any():
        score = np.round(_balanced(rows.cost[r], rows.finish[r], ok, k.policy.weight), 12)
    else:
        score = np.round(rows.cost[r], _COST_DIGITS)
    return np.where(ok, score, np.inf)


def _rank(k: _Class, o: _Offers, rows: _Rows, r: int, top: int | None) -> NDArray[np.intp]:
    """The class's feasible offers (before capacity), best first by its policy: the first
    ``top`` (with every offer tied with the last of them), or all."""
    primary = _primary(k, rows, r)
    if top is not None and primary.size > top:
        kth = np.partition(primary, top - 1)[top - 1]
        idx = np.flatnonzero((primary <= kth) & rows.ok[r])
    else:
        idx = np.flatnonzero(rows.ok[r])
    if idx.size == 0:
        return idx
    cost = np.round(rows.cost[r][idx], _COST_DIGITS)
    finish = np.round(rows.finish[r][idx], 6)
    name = o.order[idx]
    if k.policy.name == "fastest":
        keys: tuple[Any, ...] = (name, cost, finish)
    elif k.policy.name == "balanced":
        keys = (name, finish, cost, primary[idx])
    else:
        keys = (name, finish, cost)
    ranked: NDArray[np.intp] = idx[np.lexsort(keys)]
    return ranked


def _rank_rows(ks: Sequence[_Class], o: _Offers, rows: _Rows, depth: int
               ) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.bool_]]:
    """The first ``depth`` offers of each class's ranking (as :func:`_rank` orders them), one
    row per class, with how many of them are feasible and whether that is all there are.

    One sort by each policy's own measure (a partial one when ``depth`` is short of the
    offers); only rows where that ties on a feasible offer are sorted again by the
    tie-breaks (finish or cost, then site and key)."""
    cost = np.round(rows.cost, _COST_DIGITS)
    finish = np.round(rows.finish, 6)
    first, second, third = cost.copy(), finish.copy(), cost.copy()
    for r, k in enumerate(ks):
        if k.policy.name == "fastest":
            first[r], second[r] = finish[r], cost[r]
        elif k.policy.name == "balanced":
            first[r] = _primary(k, rows, r)
            second[r], third[r] = cost[r], finish[r]
    first = np.where(rows.ok, first, np.inf)
    n = first.shape[1]
    cut = 0 < depth < n
    if cut:
        idx = np.argpartition(first, depth - 1, axis=1)[:, :depth]
        idx = np.take_along_axis(idx, np.argsort(np.take_along_axis(first, idx, 1), 1), 1)
    else:
        idx = np.argsort(first, axis=1)
    head = np.take_along_axis(first, idx, axis=1)
    tied = ((head[:, 1:] == head[:, :-1]) & (head[:, 1:] < np.inf)).any(axis=1)
    if cut:  # the last one kept ties with one left out
        last = head[:, -1:]
        tied |= (last[:, 0] < np.inf) & ((first == last).sum(axis=1) > 1)
    if tied.any():
        name = np.broadcast_to(o.order, (int(tied.sum()), n))
        idx[tied] = np.lexsort((name, third[tied], second[tied], first[tied]),
                               axis=-1)[:, :idx.shape[1]]
    feasible = rows.ok.sum(axis=1)
    return idx, np.minimum(feasible, idx.shape[1]), feasible <= idx.shape[1]


def _balanced(cost: _Array, finish: _Array, ok: NDArray[np.bool_], weight: float) -> _Array:
    best_cost, best_time = float(cost[ok].min()), float(finish[ok].min())
    out: _Array = (weight * (cost + _CENT) / (best_cost + _CENT)
                   + (1 - weight) * (finish + _MINUTE_S) / (best_time + _MINUTE_S))
    return out


@dataclass
class _Rankings:
    """Every class's feasible offers best first, in one flat array: class ``k``'s are
    ``offer[start[k]:start[k] + length[k]]``, the first ``length[k]`` of its ranking (all of
    them once ``complete[k]``), and ``cost`` holds its expected cost on each. Slot 0 holds the
    sentinel offer (index ``len(offers)``), which never fits."""

    offer: NDArray[np.intp]
    cost: _Array
    start: NDArray[np.intp]
    length: NDArray[np.intp]
    complete: list[bool]
    size: int

    @classmethod
    def of(cls, classes: Sequence[_Class], o: _Offers, now: datetime,
           static: dict[tuple[Any, ...], NDArray[np.bool_]]) -> _Rankings:
        n = len(o.items)
        depth = n
        if len(classes) * n > _RANKED:  # the first few of each now, deeper if a job gets there
            depth = min(n, max(_TOP, _RANKED // len(classes)))
        offer, cost = [np.array([n], dtype=np.intp)], [np.array([np.inf])]
        lengths, complete = [np.zeros(0, dtype=np.intp)], []
        for start in range(0, len(classes), _CHUNK):
            chunk = classes[start:start + _CHUNK]
            rows = _rows(chunk, o, now, static)
            idx, count, whole = _rank_rows(chunk, o, rows, depth)
            keep = np.arange(idx.shape[1]) < count[:, None]
            offer.append(idx[keep])
            cost.append(np.take_along_axis(rows.cost, idx, axis=1)[keep])
            lengths.append(count)
            complete += whole.tolist()
        length = np.concatenate(lengths)
        flat = np.concatenate(offer)
        return cls(flat, np.concatenate(cost), 1 + np.cumsum(length) - length, length,
                   complete, flat.size)

    def deepen(self, k: int, klass: _Class, o: _Offers, now: datetime,
               static: dict[tuple[Any, ...], NDArray[np.bool_]]) -> None:
        """Rank class ``k`` deeper (its first offers as before) and keep it at the end."""
        rows = _rows([klass], o, now, static)
        depth = min(len(o.items), 4 * max(int(self.length[k]), _TOP))
        ranked = _rank(klass, o, rows, 0, depth)[:depth]
        end = self.size + ranked.size
        if end > self.offer.size:
            grow = max(end, 2 * self.offer.size) - self.offer.size
            self.offer = np.concatenate([self.offer, np.zeros(grow, dtype=np.intp)])
            self.cost = np.concatenate([self.cost, np.zeros(grow)])
        self.offer[self.size:end] = ranked
        self.cost[self.size:end] = rows.cost[0][ranked]
        self.start[k], self.length[k], self.size = self.size, ranked.size, end
        self.complete[k] = int(rows.ok[0].sum()) <= ranked.size



# the round -----------------------------------------------------------------------------------


@dataclass
class Plan:
    """The outcome of one placement round: where each job goes, with its explanation built
    on demand (``decision(i)``). ``order`` is the placement order (indices into the jobs
    given); ``choice[i]`` the offer index job ``i`` took, or -1."""

    jobs: Sequence[PendingJob]
    offers: Sequence[Offer]
    now: datetime
    policy: Policy
    budgets: Mapping[str, float]
    order: list[int]
    choice: list[int]
    site_slots: Mapping[str, int]
    classes: int
    """How many classes of jobs that score alike the round found."""
    _classes: list[_Class] = field(repr=False)
    _class_of: list[int] = field(repr=False)
    _arrays: _Offers = field(repr=False)
    _events: list[tuple[int, int, float]] = field(repr=False)
    """(position in ``order``, offer index, expected cost) of each placement, in order."""
    _static: dict[tuple[Any, ...], NDArray[np.bool_]] = field(repr=False)
    _position: dict[int, int] | None = field(default=None, repr=False)

    def decisions(self) -> list[Decision]:
        """Every job's decision, in placement order."""
        return [self.decision(i) for i in self.order]

    def decision(self, i: int) -> Decision:
        """Job ``i``'s decision, with every offer as a candidate as it stood at its turn."""
        job, k = self.jobs[i], self._classes[self._class_of[i]]
        o = self._arrays
        rows = _rows([k], o, self.now, self._static)
        if self._position is None:
            self._position = {j: p for p, j in enumerate(self.order)}
        turn = self._position[i]
        free = [[float(x.cpus), x.memory_gb, float(x.gpus)] for x in self.offers]
        taken = [0] * len(o.sites)
        left = dict(self.budgets)
        for pos, index, cost in self._events:
            if pos >= turn:
                break
            j = self.jobs[self.order[pos]]
            res = j.spec.resources
            free[index][0] -= res.cpus
            free[index][1] -= res.memory_gb
            free[index][2] -= res.gpus
            taken[o.site_of[index]] += 1
            _charge(left, j.spec, cost)
        scored = [self._score(job, k, rows, j, free[j], taken, left)
                  for j in range(len(self.offers))]
        chosen = self.choice[i]
        rank = {j: n for n, j in enumerate(_rank(k, o, rows, 0, None).tolist())}
        feasible = [s for s in scored if not s.problems]
        feasible.sort(key=lambda s: rank.get(s.index, len(rank)))
        infeasible = sorted((s for s in scored if s.problems),
                            key=lambda s: (s.offer.site, s.offer.key, s.index))
        cands = [_candidate(s, "; ".join(s.problems)) for s in infeasible]
        name = k.policy.name
        if chosen < 0 or not feasible:
            summary = " | ".join(f"{c.site}: {c.reason}" for c in cands) or "no offers"
            return Decision(job_id=job.job_id, site=None, candidates=tuple(cands),
                            reason=f"no feasible site: {summary}", policy=name)
        best = scored[chosen]
        assert not best.problems, f"placed on an offer its explanation rules out: {best}"
        rest = [s for s in feasible if s.index != chosen]
        ranked = [_candidate(best, _winner_reason(best, rest, name))]
        ranked += [_candidate(s, _loser_reason(s, best, name)) for s in rest]
        return Decision(
            job_id=job.job_id, site=best.offer.site, candidates=(*ranked, *cands),
            reason=ranked[0].reason, offer_key=best.offer.key,
            checkpoint_interval_s=float(rows.interval[0, chosen]), policy=name,
        )

    def _score(self, job: PendingJob, k: _Class, rows: _Rows, j: int, free: list[float],
               taken: list[int], left: Mapping[str, float]) -> _Scored:
        offer = self.offers[j]
        finite = bool(np.isfinite(rows.finish[0, j]))
        finish = _finish(self.now, float(rows.finish[0, j])) if finite else None
        problems = [*_site_problems(k.spec, offer), *_capacity_problems(k.spec, free)]
        if offer.site in job.avoid:
            problems.insert(0, job.avoid[offer.site])
        if problems and offer.note:
            problems.append(offer.note)
        wall = _walltime_problem(k, offer)
        if wall:
            problems.append(wall)
        cost = float(rows.cost[0, j])
        if finish is None:
            problems.append("preemption too frequent to finish")
        else:
            deadline = k.spec.constraints.deadline
            if deadline is not None and finish > deadline:
                late = (finish - deadline).total_seconds()
                problems.append(f"deadline missed by {_duration(late)}")
            elif (deadline is not None and k.policy.name == "deadline"
                  and rows.chance[0, j] < k.policy.target):
                problems.append(f"chance of meeting the deadline {rows.chance[0, j]:.0%} < "
                                f"target {k.policy.target:.0%}")
            if k.spec.max_cost is not None and cost > k.spec.max_cost:
                problems.append(f"expected cost {_money(cost)} > max_cost "
                                f"{_money(k.spec.max_cost)}")
            problems += _budget_problems(job.spec, cost, left)  # the class may mix owners
        if offer.site in self.site_slots:
            slots = self.site_slots[offer.site] - taken[self._arrays.sites.index(offer.site)]
            if slots <= 0:
                problems.append(f"site {offer.site} runs as many attempts as it may "
                                "(site_slots)")
        return _Scored(j, offer, rows, finish, tuple(problems))


def _charge(left: dict[str, float], spec: JobSpec, cost: float) -> None:
    for key in (spec.owner.team, f"team:{spec.owner.team}", f"project:{spec.owner.project}"):
        if key in left:
            left[key] -= cost


def _budget_keys(spec: JobSpec, left: Mapping[str, float]) -> list[str]:
    return [key for key in (spec.owner.team, f"team:{spec.owner.team}",
                            f"project:{spec.owner.project}") if key in left]


def _budget_problems(spec: JobSpec, cost: float, left: Mapping[str, float]) -> list[str]:
    problems = []
    team = spec.owner.team
    for key in (team, f"team:{team}"):
        if key in left and cost > left[key]:
            problems.append(f"expected cost {_money(cost)} > what team {team} has left of its "
                            f"budget ({_money(max(left[key], 0.0))})")
            break
    project = spec.owner.project
    key = f"project:{project}"
    if key in left and cost > left[key]:
        problems.append(f"expected cost {_money(cost)} > what project {project} has left of "
                        f"its budget ({_money(max(left[key], 0.0))})")
    return problems


_RANKED = 1 << 22
"""How many (class, offer) pairs are ranked at first; beyond, each class ranks its first few
(at least ``_TOP``) and ranks deeper when one of its jobs gets that far."""
_CHUNK = 256
"""Classes scored together in one set of array operations."""
_WINDOW = 256
"""Jobs whose next offers are looked up together."""
_AHEAD = 16
"""How far down its class's ranking each job of a window looks first."""
_KEEP = 16
_GROW = 4
"""How many of the offers that fit when its window starts a job keeps to try in turn."""


class _Walker:
    """Jobs in order, each to the first offer down its class's ranking that still has the
    cpus/memory/gpus, its site a slot and its team and project the money it needs.

    Capacity, slots and budgets only shrink, so an offer that cannot take a walk's job now
    never takes one later: each walk keeps a pointer into its ranking that only moves on.
    The jobs go in windows::

        window ──> numpy: the next _AHEAD offers of each job's walk from its pointer and which
                   of them fit now; the first _KEEP that fit are the job's candidates; the
                   walk's pointer moves to the first that fits
               ──> each job in turn: the first of its candidates that still fits (jobs before
                   it in the window may have taken some); none: a numpy search down the rest
                   of its ranking (ranked deeper if need be); what it takes comes off
    """

    def __init__(self, o: _Offers, g: _Groups, rk: _Rankings, left: dict[str, float],
                 site_slots: Mapping[str, int]) -> None:
        self.o, self.g, self.rk, self.left = o, g, rk, left
        self.free = (o.cpus.tolist(), o.memory.tolist(), o.gpus.tolist())
        self.arrays = tuple(np.append(a, -np.inf) for a in (o.cpus, o.memory, o.gpus))
        self.dirty: list[int] = []
        self.slots = [float(site_slots.get(s, math.inf)) for s in o.sites]
        self.limited = any(s in site_slots for s in o.sites)
        self.slots_np = np.append(np.asarray(self.slots, dtype=np.float64), 0.0)
        self.site_np = np.append(o.site_idx, len(o.sites))
        res = [g.classes[k].spec.resources for k in g.walk_class]
        self.need = ([float(r.cpus) for r in res], [r.memory_gb for r in res],
                     [float(r.gpus) for r in res])
        self.need_np = tuple(np.asarray(x, dtype=np.float64) for x in self.need)
        self.gpus = any(self.need[2])
        self.walk_class = np.asarray(g.walk_class, dtype=np.intp)
        self.ptr = np.zeros(len(g.walk_class), dtype=np.intp)
        self.dead = [False] * len(g.walk_class)
        sets = sorted(set(g.walk_keys))
        self.keysets = sets if any(sets) else []
        number = {keys: i for i, keys in enumerate(sets)}
        self.keyset = np.asarray([number[keys] for keys in g.walk_keys], dtype=np.intp)

    def run(self, now: datetime, static: dict[tuple[Any, ...], NDArray[np.bool_]]
            ) -> tuple[list[int], list[tuple[int, int, float]]]:
        """Each job's offer (-1: none) and the placements in order: (position in the order,
        offer, expected cost)."""
        self.now, self.static = now, static
        order, walk_of = self.g.order, self.g.walk_of
        walks = [walk_of[i] for i in order]
        walks_np = np.asarray(walks, dtype=np.intp)
        self.choice = [-1] * len(order)
        self.events: list[tuple[int, int, float]] = []
        for s in range(0, len(order), _WINDOW):
            e = s + _WINDOW
            self._place(s, order[s:e], walks[s:e], self._look(walks_np[s:e]))
        return self.choice, self.events

    def _sync(self) -> None:
        """Bring the arrays up to date with what the jobs took since the last time."""
        if self.dirty:
            d = self.dirty
            for free, arr in zip(self.free, self.arrays, strict=True):
                arr[d] = [free[x] for x in d]
            d.clear()
            if self.limited:
                self.slots_np[:-1] = self.slots

    def _fits(self, walks: NDArray[np.intp], flat: NDArray[np.intp]) -> NDArray[np.bool_]:
        """Which of the ranked offers at ``flat`` (one row per walk) fit its jobs now."""
        (cpus, mem, gpus), (c, m, g) = self.arrays, self.need_np
        cand = self.rk.offer[flat]
        fit = (cpus[cand] >= c[walks, None]) & (mem[cand] >= m[walks, None])
        if self.gpus:
            fit &= gpus[cand] >= g[walks, None]
        if self.limited:
            fit &= self.slots_np[self.site_np[cand]] > 0
        if self.keysets:
            caps = np.asarray([min((self.left[b] for b in keys), default=math.inf)
                               for keys in self.keysets])
            fit &= self.rk.cost[flat] <= caps[self.keyset[walks], None]
        return fit

    def _look(self, walks: NDArray[np.intp]) -> tuple[list[int], list[float], list[int],
                                                       list[int]]:
        """The window's candidates: offers and costs of all its jobs end to end, where each
        job's begin, and where down its ranking a job's search goes on if none is left.

        Each job looks ``_AHEAD`` offers down from its walk's pointer; one that finds none
        there (other walks filled them since) looks four times as far on from there, and so
        on to the end of its ranking."""
        self._sync()
        rows = np.arange(len(walks))
        start, length = self.ptr[walks], self.rk.length[self.walk_class[walks]]
        resume = start.copy()
        count = np.zeros(len(walks), dtype=np.intp)
        found_rows, found_at = [], []
        width = _AHEAD
        while rows.size:
            r, at, resume[rows] = self._scan(walks[rows], resume[rows], width)
            found_rows.append(rows[r])
            found_at.append(at)
            count[rows] = np.bincount(r, minlength=rows.size)
            rows = rows[(count[rows] == 0) & (resume[rows] < length[rows])]
            width *= _GROW
        at = np.concatenate(found_at)
        if len(found_at) > 1:
            at = at[np.argsort(np.concatenate(found_rows), kind="stable")]
        bounds = np.zeros(len(walks) + 1, dtype=np.intp)
        np.cumsum(count, out=bounds[1:])
        return (self.rk.offer[at].tolist(), self.rk.cost[at].tolist(), bounds.tolist(),
                resume.tolist())

    def _scan(self, walks: NDArray[np.intp], p0: NDArray[np.intp], width: int
              ) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp]]:
        """Positions ``p0`` to ``p0 + width`` of each walk's ranking: the first ``_KEEP``
        that fit now (as row numbers and places in the flat ranking, row by row), and where
        a search goes on past them. The walks' pointers move to the first that fits."""
        k = self.walk_class[walks]
        length = self.rk.length[k]
        at = p0[:, None] + np.arange(width)
        end = np.minimum(p0 + width, length)
        flat = np.where(at < length[:, None], self.rk.start[k][:, None] + at, 0)
        fit = self._fits(walks, flat)
        first = np.argmax(fit, axis=1)
        self.ptr[walks] = np.where(fit[np.arange(len(walks)), first], p0 + first, end)
        if width > _KEEP:
            seen = np.cumsum(fit, axis=1)
            over = seen[:, -1] > _KEEP
            end = np.where(over, p0 + np.argmax(seen > _KEEP, axis=1), end)
            fit &= seen <= _KEEP
        r, c = np.nonzero(fit)
        return r, flat[r, c], end

    def _place(self, s: int, jobs: list[int], walks: list[int],
               look: tuple[list[int], list[float], list[int], list[int]]) -> None:
        cands, costs, bounds, resume = look
        (free_c, free_m, free_g), (need_c, need_m, need_g) = self.free, self.need
        slots, site_of, left, keysets = self.slots, self.o.site_of, self.left, self.g.walk_keys
        dead, dirty, choice, events = self.dead, self.dirty, self.choice, self.events
        for t, i in enumerate(jobs):
            w = walks[t]
            if dead[w]:
                continue
            c, m, g, keys = need_c[w], need_m[w], need_g[w], keysets[w]
            x, price = -1, 0.0
            for u in range(bounds[t], bounds[t + 1]):
                j = cands[u]
                if (free_c[j] >= c and free_m[j] >= m and free_g[j] >= g
                        and slots[site_of[j]] > 0):
                    price = costs[u]
                    for b in keys:
                        if price > left[b]:
                            break
                    else:
                        x = j
                        break
            if x < 0:
                x, price = self._search(w, resume[t])
                if x < 0:
                    continue
            free_c[x] -= c
            free_m[x] -= m
            free_g[x] -= g
            dirty.append(x)
            slots[site_of[x]] -= 1
            for b in keys:
                left[b] -= price
            choice[i] = x
            events.append((s + t, x, price))

    def _search(self, w: int, s: int) -> tuple[int, float]:
        """The first offer from position ``s`` of walk ``w``'s ranking that fits now, and
        its cost: (-1, 0) when none does (and none will: the walk is done)."""
        self._sync()
        rk, k = self.rk, int(self.walk_class[w])
        walk = np.full(1, w, dtype=np.intp)
        s = max(s, int(self.ptr[w]))
        while True:
            a, n = int(rk.start[k]), int(rk.length[k])
            if s < n:
                fit = self._fits(walk, np.arange(a + s, a + n)[None, :])[0]
                q = int(np.argmax(fit))
                if fit[q]:
                    self.ptr[w] = s + q
                    return int(rk.offer[a + s + q]), float(rk.cost[a + s + q])
                s = n
            if rk.complete[k]:
                self.dead[w] = True
                return -1, 0.0
            rk.deepen(k, self.g.classes[k], self.o, self.now, self.static)



def plan(
    jobs: Sequence[PendingJob],
    offers: Sequence[Offer],
    now: datetime,
    policy: Policy = Policy(),  # noqa: B008 -- frozen, so sharing one default is safe
    budgets: Mapping[str, float] | None = None,
    site_slots: Mapping[str, int] | None = None,
) -> Plan:
    """Decide a site for every pending job, highest priority first; explanations on demand.

    Feasibility of a job on an offer: site allowed and not denied, tier allowed, preemptible
    only if the job accepts it, labels and latency, enough free cpus/memory/gpus (consumed by
    earlier jobs in this call), walltime within the site limit (or the job resumes), a finite
    expected run time, expected finish (``now + queue_wait + expected runtime``) by the
    deadline, expected cost within ``max_cost``, what its team and project have left
    (``budgets``: ``{"team:NAME" or "NAME": money, "project:NAME": money}``), a slot on its
    site (``site_slots``: attempts a site may still start), and, for the ``deadline`` policy, a
    good enough chance of meeting the deadline. Among feasible offers the job's policy (or
    ``policy``) picks; ties go to the earlier finish (or lower cost), then site and offer key.
    ``now`` and deadlines must be both timezone-aware or both naive.
    """
    # The round allocates many small objects and no cycles; with 100,000 jobs alive the
    # collector's full passes cost more than the round itself, so it waits until the end.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _plan(jobs, offers, now, policy, budgets, site_slots)
    finally:
        if enabled:
            gc.enable()


def _plan(jobs: Sequence[PendingJob], offers: Sequence[Offer], now: datetime, policy: Policy,
          budgets: Mapping[str, float] | None, site_slots: Mapping[str, int] | None) -> Plan:
    left = dict(budgets or {})
    o = _Offers.of(offers)
    g = _group(jobs, policy, left)
    static: dict[tuple[Any, ...], NDArray[np.bool_]] = {}
    rk = _Rankings.of(g.classes, o, now, static)
    choice, events = _Walker(o, g, rk, left, site_slots or {}).run(now, static)
    return Plan(jobs=jobs, offers=offers, now=now, policy=policy, budgets=dict(budgets or {}),
                order=g.order, choice=choice, site_slots=dict(site_slots or {}),
                classes=len(g.classes), _classes=g.classes, _class_of=g.class_of, _arrays=o,
                _events=events, _static=static)


def place(
    jobs: Sequence[PendingJob],
    offers: Sequence[Offer],
    now: datetime,
    policy: Policy = Policy(),  # noqa: B008 -- frozen, so sharing one default is safe
    budgets: Mapping[str, float] | None = None,
    site_slots: Mapping[str, int] | None = None,
) -> list[Decision]:
    """:func:`plan`, with every decision explained, in placement order."""
    return plan(jobs, offers, now, policy, budgets, site_slots).decisions()


# explanations ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Scored:
    index: int
    offer: Offer
    rows: _Rows
    finish: datetime | None
    problems: tuple[str, ...]

    @property
    def cost(self) -> float:
        return float(self.rows.cost[0, self.index])

    @property
    def rounded(self) -> float:
        return round(self.cost, _COST_DIGITS)


def _site_problems(spec: JobSpec, offer: Offer) -> list[str]:
    c = spec.constraints
    problems: list[str] = []
    if offer.site in c.denied_sites:
        problems.append("denied by constraints")
    if c.allowed_sites is not None and offer.site not in c.allowed_sites:
        problems.append(f"not in allowed sites ({', '.join(sorted(c.allowed_sites)) or 'none'})")
    if offer.tier not in c.tiers:
        allowed = ", ".join(sorted(t.value for t in c.tiers)) or "none"
        problems.append(f"tier {offer.tier.value} not allowed (allowed: {allowed})")
    if offer.preemptible and not c.preemptible_ok:
        problems.append("site is preemptible and the job does not allow preemption")
    missing = {k: v for k, v in c.labels.items() if offer.labels.get(k) != v}
    if missing:
        want = ", ".join(f"{k}={v}" for k, v in sorted(missing.items()))
        has = ", ".join(f"{k}={v}" for k, v in sorted(offer.labels.items())) or "none"
        problems.append(f"lacks label {want} (has {has})")
    if c.max_latency_ms is not None:
        if offer.latency_ms is None:
            problems.append(f"latency unknown (the job needs at most {c.max_latency_ms:g} ms)")
        elif offer.latency_ms > c.max_latency_ms:
            problems.append(f"latency {offer.latency_ms:.1f} ms > max {c.max_latency_ms:g} ms")
    return problems


def _capacity_problems(spec: JobSpec, free: Sequence[float]) -> list[str]:
    r = spec.resources
    problems: list[str] = []
    if r.cpus > free[0]:
        problems.append(f"needs {r.cpus} cpus, {max(int(free[0]), 0)} free")
    if r.memory_gb > free[1]:
        problems.append(f"needs {r.memory_gb:g} GB memory, {max(free[1], 0.0):g} GB free")
    if r.gpus > free[2]:
        problems.append(f"needs {r.gpus} gpus, {max(int(free[2]), 0)} free")
    return problems


def _finish(now: datetime, seconds: float) -> datetime | None:
    """``now + seconds``, or None when that is not a finite, representable time."""
    if not math.isfinite(seconds):
        return None
    try:
        return now + timedelta(seconds=seconds)
    except OverflowError:
        return None


def _candidate(s: _Scored, reason: str) -> Candidate:
    finite = s.finish is not None
    return Candidate(
        site=s.offer.site,
        offer_key=s.offer.key,
        feasible=not s.problems,
        expected_cost=s.cost if finite else None,
        on_demand_cost=float(s.rows.on_demand[0, s.index]),
        expected_runtime_s=float(s.rows.runtime[0, s.index]) if finite else None,
        expected_finish=s.finish,
        reason=reason,
        on_time_chance=float(s.rows.chance[0, s.index]) if s.rows.has_deadline else None,
    )


def _winner_reason(best: _Scored, rest: Sequence[_Scored], policy: str) -> str:
    cost = _money(best.cost)
    if not rest:
        return f"only feasible site: {cost}"
    nxt = rest[0]
    if policy == "fastest":
        assert best.finish is not None and nxt.finish is not None
        gain = _duration((nxt.finish - best.finish).total_seconds())
        return (f"fastest feasible: finishes {gain} before {nxt.offer.site} "
                f"({cost} vs {_money(nxt.cost)})")
    if policy == "balanced":
        return (f"best balance of cost and time: {cost} vs next {_money(nxt.cost)} on "
                f"{nxt.offer.site}")
    what = "cheapest feasible"
    if policy == "deadline":
        what = "cheapest likely to meet the deadline"
    text = f"{what}: {cost} vs next {_money(nxt.cost)} on {nxt.offer.site}"
    if nxt.rounded == best.rounded:
        by = ("earlier finish" if nxt.finish != best.finish
              else "site name" if nxt.offer.site != best.offer.site else "offer key")
        text += f", tie broken by {by}"
    return text


def _loser_reason(s: _Scored, best: _Scored, policy: str) -> str:
    site = best.offer.site
    assert s.finish is not None and best.finish is not None
    if policy == "fastest" and s.finish > best.finish:
        later = _duration((s.finish - best.finish).total_seconds())
        return f"finishes later than {site} (by {later})"
    if policy == "balanced":
        return f"worse balance of cost and time than {site}"
    diff = s.rounded - best.rounded
    if diff > 0:
        return f"dearer by {_money(diff)} than {site}"
    if s.finish > best.finish:
        later = _duration((s.finish - best.finish).total_seconds())
        return f"same cost, later finish than {site} (by {later})"
    if s.offer.site != site:
        return f"same cost and finish as {site}; lost the tie-break on site name"
    return f"same cost and finish as {site} {best.offer.key}; lost the tie-break on offer key"


def _money(x: float) -> str:
    """Dollars readably: ``$3.10``, ``$0.25``, ``$0.012``, ``$0.00042``."""
    if x == 0 or abs(x) >= 0.1:
        return f"${x:,.2f}"
    digits = max(3, 1 - math.floor(math.log10(abs(x))))
    return f"${x:.{digits}f}"


def _duration(seconds: float) -> str:
    """``45s``, ``3m05s``, ``1h02m``, ``2d03h`` (rounded up to the unit shown)."""
    s = math.ceil(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        m = math.ceil(s / 60)
        return f"{m // 60}h{m % 60:02d}m"
    h = math.ceil(s / 3600)
    return f"{h // 24}d{h % 24:02d}h"
