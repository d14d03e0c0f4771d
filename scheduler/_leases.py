"""Leases in the state store: one named holder at a time, with a generation that only grows.

Invariant: the generation grows whenever the lease changes hands or lapses (a released lease
keeps its row, expired), so a holder can check, just before it acts, that it still holds the
very lease it started under; renewal by the same live holder keeps the generation.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table, select, update
from sqlalchemy.exc import IntegrityError

from ._db import Sessions
from .records import Lease
from .tables import LeaseRow

__all__ = ["Leases"]

_LEASES = cast(Table, LeaseRow.__table__)


class Leases(Sessions):
    """The store's leases (a part of ``StateStore``)."""

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
