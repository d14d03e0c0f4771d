"""Leases in the state store: one named holder at a time, with a generation that only grows.

Invariant: the generation grows whenever the lease changes hands or lapses (a released lease
keeps its row, expired), so a holder can check, just before it acts, that it still holds the
very lease it started under; renewal by the same live holder keeps the generation.

Whose clock: expiry is written and compared on the DATABASE's clock, never on a caller's.

- PostgreSQL: ``clock_timestamp()`` read by the server inside the very transaction that
  takes, renews or checks the lease, so processes on hosts whose clocks disagree still agree
  on when a lease lapses (a standby 15 s ahead does not take a lease renewed a moment ago).
- SQLite: the file is on this host and every process using it runs here (SQLite's locking
  does not work across hosts), so the database's clock is the host's, read through the
  store's ``clock`` (``time.time``; tests pass a fake one to step time).

The ``clock`` a caller of the reconciler (or its lease keeper) holds is only used to pace its
own renewals, never to decide whether a lease has lapsed.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import Float, Table, literal_column, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ._db import Sessions
from .records import Lease
from .tables import LeaseRow

__all__ = ["Leases"]

_LEASES = cast(Table, LeaseRow.__table__)
_PG_NOW = literal_column("extract(epoch from clock_timestamp())::float8", Float)
"""The server's wall clock now (not the transaction's start, which ``now()`` would be)."""


class Leases(Sessions):
    """The store's leases (a part of ``StateStore``)."""

    def acquire_lease(self, name: str, holder: str, ttl_s: float) -> Lease | None:
        """Take or renew the named lease; None while another live holder has it. Renewal keeps
        the generation; taking it over, or again after it lapsed or was released, raises it.
        The row is locked for the decision (SQLite: BEGIN IMMEDIATE; PostgreSQL: FOR UPDATE)
        and "now" is the database's clock, read inside that transaction."""
        try:
            with self._tx() as s:
                row = s.get(LeaseRow, name, with_for_update=True)
                now = self._now_in(s)
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
        except IntegrityError:  # two first takers at once: the other one's row won
            return None

    def holds_lease(self, lease: Lease) -> bool:
        """True if ``lease`` is still held, unlapsed (on the database's clock) and of the same
        generation (a read: it never waits behind a writer)."""
        with self._core_read() as c:
            query = select(_LEASES).where(_LEASES.c.name == lease.name)
            if self._server_clock:
                query = query.add_columns(_PG_NOW.label("db_now"))
            row = c.execute(query).first()
            if row is None:
                return False
            now = float(row.db_now) if self._server_clock else self._clock()
            return bool(row.holder == lease.holder and row.generation == lease.generation
                        and row.expires_at >= now)

    def lease_holder(self, name: str) -> tuple[str, float] | None:
        """The holder and expiry of the named lease; None if nobody took it or it was released."""
        with self._read() as s:
            row = s.get(LeaseRow, name)
            return None if row is None or row.expires_at <= 0 else (row.holder, row.expires_at)

    def lease_clock(self) -> float:
        """Now on the clock leases are measured by (the database's; see the module)."""
        with self._read() as s:
            return self._now_in(s)

    def release_lease(self, name: str, holder: str) -> None:
        with self._tx() as s:
            s.execute(
                update(LeaseRow)
                .where(LeaseRow.name == name, LeaseRow.holder == holder)
                .values(expires_at=0.0)
            )

    @property
    def _server_clock(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def _now_in(self, s: Session) -> float:
        if self._server_clock:
            return float(s.execute(select(_PG_NOW)).scalar_one())
        return self._clock()
