"""The state store: jobs, attempts, events, placement decisions and the cost ledger.

Every state change is a compare-and-set (``UPDATE ... WHERE state = expected``, then check the
row count) checked against the transition tables of :mod:`gridbridge.states`, and writes an
event row in the same transaction. SQLite runs in WAL mode so a CLI and ``gridbridge serve``
can share one file; reads never wait behind a writer, and a write that cannot get the lock
raises :class:`StoreUnavailable` (see :mod:`._db`). Any SQLAlchemy URL works.

Leases carry a generation that grows whenever the lease changes hands or lapses, so the
reconciler can check, just before it acts on a site, that it still holds the very lease it
started its tick under.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

from sqlalchemy import Table, create_engine, func, insert, inspect, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from gridbridge.spec import JobSpec
from gridbridge.states import (
    ATTEMPT_TRANSITIONS,
    AttemptState,
    JobState,
    check_attempt_transition,
    check_job_transition,
)

from ._db import StoreUnavailable, add_missing_columns, sqlite_engines
from .records import (
    Attempt,
    AttemptEnding,
    Event,
    Job,
    JobNotFound,
    Lease,
    SiteHealth,
    new_job_id,
)
from .tables import (
    AttemptRow,
    Base,
    DecisionRow,
    EventRow,
    JobRow,
    LeaseRow,
    LedgerRow,
    SiteHealthRow,
)

__all__ = [
    "Attempt",
    "AttemptEnding",
    "Event",
    "Job",
    "JobNotFound",
    "Lease",
    "SiteHealth",
    "StateStore",
    "StoreUnavailable",
    "new_job_id",
]


class StateStore:
    """Durable state behind the reconciler, the client and the reports."""

    def __init__(self, url: str, *, clock: Callable[[], float] = time.time) -> None:
        self.url = url
        self._clock = clock
        self.engine: Engine = create_engine(url, future=True)
        self._read_engine = self.engine
        if self.engine.dialect.name == "sqlite" and _is_file(url):
            self._read_engine = create_engine(url, future=True)
            sqlite_engines(self.engine, self._read_engine)
        with _unavailable_as_error(url):
            _create_missing_tables(self.engine, self._read_engine)
            add_missing_columns(self.engine, self._read_engine)
            _add_missing_indexes(self.engine, self._read_engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._reads = sessionmaker(self._read_engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()
        self._read_engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        with _unavailable_as_error(self.url), self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with _unavailable_as_error(self.url), self._reads() as session:
            yield session

    @contextmanager
    def _core_read(self) -> Iterator[Connection]:
        """A read without the ORM, for the point reads every tick makes (half the cost)."""
        with _unavailable_as_error(self.url), self._read_engine.connect() as connection:
            yield connection

    def probe_write(self) -> None:
        """Write a row and delete it in one transaction (raises if the store is read-only or
        locked for longer than the write timeout)."""
        with self._tx() as s:
            row = LeaseRow(name=f".probe-{time.time_ns()}", holder="config check",
                           expires_at=0.0, generation=0)
            s.add(row)
            s.flush()
            s.delete(row)

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
        with self._core_read() as c:
            row = c.execute(select(_JOBS).where(_JOBS.c.id == job_id)).first()
            if row is None:
                raise JobNotFound(f"no job {job_id!r}")
            return Job.of(row)

    def jobs(self, states: Iterable[JobState] | None = None, limit: int | None = None,
             **match: str | None) -> list[Job]:
        """Jobs, newest first, optionally only in the given states and only those whose
        ``user``, ``team``, ``project`` or ``name`` is the one given (filtered and limited in
        the database: a listing of the newest few reads only those rows)."""
        q = _matching(select(JobRow), states, match).order_by(JobRow.created_at.desc())
        if limit is not None:
            q = q.limit(limit)
        with self._read() as s:
            return [Job.of(r) for r in s.scalars(q)]

    def count_jobs(self, states: Iterable[JobState] | None = None, **match: str | None) -> int:
        """How many jobs :meth:`jobs` would list without a limit (one query)."""
        q = _matching(select(func.count()).select_from(JobRow), states, match)
        with self._read() as s:
            return int(s.scalar(q) or 0)

    def owners(self, job_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
        """Per job, the team and project it is charged to (one query)."""
        ids = list(set(job_ids))
        if not ids:
            return {}
        q = select(JobRow.id, JobRow.team, JobRow.project).where(JobRow.id.in_(ids))
        with self._read() as s:
            return {jid: (team, project) for jid, team, project in s.execute(q)}

    def cancel_requested(self, job_ids: Iterable[str]) -> set[str]:
        """Those of ``job_ids`` whose cancellation was requested (one query)."""
        ids = list(job_ids)
        if not ids:
            return set()
        q = select(JobRow.id).where(JobRow.id.in_(ids), JobRow.cancel_requested.is_(True))
        with self._read() as s:
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
        result = s.connection().execute(  # Core, not ORM: a tick makes many of these
            update(_JOBS)
            .where(_JOBS.c.id == job_id, _JOBS.c.state == expected.value)
            .values(state=new.value, updated_at=now, **values)
        )
        if result.rowcount != 1:
            return False
        _add_event(s, now, job_id, None, "job", expected, new, reason, actor)
        return True

    # attempts -----------------------------------------------------------------------------

    def new_attempt(
        self, job_id: str, site: str, attempt_root: str, actor: str,
        offer: tuple[str, str] | None = None,
    ) -> Attempt | None:
        """Move a PENDING job to SCHEDULED and record its next attempt as SUBMITTING.

        Written before the native submission: the attempt id is the idempotency key a
        restarted reconciler re-submits with. ``offer`` is the chosen offer's key and the
        JSON of the price card it was placed at. None if the job was no longer PENDING.
        """
        [attempt] = self.new_attempts([(job_id, site, attempt_root, offer)], actor)
        return attempt

    def new_attempts(
        self, requests: Sequence[tuple[str, str, str, tuple[str, str] | None]], actor: str,
    ) -> list[Attempt | None]:
        """:meth:`new_attempt` for many (job id, site, attempt root, offer) in one
        transaction, each its own compare-and-set; None for a job no longer PENDING."""
        now = self._clock()
        with self._tx() as s:
            return [self._new_attempt(s, now, *request, actor) for request in requests]

    def _new_attempt(
        self, s: Session, now: float, job_id: str, site: str, attempt_root: str,
        offer: tuple[str, str] | None, actor: str,
    ) -> Attempt | None:
        row = s.connection().execute(
            select(_JOBS.c.state, _JOBS.c.attempts, _JOBS.c.cancel_requested)
            .where(_JOBS.c.id == job_id)).first()
        if row is None or row.state != JobState.PENDING.value or row.cancel_requested:
            return None
        number = row.attempts + 1
        reason = f"attempt {number} placed on {site}"
        if offer is not None and offer[0] != "default":
            reason += f" ({offer[0]})"
        if not self._cas_job(
            s, job_id, JobState.PENDING, JobState.SCHEDULED, reason, actor, attempts=number
        ):
            return None
        values: dict[str, Any] = {
            "id": f"{job_id}.{number}", "job_id": job_id, "number": number,
            "token": number, "site": site, "state": AttemptState.SUBMITTING.value,
            "native_id": None, "native_state": "", "created_at": now, "started_at": None,
            "ended_at": None, "exit_code": None, "reason": "", "last_step": None,
            "attempt_url": f"{attempt_root}/attempts/{number}", "submit_tries": 0,
            "offer_key": offer[0] if offer else None,
            "price_json": offer[1] if offer else None,
        }
        s.connection().execute(insert(_ATTEMPTS).values(**values))
        _add_event(s, now, job_id, values["id"], "attempt", "", AttemptState.SUBMITTING, "",
                   actor)
        return Attempt.of(AttemptRow(**values))

    def attempt(self, attempt_id: str) -> Attempt:
        with self._read() as s:
            row = s.get(AttemptRow, attempt_id)
            if row is None:
                raise LookupError(f"no attempt {attempt_id!r}")
            return Attempt.of(row)

    def attempts(self, job_id: str) -> list[Attempt]:
        q = select(_ATTEMPTS).where(_ATTEMPTS.c.job_id == job_id).order_by(_ATTEMPTS.c.number)
        with self._core_read() as c:
            return [Attempt.of(r) for r in c.execute(q)]

    def last_sites(self, job_ids: Iterable[str]) -> dict[str, str]:
        """Per job that has attempts, the site of its latest one (one query)."""
        ids = list(set(job_ids))
        if not ids:
            return {}
        q = (select(AttemptRow.job_id, AttemptRow.site)
             .where(AttemptRow.job_id.in_(ids)).order_by(AttemptRow.number))
        with self._read() as s:
            return {job_id: site for job_id, site in s.execute(q)}  # the latest wins

    def attempts_by_ids(self, attempt_ids: Sequence[str]) -> list[Attempt]:
        """Those of the given attempts that exist (one query)."""
        if not attempt_ids:
            return []
        q = select(AttemptRow).where(AttemptRow.id.in_(list(attempt_ids)))
        with self._read() as s:
            return [Attempt.of(r) for r in s.scalars(q)]

    def active_attempts(self) -> list[Attempt]:
        active = [a.value for a in AttemptState if a.active]
        q = select(_ATTEMPTS).where(_ATTEMPTS.c.state.in_(active)).order_by(_ATTEMPTS.c.id)
        with self._core_read() as c:
            return [Attempt.of(r) for r in c.execute(q)]

    def note_submit_try(self, attempt_id: str) -> int:
        """Count a call of ``submit`` for a SUBMITTING attempt before it is made; returns the
        count, or 0 if the attempt is no longer SUBMITTING."""
        with self._tx() as s:
            row = s.get(AttemptRow, attempt_id)
            if row is None or row.state != AttemptState.SUBMITTING.value:
                return 0
            row.submit_tries += 1
            return row.submit_tries

    def set_token(self, attempt_id: str, token: int) -> bool:
        """Give a SUBMITTING attempt a higher fencing token (its checkpoint prefix was fenced
        higher by another job's attempts); never lowers it."""
        with self._tx() as s:
            result = s.execute(
                update(AttemptRow)
                .where(AttemptRow.id == attempt_id, AttemptRow.token < token,
                       AttemptRow.state == AttemptState.SUBMITTING.value)
                .values(token=token)
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def set_native_id(self, attempt_id: str, native_id: str, actor: str) -> bool:
        """SUBMITTING -> SUBMITTED with the site's id for the attempt."""
        with self._tx() as s:
            return self._cas_attempt(
                s, attempt_id, AttemptState.SUBMITTING, AttemptState.SUBMITTED,
                f"native id {native_id}", actor, native_id=native_id,
            )

    def set_native_ids(self, items: Sequence[tuple[str, str]], actor: str) -> set[str]:
        """:meth:`set_native_id` for many (attempt id, native id) pairs in one transaction,
        each its own compare-and-set; returns the attempt ids that moved."""
        with self._tx() as s:
            return {
                attempt_id for attempt_id, native_id in items
                if self._cas_attempt(s, attempt_id, AttemptState.SUBMITTING,
                                     AttemptState.SUBMITTED, f"native id {native_id}", actor,
                                     native_id=native_id)
            }

    def mark_running(self, attempt: Attempt, native_state: str, actor: str) -> bool:
        """The site says it runs: attempt -> RUNNING and job SCHEDULED -> RUNNING."""
        check_attempt_transition(attempt.state, AttemptState.RUNNING)
        return bool(self.mark_running_many([(attempt, native_state)], actor))

    def mark_running_many(self, items: Sequence[tuple[Attempt, str]], actor: str) -> set[str]:
        """:meth:`mark_running` for many (attempt, native state) pairs in one transaction,
        each its own compare-and-set (an attempt that may not move to RUNNING is left as it
        is); returns the attempt ids that moved."""
        now = self._clock()
        moved = set()
        with self._tx() as s:
            for attempt, native_state in items:
                if AttemptState.RUNNING not in ATTEMPT_TRANSITIONS[attempt.state]:
                    continue
                if not self._cas_attempt(
                    s, attempt.id, attempt.state, AttemptState.RUNNING, "", actor,
                    native_state=native_state, started_at=now,
                ):
                    continue
                self._cas_job(s, attempt.job_id, JobState.SCHEDULED, JobState.RUNNING,
                              f"attempt {attempt.number} running on {attempt.site}", actor)
                moved.add(attempt.id)
        return moved

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
        result = s.connection().execute(
            update(_ATTEMPTS)
            .where(_ATTEMPTS.c.id == attempt_id, _ATTEMPTS.c.state == expected.value)
            .values(state=new.value, **({"reason": reason} if reason else {}), **values)
        )
        if result.rowcount != 1:
            return False
        job_id = attempt_id.rsplit(".", 1)[0]
        _add_event(s, self._clock(), job_id, attempt_id, "attempt", expected, new, reason, actor)
        return True

    # story, decisions, ledger -------------------------------------------------------------

    def events(self, job_id: str) -> list[Event]:
        q = select(EventRow).where(EventRow.job_id == job_id).order_by(EventRow.id)
        with self._read() as s:
            return [_event_of(r) for r in s.scalars(q)]

    def details(self, job_ids: Sequence[str]) -> dict[str, str]:
        """Per job, why it is where it is (one query): the reason of its last state change
        or, for a job waiting for placement, of its last ``waiting`` event."""
        if not job_ids:
            return {}
        q = (select(EventRow.job_id, EventRow.reason)
             .where(EventRow.job_id.in_(list(job_ids)),
                    EventRow.kind.in_(["job", "waiting"]))
             .order_by(EventRow.id))
        with self._read() as s:  # waiting events are written only while a job is PENDING
            return {job_id: reason for job_id, reason in s.execute(q)}

    def detail(self, job_id: str) -> str:
        return self.details([job_id]).get(job_id, "")

    def add_event(
        self, job_id: str, kind: str, reason: str, actor: str, attempt_id: str | None = None
    ) -> None:
        with self._tx() as s:
            s.add(_event(self._clock(), job_id, attempt_id, kind, "", "", reason, actor))

    def record_decisions(self, rows: Sequence[DecisionRow],
                         waiting: Sequence[tuple[str, str]] = (), actor: str = "") -> None:
        """Store placement decisions, and the ``waiting`` events (job id, why) they tell,
        in one transaction."""
        now = self._clock()
        with self._tx() as s:
            s.add_all(rows)
            for job_id, why in waiting:
                _add_event(s, now, job_id, None, "waiting", "", "", why, actor)

    def decisions(self, job_id: str) -> list[DecisionRow]:
        q = select(DecisionRow).where(DecisionRow.job_id == job_id).order_by(DecisionRow.id)
        with self._read() as s:
            return list(s.scalars(q))

    def decision_records(self, since: float, until: float) -> list[dict[str, Any]]:
        """Every stored candidate of the decisions made in ``[since, until)``, in id order,
        as plain mappings (what ``report placements`` reads)."""
        q = (select(DecisionRow).where(DecisionRow.at >= since, DecisionRow.at < until)
             .order_by(DecisionRow.id))
        cols = [c.key for c in DecisionRow.__table__.columns]
        with self._read() as s:
            return [{c: getattr(row, c) for c in cols} for row in s.scalars(q)]

    def job_names(self, job_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
        """Job id to (name, state) for the given ids that exist."""
        ids = list(dict.fromkeys(job_ids))
        out: dict[str, tuple[str, str]] = {}
        with self._read() as s:
            for i in range(0, len(ids), 500):
                q = select(JobRow.id, JobRow.name, JobRow.state).where(
                    JobRow.id.in_(ids[i:i + 500]))
                out.update({jid: (name, state) for jid, name, state in s.execute(q)})
        return out

    def ledger(self, job_id: str | None = None) -> list[LedgerRow]:
        q = select(LedgerRow).order_by(LedgerRow.start)
        if job_id is not None:
            q = q.where(LedgerRow.job_id == job_id)
        with self._read() as s:
            return list(s.scalars(q))

    def spent_since(self, since: float) -> dict[str, float]:
        """Ledger cost of attempts that ended at or after ``since``, by ``team:NAME`` and
        ``project:NAME`` (one query, summed in the database)."""
        out: dict[str, float] = {}
        with self._read() as s:
            for column, prefix in ((LedgerRow.team, "team"), (LedgerRow.project, "project")):
                q = (select(column, func.sum(LedgerRow.cost)).where(LedgerRow.end >= since)
                     .group_by(column))
                for name, total in s.execute(q):
                    out[f"{prefix}:{name}"] = float(total or 0.0)
        return out

    def ledger_records(self, job_id: str | None = None) -> list[dict[str, Any]]:
        """The ledger as plain mappings, column name to value (what the reports read)."""
        return [
            {c.key: getattr(row, c.key) for c in LedgerRow.__table__.columns}
            for row in self.ledger(job_id)
        ]

    # leases -------------------------------------------------------------------------------

    def acquire_lease(self, name: str, holder: str, ttl_s: float) -> Lease | None:
        """Take or renew the named lease; None while another live holder has it. Renewal keeps
        the generation; taking it over, or again after it lapsed or was released, raises it."""
        now = self._clock()
        try:
            with self._tx() as s:
                row = s.get(LeaseRow, name)
                if row is None:
                    row = LeaseRow(name=name, holder=holder, expires_at=now + ttl_s, generation=1)
                    s.add(row)
                elif row.holder == holder and row.expires_at >= now:
                    row.expires_at = now + ttl_s
                elif row.expires_at < now:
                    row.holder, row.expires_at = holder, now + ttl_s
                    row.generation += 1
                else:
                    return None
                return Lease(name, holder, row.generation, row.expires_at)
        except IntegrityError:
            return None

    def holds_lease(self, lease: Lease) -> bool:
        """True if ``lease`` is still held, unlapsed and of the same generation (a read:
        it never waits behind a writer)."""
        with self._core_read() as c:
            row = c.execute(select(_LEASES).where(_LEASES.c.name == lease.name)).first()
            return (
                row is not None
                and row.holder == lease.holder
                and row.generation == lease.generation
                and row.expires_at >= self._clock()
            )

    def lease_holder(self, name: str) -> tuple[str, float] | None:
        """The holder and expiry of the named lease; None if nobody took it or it was released."""
        with self._read() as s:
            row = s.get(LeaseRow, name)
            return None if row is None or row.expires_at <= 0 else (row.holder, row.expires_at)

    def release_lease(self, name: str, holder: str) -> None:
        with self._tx() as s:
            s.execute(
                update(LeaseRow)
                .where(LeaseRow.name == name, LeaseRow.holder == holder)
                .values(expires_at=0.0)
            )

    # site health --------------------------------------------------------------------------

    def set_site_health(
        self, site: str, healthy: bool, phase: str = "", error: str = "", actor: str = ""
    ) -> bool:
        """Record how a site's calls went; a change of state also writes a site event.
        Returns True when the state changed."""
        now = self._clock()
        with self._tx() as s:
            row = s.get(SiteHealthRow, site)
            first = row is None
            changed = row is None or row.healthy != healthy
            if row is None:
                row = SiteHealthRow(site=site, healthy=healthy, since=now)
                s.add(row)
            elif changed:
                row.healthy, row.since = healthy, now
            row.phase, row.error, row.checked_at = phase, error, now
            if changed and not (first and healthy):
                old, new = ("degraded", "healthy") if healthy else ("healthy", "degraded")
                why = f"{phase}: {error}" if not healthy else "calls succeed again"
                s.add(_event(now, "", None, "site-health", old, new, why, actor, site=site))
            return changed

    def add_site_event(
        self, site: str, kind: str, reason: str, actor: str, attempt_id: str | None = None
    ) -> None:
        """A site-level event (an orphan adopted or cancelled); filed under the attempt's job
        too when the id names one."""
        job_id = attempt_id.rsplit(".", 1)[0] if attempt_id else ""
        with self._tx() as s:
            s.add(_event(self._clock(), job_id, attempt_id, kind, "", "", reason, actor, site))

    def site_health(self) -> dict[str, SiteHealth]:
        with self._read() as s:
            return {
                r.site: SiteHealth(r.site, r.healthy, r.phase, r.error, r.since, r.checked_at)
                for r in s.scalars(select(SiteHealthRow))
            }

    def site_events(self, site: str) -> list[Event]:
        """Health changes and orphans seen on a site, oldest first."""
        q = select(EventRow).where(EventRow.site == site).order_by(EventRow.id)
        with self._read() as s:
            return [_event_of(r) for r in s.scalars(q)]


def _event(
    at: float,
    job_id: str,
    attempt_id: str | None,
    kind: str,
    old: str,
    new: str,
    reason: str,
    actor: str,
    site: str | None = None,
) -> EventRow:
    return EventRow(
        at=at, job_id=job_id, attempt_id=attempt_id, kind=kind, old=str(old), new=str(new),
        reason=reason, actor=actor, site=site,
    )


_MATCHABLE = {"user": JobRow.user, "team": JobRow.team, "project": JobRow.project,
              "name": JobRow.name}


def _matching(q: Any, states: Iterable[JobState] | None, match: dict[str, str | None]) -> Any:
    """``q`` restricted to jobs in ``states`` whose columns in ``match`` hold those values
    (None matches anything)."""
    unknown = set(match) - set(_MATCHABLE)
    if unknown:
        raise TypeError(f"cannot match jobs on {', '.join(sorted(unknown))}; "
                        f"only on {', '.join(_MATCHABLE)}")
    if states is not None:
        q = q.where(JobRow.state.in_([s.value for s in states]))
    for key, value in match.items():
        if value is not None:
            q = q.where(_MATCHABLE[key] == value)
    return q


_JOBS = cast(Table, JobRow.__table__)
_ATTEMPTS = cast(Table, AttemptRow.__table__)
_EVENTS = cast(Table, EventRow.__table__)
_LEASES = cast(Table, LeaseRow.__table__)


def _add_event(s: Session, at: float, job_id: str, attempt_id: str | None, kind: str,
               old: str, new: str, reason: str, actor: str) -> None:
    """Insert an event row at once, in the session's transaction (Core: no unit of work)."""
    s.connection().execute(insert(_EVENTS).values(
        at=at, job_id=job_id, attempt_id=attempt_id, kind=kind, old=str(old), new=str(new),
        reason=reason, actor=actor, site=None))


def _event_of(r: EventRow) -> Event:
    return Event(r.at, r.job_id, r.attempt_id, r.kind, r.old, r.new, r.reason, r.actor, r.site)


def _create_missing_tables(engine: Engine, read: Engine) -> None:
    """Create the tables, if any is missing, through the write engine: on SQLite its
    transactions begin IMMEDIATE, so two processes opening a new store at once take turns
    (through the read engine, the second's deferred transaction failed at once with "database
    is locked" when it tried to write). A store with every table is only read."""
    if set(Base.metadata.tables) <= set(inspect(read).get_table_names()):
        return
    Base.metadata.create_all(engine)


def _add_missing_indexes(engine: Engine, read: Engine) -> None:
    """Create the indexes a newer gridbridge defines on tables an older one made (looked at
    through ``read``: the write lock is taken only when one is missing)."""
    existing = inspect(read)
    tables = set(existing.get_table_names())
    for table in Base.metadata.sorted_tables:
        if table.name not in tables:
            continue
        have = {i["name"] for i in existing.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in have:
                index.create(engine, checkfirst=True)


def _is_file(url: str) -> bool:
    rest = url.split("://", 1)[-1]
    return rest not in {"", "/", "/:memory:"} and "mode=memory" not in url


@contextmanager
def _unavailable_as_error(url: str) -> Iterator[None]:
    try:
        yield
    except OperationalError as exc:
        text = str(exc.orig)
        if "locked" in text or "unable to open" in text or "busy" in text:
            raise StoreUnavailable(f"state store {url}: {text}") from exc
        raise
