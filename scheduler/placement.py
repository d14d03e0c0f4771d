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
class stays failed for it: each class walks its ranking once, and a round over 100,000 jobs
and 1,000 offers is a few array operations and one cheap loop. Candidates (every offer with its
numbers and the reason it won, lost or could not run the job) are built only for the decisions
asked for: ``Plan.decision(i)``; ``place`` asks for all of them.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from gridbridge.adapter import Offer
from gridbridge.spec import JobSpec, Policy

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


@dataclass
class _Class:
    """Jobs with the same numbers on every offer: resources, work, checkpoints, constraints,
    max_cost, sites to avoid and policy. Their offers are ranked once."""

    spec: JobSpec
    work: float
    resumable: bool
    cost_c: float | None
    avoid: dict[str, str]
    policy: Policy
    ranked: list[int] = field(default_factory=list)
    costs: list[float] = field(default_factory=list)
    """The expected cost on each ranked offer."""
    ranked_np: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    costs_np: _Array = field(default_factory=lambda: np.zeros(0))
    complete: bool = False
    """``ranked`` holds every feasible offer (not only the first few)."""


@dataclass
class _Walk:
    """A class's jobs of one team and project (where a budget applies): how far down the
    class's ranking they have had to go."""

    klass: int
    team: str | None
    project: str | None
    keys: list[str] = field(default_factory=list)
    """The budgets its jobs draw on."""
    ptr: int = 0
    cpus: int = 0
    memory: float = 0.0
    gpus: int = 0


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


def _class_key(job: PendingJob, policy: Policy) -> tuple[Any, ...]:
    spec = job.spec
    c, r, p = spec.constraints, spec.resources, spec.policy or policy
    return (r.cpus, r.memory_gb, r.gpus, r.walltime_s, r.expected_runtime_s,
            spec.checkpoint.interval_s, spec.checkpoint.resumable,
            c.allowed_sites, c.denied_sites, c.tiers, c.deadline, c.preemptible_ok,
            tuple(sorted(c.labels.items())) if c.labels else (), c.max_latency_ms,
            spec.max_cost, job.remaining_work_s, job.checkpoint_cost_s,
            tuple(sorted(job.avoid.items())) if job.avoid else (), p.name, p.weight, p.target)


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


def _rank(k: _Class, o: _Offers, rows: _Rows, r: int, top: int | None) -> list[int]:
    """The class's feasible offers (before capacity), best first by its policy: the first
    ``top`` (with every offer tied with the last of them), or all."""
    primary = _primary(k, rows, r)
    if top is not None and primary.size > top:
        kth = np.partition(primary, top - 1)[top - 1]
        idx = np.flatnonzero((primary <= kth) & rows.ok[r])
    else:
        idx = np.flatnonzero(rows.ok[r])
    if idx.size == 0:
        return []
    cost = np.round(rows.cost[r][idx], _COST_DIGITS)
    finish = np.round(rows.finish[r][idx], 6)
    name = o.order[idx]
    if k.policy.name == "fastest":
        keys: tuple[Any, ...] = (name, cost, finish)
    elif k.policy.name == "balanced":
        keys = (name, finish, cost, primary[idx])
    else:
        keys = (name, finish, cost)
    ranked: list[int] = idx[np.lexsort(keys)].tolist()
    return ranked


def _rank_all(ks: Sequence[_Class], o: _Offers, rows: _Rows) -> list[list[int]]:
    """:func:`_rank` of every offer, for all the classes of ``rows`` in one sort."""
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
    name = np.broadcast_to(o.order, first.shape)
    ordered = np.lexsort((name, third, second, first), axis=-1)
    counts = rows.ok.sum(axis=1)
    return [ordered[r, :counts[r]].tolist() for r in range(len(ks))]


def _balanced(cost: _Array, finish: _Array, ok: NDArray[np.bool_], weight: float) -> _Array:
    best_cost, best_time = float(cost[ok].min()), float(finish[ok].min())
    out: _Array = (weight * (cost + _CENT) / (best_cost + _CENT)
                   + (1 - weight) * (finish + _MINUTE_S) / (best_time + _MINUTE_S))
    return out


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
        rank = {j: n for n, j in enumerate(_rank(k, o, rows, 0, None))}
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
            problems += _budget_problems(k.spec, cost, left)
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


