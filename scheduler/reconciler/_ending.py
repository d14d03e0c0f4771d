"""Ending an attempt: its state, its job's next state and its ledger row, in one transaction.

Invariant: every phase that ends an attempt (a refused or unconfirmed submission, a poll that
saw it end, a lost node, a requeue moved elsewhere) ends it here, so the job's next state is
decided by one set of rules and no attempt is charged twice (``store.conclude`` is a
compare-and-set: a second ending of the same attempt is a no-op).
"""

from __future__ import annotations

import logging

from gridbridge.adapter import AttemptStatus
from gridbridge.states import AttemptState, JobState

from ..endings import Verdict, history, ledger_row, next_job_state
from ..records import Attempt, AttemptEnding, Job
from ._tick import World

__all__ = ["Ending"]

log = logging.getLogger("gridbridge.reconciler")
_REFUSED = {"rejected", "gave-up"}
"""Native states of a submission no site took: they count toward ``limits.max_rejections``."""


class Ending:
    """Concludes attempts; keeps no state of its own."""

    def __init__(self, world: World) -> None:
        self.world = world

    def conclude(
        self, attempt: Attempt, job: Job, status: AttemptStatus, *, retry: bool = False,
        charge: bool = True,
    ) -> bool:
        return self.verdict(attempt, Verdict(status, None), job=job, retry=retry, charge=charge)

    def verdict(
        self, attempt: Attempt, verdict: Verdict, *, job: Job | None = None,
        retry: bool = False, charge: bool = True,
    ) -> bool:
        """End an attempt: next job state and ledger row, in one transaction."""
        w = self.world
        job = job or w.store.job(attempt.job_id)
        status, last_step = verdict.status, verdict.last_step
        job_state, job_reason = self._next(attempt, job, verdict, retry)
        ledger = None
        if charge:
            ledger = ledger_row(job, attempt, w.sites.get(attempt.site), verdict, w.clock(),
                                wasted=job_state is JobState.TIMEOUT)
        ending = AttemptEnding(
            state=status.state,
            native_state=status.native_state,
            reason=status.reason,
            job_state=job_state,
            job_reason=job_reason,
            exit_code=status.exit_code,
            last_step=last_step,
            job_error=job_reason if job_state in {JobState.FAILED, JobState.TIMEOUT} else None,
            ledger=ledger,
            return_digest=(verdict.result.return_digest
                           if verdict.result is not None
                           and status.state is AttemptState.SUCCEEDED else None),
        )
        concluded = w.store.conclude(attempt, ending, w.holder)
        if concluded:
            log.info("%s %s on %s; job %s %s: %s", attempt.id, status.state.value, attempt.site,
                     job.id, job_state.value, job_reason, extra={
                         "event": "state", "attempt": attempt.id, "site": attempt.site,
                         "state": status.state.value, "job": job.id,
                         "job_state": job_state.value, "reason": job_reason})
        return concluded

    def _next(self, attempt: Attempt, job: Job, verdict: Verdict,
              retry: bool) -> tuple[JobState, str]:
        """The job's next state, and why."""
        status, last_step = verdict.status, verdict.last_step
        if status.native_state in _REFUSED:
            return self._refused(attempt, job, status)
        if status.native_state == "storage-failed":  # no site can help: it is the job's
            return JobState.FAILED, f"attempt {attempt.number}: {status.reason}"
        earlier = [a for a in self.world.store.attempts(job.id) if a.number < attempt.number]
        h = history(earlier, status, last_step)
        return next_job_state(job, status, h, last_step, retry=retry)

    def _refused(self, attempt: Attempt, job: Job,
                 status: AttemptStatus) -> tuple[JobState, str]:
        """A refused submission: PENDING again, unless too many were refused in a row."""
        job_state, job_reason = JobState.PENDING, f"attempt {attempt.number} {status.reason}"
        in_a_row = 1
        for a in sorted(self.world.store.attempts(job.id), key=lambda a: -a.number):
            if a.number >= attempt.number:
                continue
            if a.native_state not in _REFUSED:
                break
            in_a_row += 1
        if in_a_row >= self.world.config.limits.max_rejections:
            job_state = JobState.FAILED
            job_reason = (f"{in_a_row} submissions rejected in a row "
                          f"(limits.max_rejections); the last: {status.reason}")
        if job.cancel_requested:
            job_state, job_reason = JobState.CANCELLED, "cancelled by user"
        return job_state, job_reason
