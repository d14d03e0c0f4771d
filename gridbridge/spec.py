"""What a researcher asks for: immutable, validated job specifications.

Every model here is frozen and forbids unknown fields, so a misspelt option fails at once and
names the valid ones. Change a spec with ``spec.model_copy(update=...)``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from urllib.parse import unquote

from pydantic import (
    Field,
    field_serializer,
    field_validator,
    model_validator,
)

from gridbridge.frozen import Frozen
from gridbridge.units import LABEL_PATTERN, NAME_PATTERN

__all__ = [
    "CHECKPOINT_SCHEMES",
    "LABEL_PATTERN",
    "NAME_PATTERN",
    "CheckpointPolicy",
    "Constraints",
    "JobSpec",
    "MigrationSettings",
    "Owner",
    "Policy",
    "Resources",
    "Tier",
    "checkpoint_url_problem",
    "checkpoint_url_refusal",
    "checkpoint_url_under",
    "env_name_problem",
]

_NAME_RE = re.compile(NAME_PATTERN)

PRIORITY_BOUND = 1000
"""``priority`` lies in -1000..1000. It orders jobs, it is not a currency: two thousand levels
are room for any ladder of tiers, a fair-share weight can scale it without overflow, and it fits
the store's 32-bit ``INTEGER`` column on every database (``10**18`` would fail PostgreSQL's
insert, and would outrank every other job for ever)."""


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


CHECKPOINT_SCHEMES = frozenset({"file", "memory", "s3", "gs", "gcs", "az", "abfs", "abfss"})
"""The storage a checkpoint prefix may name. Never http(s): the control plane reads and writes
a job's ``fence.json`` with its own credentials, so a web address there would have it call
whatever host the job named."""


def checkpoint_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a job's checkpoint prefix, naming the field; None if it can.

    It must be absolute (``file:///data/ckpt``, ``s3://bucket/prefix`` or an absolute path),
    of a scheme in :data:`CHECKPOINT_SCHEMES`, without ``.``/``..`` segments (which would
    leave the prefix it seems to be under), control characters, query, fragment, user info
    or fsspec's ``::`` chaining (each a way to reach other storage than the one named)."""
    if any(ord(c) < 0x20 or c in "?#\\" for c in url) or "::" in url:
        return ("checkpoint.url must be a plain storage URL: no control characters, '?', '#', "
                "backslash or '::'")
    scheme, path = _split_checkpoint_url(url)
    if scheme is None:
        return ("checkpoint.url must be absolute (file:///abs/path, s3://bucket/prefix or "
                "/abs/path), not a relative path")
    if scheme not in CHECKPOINT_SCHEMES:
        return (f"checkpoint.url: the scheme {scheme!r} is not allowed; allowed schemes: "
                f"{', '.join(sorted(CHECKPOINT_SCHEMES))}")
    authority = path.split("/", 1)[0]
    if scheme == "file" and not path.startswith("/"):
        return "checkpoint.url: a file URL names no host (file:///abs/path)"
    if "@" in authority:
        return "checkpoint.url must not carry user info (credentials come from the site)"
    if scheme not in {"file", "memory"} and not authority:
        return f"checkpoint.url: a {scheme} URL names its bucket ({scheme}://bucket/prefix)"
    if {".", ".."} & set(unquote(path).split("/")):
        return "checkpoint.url must not contain '.' or '..' segments"
    return None


def checkpoint_url_under(url: str, prefix: str) -> bool:
    """Whether ``url`` is ``prefix`` or lies below it, segment by segment (``s3://b/team-a``
    holds ``s3://b/team-a/x``, never ``s3://b/team-ab``)."""
    (scheme, path), (pscheme, ppath) = _split_checkpoint_url(url), _split_checkpoint_url(prefix)
    if scheme is None or scheme != pscheme:
        return False
    path, ppath = path.rstrip("/"), ppath.rstrip("/")
    return path == ppath or path.startswith(ppath + "/")


def checkpoint_url_refusal(
    url: str, *, allowed: Sequence[str] | None, team: str, root: str, job_id: str | None = None,
) -> str | None:
    """Why a job of ``team`` may not keep checkpoints at ``url``, or None: a URL with a
    :func:`checkpoint_url_problem`, one under ``root`` (those prefixes belong to the jobs they
    are named after; ``job_id`` accepts its own ``<root>/<job_id>``), or one under none of
    ``allowed`` (None: no list is configured)."""
    problem = checkpoint_url_problem(url)
    if problem:
        return problem
    if job_id is not None and url.rstrip("/") == f"{root.rstrip('/')}/{job_id}":
        return None
    if checkpoint_url_under(url, root):
        return ("checkpoint.url must not lie under checkpoint_root: the prefixes there belong "
                "to the jobs they are named after (leave it unset for the job's own)")
    if allowed is None or any(checkpoint_url_under(url, prefix) for prefix in allowed):
        return None
    return (f"checkpoint.url must lie under a prefix allowed for team {team!r} "
            f"(checkpoint.allowed_prefixes: {', '.join(allowed) or 'none'})")


