"""The state store's tables (SQLAlchemy 2 declarative). Times are UNIX seconds (float).

One row per job, per attempt, per transition event, per placement candidate and per finished
attempt's ledger entry. The ledger's primary key is the attempt id, so an attempt is charged
exactly once however often a reconciler retries.

Columns added after the first release carry a ``server_default`` (or are nullable), so the
store can add them to an older database in place (:mod:`gridbridge.scheduler._db`); indexes
added later are created in place too, when the store opens.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "ApiTokenRow",
    "AttemptRow",
    "AuditRow",
    "Base",
    "DecisionRow",
    "EventRow",
    "JobRow",
    "LeaseRow",
    "LedgerRow",
    "SiteHealthRow",
]


class Base(DeclarativeBase):
    pass


class JobRow(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    spec_json: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), index=True)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    user: Mapped[str] = mapped_column(String(128))
    team: Mapped[str] = mapped_column(String(128))
    project: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[float] = mapped_column(Float, index=True)
    """Indexed: listings are newest first, and a listing of the newest few must not sort all."""
    updated_at: Mapped[float] = mapped_column(Float)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    checkpoint_url: Mapped[str] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    cancel_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    """Why it was cancelled, as the canceller said (None: "cancelled by user")."""


class AttemptRow(Base):
    __tablename__ = "attempts"

    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    token: Mapped[int] = mapped_column(Integer)
    site: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), index=True)
    native_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    native_state: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    ended_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    last_step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    attempt_url: Mapped[str] = mapped_column(Text)
    submit_tries: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    offer_key: Mapped[str | None] = mapped_column(String(128), nullable=True)
    price_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    """The price card it was placed at: ``{"price": Pricing, "on_demand": Pricing}``."""
    return_digest: Mapped[str | None] = mapped_column(String(80), nullable=True)
    """The digest of ``return.pkl`` as the attempt's result record gave it when the control
    plane concluded it (a succeeded function attempt); ``result()`` checks the bytes it reads
    against this, never against a record a job could rewrite later."""
    seen_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    """The latest poll that saw it running, as recorded (every ``SEEN_EVERY_S``): what a
    reconciler that took over bills a lost attempt to at least."""


class EventRow(Base):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_job", "job_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[float] = mapped_column(Float)
    job_id: Mapped[str] = mapped_column(String(64))
    attempt_id: Mapped[str | None] = mapped_column(String(80), nullable=True)
    kind: Mapped[str] = mapped_column(String(32))
    old: Mapped[str] = mapped_column(String(16), default="")
    new: Mapped[str] = mapped_column(String(16), default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(128), default="")
    site: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """Set on site events (health changes, orphans); ``job_id`` is then '' or the orphan's."""


class DecisionRow(Base):
    __tablename__ = "decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[float] = mapped_column(Float)
    job_id: Mapped[str] = mapped_column(String(64), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    site: Mapped[str] = mapped_column(String(64))
    offer_key: Mapped[str | None] = mapped_column(String(128), nullable=True)
    chosen: Mapped[bool] = mapped_column(Boolean)
    feasible: Mapped[bool] = mapped_column(Boolean)
    expected_cost: Mapped[float | None] = mapped_column(Float, nullable=True)
    on_demand_cost: Mapped[float | None] = mapped_column(Float, nullable=True)
    expected_runtime_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    expected_finish: Mapped[float | None] = mapped_column(Float, nullable=True)
    reason: Mapped[str] = mapped_column(Text)


class LedgerRow(Base):
    __tablename__ = "ledger"

    attempt_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(64), index=True)
    user: Mapped[str] = mapped_column(String(128))
    team: Mapped[str] = mapped_column(String(128))
    project: Mapped[str] = mapped_column(String(128))
    site: Mapped[str] = mapped_column(String(64))
    tier: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(16))
    start: Mapped[float] = mapped_column(Float)
    end: Mapped[float] = mapped_column(Float)
    core_hours: Mapped[float] = mapped_column(Float)
    gpu_hours: Mapped[float] = mapped_column(Float)
    cost: Mapped[float] = mapped_column(Float)
    on_demand_cost: Mapped[float] = mapped_column(Float)
    lost_cost: Mapped[float] = mapped_column(Float)
    """What the work thrown away by a preemption or loss cost (the time since the last
    committed checkpoint)."""
    offer_key: Mapped[str | None] = mapped_column(String(128), nullable=True)
    """The offer it ran on (a Slurm partition, an instance type and zone), for allocations
    granted per partition."""


class LeaseRow(Base):
    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(256))
    expires_at: Mapped[float] = mapped_column(Float)
    """0 once released; the row stays so that ``generation`` only ever grows."""
    generation: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))


class SiteHealthRow(Base):
    __tablename__ = "site_health"

    site: Mapped[str] = mapped_column(String(64), primary_key=True)
    healthy: Mapped[bool] = mapped_column(Boolean)
    phase: Mapped[str] = mapped_column(String(16), default="")
    error: Mapped[str] = mapped_column(Text, default="")
    since: Mapped[float] = mapped_column(Float)
    checked_at: Mapped[float] = mapped_column(Float)


class ApiTokenRow(Base):
    """An API token of the service: who it names and what role it grants. Only the SHA-256
    of its secret is kept; the secret itself is shown once, when the token is made."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    """The token's public id (the part before the dot), shown in listings and the audit."""
    secret_sha256: Mapped[str] = mapped_column(String(64))
    user: Mapped[str] = mapped_column(String(128))
    team: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(128), default="")
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class AuditRow(Base):
    """One verb that changed something, or one refusal: who, when, what, from where. The
    detail never holds a secret (a token is named by its public id)."""

    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[float] = mapped_column(Float, index=True)
    user: Mapped[str] = mapped_column(String(128), default="")
    role: Mapped[str] = mapped_column(String(16), default="")
    verb: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(128), default="")
    outcome: Mapped[str] = mapped_column(String(8))
    """``ok`` or ``refused``."""
    source: Mapped[str] = mapped_column(String(64), default="")
    """The client's address, or ``local`` for a command run on the store's own host."""
    detail: Mapped[str] = mapped_column(Text, default="")


class SiteDrainRow(Base):
    """A site an operator drained (``gridbridge sites drain``): nothing new is placed there
    and its running jobs move off; the row is removed by ``sites undrain``."""

    __tablename__ = "site_drains"

    site: Mapped[str] = mapped_column(String(64), primary_key=True)
    at: Mapped[float] = mapped_column(Float)
    actor: Mapped[str] = mapped_column(String(128), default="")
