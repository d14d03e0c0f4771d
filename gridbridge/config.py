"""The operator's one file: ``gridbridge.yaml``, validated by pydantic.

A bad file fails as a whole with one :class:`ConfigError` whose message names the file, the
field (``sites[1].price.per_core_hour``) and, where there is a closed set, the valid choices.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from gridbridge.adapter import Pricing
from gridbridge.frozen import Frozen
from gridbridge.prefixes import refusal as prefix_refusal
from gridbridge.registry import AdapterNotFound, Registry, default_registry
from gridbridge.spec import MigrationSettings, Policy, Tier, checkpoint_url_problem
from gridbridge.units import ENV_NAME_PATTERN, NAME_PATTERN

__all__ = [
    "ENV_NAME_PATTERN",
    "Allocation",
    "Budgets",
    "Capacity",
    "CheckpointSettings",
    "ConfigError",
    "GridConfig",
    "Limits",
    "RuntimeSettings",
    "SiteConfig",
    "TeamSettings",
    "config_schema",
    "default_config",
    "explain_errors",
    "load_config",
    "parse_config",
    "prologue_script",
]


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
    options: dict[str, Any] = Field(default_factory=dict)
    """Adapter-specific settings, validated by the adapter's own ``Options`` model."""

    @property
    def on_demand_price(self) -> Pricing:
        return self.on_demand if self.on_demand is not None else self.price


class Limits(Frozen):
    """How the reconciler paces itself."""

    tick_interval_s: Annotated[float, Field(gt=0)] = 1.0
    max_submissions_per_tick: Annotated[int, Field(ge=1)] = 100
    lease_s: Annotated[float, Field(gt=0)] = 10.0
    """How long a reconciler's lease on the store lasts without renewal."""
    site_deadline_s: Annotated[float, Field(gt=0)] = 30.0
    """How long one phase of a tick waits for a site's call; a slower site is skipped (and
    marked degraded) while the others go on."""
    sweep_interval_s: Annotated[float, Field(gt=0)] = 60.0
    """How often each site's ``owned()`` is swept for native jobs the store does not track."""
    reject_backoff_s: Annotated[float, Field(ge=0)] = 60.0
    """After a site rejects a job's submission, the job is not placed there for this long."""
    max_rejections: Annotated[int, Field(ge=1)] = 20
    """Submissions of one job rejected in a row (by any sites, nothing run in between) before
    the job fails with the last site's reason, rather than wait for ever."""
    max_submit_tries: Annotated[int, Field(ge=1)] = 5
    """Uncertain submissions of one attempt before it is looked up with ``owned()`` and, if
    the site holds nothing for it, given up and the job placed anew."""
    max_running_per_user: Annotated[int, Field(ge=1)] | None = None
    """At most this many active attempts (submitted, queued or running) per user, across all
    sites; a user's further jobs wait PENDING and ``explain`` names this limit. None: no
    limit."""


class TeamSettings(Frozen):
    """One team's share of the federation (``teams: {vision: {weight: 3}}``)."""

    weight: Annotated[float, Field(gt=0, le=1000)] = 1.0
    """Fair share: among pending jobs of one priority, the team whose running attempts per
    unit of weight are fewest goes first, so a team of weight 3 gets about three times the
    starts of a team of weight 1 while both have jobs waiting. Teams not listed weigh 1."""


class Budgets(Frozen):
    """Monthly budgets (``budgets:`` in the config), in ``currency``, per calendar month (UTC).

    A job whose expected cost exceeds what its team or project has left this month is held
    (it stays PENDING, and its story and ``status`` say why); it is placed once money is
    left again (a new month, a raised budget). Spent = the ledger's cost this month plus the
    expected cost of attempts still running. The teams not named in ``teams`` share ONE
    budget, ``default``, among them all (``--team`` is free text: a made-up team name gains
    nothing); without one they are unlimited, unless ``strict`` refuses their jobs at
    submission."""

    teams: dict[Annotated[str, Field(min_length=1)], Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict)
    """Money a team (``owner.team`` of its jobs) may spend a month."""
    projects: dict[Annotated[str, Field(min_length=1)], Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict)
    """Money a project (``owner.project``) may spend a month."""
    default: Annotated[float, Field(ge=0)] | None = None
    """Money the teams not named in ``teams`` may spend a month, all of them together: one
    pool they share (None: such teams are held to no budget, or refused under ``strict``)."""
    strict: bool = False
    """Refuse at submission a job whose team has no budget (not in ``teams``, no
    ``default``), rather than let it spend without limit."""
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "USD"

    def team_budget(self, team: str) -> float | None:
        """The budget ``team`` draws on each month: its own, else ``default`` (a pool shared
        with every other team not named in ``teams``); None: no limit."""
        return self.teams.get(team, self.default)


