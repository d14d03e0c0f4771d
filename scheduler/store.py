"""The state store: jobs, attempts, events, placement decisions and the cost ledger.

Every state change is a compare-and-set (``UPDATE ... WHERE state = expected``, then check the
row count) checked against the transition tables of :mod:`gridbridge.states`, and writes an
event row in the same transaction. SQLite runs in WAL mode so a CLI and ``gridbridge serve``
can share one file; reads never wait behind a writer, and a write that cannot get the lock
raises :class:`StoreUnavailable` (see :mod:`._db`). Any SQLAlchemy URL works.

Leases carry a generation that grows whenever the lease changes hands or lapses, so the
reconciler can check, just before it acts on a site, that it still holds the very lease it
started its tick under.

:class:`StateStore` is one class built of parts, one module each::

    StateStore ── this module   jobs and attempts: their lifecycle, each move a compare-and-set
     ├─ ._ledger.Ledger         the story (events), decisions, the cost ledger, site health
     ├─ ._leases.Leases         named leases with their generation
     ├─ ._access.Access         API tokens (their hashes) and the audit of the service
     └─ ._db.Sessions           engines, transactions and reads; schema upgrades on open
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, cast

from sqlalchemy import Table, func, insert, or_, select, update
from sqlalchemy.orm import Session

from gridbridge.spec import JobSpec
from gridbridge.states import (
    ATTEMPT_TRANSITIONS,
    AttemptState,
    JobState,
    check_attempt_transition,
    check_job_transition,
)

from . import records
from ._access import Access
from ._db import StoreUnavailable
from ._leases import Leases
from ._ledger import Ledger, event_row, insert_event
from .records import CANCELLED_BY_USER
from .records import Attempt as Attempt
from .records import AttemptEnding as AttemptEnding
from .records import Event as Event
from .records import Job as Job
from .records import JobNotFound as JobNotFound
from .records import Lease as Lease
from .records import SiteHealth as SiteHealth
from .records import new_job_id as new_job_id
from .tables import AttemptRow, JobRow

__all__ = ["StateStore", "StoreUnavailable"]
__all__ += records.__all__  # the records, re-exported above: read here beside their store


class StateStore(Ledger, Leases, Access):
    """Durable state behind the reconciler, the client and the reports."""

    # jobs ---------------------------------------------------------------------------------

    def create_job(self, spec: JobSpec, checkpoint_url: str, job_id: str | None = None) -> Job:
        """Record a new PENDING job."""
        return self.create_jobs([(spec, checkpoint_url, job_id or new_job_id())])[0]

    def create_jobs(self, items: Sequence[tuple[JobSpec, str, str]]) -> list[Job]:
        """Record many new PENDING jobs (spec, checkpoint URL, id), with their "submitted"
        events, in one transaction: all of them or none (what ``map()`` submits)."""
        now = self._clock()
        rows = [JobRow(id=jid, name=spec.name, spec_json=spec.model_dump_json(),
                       state=JobState.PENDING.value, priority=spec.priority,
                       user=spec.owner.user, team=spec.owner.team, project=spec.owner.project,
                       created_at=now, updated_at=now, attempts=0, cancel_requested=False,
                       checkpoint_url=url)
                for spec, url, jid in items]
        with self._tx() as s:
            s.add_all(rows)
            s.flush()  # the jobs before their events (the events name them)
            s.add_all([event_row(now, row.id, None, "job", "", JobState.PENDING, "submitted",
                                 row.user) for row in rows])
        return [Job.of(row) for row in rows]

    def job(self, job_id: str) -> Job:
        with self._core_read() as c:
            row = c.execute(select(_JOBS).where(_JOBS.c.id == job_id)).first()
            if row is None:
                raise JobNotFound(f"no job {job_id!r}")
            return Job.of(row)

    def jobs(self, states: Iterable[JobState] | None = None, limit: int | None = None,
             *, offset: int = 0, site: str | None = None, **match: str | None) -> list[Job]:
        """Jobs, newest first, optionally only in the given states and only those whose
        ``user``, ``team``, ``project`` or ``name`` is the one given (filtered and limited in
        the database: a listing of the newest few reads only those rows); ``site``: only jobs
        with an attempt there; ``offset``: past the newest ``offset`` (a page)."""
        q = (_matching(select(_JOBS), states, match)  # ties (one map()) in a stable order
             .order_by(_JOBS.c.created_at.desc(), _JOBS.c.id.desc()))
        if site is not None:
            q = q.where(_JOBS.c.id.in_(select(AttemptRow.job_id)
                                       .where(AttemptRow.site == site)))
        if offset:
            q = q.offset(offset)
        if limit is not None:
            q = q.limit(limit)
        with self._core_read() as c:  # plain rows: each tick reads every pending job
            return [Job.of(r) for r in c.execute(q)]

    def count_jobs(self, states: Iterable[JobState] | None = None, **match: str | None) -> int:
        """How many jobs :meth:`jobs` would list without a limit (one query)."""
        q = _matching(select(func.count()).select_from(_JOBS), states, match)
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

    def cancel_requested(self, job_ids: Iterable[str]) -> set[str]:
        """Those of ``job_ids`` whose cancellation was requested (one query)."""
        ids = list(job_ids)
        if not ids:
            return set()
        q = select(JobRow.id).where(JobRow.id.in_(ids), JobRow.cancel_requested.is_(True))
        with self._read() as s:
            return set(s.scalars(q))

    def request_cancel(self, job_id: str, actor: str = "user", reason: str | None = None) -> Job:
        """Mark a job for cancellation; a PENDING job is cancelled at once. ``reason``: why,
        the job's reason once it ends (default "cancelled by user"; a Dask cluster that scales
        down says so)."""
        now = self._clock()
        why = (reason or "").strip()[:200] or CANCELLED_BY_USER
        with self._tx() as s:
            row = s.get(JobRow, job_id)
            if row is None:
                raise JobNotFound(f"no job {job_id!r}")
            if JobState(row.state).terminal:
                return Job.of(row)
            row.cancel_requested = True
            row.cancel_reason = why if why != CANCELLED_BY_USER else None
            row.updated_at = now
            s.add(event_row(now, job_id, None, "cancel-requested", row.state, row.state,
                            why, actor))
        self.transition_job(job_id, JobState.PENDING, JobState.CANCELLED, why, actor)
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
        insert_event(s, now, job_id, None, "job", expected, new, reason, actor)
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
        insert_event(s, now, job_id, values["id"], "attempt", "", AttemptState.SUBMITTING, "",
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

    def mark_seen(self, attempt_ids: Sequence[str], when: float) -> None:
        """Record that polls saw these running attempts at ``when`` (a later time only: a
        slower writer never moves it back). Many ids, a few statements."""
        ids = list(attempt_ids)
        with self._tx() as s:
            for i in range(0, len(ids), 500):
                s.execute(update(AttemptRow)
                          .where(AttemptRow.id.in_(ids[i:i + 500]))
                          .where(or_(AttemptRow.seen_at.is_(None), AttemptRow.seen_at < when))
                          .values(seen_at=when))

    def conclude(self, attempt: Attempt, ending: AttemptEnding, actor: str) -> bool:
        """End an attempt, move its job on and write its ledger row, in one transaction."""
        now = self._clock()
        with self._tx() as s:
            if not self._cas_attempt(
                s, attempt.id, attempt.state, ending.state, ending.reason, actor,
                native_state=ending.native_state, ended_at=now, exit_code=ending.exit_code,
                last_step=ending.last_step, return_digest=ending.return_digest,
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
        insert_event(s, self._clock(), job_id, attempt_id, "attempt", expected, new, reason, actor)
        return True


_JOB_COLUMNS = cast(Table, JobRow.__table__).c
_MATCHABLE = {key: _JOB_COLUMNS[key] for key in ("user", "team", "project", "name")}
"""Plain table columns: a filter on an ORM attribute would make a listing load ORM objects."""


def _matching(q: Any, states: Iterable[JobState] | None, match: dict[str, str | None]) -> Any:
    """``q`` restricted to jobs in ``states`` whose columns in ``match`` hold those values
    (None matches anything; a value with ``*`` or ``?`` is a glob)."""
    unknown = set(match) - set(_MATCHABLE)
    if unknown:
        raise TypeError(f"cannot match jobs on {', '.join(sorted(unknown))}; "
                        f"only on {', '.join(_MATCHABLE)}")
    if states is not None:
        q = q.where(_JOB_COLUMNS.state.in_([s.value for s in states]))
    for key, value in match.items():
        if value is None:
            continue
        if _GLOB.search(value):  # dask-*: a glob, as a shell user would write it
            q = q.where(_MATCHABLE[key].like(_like(value), escape="\\"))
        else:
            q = q.where(_MATCHABLE[key] == value)
    return q


_GLOB = re.compile(r"[*?]")


def _like(glob: str) -> str:
    """A glob (``*`` any run, ``?`` one character) as a SQL LIKE pattern, LIKE's own
    wildcards and its escape character taken literally."""
    text = glob.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return text.replace("*", "%").replace("?", "_")


_JOBS = cast(Table, JobRow.__table__)
_ATTEMPTS = cast(Table, AttemptRow.__table__)
