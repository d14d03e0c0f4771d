"""The ``sites:`` section: one site of the federation, its capacity, prices and runtime."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from gridbridge.adapter import Pricing
from gridbridge.frozen import Frozen
from gridbridge.spec import Tier
from gridbridge.units import ENV_NAME_PATTERN, NAME_PATTERN

__all__ = ["Allocation", "Capacity", "RuntimeSettings", "SiteConfig", "prologue_script"]


class Capacity(Frozen):
    """What a site can run at once."""

    cpus: Annotated[int, Field(ge=1)]
    memory_gb: Annotated[float, Field(gt=0)] = 1024.0
    gpus: Annotated[int, Field(ge=0)] = 0


class RuntimeSettings(Frozen):
    """How the runtime starts on a site's hosts (``runtime:`` of a site)."""

    python: str | None = None
    """The interpreter that runs ``python -m gridbridge.runtime`` there (e.g. a venv's python);
    default: the adapter's (the one running gridbridge, for local sites)."""
    prologue: tuple[str, ...] = ()
    """Shell lines the operator trusts, run before the runtime (``module load``, activating an
    environment). Adapters pass them to ``bash -c`` as one script; job values never enter it."""
    env_names: tuple[Annotated[str, Field(pattern=ENV_NAME_PATTERN)], ...] = ()
    """Names of environment variables handed to the runtime, e.g. how the host reaches storage
    (``AWS_PROFILE``, ``AWS_SHARED_CREDENTIALS_FILE``). Names only: never put secrets here."""
    heartbeat_s: Annotated[float, Field(gt=0)] = 10.0
    """How often a running attempt writes its heartbeat and uploads its log."""
    shared_filesystem: bool | None = None
    """Whether the site's hosts see this host's files, so ``file://`` checkpoint roots work
    there; None lets the adapter say (local sites: yes; remote sites: no)."""


def prologue_script(lines: Sequence[str]) -> str:
    """The operator's prologue lines as one ``bash -c`` script that ends by running its
    arguments (``exec "$@"``): the job's argv travels as arguments, never inside the script.
    A blank line keeps a trailing backslash from swallowing the ``exec``."""
    return "\n".join(lines) + '\n\nexec "$@"\n'


class Allocation(Frozen):
    """Prepaid core-hours on a site (an HPC centre's allocation): ``core_hours`` granted each
    calendar month (UTC), or once for all time. Reports show how much is used and left; the
    site's ``price`` is what each core-hour is charged at in the ledger (0 for a grant that is
    already paid for). A Slurm site can instead grant one per partition
    (``options.partitions.<name>.allocation_core_hours``), which placement also prices."""

    core_hours: Annotated[float, Field(gt=0)]
    every: Literal["month", "total"] = "month"


class SiteConfig(Frozen):
    """One site of the federation."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    adapter: str
    """Adapter kind, a name in the registry (``local``, ``slurm``, ...)."""
    tier: Tier = Tier.HPC
    capacity: Capacity
    price: Pricing = Pricing()
    on_demand: Pricing | None = None
    """What the same work costs on on-demand capacity; defaults to ``price``."""
    preemptible: bool = False
    preemption_rate_per_hour: Annotated[float, Field(ge=0)] = 0.0
    restart_overhead_s: Annotated[float, Field(ge=0)] = 30.0
    max_walltime_s: Annotated[float, Field(gt=0)] | None = None
    max_running: Annotated[int, Field(ge=1)] | None = None
    """At most this many attempts live on the site at once (a concurrency quota)."""
    allocation: Allocation | None = None
    """Prepaid core-hours, for the burn-down in the cost reports."""
    runtime: RuntimeSettings = RuntimeSettings()
    uncertain_submit: Literal["resubmit", "replace"] | None = None
    """When a submission to a site whose adapter cannot adopt by attempt id ended in doubt and
    neither ``owned()`` nor storage shows it started: submit it again (it may then run twice
    if the site was merely slow to list it), or give up on it and place the job anew (the
    sweep cancels it should it surface later). Such sites must choose; others ignore it."""
    run_as: Literal["service", "user"] = "service"
    """Whose Unix account runs a job here: ``service``, the control plane's own for everyone
    (users of the site share it; ``config check`` says so), or ``user``, the account of the
    job's owner (``users`` maps identities to logins; local sites only, and the control plane
    must run as root). See docs/service.md, "Identity on sites"."""
    users: dict[Annotated[str, Field(min_length=1)], Annotated[str, Field(
        pattern=r"^[a-z_][a-z0-9_-]{0,31}$")]] = Field(default_factory=dict)
    """``run_as: user``: identity -> Unix login, for identities whose login differs (the
    others run as the login of their own name)."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Adapter-specific settings, validated by the adapter's own ``Options`` model."""

    @model_validator(mode="after")
    def _run_as_where_supported(self) -> SiteConfig:
        if self.run_as == "user" and self.adapter != "local":
            raise ValueError(
                f"run_as: user is supported on local sites only so far, not on adapter "
                f"{self.adapter!r} (valid for it: service)")
        if self.users and self.run_as != "user":
            raise ValueError("users: maps identities to logins for run_as: user only")
        return self

    def login_of(self, user: str) -> str:
        """The Unix login a job of identity ``user`` runs as under ``run_as: user``."""
        return self.users.get(user, user)

    @property
    def on_demand_price(self) -> Pricing:
        return self.on_demand if self.on_demand is not None else self.price

    def shares_files(self, local_files: bool) -> bool:
        """Whether the site's hosts see this host's files: ``runtime.shared_filesystem``, or
        where that is unset, ``local_files`` (the adapter's own answer: True for local
        processes)."""
        shared = self.runtime.shared_filesystem
        return local_files if shared is None else shared
