"""The port every site kind implements: six verbs, batched, and two optional ones.

An adapter translates and nothing more::

    SubmitRequest ──submit──> native id          (idempotent on request.attempt_id with ADOPT)
                         └──> raises SubmitRejected: the site certainly started nothing
    [native ids]  ──poll────> {native id: AttemptStatus}   (one call for all jobs)
    [native ids]  ──cancel──> None               (gone for good, even if its runtime died)
                  ──owned───> [OwnedJob]         (every native job carrying an attempt id)
                  ──offers──> [Offer]            (free capacity, prices, preemption rate)
                  ──capabilities──> frozenset[Capability]

    optional, declared by a capability:  LOGS ──logs(native id)──> str
                                         DEBUG_PREEMPT ──preempt(native id)──> None
                                         CHECK ──check()──> [NodeCheck]
                                         BOOTSTRAP ──bootstrap(...)──> BootstrapReport

Any exception from ``submit`` other than :class:`SubmitRejected` means "maybe": the attempt
stays SUBMITTING and is retried with the same attempt id (or looked up with ``owned()``).
Adapters never import each other or the scheduler; the scheduler finds them through
:mod:`gridbridge.registry`, which checks each class against this protocol when it loads it.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from enum import StrEnum
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from gridbridge.frozen import Frozen
from gridbridge.spec import JobSpec, Resources, Tier
from gridbridge.states import AttemptState
from gridbridge.wire import Launch, get_bytes, launch_arg, put_bytes

__all__ = [
    "OPTIONAL_VERBS",
    "REQUIRED_VERBS",
    "Adapter",
    "AttemptStatus",
    "BilledInterval",
    "BootstrapAdapter",
    "BootstrapReport",
    "Capability",
    "CheckAdapter",
    "LogsAdapter",
    "NodeBootstrap",
    "NodeCheck",
    "Offer",
    "OwnedJob",
    "PreemptAdapter",
    "Pricing",
    "SubmitRejected",
    "SubmitRequest",
    "missing_verbs",
    "write_launch",
]


class Capability(StrEnum):
    """What a site can do, asked instead of ``isinstance``."""

    PREEMPTIBLE = "preemptible"
    """Its attempts may be taken back; it gives a signal first."""
    GPUS = "gpus"
    ADOPT = "adopt"
    """``submit`` is idempotent on the attempt id, so a restarted reconciler can re-submit."""
    LOGS = "logs"
    """It can show a running attempt's output: the adapter has ``logs(native_id)``."""
    LOCAL_FILES = "local-files"
    """Its jobs run where this host's files are (so ``file://`` storage works there)."""
    DEBUG_PREEMPT = "debug-preempt"
    """It can deliver a real preemption on request (``gridbridge debug preempt``): the adapter
    has ``preempt(native_id, wait=...)``."""
    CHECK = "check"
    """It can check each of its hosts itself (reachable, host key, versions, free resources):
    the adapter has ``check()`` (``gridbridge sites check``); others are checked by asking
    for their offers."""
    BOOTSTRAP = "bootstrap"
    """It can install gridbridge on its own bare hosts: the adapter has ``bootstrap(...)``
    (``gridbridge sites bootstrap``)."""


REQUIRED_VERBS: tuple[str, ...] = ("submit", "poll", "cancel", "owned", "offers", "capabilities")
OPTIONAL_VERBS: Mapping[Capability, str] = {
    Capability.LOGS: "logs",
    Capability.DEBUG_PREEMPT: "preempt",
    Capability.CHECK: "check",
    Capability.BOOTSTRAP: "bootstrap",
}
"""The verb an adapter must have when it declares the capability."""


class SubmitRejected(Exception):
    """The site refused the submission and certainly started nothing (no capacity, quota,
    bad request). The reconciler re-places the job at once, elsewhere if need be; any other
    exception from ``submit`` leaves the attempt SUBMITTING, to be retried with its id."""


class Pricing(Frozen):
    """A rate card. The hourly price of an attempt is
    ``per_hour + cpus * per_core_hour + gpus * per_gpu_hour``."""

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


class Offer(Frozen):
    """What a site can give right now, and at what price and risk.

    A site may make several offers (instance types and zones, partitions); ``key`` tells them
    apart, stably from one call to the next, and placement names the one it chose."""

    site: str
    key: str = "default"
    """Stable within the site, e.g. ``m5.large/us-east-1a`` or a partition name."""
    shape: dict[str, str] = Field(default_factory=dict)
    """What the key stands for, e.g. ``{"instance_type": "m5.large", "zone": "us-east-1a"}``."""
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
    labels: dict[str, str] = Field(default_factory=dict)
    """What the capacity is, as the operator labels it (``location``, ``accelerator``)."""
    latency_ms: float | None = Field(default=None, ge=0)
    """The round-trip time to where the job would run, as the adapter measured it."""
    note: str = ""
    """Why capacity is what it is (e.g. 'capacity reclaimed after an interruption')."""


