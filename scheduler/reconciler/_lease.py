"""The reconciler's lease: only its holder ticks, and it acts on a site only while it holds it.

Invariant: every native submit and cancel is preceded, immediately, by a check that this
reconciler still holds the very lease it started its tick under (same holder, same generation,
unlapsed); a reconciler that slept through its lease finds it changed and does nothing.

    acquire   start of a tick: take or renew (or take over from a dead holder on this host)
    renew     between phases, and as the site workers' keepalive: LeaseLost if it moved
    held      just before a native act (a read: never waits behind a writer)
    release   on the way out of the loop; a locked store lets it lapse instead

Expiry is the store's business and is measured on the database's clock (see
``gridbridge.scheduler._leases``); the ``clock`` given here only paces renewals.

The holder id names the process beyond doubt on its own machine:

    <hostname>:<pid>:<process start time>:<boot id>:<random>

so an unexpired lease is taken over early only when its holder is provably dead: the boot id
is this machine's current boot (``/proc/sys/kernel/random/boot_id``: another host, or this
host before a reboot, never matches) AND its pid is gone or now runs a process that started
at another time (a reused pid). A hostname that matches proves nothing (two machines, or two
containers, may share one), so an id without a boot id is never taken before it lapses.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable

from gridbridge.procinfo import boot_id, proc_start_time

from ..records import Lease
from ..store import StateStore

__all__ = ["LEASE", "LeaseKeeper", "LeaseLost"]

log = logging.getLogger("gridbridge.reconciler")
LEASE = "reconciler"


class LeaseLost(RuntimeError):
    """This reconciler no longer holds the lease it started its tick under."""


class LeaseKeeper:
    """Holds the store's ``reconciler`` lease for one reconciler process."""

    def __init__(self, store: StateStore, lease_s: float, clock: Callable[[], float]) -> None:
        self.store = store
        self.lease_s = lease_s
        self.clock = clock
        self.holder = holder_id()
        self.lease: Lease | None = None
        self._renewed_at = float("-inf")
        """When (our clock) the lease was last written; a renewal sooner than a quarter of
        its time only checks that it is still held (a read, not a write transaction)."""

    def acquire(self) -> bool:
        """Take or renew the lease; take over at once from a dead holder on this host."""
        if self._fresh():
            return True
        had = self.lease is not None
        self.lease = self.store.acquire_lease(LEASE, self.holder, self.lease_s)
        if self.lease is not None:
            self._renewed_at = self.clock()
            if not had:
                log.info("%s holds the reconciler lease", self.holder,
                         extra={"event": "lease", "holder": self.holder})
            return True
        current = self.store.lease_holder(LEASE)
        if current is not None and _dead_local_holder(current[0]):
            log.warning("taking over the lease of %s, whose process is gone", current[0])
            self.store.release_lease(LEASE, current[0])
            self.lease = self.store.acquire_lease(LEASE, self.holder, self.lease_s)
            self._renewed_at = self.clock()
        return self.lease is not None

    def _fresh(self) -> bool:
        """We hold the lease, renewed less than a quarter of its time ago (checked by a read)."""
        if self.lease is None or self.clock() - self._renewed_at >= self.lease_s / 4:
            return False
        return self.store.holds_lease(self.lease)

    def renew(self) -> None:
        """Between phases: renew the lease, or stop the tick if it changed hands or lapsed.
        A lease renewed moments ago is only checked: a write per phase would cost more than
        the rest of a small tick."""
        held = self.lease
        if held is not None and self._fresh():
            return
        self.lease = self.store.acquire_lease(LEASE, self.holder, self.lease_s)
        if held is None or self.lease is None or self.lease.generation != held.generation:
            raise LeaseLost(f"{self.holder} lost the reconciler lease during a tick")
        self._renewed_at = self.clock()

    def held(self) -> bool:
        """Immediately before a native submit or cancel: are we still the lease holder?"""
        return self.lease is not None and self.store.holds_lease(self.lease)

    def fence(self) -> None:
        """:meth:`held`, or raise :class:`LeaseLost`."""
        if not self.held():
            raise LeaseLost(f"{self.holder} no longer holds the reconciler lease")

    def release(self) -> None:
        try:
            self.store.release_lease(LEASE, self.holder)
        except Exception as exc:  # a locked store: the lease simply lapses
            log.warning("could not release the lease (it will lapse): %s", exc)
        self.lease = None


def holder_id() -> str:
    """This process's holder id (see the module); the hostname is for people reading it."""
    pid = os.getpid()
    return (f"{socket.gethostname()[:32]}:{pid}:{proc_start_time(pid)}:{boot_id()}:"
            f"{uuid.uuid4().hex[:8]}")


def _dead_local_holder(holder: str) -> bool:
    """The holder ran on this boot of this machine and its process is gone (or its pid was
    reused by a process that started at another time). Anything else: False."""
    parts = holder.split(":")
    if len(parts) != 5:
        return False
    _host, pid_s, start, boot, _ = parts
    here = boot_id()
    if not here or boot != here or not pid_s.isdigit():
        return False
    return proc_start_time(int(pid_s)) != start
