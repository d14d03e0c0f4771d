"""Placement v1: a pure function from (pending jobs, offers, now, policy, budgets) to decisions.

Invariant: ``place`` reads only its arguments -- no I/O, no clock, no randomness, no globals --
and never mutates them, so the same inputs always give the same decisions. That is what lets
the simulator and the live reconciler share it::

    jobs (priority desc, submitted_at, job_id)
      └─ for each job: every offer ─> Candidate (feasible? expected cost/finish, reason)
           └─ cheapest feasible wins (then earlier finish, then site name, then offer key)
                └─ its resources come off that offer's free capacity, and its expected cost
                   off its team's budget, for later jobs in this call
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from gridbridge.adapter import Offer
from gridbridge.costs import CostEstimate, checkpoint_interval_s, estimate
from gridbridge.spec import JobSpec, Policy

__all__ = ["Candidate", "Decision", "PendingJob", "Policy", "place"]

_COST_DIGITS = 9
"""Costs equal to a billionth of a dollar count as the same cost (float noise is not a reason)."""


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

    @property
    def chosen(self) -> Candidate | None:
        """The winning candidate, or None when no site was feasible."""
        if self.site is None:
            return None
        return next((c for c in self.candidates if c.feasible and c.site == self.site
                     and c.offer_key == self.offer_key), None)


@dataclass
class _Free:
    """Capacity still free on one offer within this call (a local copy; offers stay untouched)."""

    cpus: int
    memory_gb: float
    gpus: int


def place(
    jobs: Sequence[PendingJob],
    offers: Sequence[Offer],
    now: datetime,
    policy: Policy = Policy(),  # noqa: B008 -- frozen, so sharing one default is safe
    budgets: Mapping[str, float] | None = None,
) -> list[Decision]:
    """Decide a site for every pending job, highest priority first.

    Feasibility of a job on an offer: site allowed and not denied, tier allowed, preemptible
    only if the job accepts it, enough free cpus/memory/gpus (consumed by earlier jobs in this
    call), walltime within the site limit, a finite expected run time, expected finish
    (``now + queue_wait + expected runtime``) by the deadline, expected cost within ``max_cost``.
    Among feasible offers ``policy`` picks (v1: lowest expected cost, then earlier finish, then
    site name). ``budgets`` maps a team to the money it has left; a job whose expected cost
    exceeds what its team has left is not placed. A resumable job may go to a site whose
    walltime is shorter than its own; its estimate counts the extra restarts. Decisions come
    back in placement order. ``now`` and deadlines must be both timezone-aware or both naive.
    """
    if policy.name != "cheapest":  # pragma: no cover -- Literal keeps other names out
        raise ValueError(f"unknown placement policy {policy.name!r}")
    free = [_Free(o.cpus, o.memory_gb, o.gpus) for o in offers]
    left = dict(budgets or {})
    ordered = sorted(jobs, key=lambda j: (-j.spec.priority, j.submitted_at, j.job_id))
    decisions: list[Decision] = []
    for job in ordered:
        decision, index = _place_one(job, offers, free, now, left)
        if index is not None:
            res = job.spec.resources
            slot = free[index]
            slot.cpus -= res.cpus
            slot.memory_gb -= res.memory_gb
            slot.gpus -= res.gpus
            team = job.spec.owner.team
            chosen = decision.chosen
            if team in left and chosen is not None and chosen.expected_cost is not None:
                left[team] -= chosen.expected_cost
        decisions.append(decision)
    return decisions


@dataclass(frozen=True)
class _Scored:
    index: int
    offer: Offer
    est: CostEstimate
    finish: datetime | None
    problems: tuple[str, ...]

    def rank(self) -> tuple[float, datetime, str, str]:
        assert self.finish is not None  # feasible implies a representable finish
        return (round(self.est.expected_cost, _COST_DIGITS), self.finish, self.offer.site,
                self.offer.key)


def _place_one(
    job: PendingJob, offers: Sequence[Offer], free: Sequence[_Free], now: datetime,
    budgets: Mapping[str, float],
) -> tuple[Decision, int | None]:
    scored = [_score(job, i, o, free[i], now, budgets) for i, o in enumerate(offers)]
    feasible = sorted((s for s in scored if not s.problems), key=_Scored.rank)
    infeasible = sorted((s for s in scored if s.problems), key=lambda s: (s.offer.site, s.index))
    cands = [_candidate(s, "; ".join(s.problems)) for s in infeasible]
    if not feasible:
        summary = " | ".join(f"{c.site}: {c.reason}" for c in cands) or "no offers"
        reason = f"no feasible site: {summary}"
        return Decision(job_id=job.job_id, site=None, candidates=tuple(cands), reason=reason), None
    best = feasible[0]
    ranked = [_candidate(best, _winner_reason(best, feasible[1:]))]
    ranked += [_candidate(s, _loser_reason(s, best)) for s in feasible[1:]]
    decision = Decision(
        job_id=job.job_id,
        site=best.offer.site,
        candidates=(*ranked, *cands),
        reason=ranked[0].reason,
        offer_key=best.offer.key,
        checkpoint_interval_s=checkpoint_interval_s(job.spec, best.offer),
    )
    return decision, best.index


def _score(
    job: PendingJob, index: int, offer: Offer, free: _Free, now: datetime,
    budgets: Mapping[str, float],
) -> _Scored:
    spec = job.spec
    est = estimate(spec, offer, work_s=job.remaining_work_s,
                   interval_s=checkpoint_interval_s(spec, offer))
    finish = _finish(now, offer.queue_wait_s, est.expected_runtime_s)
    problems = [*_site_problems(spec, offer), *_capacity_problems(spec, free)]
    if offer.site in job.avoid:
        problems.insert(0, job.avoid[offer.site])
    if problems and offer.note:
        problems.append(offer.note)
    limit = offer.max_walltime_s
    resumable = spec.checkpoint.resumable or job.remaining_work_s is not None
    if limit is not None and spec.resources.walltime_s > limit and not resumable:
        walltime = _duration(spec.resources.walltime_s)
        problems.append(f"walltime {walltime} exceeds site limit {_duration(limit)} and the "
                        "job does not resume from checkpoints")
    if finish is None:
        problems.append("preemption too frequent to finish")
    else:
        deadline = spec.constraints.deadline
        if deadline is not None and finish > deadline:
            late = (finish - deadline).total_seconds()
            problems.append(f"deadline missed by {_duration(late)}")
        if spec.max_cost is not None and est.expected_cost > spec.max_cost:
            problems.append(
                f"expected cost {_money(est.expected_cost)} > max_cost {_money(spec.max_cost)}"
            )
        team = spec.owner.team
        if team in budgets and est.expected_cost > budgets[team]:
            problems.append(f"expected cost {_money(est.expected_cost)} > what team {team} has "
                            f"left of its budget ({_money(max(budgets[team], 0.0))})")
    return _Scored(index, offer, est, finish, tuple(problems))


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


def _capacity_problems(spec: JobSpec, free: _Free) -> list[str]:
    r = spec.resources
    problems: list[str] = []
    if r.cpus > free.cpus:
        problems.append(f"needs {r.cpus} cpus, {max(free.cpus, 0)} free")
    if r.memory_gb > free.memory_gb:
        problems.append(f"needs {r.memory_gb:g} GB memory, {max(free.memory_gb, 0.0):g} GB free")
    if r.gpus > free.gpus:
        problems.append(f"needs {r.gpus} gpus, {max(free.gpus, 0)} free")
    return problems


def _finish(now: datetime, wait_s: float, runtime_s: float) -> datetime | None:
    """``now + wait + runtime``, or None when that is not a finite, representable time."""
    if not math.isfinite(runtime_s):
        return None
    try:
        return now + timedelta(seconds=wait_s + runtime_s)
    except OverflowError:
        return None


def _candidate(s: _Scored, reason: str) -> Candidate:
    finite = s.finish is not None
    return Candidate(
        site=s.offer.site,
        offer_key=s.offer.key,
        feasible=not s.problems,
        expected_cost=s.est.expected_cost if finite else None,
        on_demand_cost=s.est.on_demand_cost,
        expected_runtime_s=s.est.expected_runtime_s if finite else None,
        expected_finish=s.finish,
        reason=reason,
    )


def _winner_reason(best: _Scored, rest: Sequence[_Scored]) -> str:
    cost = _money(best.est.expected_cost)
    if not rest:
        return f"only feasible site: {cost}"
    nxt = rest[0]
    text = f"cheapest feasible: {cost} vs next {_money(nxt.est.expected_cost)} on {nxt.offer.site}"
    if nxt.rank()[0] == best.rank()[0]:
        by = ("earlier finish" if nxt.finish != best.finish
              else "site name" if nxt.offer.site != best.offer.site else "offer key")
        text += f", tie broken by {by}"
    return text


def _loser_reason(s: _Scored, best: _Scored) -> str:
    site = best.offer.site
    diff = s.rank()[0] - best.rank()[0]
    if diff > 0:
        return f"dearer by {_money(diff)} than {site}"
    assert s.finish is not None and best.finish is not None
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
