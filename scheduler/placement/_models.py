"""What placement takes in and gives back: a pending job, each offer considered for it (a
candidate) and the decision.

Invariant: these are frozen values; placement reads them and never changes one, and nothing
here computes (the numbers come from ``_score``, the words from ``_explain``).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from gridbridge.frozen import Frozen
from gridbridge.spec import JobSpec

__all__ = ["Candidate", "Decision", "PendingJob"]


class PendingJob(Frozen):
    """A job waiting for a site; ``attempt`` is the number its next attempt will get."""

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


class Candidate(Frozen):
    """One site considered for one job: the numbers, and why it won, lost or could not run it.

    The estimates are None only where they are not finite (preemption too frequent to finish).
    """

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


class Decision(Frozen):
    """Where one job goes (``site`` None: nowhere this tick, it stays pending).

    ``candidates`` lists the feasible sites best first, then the infeasible ones by site name.
    """

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
