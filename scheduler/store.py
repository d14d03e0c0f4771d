"""The state store: jobs, attempts, events, placement decisions and the cost ledger.

Every state change is a compare-and-set (``UPDATE ... WHERE state = expected``, then check the
row count) checked against the transition tables of :mod:`gridbridge.states`, and writes an
event row in the same transaction. SQLite runs in WAL mode so a CLI and ``gridbridge serve``
can share one file; any SQLAlchemy URL works.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from sqlalchemy import create_engine, event, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from gridbridge.spec import JobSpec
from gridbridge.states import (
    AttemptState,
    JobState,
    check_attempt_transition,
    check_job_transition,
)

from .tables import AttemptRow, Base, DecisionRow, EventRow, JobRow, LeaseRow, LedgerRow

__all__ = ["Attempt", "Event", "Job", "JobNotFound", "StateStore"]


class JobNotFound(LookupError):
    """No job with that id."""


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

    @classmethod
    def of(cls, row: JobRow) -> Job:
        return _snapshot(
            cls, row, spec=JobSpec.model_validate_json(row.spec_json), state=JobState(row.state)
        )


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

    @classmethod
    def of(cls, row: AttemptRow) -> Attempt:
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


_T = TypeVar("_T")


def _snapshot(cls: type[_T], row: Base, **converted: Any) -> _T:
    """A frozen copy of a row: every dataclass field read from the row unless converted."""
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    return cls(**{n: getattr(row, n) for n in names if n not in converted}, **converted)


def new_job_id() -> str:
    return "j" + uuid.uuid4().hex[:11]


class StateStore:
    """Durable state behind the reconciler, the client and the reports."""

    def __init__(self, url: str, *, clock: Callable[[], float] = time.time) -> None:
        self.url = url
        self._clock = clock
        self.engine: Engine = create_engine(url, future=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin_immediate)
        Base.metadata.create_all(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    # jobs ---------------------------------------------------------------------------------

    def create_job(self, spec: JobSpec, checkpoint_url: str, job_id: str | None = None) -> Job:
        """Record a new PENDING job."""
        now = self._clock()
        jid = job_id or new_job_id()
        row = JobRow(
            id=jid,
            name=spec.name,
            spec_json=spec.model_dump_json(),
            state=JobState.PENDING.value,
            priority=spec.priority,
            user=spec.owner.user,
            team=spec.owner.team,
            project=spec.owner.project,
            created_at=now,
            updated_at=now,
            attempts=0,
            cancel_requested=False,
            checkpoint_url=checkpoint_url,
        )
        with self._tx() as s:
            s.add(row)
            s.add(_event(now, jid, None, "job", "", JobState.PENDING, "submitted", spec.owner.user))
        return Job.of(row)

    def job(self, job_id: str) -> Job:
        with self._sessions() as s:
            row = s.get(JobRow, job_id)
            if row is None:
                raise JobNotFound(f"no job {job_id!r}")
            return Job.of(row)

    def jobs(self, states: Iterable[JobState] | None = None, limit: int | None = None) -> list[Job]:
        """Jobs, newest first, optionally only in the given states."""
        q = select(JobRow).order_by(JobRow.created_at.desc())
        if states is not None:
            q = q.where(JobRow.state.in_([s.value for s in states]))
        if limit is not None:
            q = q.limit(limit)
        with self._sessions() as s:
            return [Job.of(r) for r in s.scalars(q)]

    def cancel_requested(self, job_ids: Iterable[str]) -> set[str]:
        """Those of ``job_ids`` whose cancellation was requested (one query)."""
        ids = list(job_ids)
        if not ids:
            return set()
        q = select(JobRow.id).where(JobRow.id.in_(ids), JobRow.cancel_requested.is_(True))
        with self._sessions() as s:
            return set(s.scalars(q))

    def request_cancel(self, job_id: str, actor: str = "user") -> Job:
        """Mark a job for cancellation; a PENDING job is cancelled at once."""
        now = self._clock()
        with self._tx() as s:
            row = s.get(JobRow, job_id)
            if row is None:
                raise JobNotFound(f"no job {job_id!r}")
            if JobState(row.state).terminal:
                return Job.of(row)
            row.cancel_requested = True
            row.updated_at = now
            s.add(_event(now, job_id, None, "cancel-requested", row.state, row.state, "", actor))
        self.transition_job(
            job_id, JobState.PENDING, JobState.CANCELLED, "cancelled by user", actor
        )
        return self.job(job_id)

    def transition_job(
        self, job_id: str, expected: JobState, new: JobState, reason: str, actor: str = ""
    ) -> bool:
        """Compare-and-set a job's state; False if it was no longer ``expected``."""
        check_job_transition(expected, new)
        with self._tx() as s:
            return self._cas_job(s, job_id, expected, new, reason, actor)

    def _cas_job(
        self,
        s: Session,
        job_id: str,
        expected: JobState,
        new: JobState,
        reason: str,
        actor: str,
        **values: Any,
    ) -> bool:
        check_job_transition(expected, new)
        now = self._clock()
        result = s.execute(
            update(JobRow)
            .where(JobRow.id == job_id, JobRow.state == expected.value)
            .values(state=new.value, updated_at=now, **values)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return False
        s.add(_event(now, job_id, None, "job", expected, new, reason, actor))
        return True

    # attempts -----------------------------------------------------------------------------

    def new_attempt(self, job_id: str, site: str, attempt_root: str, actor: str) -> Attempt | None:
        """Move a PENDING job to SCHEDULED and record its next attempt as SUBMITTING.

        Written before the native submission: the attempt id is the idempotency key a
        restarted reconciler re-submits with. None if the job was no longer PENDING.
        """
        now = self._clock()
        with self._tx() as s:
            row = s.get(JobRow, job_id)
            if row is None or row.state != JobState.PENDING.value or row.cancel_requested:
                return None
            number = row.attempts + 1
            reason = f"attempt {number} placed on {site}"
            if not self._cas_job(
                s, job_id, JobState.PENDING, JobState.SCHEDULED, reason, actor, attempts=number
            ):
                return None
            attempt = AttemptRow(
                id=f"{job_id}.{number}",
                job_id=job_id,
                number=number,
                token=number,
                site=site,
                state=AttemptState.SUBMITTING.value,
                native_state="",
                created_at=now,
                reason="",
                attempt_url=f"{attempt_root}/attempts/{number}",
            )
            s.add(attempt)
            s.add(
                _event(now, job_id, attempt.id, "attempt", "", AttemptState.SUBMITTING, "", actor)
            )
        return Attempt.of(attempt)

    def attempt(self, attempt_id: str) -> Attempt:
        with self._sessions() as s:
            row = s.get(AttemptRow, attempt_id)
            if row is None:
                raise LookupError(f"no attempt {attempt_id!r}")
            return Attempt.of(row)

    def attempts(self, job_id: str) -> list[Attempt]:
        q = select(AttemptRow).where(AttemptRow.job_id == job_id).order_by(AttemptRow.number)
        with self._sessions() as s:
            return [Attempt.of(r) for r in s.scalars(q)]

    def active_attempts(self) -> list[Attempt]:
        active = [a.value for a in AttemptState if a.active]
        q = select(AttemptRow).where(AttemptRow.state.in_(active)).order_by(AttemptRow.id)
        with self._sessions() as s:
            return [Attempt.of(r) for r in s.scalars(q)]

    def set_native_id(self, attempt_id: str, native_id: str, actor: str) -> bool:
        """SUBMITTING -> SUBMITTED with the site's id for the attempt."""
        with self._tx() as s:
            return self._cas_attempt(
                s, attempt_id, AttemptState.SUBMITTING, AttemptState.SUBMITTED,
                f"native id {native_id}", actor, native_id=native_id,
            )

    def mark_running(self, attempt: Attempt, native_state: str, actor: str) -> bool:
        """The site says it runs: attempt -> RUNNING and job SCHEDULED -> RUNNING."""
        now = self._clock()
        with self._tx() as s:
            if not self._cas_attempt(
                s, attempt.id, attempt.state, AttemptState.RUNNING, "", actor,
                native_state=native_state, started_at=now,
            ):
                return False
            self._cas_job(s, attempt.job_id, JobState.SCHEDULED, JobState.RUNNING,
                          f"attempt {attempt.number} running on {attempt.site}", actor)
            return True

    def conclude(self, attempt: Attempt, ending: AttemptEnding, actor: str) -> bool:
        """End an attempt, move its job on and write its ledger row, in one transaction."""
        now = self._clock()
        with self._tx() as s:
            if not self._cas_attempt(
                s, attempt.id, attempt.state, ending.state, ending.reason, actor,
                native_state=ending.native_state, ended_at=now, exit_code=ending.exit_code,
                last_step=ending.last_step,
            ):
                return False
            job = s.get(JobRow, attempt.job_id)
            assert job is not None
            current = JobState(job.state)
            extra: dict[str, Any] = {}
            if ending.job_error is not None:
                extra["error"] = ending.job_error
            if current != ending.job_state:
                moved = self._cas_job(
                    s, job.id, current, ending.job_state, ending.job_reason, actor, **extra
                )
                if not moved:
                    raise RuntimeError(f"job {job.id} changed state under attempt {attempt.id}")
            if ending.ledger is not None:
                s.add(ending.ledger)
            return True

    def _cas_attempt(
        self,
        s: Session,
        attempt_id: str,
        expected: AttemptState,
        new: AttemptState,
        reason: str,
        actor: str,
        **values: Any,
    ) -> bool:
        check_attempt_transition(expected, new)
        result = s.execute(
            update(AttemptRow)
            .where(AttemptRow.id == attempt_id, AttemptRow.state == expected.value)
            .values(state=new.value, **({"reason": reason} if reason else {}), **values)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return False
        job_id = attempt_id.rsplit(".", 1)[0]
        s.add(_event(self._clock(), job_id, attempt_id, "attempt", expected, new, reason, actor))
        return True

    # story, decisions, ledger -------------------------------------------------------------

    def events(self, job_id: str) -> list[Event]:
        q = select(EventRow).where(EventRow.job_id == job_id).order_by(EventRow.id)
        with self._sessions() as s:
            return [
                Event(r.at, r.job_id, r.attempt_id, r.kind, r.old, r.new, r.reason, r.actor)
                for r in s.scalars(q)
            ]

    def add_event(
        self, job_id: str, kind: str, reason: str, actor: str, attempt_id: str | None = None
    ) -> None:
        with self._tx() as s:
            s.add(_event(self._clock(), job_id, attempt_id, kind, "", "", reason, actor))

    def record_decisions(self, rows: Sequence[DecisionRow]) -> None:
        with self._tx() as s:
            s.add_all(rows)

    def decisions(self, job_id: str) -> list[DecisionRow]:
        q = select(DecisionRow).where(DecisionRow.job_id == job_id).order_by(DecisionRow.id)
        with self._sessions() as s:
            return list(s.scalars(q))

    def ledger(self, job_id: str | None = None) -> list[LedgerRow]:
        q = select(LedgerRow).order_by(LedgerRow.start)
        if job_id is not None:
            q = q.where(LedgerRow.job_id == job_id)
        with self._sessions() as s:
            return list(s.scalars(q))

    def ledger_records(self, job_id: str | None = None) -> list[dict[str, Any]]:
        """The ledger as plain mappings, column name to value (what the reports read)."""
        return [
            {c.key: getattr(row, c.key) for c in LedgerRow.__table__.columns}
            for row in self.ledger(job_id)
        ]

    # leases -------------------------------------------------------------------------------

    def acquire_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        """Take or renew the named lease; False while another live holder has it."""
        now = self._clock()
        try:
            with self._tx() as s:
                row = s.get(LeaseRow, name)
                if row is None:
                    s.add(LeaseRow(name=name, holder=holder, expires_at=now + ttl_s))
                    return True
                result = s.execute(
                    update(LeaseRow)
                    .where(
                        LeaseRow.name == name,
                        (LeaseRow.holder == holder) | (LeaseRow.expires_at < now),
                    )
                    .values(holder=holder, expires_at=now + ttl_s)
                )
                return bool(result.rowcount == 1)  # type: ignore[attr-defined]
        except IntegrityError:
            return False

    def lease_holder(self, name: str) -> tuple[str, float] | None:
        with self._sessions() as s:
            row = s.get(LeaseRow, name)
            return None if row is None else (row.holder, row.expires_at)

    def release_lease(self, name: str, holder: str) -> None:
        with self._tx() as s:
            row = s.get(LeaseRow, name)
            if row is not None and row.holder == holder:
                s.delete(row)


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


def _event(
    at: float,
    job_id: str,
    attempt_id: str | None,
    kind: str,
    old: str,
    new: str,
    reason: str,
    actor: str,
) -> EventRow:
    return EventRow(
        at=at, job_id=job_id, attempt_id=attempt_id, kind=kind, old=str(old), new=str(new),
        reason=reason, actor=actor,
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" hook issue BEGIN IMMEDIATE: a deferred transaction that reads
    # and then writes can fail at once with "database is locked" when another process writes.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin_immediate(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")
