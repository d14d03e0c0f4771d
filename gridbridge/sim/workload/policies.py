"""The policies a replay compares: gridbridge's placement (the live ``place()``) and three
baselines that ignore it.

Invariant: the gridbridge policies decide only through :func:`gridbridge.scheduler.placement.place`
with the offers a live federation would show (the cluster's predicted queue wait, spot prices at
the simulated hour, interruption rates); the baselines see the same offers and apply a fixed
rule. Per round and job size::

    offers(size, now) ──> place(jobs of that size) ──> decisions in placement order
         ^                     │ each decision starts its job (HPC: joins the EASY queue)
         └── a job joined the queue: re-place the rest with the new predicted wait

A job no site can take by its deadline is placed again without the deadline (it will be late;
the miss is counted) rather than left waiting.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Sequence

from gridbridge.adapter import Offer
from gridbridge.costs import checkpoint_interval_s
from gridbridge.scheduler.placement import PendingJob, place
from gridbridge.spec import CheckpointPolicy, Constraints, JobSpec, Owner, Policy, Resources, Tier

from .engine import Choice, Chooser, Kind, Replay, SimJob
from .federation import Shape

__all__ = [
    "BASELINES",
    "GreedySpot",
    "HpcOnly",
    "LivePlacement",
    "OnDemandOnly",
    "chooser",
    "gridbridge_policies",
    "job_spec",
    "offers_for",
    "pending_job",
]

BASELINES = ("hpc-only", "on-demand-only", "spot-greedy")


def gridbridge_policies() -> tuple[str, ...]:
    """The placement policies ``Policy`` knows today (``cheapest``, and any added since)."""
    return tuple(str(a) for a in typing.get_args(Policy.model_fields["name"].annotation))


def job_spec(replay: Replay, job: SimJob) -> JobSpec:
    """The job as placement sees it: width, memory, the user's estimate, resumable, deadline."""
    if job.spec is None:
        t = job.trace
        job.spec = JobSpec(
            name=f"swf-{t.job_id}", command=("swf-job", str(t.job_id)),
            resources=Resources(cpus=t.cores, memory_gb=job.shape.memory_gb,
                                walltime_s=t.requested_s),
            checkpoint=CheckpointPolicy(interval_s=replay.model.checkpoint_interval_s,
                                        resumable=True),
            constraints=Constraints(deadline=replay.at(job.deadline_s)),
            owner=Owner(user=str(t.user)))
    return job.spec


def pending_job(replay: Replay, job: SimJob, relax: bool = False) -> PendingJob:
    """``job`` as a :class:`PendingJob` (``relax``: without its deadline)."""
    spec = job_spec(replay, job)
    if relax:
        spec = spec.model_copy(update={"constraints": spec.constraints.model_copy(
            update={"deadline": None})})
    return PendingJob(job_id=str(job.index), spec=spec, submitted_at=replay.at(job.trace.submit_s),
                      attempt=job.attempts + 1,
                      remaining_work_s=job.remaining_estimate_s if job.done_s > 0 else None)


def offers_for(replay: Replay, shape: Shape, now: float, copies: int = 1,
               prune: bool = True) -> list[Offer]:
    """Every offer the federation shows for a job of ``shape`` at ``now`` (``copies`` such jobs
    fit each cloud offer; ``prune``: see :mod:`.federation`)."""
    fed = replay.fed
    od = fed.cheapest_on_demand_per_hour(shape)
    offers: list[Offer] = []
    if replay.cluster is not None and shape.cores <= replay.cluster.cores:
        wait = replay.cluster.predicted_start(shape.cores, 1.0, now) - now
        offers.append(fed.hpc_offer(wait, replay.hpc_marginal_per_core_hour(), od))
    offers += fed.spot_offers(shape, now, copies, prune)
    offers += fed.on_demand_offers(shape, copies, prune)
    offers += [fed.edge_offer(e, replay.edge_free[i], od) for i, e in enumerate(fed.edge)]
    return offers


def choice_for(replay: Replay, offer: Offer, interval_s: float) -> Choice:
    """How a job runs on ``offer``."""
    fed = replay.fed
    edge = next((i for i, e in enumerate(fed.edge) if e.name == offer.site), -1)
    if offer.tier is Tier.HPC:
        kind = Kind.HPC
    elif edge >= 0:
        kind = Kind.EDGE
    else:
        kind = Kind.SPOT if offer.preemptible else Kind.ON_DEMAND
    return Choice(kind, offer.site, offer.key, interval_s, offer.restart_overhead_s,
                  int(offer.shape.get("instances", "1")), offer.preemption_rate_per_hour, edge)


