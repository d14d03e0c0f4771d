"""A job's progress as placement needs it: work left, and what one checkpoint costs.

Invariant: both are read once per attempt that ended and kept until the job's next attempt:
only a running attempt can commit a checkpoint or advance the work done, so a pending job is
not listed in its checkpoint store, nor its attempts read again, tick after tick.
"""

from __future__ import annotations

from gridbridge.states import JobState

from ..records import Job
from ..store import StateStore

__all__ = ["Progress"]


class Progress:
    """Owns the per-job caches of checkpoint cost and remaining work."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self._save_cost: dict[str, tuple[int, float | None]] = {}
        """Per job: (attempts it had, its last save's duration), read once per ended attempt."""
        self._remaining: dict[str, tuple[int, float | None]] = {}
        """Per pending job: (attempts it had, the work left after its last checkpoint)."""

    def checkpoint_cost(self, job: Job) -> float | None:
        """How long the job's last save took, as its checkpoint store recorded it; None before
        its first checkpoint. Read once per attempt that ended: only a running attempt can
        commit, so the answer holds until the job's next attempt (a pending job is not
        listed in its checkpoint store tick after tick)."""
        if job.attempts == 0:
            return None
        cached = self._save_cost.get(job.id)
        if cached is not None and cached[0] == job.attempts:
            return cached[1]
        cost: float | None = None
        try:
            from gridbridge import checkpoint

            store = checkpoint.open(job.checkpoint_url)
            step = store.latest()
            value = store.commit_record(step).get("save_s") if step is not None else None
            cost = float(value) if isinstance(value, int | float) and value >= 0 else None
        except Exception:  # no store, or an unreadable one: the offer's restart stands in
            cost = None
        self._save_cost[job.id] = (job.attempts, cost)
        return cost

    def remaining(self, job: Job) -> float | None:
        """Work left after the job's last checkpoint: the estimate less the time of the
        attempts that advanced it (None for a job that has not checkpointed)."""
        if job.attempts == 0:
            return None
        cached = self._remaining.get(job.id)
        if cached is not None and cached[0] == job.attempts and job.state is JobState.PENDING:
            return cached[1]  # a pending job's attempts have all ended: nothing changes
        done, best = 0.0, -1
        for a in self.store.attempts(job.id):
            if a.last_step is not None and a.last_step > best and a.started_at and a.ended_at:
                done += a.ended_at - a.started_at
                best = a.last_step
        left = None if best < 0 else max(0.0, job.spec.resources.runtime_estimate_s - done)
        if job.state is JobState.PENDING:
            self._remaining[job.id] = (job.attempts, left)
        return left
