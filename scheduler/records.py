"""Frozen snapshots of the store's rows: what the reconciler, client and reports read."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from sqlalchemy import Row

from gridbridge.spec import JobSpec
from gridbridge.states import AttemptState, JobState

from .tables import AttemptRow, Base, JobRow, LedgerRow

__all__ = [
    "WAIT_BUCKETS_S",
    "Attempt",
    "AttemptEnding",
    "BookLine",
    "Event",
    "Job",
    "JobNotFound",
    "Lease",
    "SiteHealth",
    "Tallies",
    "Waits",
    "new_job_id",
]


class JobNotFound(LookupError):
    """No job with that id."""


CANCELLED_BY_USER = "cancelled by user"
"""Why a job cancelled without a reason of its own ended."""


@dataclass(frozen=True)
class Job:
    """A snapshot of one job row."""

    id: str
    name: str
    spec: JobSpec
    state: JobState
    priority: int
    created_at: float
    updated_at: float
    attempts: int
    cancel_requested: bool
    checkpoint_url: str
    error: str | None
    cancel_reason: str | None = None
    """Why it was cancelled, as the canceller said."""

    @property
    def cancelled_why(self) -> str:
        """The job state's reason once a cancel ends it."""
        return self.cancel_reason or CANCELLED_BY_USER

    @classmethod
    def of(cls, row: JobRow | Row[Any]) -> Job:
        return _snapshot(cls, row, spec=_spec(row.spec_json), state=JobState(row.state))


@functools.lru_cache(maxsize=8192)
def _spec(spec_json: str) -> JobSpec:
    """A job's spec, parsed once: it never changes after submission, and every tick reads the
    pending and running jobs again (a JobSpec is frozen, so one instance can be shared)."""
    return JobSpec.model_validate_json(spec_json)


@dataclass(frozen=True)
class Attempt:
    """A snapshot of one attempt row."""

    id: str
    job_id: str
    number: int
    token: int
    site: str
    state: AttemptState
    native_id: str | None
    native_state: str
    created_at: float
    started_at: float | None
    ended_at: float | None
    exit_code: int | None
    reason: str
    last_step: int | None
    attempt_url: str
    submit_tries: int
    """How many times ``submit`` was called for it (more than one: an uncertain submission)."""
    offer_key: str | None
    price_json: str | None
    return_digest: str | None = None
    seen_at: float | None = None
    """The latest poll that saw it running, as the store last recorded it."""

    @classmethod
    def of(cls, row: AttemptRow | Row[Any]) -> Attempt:
        return _snapshot(cls, row, state=AttemptState(row.state))


@dataclass(frozen=True)
class Event:
    """One line of a job's story."""

    at: float
    job_id: str
    attempt_id: str | None
    kind: str
    old: str
    new: str
    reason: str
    actor: str
    site: str | None = None


_T = TypeVar("_T")


def _snapshot(cls: type[_T], row: Base | Row[Any], **converted: Any) -> _T:
    """A frozen copy of a row: every dataclass field read from the row unless converted."""
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    return cls(**{n: getattr(row, n) for n in names if n not in converted}, **converted)


def new_job_id() -> str:
    return "j" + uuid.uuid4().hex[:11]


@dataclass(frozen=True)
class AttemptEnding:
    """How an attempt ended and what that means for its job."""

    state: AttemptState
    native_state: str
    reason: str
    job_state: JobState
    job_reason: str
    exit_code: int | None = None
    last_step: int | None = None
    job_error: str | None = None
    ledger: LedgerRow | None = None
    return_digest: str | None = None


@dataclass(frozen=True)
class Lease:
    """A held lease. ``generation`` grows by one each time the lease changes hands (or is taken
    again after it lapsed), so a holder that slept through its lease can tell, and is fenced."""

    name: str
    holder: str
    generation: int
    expires_at: float


@dataclass(frozen=True)
class BookLine:
    """The ledger of one team on one site, summed over every ended attempt."""

    team: str
    site: str
    cost: float
    on_demand_cost: float
    lost_cost: float
    core_hours: float
    cost_since: float = 0.0
    """The cost of attempts that ended since the time :meth:`tallies` was given."""


WAIT_BUCKETS_S = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 86400.0)
"""The upper bounds of the wait histograms' buckets (seconds)."""


@dataclass(frozen=True)
class Waits:
    """A histogram of waits: how many, their sum, and how many were at most each bound of
    :data:`WAIT_BUCKETS_S` (cumulative, as Prometheus counts buckets)."""

    count: int
    total_s: float
    at_most: tuple[int, ...]

    def __add__(self, other: Waits) -> Waits:
        return Waits(self.count + other.count, self.total_s + other.total_s,
                     tuple(a + b for a, b in zip(self.at_most, other.at_most, strict=True)))

    @classmethod
    def none(cls) -> Waits:
        return cls(0, 0.0, (0,) * len(WAIT_BUCKETS_S))


@dataclass(frozen=True)
class Tallies:
    """The store's counts, as ``/metrics`` reports them."""

    jobs: dict[str, int]
    """State to how many jobs are in it."""
    attempts: dict[tuple[str, str], int]
    """(site, state) to how many attempts."""
    books: list[BookLine]
    queue_waits: dict[str, Waits]
    """Per site, from an attempt's placement to its start, for every attempt that started."""


@dataclass(frozen=True)
class SiteHealth:
    """How a site's calls have been going, as the reconciler last saw them."""

    site: str
    healthy: bool
    phase: str
    """The verb that failed last (``submit``, ``poll``, ``cancel``, ``offers``, ``owned``)."""
    error: str
    since: float
    """When the site entered its current state."""
    checked_at: float