class CheckpointSettings(Frozen):
    """Where jobs may keep their checkpoints (``checkpoint:`` in the config).

    The control plane derives every job's prefix, ``<checkpoint_root>/<job id>``. A job may
    name its own ``checkpoint.url`` instead, and it is accepted (at submission, and again
    before every fence the control plane raises on it) only if it is absolute, of an allowed
    scheme (``gridbridge.spec.CHECKPOINT_SCHEMES``: never http), outside ``checkpoint_root``
    (whose prefixes belong to the jobs they are named after) and, once ``allowed_prefixes``
    is set, under a prefix listed for the job's team (``"*"``: every team), e.g.
    ``checkpoint: {allowed_prefixes: {vision: [s3://ckpt/vision], "*": [s3://ckpt/shared]}}``.
    URLs are compared as the storage reads them (``gridbridge.prefixes``: scheme aliases,
    %-escapes, bucket case, ``//``, symlinks of local paths), on path-segment boundaries.
    """

    allowed_prefixes: dict[Annotated[str, Field(min_length=1)], tuple[str, ...]] | None = None
    """Per team, the prefixes a job's own checkpoint URL must lie under. Unset: any URL the
    other rules allow (``fence.json`` still names the job owning a prefix: see ``raise_fence``)."""
    fence_timeout_s: Annotated[float, Field(gt=0, le=300)] = 5.0
    """How long the control plane waits for a job's checkpoint storage to raise its fence; a
    fence that does not answer in time fails that attempt, never its site."""

    @field_validator("allowed_prefixes")
    @classmethod
    def _prefixes_are_urls(
        cls, value: dict[str, tuple[str, ...]] | None,
    ) -> dict[str, tuple[str, ...]] | None:
        for prefixes in (value or {}).values():
            for prefix in prefixes:
                problem = checkpoint_url_problem(prefix)
                if problem:
                    raise ValueError(problem.replace("checkpoint.url", "a prefix", 1))
        return value

    def refusal(self, url: str, *, team: str, root: str, job_id: str | None = None) -> str | None:
        """Why a job of ``team`` may not keep checkpoints at ``url`` (naming the field and the
        allowed prefixes), or None; ``job_id`` accepts its own ``<root>/<job_id>``."""
        allowed = None if self.allowed_prefixes is None else (
            *self.allowed_prefixes.get(team, ()), *self.allowed_prefixes.get("*", ()))
        return prefix_refusal(url, allowed=allowed, team=team, root=root, job_id=job_id)


_Role = Literal["researcher", "operator", "finance"]


class OidcSettings(Frozen):
    """``server.oidc``: bearer JWTs of an OIDC issuer, checked against its JWKS (``jwks_url``
    or ``jwks_file``); the identity from the named claims, ``default_role`` if no role."""

    issuer: Annotated[str, Field(min_length=1)]
    audience: Annotated[str, Field(min_length=1)]
    jwks_url: str | None = None
    jwks_file: Path | None = None
    user_claim: str = "preferred_username"
    team_claim: str = "team"
    role_claim: str = "role"
    default_role: _Role = "researcher"

    @model_validator(mode="after")
    def _one_key_source(self) -> OidcSettings:
        if (self.jwks_url is None) == (self.jwks_file is None):
            raise ValueError("server.oidc needs exactly one of jwks_url and jwks_file")
        return self


