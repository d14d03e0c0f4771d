"""The federation as a whole: ``limits``, ``teams``, ``budgets``, ``checkpoint``, ``server``
and :class:`GridConfig`, the file's top level."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from gridbridge.config._sites import SiteConfig
from gridbridge.frozen import Frozen
from gridbridge.prefixes import refusal as prefix_refusal
from gridbridge.spec import MigrationSettings, Policy, checkpoint_url_problem

__all__ = ["Budgets", "CheckpointSettings", "GridConfig", "Limits", "OidcSettings",
           "ServerSettings", "TeamSettings"]


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
    """``server:`` OIDC JWTs; each Unix user's role over ``serve --socket`` (root: operator);
    whether researchers read their team's jobs."""

    oidc: OidcSettings | None = None
    socket_roles: dict[str, _Role] = Field(default_factory=dict)
    socket_default_role: _Role = "researcher"
    team_read: bool = False
    """Researchers may also read (status, story, explain; never logs, results, cancel or
    preempt) the jobs of their own team, as a group's shared queue view."""


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
