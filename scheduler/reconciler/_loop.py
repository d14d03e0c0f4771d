"""The reconciler: the loop that ticks, and the tick that runs the phases in order.

Invariant: nothing ends :meth:`Reconciler.run` but its ``stop`` event (a store that is locked
is retried with backoff, any other error is logged and the next tick tried), and a tick runs
its phases only while it holds the lease, renewing it between phases.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

from gridbridge.adapter import Adapter, WakingAdapter
from gridbridge.config import GridConfig
from gridbridge.states import AttemptState

from ..records import Lease
from ..sitecalls import SiteCalls
from ..store import StateStore, StoreUnavailable
from ._cancelling import Cancelling
from ._ending import Ending
from ._health import Health
from ._lease import LeaseKeeper, LeaseLost
from ._migrating import Migrating
from ._placing import Placing
from ._polling import Polling
from ._submitting import Submitting
from ._sweeping import Sweeping
from ._tick import TickReport, World
from ._timings import observe_tick, timed

__all__ = ["Reconciler"]

log = logging.getLogger("gridbridge.reconciler")
_MAX_BACKOFF_S = 30.0


class Reconciler:
    """Drives jobs through their attempts against a set of adapters.

    It owns the loop and composes the phases; each phase owns its own state (``keeper``,
    ``submitting``, ``cancelling``, ``polling``, ``ending``, ``migrating``, ``sweeping``,
    ``placing``, ``health``), and they share only :class:`World`.
    """

    def __init__(
        self,
        config: GridConfig,
        store: StateStore,
        adapters: Mapping[str, Adapter],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = store
        self.adapters = dict(adapters)
        self.clock = clock
        limits = config.limits
        self.keeper = LeaseKeeper(store, limits.lease_s, self._now)
        self.holder = self.keeper.holder
        self.calls = SiteCalls(list(self.adapters), limits.site_deadline_s,
                               fatal=(LeaseLost,), keepalive=self.keeper.renew,
                               keepalive_s=min(1.0, limits.lease_s / 4))
        world = World(config, store, self.adapters, self.calls, self.keeper, self._now)
        self.ending = Ending(world)
        self.cancelling = Cancelling(world)
        self.sweeping = Sweeping(world, self.cancelling)
        self.submitting = Submitting(world, self.ending, self.sweeping)
        self.polling = Polling(world, self.ending)
        self.migrating = Migrating(world, self.ending, self.cancelling)
        self.placing = Placing(world, self.ending, self.cancelling, self.submitting,
                               self.migrating)
        self.health = Health(world)
        self._wake = threading.Event()
        self._ticked = threading.Condition()
        self._ticks = 0
        """Ticks run so far; :meth:`wait_tick` waits for the count to move."""
        for adapter in self.adapters.values():
            if isinstance(adapter, WakingAdapter):
                adapter.set_wakeup(self.wake)

    def _now(self) -> float:
        """The phases read the time through here: a clock swapped on the reconciler (as tests
        do) reaches all of them."""
        return self.clock()

    @property
    def lease(self) -> Lease | None:
        """The lease this reconciler holds, if any."""
        return self.keeper.lease

    def tick(self) -> TickReport:
        """One pass over every phase, if this reconciler can take or renew the lease."""
        report = TickReport()
        if not self.acquire():
            return report
        self.calls.begin_tick()
        budget = [self.config.limits.max_submissions_per_tick]
        renew = self.keeper.renew
        started = time.perf_counter()
        try:
            with timed("submitting"):
                submitting = [a for a in self.store.active_attempts()
                              if a.state is AttemptState.SUBMITTING]
                self.submitting.run(submitting, report, budget)
            renew()
            active = self.store.active_attempts()
            with timed("cancelling"):
                self.cancelling.run(active)
            renew()
            with timed("polling"):
                self.polling.run(active, report)  # decisions are made on this tick's poll only
            renew()
            with timed("migrating"):
                offers = self.migrating.run(report, self.placing.offers)  # fetched if needed
            renew()
            with timed("sweeping"):
                self.sweeping.run(report)
            renew()
            with timed("placing"):
                self.placing.run(report, budget, self.polling.take_requeued(), offers)
        finally:
            self.health.record()
            observe_tick(time.perf_counter() - started)
        return report

    def acquire(self) -> bool:
        """Take or renew the lease; take over at once from a dead holder on this host."""
        return self.keeper.acquire()

    def sweep_now(self) -> None:
        """Make the next tick sweep every site for orphans."""
        self.sweeping.soon()

    # the loop -----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Tick until ``stop`` is set, while holding the lease; release it on the way out.

        Nothing ends this loop but ``stop``: a store that is locked or unreachable is retried
        with backoff, and any other error is logged and the next tick tried."""
        interval = self.config.limits.tick_interval_s
        wait = interval
        try:
            while not stop.is_set():
                try:
                    self.tick()
                    wait = interval
                except LeaseLost as exc:
                    log.warning("%s; standing by", exc)
                    wait = interval
                except StoreUnavailable as exc:
                    wait = min(max(wait * 2, interval), _MAX_BACKOFF_S)
                    log.warning("state store unavailable, retrying in %.1fs: %s", wait, exc)
                except Exception:
                    log.exception("reconciler tick failed; the reconciler carries on")
                    wait = interval
                with self._ticked:
                    self._ticks += 1
                    self._ticked.notify_all()
                self._pause(stop, wait)
        finally:
            self.keeper.release()
            log.info("%s stopped; lease released", self.holder,
                     extra={"event": "shutdown", "holder": self.holder})

    def wake(self) -> None:
        """Tick now rather than at the end of the interval (a job was submitted, an attempt
        ended)."""
        self._wake.set()

    def wait_tick(self, timeout: float) -> bool:
        """Block until a tick of :meth:`run` ends, or ``timeout`` seconds pass; True if one
        ended. Lets a caller in the same process see a job's new state as soon as it is
        written instead of on its own polling schedule."""
        with self._ticked:
            seen = self._ticks
            return self._ticked.wait_for(lambda: self._ticks != seen, timeout)

    def _pause(self, stop: threading.Event, wait: float) -> None:
        """Wait ``wait`` seconds, less if woken or stopped."""
        deadline = time.monotonic() + wait
        while not stop.is_set() and not self._wake.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._wake.wait(min(left, 0.05))  # a stop request is seen within 50 ms
        self._wake.clear()

    def close(self) -> None:
        """Stop the site workers (a call that hangs is abandoned)."""
        self.calls.close()
