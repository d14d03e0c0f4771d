"""What happened, appended and read: each job's story, placement decisions, the cost ledger and
each site's health.

Invariant: these rows are only ever added (a site's health row aside, which keeps its latest
state and tells each change as a site event, and a site's drain row, there while it is drained,
each drain and undrain told as a site event); state changes write their event in the
transaction that makes them, through :func:`insert_event`. A moved attempt's ledger row says so
in its ``outcome`` (``MOVED``), as its attempt's state does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, and_, case, delete, func, insert, or_, select
from sqlalchemy.orm import Session

from gridbridge.states import AttemptState

from ._db import Sessions
from .records import WAIT_BUCKETS_S, BookLine, Event, SiteHealth, Tallies, Waits
from .tables import (
    AttemptRow,
    DecisionRow,
    EventRow,
    JobRow,
    LedgerRow,
    SiteDrainRow,
    SiteHealthRow,
)

__all__ = ["Ledger", "event_row", "insert_event"]

_EVENTS = cast(Table, EventRow.__table__)


class Ledger(Sessions):
    """The store's story, decisions, ledger and site health (a part of ``StateStore``)."""

    # story --------------------------------------------------------------------------------

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
            s.add(event_row(self._clock(), job_id, attempt_id, kind, "", "", reason, actor))

    # decisions ----------------------------------------------------------------------------

    def record_decisions(self, rows: Sequence[DecisionRow],
                         waiting: Sequence[tuple[str, str]] = (), actor: str = "") -> None:
        """Store placement decisions, and the ``waiting`` events (job id, why) they tell,
        in one transaction."""
        now = self._clock()
        with self._tx() as s:
            s.add_all(rows)
            for job_id, why in waiting:
                insert_event(s, now, job_id, None, "waiting", "", "", why, actor)

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

    # ledger -------------------------------------------------------------------------------

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
                s.add(event_row(now, "", None, "site-health", old, new, why, actor, site=site))
            return changed

    def add_site_event(
        self, site: str, kind: str, reason: str, actor: str, attempt_id: str | None = None
    ) -> None:
        """A site-level event (an orphan adopted or cancelled); filed under the attempt's job
        too when the id names one."""
        job_id = attempt_id.rsplit(".", 1)[0] if attempt_id else ""
        with self._tx() as s:
            s.add(event_row(self._clock(), job_id, attempt_id, kind, "", "", reason, actor,
                            site))

    def tallies(self, since: float = 0.0) -> Tallies:
        """What ``/metrics`` counts, each summed in the database: three grouped queries
        (jobs by state, attempts, the ledger), whatever the number of jobs. ``since``: the
        ledger's cost from then on is summed too (a month's spend). The time to first run is
        :meth:`first_runs`, which a caller can keep for the jobs that have ended."""
        began, ran = _began_ran()
        with self._read() as s:
            jobs = {state: int(n) for state, n in s.execute(
                select(JobRow.state, func.count()).group_by(JobRow.state))}
            attempts: dict[tuple[str, str], int] = {}
            queue_rows: dict[str, list[Sequence[Any]]] = {}
            for site, state, n, *waits in s.execute(
                    select(AttemptRow.site, AttemptRow.state, func.count(),
                           *_histogram(began - AttemptRow.created_at, ran))
                    .group_by(AttemptRow.site, AttemptRow.state)):
                attempts[(site, state)] = int(n)
                queue_rows.setdefault(site, []).append(waits)
            books = [BookLine(team, site, float(cost or 0), float(od or 0), float(lost or 0),
                              float(hours or 0), float(recent or 0))
                     for team, site, cost, od, lost, hours, recent in s.execute(
                         select(LedgerRow.team, LedgerRow.site, func.sum(LedgerRow.cost),
                                func.sum(LedgerRow.on_demand_cost),
                                func.sum(LedgerRow.lost_cost), func.sum(LedgerRow.core_hours),
                                func.sum(case((LedgerRow.end >= since, LedgerRow.cost),
                                              else_=0.0)))
                         .group_by(LedgerRow.team, LedgerRow.site))]
        queue = {site: _summed([_waits(r) for r in rows]) for site, rows in queue_rows.items()}
        return Tallies(jobs, attempts, books,
                       {site: w for site, w in queue.items() if w.count})

    def first_runs(self, since: float | None = None, until: float | None = None) -> Waits:
        """From submission to the first attempt's start, for the jobs whose first attempt
        started in [``since``, ``until``) (one scan of attempts; only those rows are joined
        to their jobs). A job's entry never changes once its first attempt has started, so
        a caller can keep the sum of a past window and read only the rest."""
        began, ran = _began_ran()
        q = (select(*_histogram(began - JobRow.created_at)).select_from(AttemptRow)
             .join(JobRow, JobRow.id == AttemptRow.job_id)
             .where(AttemptRow.number == 1, ran))
        if since is not None:
            q = q.where(began >= since)
        if until is not None:
            q = q.where(began < until)
        with self._read() as s:
            return _waits(s.execute(q).one())

    def site_health(self) -> dict[str, SiteHealth]:
        with self._read() as s:
            return {
                r.site: SiteHealth(r.site, r.healthy, r.phase, r.error, r.since, r.checked_at)
                for r in s.scalars(select(SiteHealthRow))
            }

    def drain_site(self, site: str, drained: bool, actor: str, reason: str = "") -> bool:
        """Drain ``site`` (nothing new is placed there, its running jobs move off) or reopen
        it, with a site event; returns False when it already stood so."""
        now = self._clock()
        with self._tx() as s:
            row = s.get(SiteDrainRow, site)
            if (row is not None) == drained:
                return False
            if drained:
                s.add(SiteDrainRow(site=site, at=now, actor=actor))
            else:
                s.execute(delete(SiteDrainRow).where(SiteDrainRow.site == site))
            kind = "drained" if drained else "undrained"
            s.add(event_row(now, "", None, kind, "", "", reason or kind, actor, site=site))
            return True

    def drained_sites(self) -> dict[str, float]:
        """The drained sites, with when each was drained (one query)."""
        with self._read() as s:
            return {r.site: r.at for r in s.scalars(select(SiteDrainRow))}

    def site_events(self, site: str) -> list[Event]:
        """Health changes and orphans seen on a site, oldest first."""
        q = select(EventRow).where(EventRow.site == site).order_by(EventRow.id)
        with self._read() as s:
            return [_event_of(r) for r in s.scalars(q)]


