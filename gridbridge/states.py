"""The lifecycle of jobs and attempts: two enums and the only moves between them.

A *job* is what the researcher submitted; an *attempt* is one try at running it on one site.
The state store refuses every transition that is not in ``JOB_TRANSITIONS`` or
``ATTEMPT_TRANSITIONS``, so the tables below are the whole truth about what can happen::

    job:      PENDING ──place──> SCHEDULED ──starts──> RUNNING ──> SUCCEEDED | FAILED | CANCELLED
                                                                  | TIMEOUT
                 ^                   │                    │
                 └──── attempt PREEMPTED or LOST ─────────┘   (re-placed, attempt + 1)

    attempt:  SUBMITTING ──> SUBMITTED ──> RUNNING ──> SUCCEEDED | FAILED | CANCELLED
                                                       | PREEMPTED | LOST | MOVED

A MOVED attempt was stopped by the control plane itself (its migration phase, or an operator
draining its site) so that the job runs on better capacity: like a preemption it sends the job
back to PENDING, but it is never a failure and never uses one of the job's ``max_attempts``.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

__all__ = [
    "ATTEMPT_TRANSITIONS",
    "JOB_TRANSITIONS",
    "AttemptState",
    "IllegalTransition",
    "JobState",
    "check_attempt_transition",
    "check_job_transition",
]


class JobState(StrEnum):
    """Where a job stands, across all of its attempts."""

    PENDING = "PENDING"
    """Waiting for placement: new, or its last attempt was preempted or lost."""
    SCHEDULED = "SCHEDULED"
    """An attempt was created on a site and is being submitted or queued there."""
    RUNNING = "RUNNING"
    """Its current attempt is running on a site."""
    SUCCEEDED = "SUCCEEDED"
    """An attempt finished with exit code 0. Terminal."""
    FAILED = "FAILED"
    """An attempt failed in the job's own code, or the job ran out of attempts. Terminal."""
    CANCELLED = "CANCELLED"
    """The user cancelled it. Terminal."""
    TIMEOUT = "TIMEOUT"
    """An attempt reached its walltime without committing a new checkpoint, so there is nothing
    to continue from: running it again would end the same way. Terminal."""

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL_JOB


class AttemptState(StrEnum):
    """Where one attempt on one site stands. The site's own word is kept beside it."""

    SUBMITTING = "SUBMITTING"
    """Recorded before the native submission, so a restarted reconciler can adopt it."""
    SUBMITTED = "SUBMITTED"
    """The site accepted it and gave a native id; it may be queued."""
    RUNNING = "RUNNING"
    """The site says it runs."""
    SUCCEEDED = "SUCCEEDED"
    """It exited 0. Terminal."""
    FAILED = "FAILED"
    """It exited non-zero of its own accord, or the site rejected it. Terminal."""
    PREEMPTED = "PREEMPTED"
    """The site took it back (spot interruption, Slurm preemption, walltime end). Terminal;
    the job resumes from its last checkpoint in a new attempt."""
    LOST = "LOST"
    """Nobody knows what happened (node gone, process vanished without a result). Terminal;
    the job resumes in a new attempt and this one is fenced off."""
    CANCELLED = "CANCELLED"
    """Cancelled at the user's request. Terminal."""
    MOVED = "MOVED"
    """Asked to checkpoint and stop by the control plane, to move the job to other capacity
    (a deadline's safety rule, a cheaper offer, a drained site). Terminal; not a failure, not
    counted in ``max_attempts``; the job resumes from its checkpoint in a new attempt."""

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL_ATTEMPT

    @property
    def active(self) -> bool:
        return not self.terminal


_TERMINAL_JOB = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.TIMEOUT}
)
_TERMINAL_ATTEMPT = frozenset(
    {
        AttemptState.SUCCEEDED,
        AttemptState.FAILED,
        AttemptState.PREEMPTED,
        AttemptState.LOST,
        AttemptState.CANCELLED,
        AttemptState.MOVED,
    }
)

_J = JobState
JOB_TRANSITIONS: Mapping[JobState, frozenset[JobState]] = {
    _J.PENDING: frozenset({_J.SCHEDULED, _J.FAILED, _J.CANCELLED}),
    _J.SCHEDULED: frozenset(
        {_J.RUNNING, _J.PENDING, _J.SUCCEEDED, _J.FAILED, _J.CANCELLED, _J.TIMEOUT}
    ),
    _J.RUNNING: frozenset({_J.PENDING, _J.SUCCEEDED, _J.FAILED, _J.CANCELLED, _J.TIMEOUT}),
    _J.SUCCEEDED: frozenset(),
    _J.TIMEOUT: frozenset(),
    _J.FAILED: frozenset(),
    _J.CANCELLED: frozenset(),
}

_A = AttemptState
_ENDINGS = frozenset({_A.SUCCEEDED, _A.FAILED, _A.PREEMPTED, _A.LOST, _A.CANCELLED, _A.MOVED})
ATTEMPT_TRANSITIONS: Mapping[AttemptState, frozenset[AttemptState]] = {
    _A.SUBMITTING: frozenset({_A.SUBMITTED, _A.RUNNING}) | _ENDINGS,
    _A.SUBMITTED: frozenset({_A.RUNNING}) | _ENDINGS,
    _A.RUNNING: _ENDINGS,
    _A.SUCCEEDED: frozenset(),
    _A.FAILED: frozenset(),
    _A.PREEMPTED: frozenset(),
    _A.LOST: frozenset(),
    _A.CANCELLED: frozenset(),
    _A.MOVED: frozenset(),
}


class IllegalTransition(RuntimeError):
    """A move that the transition tables do not allow."""


def check_job_transition(old: JobState, new: JobState) -> None:
    """Raise :class:`IllegalTransition` unless ``old -> new`` is allowed for a job."""
    if new not in JOB_TRANSITIONS[old]:
        allowed = ", ".join(sorted(JOB_TRANSITIONS[old])) or "none (terminal)"
        raise IllegalTransition(f"job cannot move {old} -> {new}; allowed from {old}: {allowed}")


def check_attempt_transition(old: AttemptState, new: AttemptState) -> None:
    """Raise :class:`IllegalTransition` unless ``old -> new`` is allowed for an attempt."""
    if new not in ATTEMPT_TRANSITIONS[old]:
        allowed = ", ".join(sorted(ATTEMPT_TRANSITIONS[old])) or "none (terminal)"
        raise IllegalTransition(
            f"attempt cannot move {old} -> {new}; allowed from {old}: {allowed}"
        )