def _split_checkpoint_url(url: str) -> tuple[str | None, str]:
    """(scheme, the rest) with an absolute path read as ``file``; (None, url) if relative."""
    if url.startswith("/"):
        return "file", url
    scheme, sep, rest = url.partition("://")
    if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        return None, url
    return scheme.lower(), rest


class CheckpointPolicy(Frozen):
    """Where a job keeps its checkpoints and how often it writes them."""

    url: str | None = None
    """fsspec URL of the job's checkpoint prefix; None means ``<checkpoint_root>/<job id>``.
    A URL given here is checked at submission and again before each fence is raised
    (:func:`checkpoint_url_problem`, and the config's ``checkpoint.allowed_prefixes``)."""
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


class MigrationSettings(Frozen):
    """The config's ``migration:``: when the reconciler moves running jobs (see
    :mod:`gridbridge.scheduler.moves`); beside :class:`Policy`, the other rule of where jobs
    run that a config sets."""

    min_interval_s: Annotated[float, Field(ge=0)] = 600.0
    """Hysteresis: no job is moved for cost within this long of its last move (a deadline's
    safety rule and a drained site are not held back by it)."""
    factor: Annotated[float, Field(ge=1)] = 2.0
    """A move for cost must save more than its own cost (restart, work since the last
    checkpoint, data to move) times this."""
    margin_s: Annotated[float, Field(ge=0)] = 0.0
    """Added to one tick as the deadline rule's margin."""
    default: Literal["never", "deadline", "cost"] | None = None
    """The ``migrate`` mode of jobs that set none; None: ``deadline`` for jobs with a
    deadline, ``never`` for the rest."""


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


def env_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be one of a job's environment variables, naming it (never its
    value: a job's environment holds its secrets); None if it can be."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        return f"environment variable name {name!r} is not valid"
    if name.startswith("GRIDBRIDGE_"):
        return f"environment variable {name!r}: GRIDBRIDGE_* is reserved"
    return None


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
    priority: Annotated[int, Field(json_schema_extra={"minimum": -PRIORITY_BOUND,
                                                      "maximum": PRIORITY_BOUND})] = 0
    """Higher is placed first; within ±:data:`PRIORITY_BOUND`."""
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
    chdir: str | None = None
    """The folder the job runs in, on every site: an absolute path on the site's hosts (an
    attempt that cannot enter it fails, saying so). None: :attr:`submit_dir` where the site
    shares the submitter's files (local sites, ``runtime.shared_filesystem: true``), else the
    attempt's own scratch folder. Slurm's ``--chdir``."""
    submit_dir: str | None = None
    """The folder a command job was submitted from (recorded by ``submit_command`` and
    ``gridbridge submit``); the command runs there on sites that share it, as ``sbatch`` runs
    a batch script where it was submitted."""
    migrate: Literal["never", "deadline", "cost"] | None = None
    """When the control plane may move the running job to other capacity (it is asked to
    checkpoint and stop, and resumes elsewhere): ``never``; ``deadline``: when its deadline
    needs reliable capacity, or its site is drained; ``cost``: also when another offer saves
    more than the move costs. None: the config's ``migration.default``, else ``deadline`` for a
    job with a deadline and ``never`` for one without (:meth:`migrate_mode`)."""

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

    @field_validator("chdir", "submit_dir")
    @classmethod
    def _absolute_folder(cls, v: str | None) -> str | None:
        if v is not None and (not v.startswith("/") or "\x00" in v or "\n" in v):
            raise ValueError(f"must be an absolute path on the site's hosts, got {v!r}")
        return v

    @field_validator("env")
    @classmethod
    def _env_names(cls, v: dict[str, str]) -> dict[str, str]:
        for key in v:
            problem = env_name_problem(key)
            if problem:
                raise ValueError(problem)
        return v

    @field_validator("priority")
    @classmethod
    def _priority_in_range(cls, v: int) -> int:
        if not -PRIORITY_BOUND <= v <= PRIORITY_BOUND:
            raise ValueError(f"priority must be within -{PRIORITY_BOUND}..{PRIORITY_BOUND} "
                             "(higher is placed first)")
        return v

    @model_validator(mode="after")
    def _one_target(self) -> JobSpec:
        if (self.command is None) == (self.callable_ref is None):
            raise ValueError("give exactly one of 'command' or a Python callable")
        return self

    def migrate_mode(self, default: str | None = None) -> str:
        """The job's ``migrate`` mode, its own or else ``default`` (the config's), else
        ``deadline`` with a deadline and ``never`` without."""
        if self.migrate is not None:
            return self.migrate
        if default is not None:
            return default
        return "deadline" if self.constraints.deadline is not None else "never"

    def summary(self) -> dict[str, Any]:
        """A short dict for tables and events."""
        r = self.resources
        return {"name": self.name, "cpus": r.cpus, "gpus": r.gpus, "memory_gb": r.memory_gb}