class ServerSettings(Frozen):
    """``server:`` OIDC JWTs; each Unix user's role over ``serve --socket`` (root: operator)."""

    oidc: OidcSettings | None = None
    socket_roles: dict[str, _Role] = Field(default_factory=dict)
    socket_default_role: _Role = "researcher"


class GridConfig(Frozen):
    """The whole federation: sites, where state and checkpoints live, and limits."""

    state_url: str
    """SQLAlchemy URL of the state store (SQLite by default)."""
    checkpoint_root: str
    """fsspec URL under which each job gets ``<root>/<job id>/``."""
    workdir: str
    """Local directory for adapter run files (pidfiles, logs of local attempts)."""
    sites: Annotated[tuple[SiteConfig, ...], Field(min_length=1)]
    limits: Limits = Limits()
    policy: Policy = Policy()
    """How placement chooses among feasible offers (a job may set its own)."""
    budgets: Budgets = Budgets()
    teams: dict[Annotated[str, Field(min_length=1)], TeamSettings] = Field(
        default_factory=dict)
    """Per team (``owner.team``), its share: ``teams: {vision: {weight: 3}}``."""
    checkpoint: CheckpointSettings = CheckpointSettings()
    """Which checkpoint URLs a job may name, and the control plane's fence timeout."""
    migration: MigrationSettings = MigrationSettings()
    server: ServerSettings = ServerSettings()  # the service's authentication (docs/service.md)

    @field_validator("sites")
    @classmethod
    def _unique_names(cls, sites: tuple[SiteConfig, ...]) -> tuple[SiteConfig, ...]:
        seen: set[str] = set()
        for s in sites:
            if s.name in seen:
                raise ValueError(f"site name {s.name!r} appears twice")
            seen.add(s.name)
        return sites

    @model_validator(mode="after")
    def _prices_sane(self) -> GridConfig:
        for s in self.sites:
            if s.preemption_rate_per_hour > 0 and not s.preemptible:
                raise ValueError(
                    f"site {s.name!r} has preemption_rate_per_hour > 0 but preemptible: false"
                )
        return self

    def site(self, name: str) -> SiteConfig:
        for s in self.sites:
            if s.name == name:
                return s
        raise KeyError(f"no site {name!r}; sites: {', '.join(s.name for s in self.sites)}")


class ConfigError(ValueError):
    """A configuration that cannot be used; the message says where and why."""


def config_schema() -> dict[str, Any]:
    """The JSON Schema of ``gridbridge.yaml``, generated from the models."""
    return GridConfig.model_json_schema()


def load_config(path: str | os.PathLike[str], registry: Registry | None = None) -> GridConfig:
    """Read, validate and return ``path``; relative paths in it are taken from its folder."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping with 'sites' and the rest")
    return parse_config(data, source=str(p), base=p.parent, registry=registry)


def parse_config(
    data: Mapping[str, Any],
    *,
    source: str = "<config>",
    base: Path | None = None,
    registry: Registry | None = None,
) -> GridConfig:
    """Validate a mapping as a :class:`GridConfig`, then each site's adapter and options."""
    data = _resolve_paths(dict(data), base or Path.cwd())
    try:
        config = GridConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(explain_errors(exc, source, GridConfig)) from None
    registry = registry or default_registry()
    problems: list[str] = []
    for i, site in enumerate(config.sites):
        try:
            cls = registry.load(site.adapter)
        except AdapterNotFound:
            problems.append(
                f"{source}: sites[{i}].adapter: unknown adapter {site.adapter!r}; "
                f"valid choices: {', '.join(registry.names())}"
            )
            continue
        options_model: type[BaseModel] | None = getattr(cls, "Options", None)
        if options_model is not None:
            try:
                options_model.model_validate(site.options)
            except ValidationError as exc:
                problems.append(explain_errors(exc, source, options_model, f"sites[{i}].options"))
    if problems:
        raise ConfigError("\n".join(problems))
    return config


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    for key in ("workdir",):
        value = data.get(key)
        if isinstance(value, str) and not os.path.isabs(value) and "://" not in value:
            data[key] = str((base / value).resolve())
    root = data.get("checkpoint_root")
    if isinstance(root, str) and "://" not in root and not os.path.isabs(root):
        data["checkpoint_root"] = (base / root).resolve().as_uri()
    elif isinstance(root, str) and "://" not in root:
        data["checkpoint_root"] = Path(root).as_uri()
    state = data.get("state_url")
    if isinstance(state, str) and state.startswith("sqlite:///") and not state.startswith(
        "sqlite:////"
    ):
        rel = state.removeprefix("sqlite:///")
        if rel and rel != ":memory:":
            data["state_url"] = "sqlite:///" + str((base / rel).resolve())
    return data


