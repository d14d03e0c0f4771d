"""How an attempt's end is judged: its result record, its job's next state, its ledger row.

Pure rules plus two reads of storage (the result record, the last checkpoint commit); the
reconciler calls them when a site reports an attempt ended. A result record in storage wins
over the site's word "lost" (the work finished just before its node went away), and a record
that cannot be read ends the attempt FAILED with the reason, never a tick.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from gridbridge.adapter import AttemptStatus
from gridbridge.config import SiteConfig
from gridbridge.costs import attempt_cost
from gridbridge.runtime import Result, read_result
from gridbridge.states import AttemptState, JobState

from .records import Attempt, Job
from .tables import LedgerRow

__all__ = ["Verdict", "judge", "ledger_row", "next_job_state", "progressed_attempts"]

log = logging.getLogger("gridbridge.reconciler")

_FROM_RESULT = {
    "succeeded": AttemptState.SUCCEEDED,
    "failed": AttemptState.FAILED,
    "preempted": AttemptState.PREEMPTED,
}


@dataclass(frozen=True)
class Verdict:
    """The status an attempt ends with, after its result record was consulted."""

    status: AttemptStatus
    result: Result | None


def judge(attempt: Attempt, status: AttemptStatus) -> Verdict:
    """Read the attempt's result record and settle its final status."""
    try:
        result = read_result(attempt.attempt_url)
    except Exception as exc:  # malformed JSON, a path under a file, storage errors
        reason = f"unreadable result record: {type(exc).__name__}: {exc}"[:1000]
        failed = AttemptStatus(state=AttemptState.FAILED, native_state=status.native_state,
                               exit_code=status.exit_code, reason=reason)
        return Verdict(failed, None)
    if result is not None and status.state is AttemptState.LOST:
        state = _FROM_RESULT.get(result.reason, AttemptState.FAILED)
        found = AttemptStatus(
            state=state, native_state=status.native_state, exit_code=result.exit_code,
            reason=f"the site lost it, but its result record says {result.reason}",
        )
        return Verdict(found, result)
    return Verdict(status, result)


def next_job_state(
    job: Job, status: AttemptStatus, last_step: int | None, *, retry: bool, free: int = 0
) -> tuple[JobState, str]:
    """Where the job goes after this attempt: done, failed, cancelled or pending again.

    ``free`` is how many of the job's attempts (this one included) were preempted after
    advancing its committed step: they do not count against ``max_attempts``, so a long job
    that checkpoints goes on through any number of preemptions and walltime ends."""
    state = status.state
    n = job.attempts
    if job.cancel_requested and state is not AttemptState.SUCCEEDED:
        return JobState.CANCELLED, "cancelled by user"
    if state is AttemptState.SUCCEEDED:
        return JobState.SUCCEEDED, f"attempt {n} succeeded"
    if state is AttemptState.CANCELLED:
        return JobState.CANCELLED, f"attempt {n} cancelled by the site"
    resumable = state in {AttemptState.PREEMPTED, AttemptState.LOST} or retry
    if not resumable:
        return JobState.FAILED, f"attempt {n} failed: {status.reason or status.native_state}"
    if n - free >= job.spec.max_attempts:
        return JobState.FAILED, f"attempt {n} {state.lower()}; no attempts left"
    where = f"step {last_step}" if last_step is not None else "the start"
    return JobState.PENDING, f"attempt {n} {state.lower()}; will resume from {where}"


def progressed_attempts(earlier: Sequence[Attempt], state: AttemptState,
                        last_step: int | None) -> int:
    """How many preempted attempts advanced the committed step past every attempt before them,
    counting the one ending now (``state``, ``last_step``)."""
    best, free = -1, 0
    for a in [*earlier, None]:
        a_state, a_step = (state, last_step) if a is None else (a.state, a.last_step)
        if a_step is not None and a_step > best:
            if a_state is AttemptState.PREEMPTED:
                free += 1
            best = a_step
    return free


def ledger_row(
    job: Job, attempt: Attempt, site: SiteConfig | None, verdict: Verdict, now: float
) -> LedgerRow:
    """One row for a finished attempt: its hours, its cost, the on-demand cost of the same
    work, and the cost of work lost since the last commit if it was preempted or lost."""
    outcome, result = verdict.status.state, verdict.result
    start = attempt.started_at or attempt.created_at
    end = now
    if result is not None:
        start, end = result.started_at, result.ended_at
    hours = max(0.0, end - start) / 3600
    res = job.spec.resources
    cost = attempt_cost(site.price, res, hours * 3600) if site else 0.0
    on_demand = attempt_cost(site.on_demand_price, res, hours * 3600) if site else 0.0
    lost = 0.0
    if outcome in {AttemptState.PREEMPTED, AttemptState.LOST} and site is not None:
        lost = attempt_cost(site.price, res, _lost_seconds(job, start, end))
    return LedgerRow(
        attempt_id=attempt.id, job_id=job.id, user=job.spec.owner.user,
        team=job.spec.owner.team, project=job.spec.owner.project, site=attempt.site,
        tier=site.tier.value if site else "unknown", outcome=outcome.value, start=start,
        end=end, core_hours=hours * res.cpus, gpu_hours=hours * res.gpus, cost=cost,
        on_demand_cost=on_demand, lost_cost=lost,
    )


def _lost_seconds(job: Job, start: float, end: float) -> float:
    """Work since the last checkpoint committed during this attempt is lost."""
    committed: float | None = None
    try:
        from gridbridge import checkpoint

        store = checkpoint.open(job.checkpoint_url)
        step = store.latest()
        if step is not None:
            stamp = store.commit_record(step)["time"]
            committed = datetime.fromisoformat(stamp).timestamp()
    except Exception:  # an unreadable store: count the whole attempt as lost
        log.warning("cannot read the last commit of %s", job.id, exc_info=True)
    since = max(start, committed) if committed is not None else start
    return max(0.0, end - since)
