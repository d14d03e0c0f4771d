"""What a researcher asks for: immutable, validated job specifications.

Every model here is frozen and forbids unknown fields, so a misspelt option fails at once and
names the valid ones. Change a spec with ``spec.model_copy(update=...)``.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    field_serializer,
    field_validator,
    model_validator,
)

from gridbridge.frozen import Frozen
from gridbridge.units import LABEL_PATTERN, NAME_PATTERN

__all__ = [
    "LABEL_PATTERN",
    "NAME_PATTERN",
    "CheckpointPolicy",
    "Constraints",
    "JobSpec",
    "Owner",
    "Policy",
    "Resources",
    "Tier",
]

_NAME_RE = re.compile(NAME_PATTERN)


class Tier(StrEnum):
    """The kind of site, which constraints can allow or deny."""

    HPC = "hpc"
    CLOUD = "cloud"
    EDGE = "edge"


class Resources(Frozen):
    """What one attempt needs from a site."""

    cpus: Annotated[int, Field(ge=1, le=4096)] = 1
    memory_gb: Annotated[float, Field(gt=0, le=65536)] = 1.0
    gpus: Annotated[int, Field(ge=0, le=1024)] = 0
    walltime_s: Annotated[float, Field(gt=0)] = 3600.0
    """Upper bound on one attempt's run time; placement also uses it as the run-time estimate
    unless ``expected_runtime_s`` is given."""
    expected_runtime_s: Annotated[float, Field(gt=0)] | None = None

    @property
    def runtime_estimate_s(self) -> float:
        return self.expected_runtime_s if self.expected_runtime_s is not None else self.walltime_s


class CheckpointPolicy(Frozen):
    """Where a job keeps its checkpoints and how often it writes them."""

    url: str | None = None
    """fsspec URL of the job's checkpoint prefix; None means ``<checkpoint_root>/<job id>``."""
    interval_s: Annotated[float, Field(gt=0)] = 600.0
    keep_last: Annotated[int, Field(ge=1)] = 3
    resumable: bool = False
    """The job saves checkpoints and resumes from them, so it may be placed on a site whose
    walltime is shorter than its own (and run there in several attempts). Once a job has
    committed a checkpoint, placement treats it as resumable anyway."""


class Policy(Frozen):
    """How placement chooses among feasible offers (``policy:`` in the config, or a job's own
    ``policy``)::

        cheapest   lowest expected cost (preemptions, restarts and queue wait counted), then
                   earlier expected finish
        fastest    earliest expected finish (queue wait + expected run time), then cost
        balanced   lowest  weight * cost / best cost + (1 - weight) * time / best time, each
                   against the best feasible offer of that job (a cent and a minute added to
                   both sides, so a free allocation or an instant start does not divide by 0)
        deadline   cheapest among the offers whose chance of finishing by the job's deadline
                   is at least ``target`` (jobs without a deadline: cheapest)
    """

    name: Literal["cheapest", "fastest", "balanced", "deadline"] = "cheapest"
    weight: Annotated[float, Field(ge=0, le=1)] = 0.5
    """``balanced``: the weight of cost against time (1: cheapest, 0: fastest)."""
    target: Annotated[float, Field(gt=0, lt=1)] = 0.95
    """``deadline``: the chance of finishing by the deadline an offer must give."""


class Constraints(Frozen):
    """Where a job may run and by when it must be done."""

    allowed_sites: frozenset[str] | None = None
    denied_sites: frozenset[str] = frozenset()
    tiers: frozenset[Tier] = frozenset(Tier)
    deadline: datetime | None = None
    preemptible_ok: bool = True
    labels: dict[Annotated[str, Field(pattern=LABEL_PATTERN)],
                 Annotated[str, Field(pattern=LABEL_PATTERN)]] = Field(default_factory=dict)
    """Labels the offer must carry, e.g. ``{"location": "plant-2"}`` for an edge node."""
    max_latency_ms: Annotated[float, Field(gt=0)] | None = None
    """The most round-trip time the offer may have, as its site measures it (edge nodes)."""

    @field_serializer("allowed_sites", "denied_sites", "tiers")
    def _sorted(self, value: frozenset[str] | None) -> list[str] | None:
        """Sets serialise sorted, so a spec's JSON (and its stored form) is deterministic."""
        return None if value is None else sorted(value)


class Owner(Frozen):
    """Who pays: the cost ledger is grouped by these."""

    user: str = "unknown"
    team: str = "default"
    project: str = "default"


class JobSpec(Frozen):
    """One job: a pickled Python callable or a command, and what it needs.

    Exactly one of ``command`` (an argv list, never a shell string) or ``callable_ref`` (set by
    the client when it stores a pickled callable) is given.
    """

    name: str
    command: tuple[str, ...] | None = None
    callable_ref: str | None = None
    """Set by the client: the URL of the pickled ``(fn, args, kwargs)`` payload."""
    env: dict[str, str] = Field(default_factory=dict)
    resources: Resources = Resources()
    checkpoint: CheckpointPolicy = CheckpointPolicy()
    constraints: Constraints = Constraints()
    max_cost: Annotated[float, Field(ge=0)] | None = None
    priority: int = 0
    owner: Owner = Owner()
    max_attempts: Annotated[int, Field(ge=1, le=1000)] = 5
    """Attempts the job may use, not counting preemptions that advanced its checkpoint."""
    max_failures: Annotated[int, Field(ge=1, le=1000)] = 1
    """Attempts that may fail in the job's own code (non-zero exit) before the job fails."""
    max_stalls: Annotated[int, Field(ge=1, le=1000)] = 2
    """Preempted or lost attempts in a row that commit no new checkpoint, once the job has
    one, before the job fails with "no progress"."""
    policy: Policy | None = None
    """How placement chooses for this job; None: the federation's ``policy``."""

    @field_validator("name")
    @classmethod
    def _name_is_safe(cls, v: str) -> str:
        if not _NAME_RE.fullmatch(v):
            raise ValueError(
                f"job name {v!r} must match {NAME_PATTERN} "
                "(letters, digits, '_', '.', '-'; at most 63 characters; no spaces or quotes)"
            )
        return v

    @field_validator("command")
    @classmethod
    def _argv_not_empty(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if v is not None and (len(v) == 0 or any("\x00" in a for a in v)):
            raise ValueError("command must be a non-empty argv list without NUL bytes")
        return v

    @field_validator("env")
    @classmethod
    def _env_names(cls, v: dict[str, str]) -> dict[str, str]:
        for key in v:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise ValueError(f"environment variable name {key!r} is not valid")
            if key.startswith("GRIDBRIDGE_"):
                raise ValueError(f"environment variable {key!r}: GRIDBRIDGE_* is reserved")
        return v

    @model_validator(mode="after")
    def _one_target(self) -> JobSpec:
        if (self.command is None) == (self.callable_ref is None):
            raise ValueError("give exactly one of 'command' or a Python callable")
        return self

    def summary(self) -> dict[str, Any]:
        """A short dict for tables and events."""
        r = self.resources
        return {"name": self.name, "cpus": r.cpus, "gpus": r.gpus, "memory_gb": r.memory_gb}
