"""Calls to sites, one worker thread per site, each phase under one deadline.

A tick fans one call out to every site of a phase and waits at most ``deadline_s`` for all of
them together::

    phase ──┬─ site a worker: call(a) ── ok ──────────> result
            ├─ site b worker: call(b) ── raises ─────> b degraded (phase, error)
            └─ site c worker: call(c) ── still busy ─> c degraded ("timed out"); skipped by
                                                       later phases until that call returns

A site whose call never returns holds only its own worker; every other site goes on. Nothing a
site does (hang, raise, return garbage) reaches the caller as an exception: it becomes the
site's health, which the reconciler records.
"""

from __future__ import annotations

import concurrent.futures as cf
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["Outcome", "SiteCalls", "describe"]

_T = TypeVar("_T")


def describe(exc: BaseException) -> str:
    """``Type: message``, even for an exception whose ``str`` itself raises."""
    try:
        text = str(exc)
    except Exception:
        text = "<unprintable>"
    return f"{type(exc).__name__}: {text}"


@dataclass
class Outcome:
    """How one site's calls went during the current tick."""

    ok: bool = True
    phase: str = ""
    error: str = ""
    called: bool = False
    """A call to the site was answered this tick (so "ok" was observed, not assumed)."""


class _Worker:
    """One daemon thread running calls in order (a hung call never blocks interpreter exit,
    as a ThreadPoolExecutor's non-daemon threads would)."""

    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue[tuple[cf.Future[Any], Callable[[], Any]] | None] = (
            queue.SimpleQueue()
        )
        threading.Thread(target=self._loop, name=name, daemon=True).start()

    def submit(self, fn: Callable[[], _T]) -> cf.Future[_T]:
        future: cf.Future[_T] = cf.Future()
        self._queue.put((future, fn))
        return future

    def _loop(self) -> None:
        while (item := self._queue.get()) is not None:
            future, fn = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # delivered to the caller through the future
                future.set_exception(exc)

    def close(self) -> None:
        self._queue.put(None)


@dataclass
class _Busy:
    future: cf.Future[Any]
    phase: str
    since: float


@dataclass
class SiteCalls:
    """Per-site workers with a deadline per phase, and what went wrong this tick."""

    sites: list[str]
    deadline_s: float
    fatal: tuple[type[BaseException], ...] = ()
    """Exceptions that are not the site's fault (a lost lease): re-raised to the caller."""
    keepalive: Callable[[], None] | None = None
    """Called every ``keepalive_s`` while a phase waits for slow sites (renews the lease); what
    it raises ends the wait and reaches the caller."""
    keepalive_s: float = 1.0
    clock: Callable[[], float] = time.monotonic
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    _workers: dict[str, _Worker] = field(default_factory=dict)
    _busy: dict[str, _Busy] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for site in self.sites:
            self._workers[site] = _Worker(f"gridbridge-site-{site}")
        self.begin_tick()

    def begin_tick(self) -> None:
        self.outcomes = {s: Outcome() for s in self.sites}

    def busy(self, site: str) -> bool:
        """True while a call from an earlier phase or tick is still running on ``site``."""
        busy = self._busy.get(site)
        if busy is not None and busy.future.done():
            del self._busy[site]
            return False
        return busy is not None

    def run(self, phase: str, calls: Mapping[str, Callable[[], _T]]) -> dict[str, _T]:
        """Run one call per site concurrently; return the results of the calls that finished
        in time without raising. Busy sites are skipped; failures are recorded per site."""
        futures: dict[str, cf.Future[_T]] = {}
        for site, call in calls.items():
            if self.busy(site):
                busy = self._busy[site]
                waited = self.clock() - busy.since
                self.fail(site, phase, f"still busy with a {busy.phase} call ({waited:.0f}s)")
                continue
            futures[site] = self._workers[site].submit(call)
        started = self.clock()
        while futures:
            left = self.deadline_s - (self.clock() - started)
            step = self.keepalive_s
            _, pending = cf.wait(futures.values(), timeout=max(0.0, min(left, step)))
            if not pending or left <= step:
                break
            if self.keepalive is not None:
                try:
                    self.keepalive()  # e.g. renew a lease while a slow site is waited for
                except BaseException:
                    self._mark_busy(futures, phase)
                    raise
        results: dict[str, _T] = {}
        fatal: BaseException | None = None
        for site, future in futures.items():
            if not future.done():
                self._busy[site] = _Busy(future, phase, self.clock() - self.deadline_s)
                self.fail(site, phase, f"no answer within {self.deadline_s:g}s")
                continue
            exc = future.exception()
            if isinstance(exc, self.fatal):
                fatal = fatal or exc
            elif exc is not None:
                self.fail(site, phase, describe(exc))
            else:
                results[site] = future.result()
                self.outcomes[site].called = True
        if fatal is not None:
            raise fatal
        return results

    def _mark_busy(self, futures: Mapping[str, cf.Future[Any]], phase: str) -> None:
        for site, future in futures.items():
            if not future.done():
                self._busy[site] = _Busy(future, phase, self.clock())

    def fail(self, site: str, phase: str, error: str) -> None:
        """Record that ``site`` failed in ``phase`` this tick (the last failure is kept)."""
        self.outcomes[site] = Outcome(ok=False, phase=phase, error=error[:500], called=True)

    def close(self) -> None:
        """Stop the workers after their current call, without waiting for one that hangs."""
        for worker in self._workers.values():
            worker.close()