def _histogram(seconds: ColumnElement[float],
               where: ColumnElement[bool] | None = None) -> list[ColumnElement[Any]]:
    """count, sum and a count per bucket bound of ``seconds`` (of the rows ``where`` holds
    for, when given), summed in the database."""
    if where is None:
        return [func.count(), func.sum(seconds),
                *(func.sum(case((seconds <= bound, 1), else_=0)) for bound in WAIT_BUCKETS_S)]
    return [func.sum(case((where, 1), else_=0)), func.sum(case((where, seconds), else_=0.0)),
            *(func.sum(case((and_(where, seconds <= bound), 1), else_=0))
              for bound in WAIT_BUCKETS_S)]


def _waits(row: Sequence[Any]) -> Waits:
    return Waits(int(row[0] or 0), float(row[1] or 0.0), tuple(int(n or 0) for n in row[2:]))


def _began_ran() -> tuple[ColumnElement[Any], ColumnElement[bool]]:
    """When an attempt started, and whether it ran: one that succeeded before a poll saw
    it run started by its end at most."""
    began = func.coalesce(AttemptRow.started_at, AttemptRow.ended_at)
    ran = or_(AttemptRow.started_at.is_not(None),
              AttemptRow.state == AttemptState.SUCCEEDED.value)
    return began, ran


def _summed(parts: Sequence[Waits]) -> Waits:
    total = Waits.none()
    for part in parts:
        total += part
    return total


def event_row(
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
    """An event row for the ORM session to add."""
    return EventRow(
        at=at, job_id=job_id, attempt_id=attempt_id, kind=kind, old=str(old), new=str(new),
        reason=reason, actor=actor, site=site,
    )


def insert_event(s: Session, at: float, job_id: str, attempt_id: str | None, kind: str,
                 old: str, new: str, reason: str, actor: str) -> None:
    """Insert an event row at once, in the session's transaction (Core: no unit of work)."""
    s.connection().execute(insert(_EVENTS).values(
        at=at, job_id=job_id, attempt_id=attempt_id, kind=kind, old=str(old), new=str(new),
        reason=reason, actor=actor, site=None))


def _event_of(r: EventRow) -> Event:
    return Event(r.at, r.job_id, r.attempt_id, r.kind, r.old, r.new, r.reason, r.actor, r.site)