def explain_errors(
    exc: ValidationError, source: str, model: type[BaseModel], prefix: str = ""
) -> str:
    """One line per error of ``exc``: ``source: field.path: what is wrong``, with the valid
    field names for an unknown field and the valid choices for a closed set."""
    lines = []
    errors = exc.errors()
    for err in errors:
        if err["type"] == "too_short" and _has_deeper(errors, err["loc"]):
            continue  # pydantic's tuple min_length counts failed items out; theirs is the error
        loc = _format_loc(err["loc"], prefix)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            valid = _fields_at(model, err["loc"][:-1])
            msg = f"unknown field {str(err['loc'][-1])!r}; valid fields: {', '.join(valid)}"
        elif err["type"] == "missing":
            msg = "required field is missing"
        elif err["type"] == "enum":
            ctx = err.get("ctx") or {}
            msg = f"{json.dumps(err['input'])} is not valid; valid choices: {ctx.get('expected')}"
        elif isinstance(err["input"], dict):
            # a mapping may hold secrets (a job's env): name its size, never its values
            msg = f"{msg} (got a mapping of {len(err['input'])} entries)"
        else:
            msg = f"{msg} (got {json.dumps(err['input'], default=str)[:80]})"
        lines.append(f"{source}: {loc or '<top>'}: {msg}")
    return "\n".join(lines)


def _has_deeper(errors: Sequence[Any], loc: tuple[int | str, ...]) -> bool:
    return any(len(e["loc"]) > len(loc) and e["loc"][: len(loc)] == loc for e in errors)


def _format_loc(loc: Sequence[int | str], prefix: str) -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in {"function-after", "function-before"} or "[" in str(part):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def _fields_at(model: type[BaseModel], loc: Sequence[int | str]) -> list[str]:
    """The field names of the sub-model at ``loc`` (list indexes skipped)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        current = _model_of(fields[part].annotation)
        if current is None:
            return []
    fields = getattr(current, "model_fields", {})
    return sorted(fields)


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def default_config(data_dir: str | os.PathLike[str], cpus: int | None = None) -> GridConfig:
    """The embedded default: two local sites, SQLite state and file checkpoints in ``data_dir``.

    ``spot-local`` is cheap and preemptible (and its capacity is reclaimed for a while after an
    interruption, as spot capacity is); ``ondemand-local`` is reliable and four times dearer.
    """
    d = Path(data_dir).resolve()
    n = cpus or max(2, os.cpu_count() or 2)
    return parse_config(
        {
            "state_url": f"sqlite:///{d / 'state.db'}",
            "checkpoint_root": (d / "checkpoints").as_uri(),
            "workdir": str(d / "run"),
            "limits": {"tick_interval_s": 0.25},
            "sites": [
                {
                    "name": "spot-local",
                    "adapter": "local",
                    "tier": "cloud",
                    "capacity": {"cpus": n, "memory_gb": 8},
                    "price": {"per_core_hour": 0.012},
                    "on_demand": {"per_core_hour": 0.048},
                    "preemptible": True,
                    "preemption_rate_per_hour": 0.5,
                    "restart_overhead_s": 20,
                    "options": {"reclaim_after_preemption_s": 30},
                },
                {
                    "name": "ondemand-local",
                    "adapter": "local",
                    "tier": "cloud",
                    "capacity": {"cpus": n, "memory_gb": 8},
                    "price": {"per_core_hour": 0.048},
                    "restart_overhead_s": 20,
                },
            ],
        },
        source="<embedded default>",
    )