class LivePlacement:
    """gridbridge: every decision from ``place()`` under one :class:`Policy`."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.name = policy.name

    def place(self, replay: Replay, jobs: Sequence[SimJob], now: float) -> list[SimJob]:
        groups: dict[Shape, list[SimJob]] = {}
        for job in jobs:
            groups.setdefault(job.shape, []).append(job)
        left: list[SimJob] = []
        for shape, group in groups.items():
            missed = self._place(replay, shape, group, now, relax=False)
            if missed:
                missed = self._place(replay, shape, missed, now, relax=True)
            left += missed
        return left

    def _place(self, replay: Replay, shape: Shape, group: list[SimJob], now: float,
               relax: bool) -> list[SimJob]:
        todo, missed = group, []
        while todo:
            offers = offers_for(replay, shape, now, len(todo))
            lookup = {str(j.index): j for j in todo}
            by_key = {(o.site, o.key): o for o in offers}
            decisions = place([pending_job(replay, j, relax) for j in todo], offers,
                              replay.at(now), self.policy)
            todo = []
            for i, d in enumerate(decisions):
                job = lookup[d.job_id]
                if d.site is None or d.offer_key is None or d.checkpoint_interval_s is None:
                    missed.append(job)
                    continue
                offer = by_key[(d.site, d.offer_key)]
                replay.start(job, choice_for(replay, offer, d.checkpoint_interval_s), now)
                if replay.keep_decisions:
                    replay.attempts[-1].decision = d
                if offer.tier is Tier.HPC and i + 1 < len(decisions):
                    todo = [lookup[x.job_id] for x in decisions[i + 1:]]
                    break
        return missed


class HpcOnly:
    """Every job joins the cluster's EASY queue."""

    name = "hpc-only"

    def place(self, replay: Replay, jobs: Sequence[SimJob], now: float) -> list[SimJob]:
        hpc, left = replay.fed.hpc, []
        for job in jobs:
            if hpc is None or replay.cluster is None or job.trace.cores > replay.cluster.cores:
                left.append(job)
                continue
            replay.start(job, Choice(Kind.HPC, hpc.name, "batch",
                                     replay.model.checkpoint_interval_s,
                                     hpc.restart_overhead_s), now)
        return left


class OnDemandOnly:
    """Every job on the cheapest on-demand type for its size, at once."""

    name = "on-demand-only"

    def place(self, replay: Replay, jobs: Sequence[SimJob], now: float) -> list[SimJob]:
        left = []
        for job in jobs:
            offers = replay.fed.on_demand_offers(job.shape, 1, prune=True)
            if not offers:
                left.append(job)
                continue
            best = min(offers, key=lambda o: (o.price.per_hour, o.key))
            replay.start(job, choice_for(replay, best, replay.model.checkpoint_interval_s), now)
        return left


class GreedySpot:
    """Every job on the spot (type, zone) with the lowest price now, whatever its risk;
    after an interruption it resumes from its checkpoint on the then cheapest one."""

    name = "spot-greedy"

    def place(self, replay: Replay, jobs: Sequence[SimJob], now: float) -> list[SimJob]:
        left = []
        for job in jobs:
            best = replay.fed.cheapest_spot_offer(job.shape, now)
            if best is None:
                left.append(job)
                continue
            interval = checkpoint_interval_s(job_spec(replay, job), best)
            replay.start(job, choice_for(replay, best, interval), now)
        return left


def chooser(name: str) -> Chooser:
    """The policy of that name: a baseline or a gridbridge placement policy."""
    baselines: dict[str, Callable[[], Chooser]] = {
        "hpc-only": HpcOnly, "on-demand-only": OnDemandOnly, "spot-greedy": GreedySpot}
    if name in baselines:
        return baselines[name]()
    if name in gridbridge_policies():
        return LivePlacement(Policy.model_validate({"name": name}))
    valid = ", ".join([*BASELINES, *gridbridge_policies(), "all"])
    raise ValueError(f"unknown policy {name!r}; valid choices: {valid}")