class SubmitRequest(Frozen):
    """Everything an adapter needs to start one attempt."""

    attempt_id: str
    """Idempotency key, also carried in the native job (name, tag, pidfile)."""
    job_id: str
    attempt: int = Field(ge=1)
    token: int = Field(ge=1)
    """Fencing token: strictly increasing across a job's attempts."""
    spec: JobSpec
    checkpoint_url: str
    attempt_url: str
    """Storage prefix of the attempt's records: launch, heartbeat, log, result."""
    checkpoint_interval_s: float | None = None
    """How often the job should checkpoint on this site (None: the job's own setting)."""
    offer: Offer | None = None
    """The offer placement chose (instance type and zone, partition), if any."""


class BilledInterval(Frozen):
    """A stretch of an attempt's life billed at one hourly price (a spot hour, say)."""

    start: float
    end: float
    per_hour: float = Field(ge=0)
    """The price per instance-hour during the interval, for the whole attempt."""


class AttemptStatus(Frozen):
    """One attempt as a site sees it, translated; the native word is kept beside ours."""

    state: AttemptState
    native_state: str
    exit_code: int | None = None
    reason: str = ""
    walltime: bool = False
    """The site ended it at its time limit (Slurm TIMEOUT, PBS walltime, a local walltime)."""
    requeues: int = Field(default=0, ge=0)
    """How many times the site took the attempt back and queued it again itself (a Slurm
    ``--requeue``): it runs again under the same native id, from its last checkpoint. The
    control plane then decides whether to leave it queued there or move it."""
    queued: bool = False
    """It waits in the site's queue (with ``requeues`` > 0: taken back and queued again, not
    yet running again). Only then is there anything to decide about leaving it there."""
    queue_wait_s: float | None = Field(default=None, ge=0)
    """For an attempt waiting in the site's queue: how long the site expects it to wait before
    it runs (None: the site cannot say)."""
    runs: tuple[tuple[float, float], ...] = ()
    """When the site ran the attempt more than once (it requeued it): each run's start and end,
    so the ledger charges the runs and not the waits between them."""
    billing: tuple[BilledInterval, ...] = ()
    """What the site billed for it, when the site knows (a time-varying spot price); the
    ledger then charges these instead of the price card the attempt was placed at."""


class OwnedJob(Frozen):
    """A native job on a site that carries a gridbridge attempt id."""

    native_id: str
    attempt_id: str
    native_state: str = ""


@runtime_checkable
class Adapter(Protocol):
    """A site. Constructed by the registry as ``cls(site_config, workdir)``.

    ``CAPABILITIES`` is every capability instances of the class may declare (a site's config
    may narrow it); the registry checks that the verbs they need exist. ``Options`` is the
    pydantic model of the site's ``options:`` mapping, or None.
    """

    CAPABILITIES: ClassVar[frozenset[Capability]]
    Options: ClassVar[type[BaseModel] | None]

    def submit(self, request: SubmitRequest) -> str:
        """Start an attempt and return its native id. Must be idempotent on
        ``request.attempt_id`` when the adapter declares :attr:`Capability.ADOPT`."""
        ...

    def poll(self, native_ids: Sequence[str]) -> Mapping[str, AttemptStatus]:
        """Report every given attempt in one batched call; unknown ids come back LOST."""
        ...

    def cancel(self, native_ids: Sequence[str]) -> None:
        """Stop the given attempts (signal first, then kill after a grace period). An attempt
        whose runtime is already gone has whatever it left behind killed at once."""
        ...

    def owned(self) -> Sequence[OwnedJob]:
        """Every live native job on the site that carries an attempt id of this federation
        (one call), so a sweep can adopt or cancel what the store does not track."""
        ...

    def offers(self) -> Sequence[Offer]:
        """What the site can run right now."""
        ...

    def capabilities(self) -> frozenset[Capability]:
        """What this site can do; a subset of ``CAPABILITIES``."""
        ...


@runtime_checkable
class LogsAdapter(Protocol):
    """An adapter that declares :attr:`Capability.LOGS`."""

    def logs(self, native_id: str) -> str:
        """The attempt's output so far ('' if it has none yet)."""
        ...


@runtime_checkable
class PreemptAdapter(Protocol):
    """An adapter that declares :attr:`Capability.DEBUG_PREEMPT`."""

    def preempt(self, native_id: str, *, wait: bool = False) -> None:
        """Deliver a real preemption to a running attempt."""
        ...


class NodeCheck(Frozen):
    """What :meth:`CheckAdapter.check` found on one node."""

    node: str
    reachable: bool
    host_key_ok: bool | None = None
    """None: the node was not reached, so its key was not seen."""
    python: str | None = None
    gridbridge: str | None = None
    cpus: int | None = None
    memory_gb: float | None = None
    rtt_ms: float | None = None
    error: str = ""