_FULL_RANK = 4096
"""Up to this many offers every class ranks them all at once; beyond, the first ``_TOP``."""
_STEPS = 24
"""Offers a job steps past one by one before it searches the rest of its ranking at once."""
_CHUNK = 256
"""Classes scored together in one set of array operations."""


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
    classes: list[_Class] = []
    index: dict[tuple[Any, ...], int] = {}
    class_of: list[int] = []
    walks: list[_Walk] = []
    walk_index: dict[tuple[int, str | None, str | None], int] = {}
    walk_of: list[int] = []
    for job in jobs:
        key = _class_key(job, policy)
        c = index.get(key)
        if c is None:
            c = index[key] = len(classes)
            spec = job.spec
            work = (spec.resources.runtime_estimate_s if job.remaining_work_s is None
                    else job.remaining_work_s)
            classes.append(_Class(
                spec=spec, work=work,
                resumable=spec.checkpoint.resumable or job.remaining_work_s is not None,
                cost_c=job.checkpoint_cost_s, avoid=dict(job.avoid),
                policy=spec.policy or policy))
        class_of.append(c)
        owner = job.spec.owner
        team = owner.team if left and (owner.team in left or f"team:{owner.team}" in left) \
            else None
        project = owner.project if left and f"project:{owner.project}" in left else None
        w = walk_index.get((c, team, project))
        if w is None:
            w = walk_index[(c, team, project)] = len(walks)
            res = job.spec.resources
            walks.append(_Walk(c, team, project, _budget_keys(job.spec, left),
                               cpus=res.cpus, memory=res.memory_gb, gpus=res.gpus))
        walk_of.append(w)
    static: dict[tuple[Any, ...], NDArray[np.bool_]] = {}
    for start in range(0, len(classes), _CHUNK):
        chunk = classes[start:start + _CHUNK]
        rows = _rows(chunk, o, now, static)
        if len(offers) <= _FULL_RANK:  # rank every offer of every class of the chunk at once
            for r, (k, ranked) in enumerate(zip(chunk, _rank_all(chunk, o, rows), strict=True)):
                _set_ranking(k, ranked, rows.cost[r])
                k.complete = True
        else:  # many offers: the first few of each class now, the rest if it gets there
            for r, k in enumerate(chunk):
                _set_ranking(k, _rank(k, o, rows, r, _TOP), rows.cost[r])
                k.complete = len(k.ranked) < _TOP or int(rows.ok[r].sum()) <= len(k.ranked)
    sort_keys = [(-j.spec.priority, j.submitted_at, j.job_id) for j in jobs]
    order = sorted(range(len(jobs)), key=sort_keys.__getitem__)
    # Capacity as lists for the per-job checks, and as arrays for the searches past offers
    # that filled up (brought up to date from ``dirty`` before each search).
    free_cpus, free_mem, free_gpus = o.cpus.tolist(), o.memory.tolist(), o.gpus.tolist()
    cpus_np, mem_np, gpus_np = o.cpus.copy(), o.memory.copy(), o.gpus.copy()
    dirty: list[int] = []
    slots = [math.inf] * len(o.sites)
    for site, n in (site_slots or {}).items():
        if site in o.sites:
            slots[o.sites.index(site)] = n
    site_of, site_idx = o.site_of, o.site_idx
    choice = [-1] * len(jobs)
    events: list[tuple[int, int, float]] = []
    for pos, i in enumerate(order):
        walk = walks[walk_of[i]]
        k = classes[walk.klass]
        cpus, mem, gpus, keys = walk.cpus, walk.memory, walk.gpus, walk.keys
        while True:
            p, ranked, costs, n = walk.ptr, k.ranked, k.costs, len(k.ranked)
            # Capacity, slots and budgets only shrink, so an offer passed over here can never
            # fit a job of this walk again. A few steps one by one (the next offer usually
            # fits), then one pass over the rest of the ranking.
            stop = min(n, p + _STEPS)
            while p < stop:
                j = ranked[p]
                if (free_cpus[j] >= cpus and free_mem[j] >= mem and free_gpus[j] >= gpus
                        and slots[site_of[j]] > 0):
                    if not keys:
                        break
                    price = costs[p]
                    for b in keys:
                        if price > left[b]:
                            break
                    else:
                        break
                p += 1
            if p == stop and p < n:
                if dirty:
                    cpus_np[dirty] = [free_cpus[x] for x in dirty]
                    mem_np[dirty] = [free_mem[x] for x in dirty]
                    gpus_np[dirty] = [free_gpus[x] for x in dirty]
                    dirty.clear()
                rest = k.ranked_np[p:]
                fit = ((cpus_np[rest] >= cpus) & (mem_np[rest] >= mem)
                       & (gpus_np[rest] >= gpus))
                if site_slots:
                    fit &= np.asarray(slots, dtype=np.float64)[site_idx[rest]] > 0
                for b in keys:
                    fit &= k.costs_np[p:] <= left[b]
                q = int(np.argmax(fit))
                p = p + q if fit[q] else n
            walk.ptr = p
            if p < n or k.complete:
                break
            full = _rows([k], o, now, static)  # the first few ran out: rank them all
            _set_ranking(k, _rank(k, o, full, 0, None), full.cost[0])
            k.complete = True
        p = walk.ptr
        if p >= len(k.ranked):
            continue
        j = k.ranked[p]
        cost = k.costs[p]
        free_cpus[j] -= cpus
        free_mem[j] -= mem
        free_gpus[j] -= gpus
        dirty.append(j)
        slots[site_of[j]] -= 1
        for b in keys:
            left[b] -= cost
        choice[i] = j
        events.append((pos, j, cost))
    return Plan(jobs=jobs, offers=offers, now=now, policy=policy, budgets=dict(budgets or {}),
                order=order, choice=choice, site_slots=dict(site_slots or {}),
                classes=len(classes), _classes=classes, _class_of=class_of, _arrays=o,
                _events=events, _static=static)


def _set_ranking(k: _Class, ranked: list[int], cost_row: _Array) -> None:
    k.ranked = ranked
    k.ranked_np = np.asarray(ranked, dtype=np.int64)
    k.costs_np = cost_row[k.ranked_np] if ranked else np.zeros(0)
    k.costs = k.costs_np.tolist()


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
