"""Site health: how each site's calls went this tick, written to the store when it changes.

Invariant: a site is degraded on any failed call of a tick and healthy again after a tick in
which its calls were answered; only a change is written (and logged), so a healthy fleet costs
no write per tick.
"""

from __future__ import annotations

import logging

from ..store import StoreUnavailable
from ._tick import World

__all__ = ["Health"]

log = logging.getLogger("gridbridge.reconciler")


class Health:
    """Runs after every tick, whatever happened in it; owns the health last written."""

    def __init__(self, world: World) -> None:
        self.world = world
        self._written: dict[str, tuple[bool, str]] = {}
        """Per site, (healthy, why not) as last written."""

    def record(self) -> None:
        """Write a site's health when it changes: degraded on any failure this tick, healthy
        again after a tick in which its calls were answered."""
        w = self.world
        for site, outcome in w.calls.outcomes.items():
            if outcome.ok and not outcome.called:
                continue
            key = (outcome.ok, "" if outcome.ok else f"{outcome.phase}: {outcome.error}")
            if self._written.get(site) == key:
                continue
            if not outcome.ok:
                log.warning("site %s degraded: %s", site, key[1],
                            extra={"event": "health", "site": site, "healthy": False})
            elif site in self._written:
                log.info("site %s healthy again", site,
                         extra={"event": "health", "site": site, "healthy": True})
            try:
                w.store.set_site_health(site, outcome.ok, outcome.phase, outcome.error, w.holder)
            except StoreUnavailable:
                return
            self._written[site] = key
