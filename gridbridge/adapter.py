"""The port every site kind implements: five verbs, batched.

An adapter translates and nothing more::

    SubmitRequest ──submit──> native id          (idempotent on request.attempt_id)
    [native ids]  ──poll────> {native id: AttemptStatus}   (one call for all jobs)
    [native ids]  ──cancel──> None
                  ──offers──> [Offer]            (free capacity, prices, preemption rate)
                  ──capabilities──> frozenset[Capability]

Adapters never import each other or the scheduler; the scheduler finds them through
:mod:`gridbridge.registry`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from gridbridge.spec import JobSpec, Resources, Tier
from gridbridge.states import AttemptState

__all__ = [
    "Adapter",
    "AttemptStatus",
    "Capability",
    "Offer",
    "Pricing",
    "SubmitRequest",
]


class Capability(StrEnum):
    """What a site can do, asked instead of ``isinstance``."""

    PREEMPTIBLE = "preemptible"
    """Its attempts may be taken back; it gives a signal first."""
    GPUS = "gpus"
    ADOPT = "adopt"
    """``submit`` is idempotent on the attempt id, so a restarted reconciler can re-submit."""
    LOGS = "logs"
    """It can show a running attempt's output."""
    DEBUG_PREEMPT = "debug-preempt"
    """It can deliver a real preemption on request (``gridbridge debug preempt``)."""


class Pricing(BaseModel):
    """A rate card. The hourly price of an attempt is
    ``per_hour + cpus * per_core_hour + gpus * per_gpu_hour``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    per_hour: float = Field(default=0.0, ge=0)
    per_core_hour: float = Field(default=0.0, ge=0)
    per_gpu_hour: float = Field(default=0.0, ge=0)
    per_gb_egress: float = Field(default=0.0, ge=0)

    def hourly(self, resources: Resources) -> float:
        return (
            self.per_hour
            + resources.cpus * self.per_core_hour
            + resources.gpus * self.per_gpu_hour
        )


class Offer(BaseModel):
    """What a site can give right now, and at what price and risk."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    site: str
    tier: Tier
    cpus: int = Field(ge=0)
    memory_gb: float = Field(ge=0)
    gpus: int = Field(default=0, ge=0)
    price: Pricing
    on_demand: Pricing
    """The price of the same work on on-demand capacity, for the savings report."""
    preemptible: bool = False
    preemption_rate_per_hour: float = Field(default=0.0, ge=0)
    restart_overhead_s: float = Field(default=0.0, ge=0)
    queue_wait_s: float = Field(default=0.0, ge=0)
    max_walltime_s: float | None = None
    note: str = ""
    """Why capacity is what it is (e.g. 'capacity reclaimed after an interruption')."""


class SubmitRequest(BaseModel):
    """Everything an adapter needs to start one attempt."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    attempt_id: str
    """Idempotency key, also carried in the native job (name, tag, pidfile)."""
    job_id: str
    attempt: int = Field(ge=1)
    token: int = Field(ge=1)
    """Fencing token: strictly increasing across a job's attempts."""
    spec: JobSpec
    checkpoint_url: str
    attempt_url: str
    """Storage prefix where the runtime writes this attempt's result record and log."""


class AttemptStatus(BaseModel):
    """One attempt as a site sees it, translated; the native word is kept beside ours."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    state: AttemptState
    native_state: str
    exit_code: int | None = None
    reason: str = ""


@runtime_checkable
class Adapter(Protocol):
    """A site. Constructed by the registry as ``cls(site_config, workdir)``."""

    def submit(self, request: SubmitRequest) -> str:
        """Start an attempt and return its native id. Must be idempotent on
        ``request.attempt_id`` when the adapter declares :attr:`Capability.ADOPT`."""
        ...

    def poll(self, native_ids: Sequence[str]) -> Mapping[str, AttemptStatus]:
        """Report every given attempt in one batched call; unknown ids come back LOST."""
        ...

    def cancel(self, native_ids: Sequence[str]) -> None:
        """Stop the given attempts (signal first, then kill after a grace period)."""
        ...

    def offers(self) -> Sequence[Offer]:
        """What the site can run right now."""
        ...

    def capabilities(self) -> frozenset[Capability]:
        ...
