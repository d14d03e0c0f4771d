"""A replay written into a state store, so that a what-if reads like real months of spend:
``gridbridge simulate --trace ... --policy P --store URL``, then ``gridbridge report costs
--store URL`` (and ``forecast``, ``placements``, ``html``).

Each trace job becomes a job row (named ``swf-ID``, user the trace's user, team its group,
project the trace's name), each attempt a ledger row charged what the replay billed, beside
what the same hours would have cost on the cheapest on-demand type of that shape. The work an
interruption threw away is the attempt's ``lost_cost``, pro rata. With the placement
policies, each attempt's decision is written too, every candidate, as the live reconciler does.
Times are the trace's, on the replay's calendar (the price history's start, or the trace's
``UnixStartTime``).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from gridbridge.scheduler.store import StateStore
from gridbridge.scheduler.tables import DecisionRow, JobRow, LedgerRow

from .engine import Kind, ReplayResult, SimAttempt, SimOutcome, progress
from .policies import job_spec
from .run import Setup

__all__ = ["write_books"]

_TIER = {Kind.HPC: "hpc", Kind.SPOT: "cloud", Kind.ON_DEMAND: "cloud", Kind.EDGE: "edge"}
_OUTCOME = {SimOutcome.DONE: "SUCCEEDED", SimOutcome.INTERRUPTED: "PREEMPTED",
            SimOutcome.WALLTIME: "PREEMPTED"}


def write_books(result: ReplayResult, setup: Setup, url: str) -> int:
    """Write ``result`` into the (new or empty) store at ``url``; returns the ledger rows
    written. Refuses a store that already holds jobs: a what-if never mixes with real books."""
    store = StateStore(url)
    try:
        if store.jobs(limit=1):
            raise ValueError(f"--store {url}: that store already holds jobs; give a new one")
        base = setup.base.timestamp()
        project = Path(setup.trace.path).name.split(".")[0]
        by_job: dict[int, list[SimAttempt]] = {}
        for att in result.attempts:
            by_job.setdefault(att.job.index, []).append(att)
        jobs, ledger, decisions = [], [], []
        from .engine import Replay  # only for the spec's calendar

        calendar = Replay(setup.federation, (), setup.sites.jobs, setup.base, 0)
        for job in result.jobs:
            t = job.trace
            job_id = f"s{job.index}-{t.job_id}"
            done = job.finish_s is not None
            spec = job_spec(calendar, job)
            team = f"group-{t.group}" if t.group >= 0 else "trace"
            jobs.append(JobRow(
                id=job_id, name=f"swf-{t.job_id}", spec_json=spec.model_dump_json(),
                state="SUCCEEDED" if done else "PENDING", priority=0, user=str(t.user),
                team=team, project=project, created_at=base + t.submit_s,
                updated_at=base + (job.finish_s if done and job.finish_s else t.submit_s),
                attempts=job.attempts, cancel_requested=False, checkpoint_url="", error=None))
            for n, att in enumerate(by_job.get(job.index, []), start=1):
                if att.start_s is None or att.end_s is None or att.outcome is None:
                    continue
                ledger.append(_ledger_row(setup, att, job_id, n, str(t.user), team, project,
                                          base))
                if att.decision is not None:
                    decisions += _decision_rows(att, job_id, n, base)
        with Session(store.engine) as s, s.begin():
            s.add_all(jobs)
            s.add_all(ledger)
            s.add_all(decisions)
        return len(ledger)
    finally:
        store.engine.dispose()


def _ledger_row(setup: Setup, att: SimAttempt, job_id: str, n: int, user: str, team: str,
                project: str, base: float) -> LedgerRow:
    assert att.start_s is not None and att.end_s is not None and att.outcome is not None
    elapsed = att.end_s - att.start_s
    cores = att.job.trace.cores
    od_rate = setup.federation.cheapest_on_demand_per_hour(att.job.shape)
    on_demand = od_rate * elapsed / 3600.0 if od_rate > 0 else att.cost
    lost = 0.0
    if att.outcome is SimOutcome.INTERRUPTED and elapsed > 0:
        _, since = progress(elapsed, att.restart_s, att.plan_s, att.choice.interval_s,
                            setup.sites.jobs.checkpoint_cost_s)
        lost = att.cost * min(1.0, (since + att.restart_s) / elapsed)
    return LedgerRow(
        attempt_id=f"{job_id}.{n}", job_id=job_id, user=user, team=team, project=project,
        site=att.choice.site, tier=_TIER[att.choice.kind], outcome=_OUTCOME[att.outcome],
        start=base + att.start_s, end=base + att.end_s, core_hours=cores * elapsed / 3600.0,
        gpu_hours=0.0, cost=att.cost, on_demand_cost=on_demand, lost_cost=lost,
        offer_key=att.choice.key)


def _decision_rows(att: SimAttempt, job_id: str, n: int, base: float) -> list[DecisionRow]:
    d = att.decision
    assert d is not None
    return [
        DecisionRow(
            at=base + att.placed_s, job_id=job_id, attempt=n, site=c.site,
            offer_key=c.offer_key,
            chosen=c.site == d.site and c.offer_key == d.offer_key, feasible=c.feasible,
            expected_cost=c.expected_cost, on_demand_cost=c.on_demand_cost,
            expected_runtime_s=c.expected_runtime_s,
            expected_finish=c.expected_finish.timestamp() if c.expected_finish else None,
            reason=c.reason)
        for c in d.candidates
    ]