class NodeBootstrap(Frozen):
    """What :meth:`BootstrapAdapter.bootstrap` did on one node."""

    node: str
    action: str
    """``installed``, ``skipped`` (it had the version already) or ``failed``."""
    before: str | None = None
    """The gridbridge version the runtime's interpreter had before (None: none)."""
    after: str | None = None
    seconds: float = 0.0
    uploaded_files: int = 0
    uploaded_bytes: int = 0
    upload_s: float = 0.0
    install_s: float = 0.0
    detail: str = ""
    error: str = ""


class BootstrapReport(Frozen):
    """What :meth:`BootstrapAdapter.bootstrap` did: the wheelhouse and every node."""

    version: str
    """The gridbridge version the nodes were brought to."""
    wheelhouse: str | None = None
    """The local wheelhouse (None: no node needed one)."""
    built: bool = False
    """Whether the wheelhouse was built by this call (False: cached or given)."""
    build_s: float = 0.0
    nodes: list[NodeBootstrap]


@runtime_checkable
class CheckAdapter(Protocol):
    """An adapter that declares :attr:`Capability.CHECK`."""

    def check(self) -> list[NodeCheck]:
        """One row per host: reachable, host key accepted, versions, free resources."""
        ...


@runtime_checkable
class BootstrapAdapter(Protocol):
    """An adapter that declares :attr:`Capability.BOOTSTRAP`."""

    def bootstrap(self, *, wheelhouse: str | os.PathLike[str] | None = None,
                  cache_dir: str | os.PathLike[str] | None = None,
                  base_python: str = "python3") -> BootstrapReport:
        """Install this gridbridge on every host that lacks it."""
        ...


@runtime_checkable
class WakingAdapter(Protocol):
    """An adapter that learns by itself when an attempt ends (a local child process exits)
    may offer this: the reconciler hands it its ``wake``, and the next tick then polls at once
    instead of at the end of the tick interval. Optional; polling alone stays correct."""

    def set_wakeup(self, wake: Callable[[], None]) -> None:
        """Keep ``wake`` and call it, from any thread, when an attempt may have ended."""
        ...


def write_launch(request: SubmitRequest, *, heartbeat_s: float = 10.0,
                 shared_filesystem: bool = False) -> str:
    """Write the attempt's launch record under its storage prefix; returns the argument of
    ``python -m gridbridge.runtime --launch``: the record's URL with the digest of the
    record's bytes (:func:`~gridbridge.wire.launch_arg`), so every adapter's command line
    pins what the runtime runs. Safe to repeat: a record already there with the same
    content keeps its nonce, so a runtime started from an earlier try still finds the
    record its command line pins. ``shared_filesystem``: the site's hosts see the
    submitter's files, so the job runs in the folder it was submitted from (unless its
    ``chdir`` names another)."""
    spec = request.spec
    cwd = spec.chdir or (spec.submit_dir if shared_filesystem else None)
    launch = Launch(
        job_id=request.job_id, attempt=request.attempt, attempt_id=request.attempt_id,
        token=request.token, checkpoint_url=request.checkpoint_url,
        attempt_url=request.attempt_url, command=spec.command, callable_ref=spec.callable_ref,
        env=spec.env, heartbeat_s=heartbeat_s, keep_last=spec.checkpoint.keep_last,
        checkpoint_interval_s=request.checkpoint_interval_s or spec.checkpoint.interval_s,
        cwd=cwd,
    )
    url = f"{request.attempt_url}/launch.json"
    launch = replace(launch, nonce=_kept_nonce(url, launch) or secrets.token_hex(16))
    data = launch.model_dump_json(indent=2).encode()
    put_bytes(url, data)
    return launch_arg(url, data)


def _kept_nonce(url: str, launch: Launch) -> str | None:
    """The nonce of the record at ``url`` if it is this same launch (an earlier try of the
    same submission), else None."""
    try:
        there = Launch.model_validate(json.loads(get_bytes(url)))
    except (FileNotFoundError, ValueError):  # none yet, or not a launch record of ours
        return None
    same = replace(there, nonce="") == replace(launch, nonce="")
    return there.nonce if same and there.nonce else None


def missing_verbs(cls: type[Any], capabilities: frozenset[Capability] | None = None) -> list[str]:
    """The verbs ``cls`` lacks: the required ones, and those its capabilities need
    (``capabilities`` defaults to the class's own ``CAPABILITIES``)."""
    caps = capabilities if capabilities is not None else getattr(cls, "CAPABILITIES", frozenset())
    wanted = [*REQUIRED_VERBS, *(OPTIONAL_VERBS[c] for c in caps if c in OPTIONAL_VERBS)]
    return [v for v in wanted if not callable(getattr(cls, v, None))]
