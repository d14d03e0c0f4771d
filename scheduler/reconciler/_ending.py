"""Ending an attempt: its state, its job's next state and its ledger row, in one transaction.

Invariant: every phase that ends an attempt (a refused or unconfirmed submission, a poll that
saw it end, a lost node, a requeue moved elsewhere) ends it here, so the job's next state is
decided by one set of rules and no attempt is charged twice (``store.conclude`` is a
compare-and-set: a second ending of the same attempt is a no-op). It is also the one home of
judging an ended attempt by its result record (:meth:`Ending.judge`): a record storage cannot
give back (an I/O error) leaves the attempt unconcluded, judged again with backoff, and only
after ``RECORD_READ_S`` LOST, saying storage could not be read; whichever phase asks::

    judge ─┬─ record read (or malformed) ─────────> the verdict
           ├─ I/O error, within RECORD_READ_S ────> None: again after 1, 2, 4 ... 60 s
           └─ I/O error for RECORD_READ_S ────────> LOST, "storage could not be read"

An attempt the migration phase asked to stop (its ``moving`` event, kept in :attr:`Ending.moves`
and in the store) that ends cancelled, preempted or lost ends MOVED: the job goes back to
PENDING, no failure and no attempt counted; one that succeeded or failed on its own ends so.

An attempt LOST on an offer of a site of several (an edge node, a Slurm partition, an EC2
zone) leaves that offer avoided by its job for ``limits.reject_backoff_s``
(:meth:`Ending.avoided`, keyed ``site/offer``), as a refusing site is: a node that lost the
attempt for its environment (the runtime never started, storage unreachable, the node gone)
is not tried again at once, and the job goes to the next offer instead.
"""

from __future__ import annotations

import dataclasses
import logging

from gridbridge.adapter import AttemptStatus
from gridbridge.states import AttemptState, JobState
from gridbridge.units import fmt_duration

from ..endings import Verdict, history, judge, ledger_row, next_job_state
from ..records import Attempt, AttemptEnding, Job
from ._tick import Avoidances, World

__all__ = ["MOVING", "Ending"]

log = logging.getLogger("gridbridge.reconciler")
_REFUSED = {"rejected", "gave-up"}
_STOPPED = frozenset({AttemptState.CANCELLED, AttemptState.PREEMPTED, AttemptState.LOST})
"""How an attempt asked to move may end and still be a move (the stop it was sent)."""
MOVING = "moving"
"""The kind of the story event that asks an attempt to stop for a move (its reason, why)."""
"""Native states of a submission no site took: they count toward ``limits.max_rejections``."""


RECORD_READ_S = 300.0
"""How long an ended attempt whose result record storage cannot give back is judged again
before it is judged LOST (storage that fails for longer is an outage, not a hiccup)."""
_FIRST_WAIT_S, _MAX_WAIT_S = 1.0, 60.0
"""Backoff between those tries: doubling from the first wait up to the longest."""


@dataclasses.dataclass(frozen=True)
class _Unread:
    """An ended attempt whose result record could not be read yet."""

    since: float
    due: float
    """Not judged again before then."""
    tries: int


class Ending:
    """Concludes attempts; keeps only the attempts whose result record is still unread."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.moves: dict[str, str] = {}
        """Attempts asked to stop for a move, with why (the migration phase adds them)."""
        self._unread: dict[str, _Unread] = {}
        """Ended attempts whose result record storage has not given back yet (distinct keys
        per site: safe across the site workers that judge)."""
        self._lost = Avoidances()
        """Per (job, ``site/offer``) where an attempt of the job was lost: until when its
        placement leaves that offer out, and why."""

    def avoided(self, job_id: str, now: float) -> dict[str, str]:
        """The offers (``site/offer``) the job avoids because an attempt was lost there."""
        return self._lost.of(job_id, now)

    def _note_lost(self, attempt: Attempt, status: AttemptStatus) -> None:
        """Avoid the offer an attempt was lost on, where the site has others to offer (a
        site's only offer, key ``default``, is not avoided: that would avoid the site)."""
        if status.state is not AttemptState.LOST or attempt.offer_key in (None, "", "default"):
            return
        where = f"{attempt.site}/{attempt.offer_key}"
        until = self.world.clock() + self.world.config.limits.reject_backoff_s
        self._lost.add(attempt.job_id, where, until,
                       f"attempt {attempt.number} was lost on {where}: {status.reason}"[:300])

    def judge(self, attempt: Attempt, status: AttemptStatus, now: float, *,
              alive_at: float | None = None, waiting_at: float | None = None) -> Verdict | None:
        """The verdict on an attempt said to have ended, its result record read; None to judge
        it again later (storage did not give the record back, and the wait is not over).
        ``alive_at``/``waiting_at``: the last polls that saw it running / waiting."""
        unread = self._unread.get(attempt.id)
        if unread is not None and now < unread.due:
            return None
        url = self.world.store.job(attempt.job_id).checkpoint_url
        verdict = dataclasses.replace(judge(attempt, status, url), alive_at=alive_at,
                                      waiting_at=waiting_at)
        if not verdict.unreadable:
            self._unread.pop(attempt.id, None)
            return verdict
        since, tries = (unread.since, unread.tries + 1) if unread else (now, 1)
        if now - since < RECORD_READ_S:
            wait = min(_MAX_WAIT_S, _FIRST_WAIT_S * 2 ** (tries - 1))
            self._unread[attempt.id] = _Unread(since, now + wait, tries)
            log.warning("cannot read the result record of %s (try %d; again in %.0f s): %s",
                        attempt.id, tries, wait, verdict.unreadable)
            return None
        self._unread.pop(attempt.id, None)
        reason = (f"storage could not be read: its result record could not be read for "
                  f"{fmt_duration(now - since)} ({tries} tries): {verdict.unreadable}")
        lost = AttemptStatus(state=AttemptState.LOST, native_state=status.native_state,
                             exit_code=status.exit_code, reason=reason,
                             walltime=status.walltime)
        return dataclasses.replace(verdict, status=lost)

    def forget_unread(self, live: set[str]) -> None:
        """Drop the unread records of attempts no longer live (ended or gone otherwise)."""
        self._unread = {aid: u for aid, u in self._unread.items() if aid in live}

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
        verdict = self._as_moved(attempt, job, verdict)
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
            self.moves.pop(attempt.id, None)
            self._note_lost(attempt, status)
        if concluded:
            log.info("%s %s on %s; job %s %s: %s", attempt.id, status.state.value, attempt.site,
                     job.id, job_state.value, job_reason, extra={
                         "event": "state", "attempt": attempt.id, "site": attempt.site,
                         "state": status.state.value, "job": job.id,
                         "job_state": job_state.value, "reason": job_reason})
        return concluded

    def _as_moved(self, attempt: Attempt, job: Job, verdict: Verdict) -> Verdict:
        """The verdict, as MOVED if the attempt was asked to stop for a move and stopped."""
        status = verdict.status
        if status.state not in _STOPPED or job.cancel_requested:
            return verdict
        why = self.moves.get(attempt.id)
        if why is None:  # asked by an earlier reconciler: the story says so
            why = next((e.reason for e in self.world.store.events(job.id)
                        if e.kind == MOVING and e.attempt_id == attempt.id), None)
        if why is None:
            return verdict
        moved = status.model_copy(update={"state": AttemptState.MOVED, "reason": why})
        return dataclasses.replace(verdict, status=moved)

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
            job_state, job_reason = JobState.CANCELLED, job.cancelled_why
        return job_state, job_reason
