"""The reconciler's lease is never taken early on hearsay: not because a hostname matched, and
not because the standby's own clock runs ahead. Each case runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator

import pytest

from gridbridge.procinfo import boot_id, proc_start_time
from gridbridge.scheduler.reconciler._lease import LEASE, LeaseKeeper, holder_id
from gridbridge.scheduler.store import StateStore


@pytest.fixture
def store(state_url: str) -> Iterator[StateStore]:
    s = StateStore(state_url)
    yield s
    s.close()


def _gone_pid(start: int = 31337) -> int:
    """A pid with no process behind it (31337 unless that one happens to run)."""
    pid = start
    while proc_start_time(pid) is not None:
        pid += 1
    return pid


def _held_by(store: StateStore, holder: str, ttl_s: float = 600) -> None:
    assert store.acquire_lease(LEASE, holder, ttl_s) is not None


def test_a_live_lease_of_a_same_named_host_is_not_taken(store: StateStore) -> None:
    """``<this hostname>:31337:...`` with 600 s left: the pid means nothing on another machine
    of the same name, so the lease stays where it is until it lapses."""
    holder = f"{socket.gethostname()}:{_gone_pid()}:0badc0de"
    _held_by(store, holder)
    keeper = LeaseKeeper(store, 5.0, time.time)
    assert not keeper.acquire()
    got = store.lease_holder(LEASE)
    assert got is not None and got[0] == holder


def test_a_dead_pid_on_another_boot_is_not_taken(store: StateStore) -> None:
    """A full holder id whose pid is gone here, but from another machine (or this one before
    a reboot): its boot id differs, so nothing is known about its process."""
    holder = f"{socket.gethostname()}:{_gone_pid()}:12345:{'f' * 32}:0badc0de"
    assert boot_id() and boot_id() != "f" * 32
    _held_by(store, holder)
    assert not LeaseKeeper(store, 5.0, time.time).acquire()
    assert store.lease_holder(LEASE)[0] == holder  # type: ignore[index]


def test_a_live_holder_on_this_boot_keeps_its_lease(store: StateStore) -> None:
    """This very process (same boot, same pid, same start time) is alive: not taken."""
    mine = holder_id()
    _held_by(store, mine)
    assert not LeaseKeeper(store, 5.0, time.time).acquire()
    assert store.lease_holder(LEASE)[0] == mine  # type: ignore[index]


@pytest.mark.parametrize("why", ["pid gone", "pid reused"])
def test_a_dead_holder_on_this_boot_is_taken_at_once(store: StateStore, why: str) -> None:
    """This boot, and the pid is gone, or runs a process that started at another time."""
    pid = _gone_pid() if why == "pid gone" else os.getpid()
    holder = f"{socket.gethostname()}:{pid}:1:{boot_id()}:0badc0de"
    _held_by(store, holder)
    keeper = LeaseKeeper(store, 5.0, time.time)
    assert keeper.acquire()
    assert store.lease_holder(LEASE)[0] == keeper.holder  # type: ignore[index]
    assert keeper.held()


def test_a_standby_with_a_clock_ahead_does_not_take_a_fresh_lease(state_url: str) -> None:
    """The active one renews (10 s lease); at once a standby whose clock runs 15 s ahead asks.
    Expiry is the database's clock (PostgreSQL: the server's; SQLite: the host's, the store's
    own clock, which both processes on one file share), so the skewed clock decides nothing."""
    def ahead() -> float:
        return time.time() + 15

    active_store = StateStore(state_url)
    on_server = active_store.engine.dialect.name == "postgresql"
    # On PostgreSQL the standby's store runs on the skewed clock too (another host); on SQLite
    # a store's clock is the database's, one per host, so only the standby's keeper is skewed.
    standby_store = StateStore(state_url, clock=ahead if on_server else time.time)
    try:
        active = LeaseKeeper(active_store, 10.0, time.time)
        assert active.acquire()
        standby = LeaseKeeper(standby_store, 10.0, ahead)
        assert not standby.acquire()
        assert standby_store.acquire_lease(LEASE, standby.holder, 10.0) is None
        assert active.held()
        active.renew()
        assert active_store.lease_holder(LEASE)[0] == active.holder  # type: ignore[index]
    finally:
        active_store.close()
        standby_store.close()
