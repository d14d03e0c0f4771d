"""The sweep: now and then, ask every site what it runs for us, and adopt or cancel orphans.

Invariant: a native job the store has no live attempt for is cancelled (fenced, like every
cancel), one the store lost track of is adopted (:func:`gridbridge.scheduler.sweep.
reconcile_owned` decides which); the sweep runs every ``limits.sweep_interval_s``, or on the
next tick after :meth:`Sweeping.soon`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import Any

from gridbridge.adapter import Adapter, OwnedJob

from ..sweep import reconcile_owned
from ._cancelling import Cancelling
from ._tick import TickReport, World

__all__ = ["Sweeping", "checked_owned"]

log = logging.getLogger("gridbridge.reconciler")


class Sweeping:
    """The sweep phase; owns when the next sweep is due."""

    def __init__(self, world: World, cancelling: Cancelling) -> None:
        self.world = world
        self.cancelling = cancelling
        self._next = 0.0

    def soon(self) -> None:
        """Make the next tick sweep every site for orphans."""
        self._next = 0.0

    def run(self, report: TickReport) -> None:
        w = self.world
        now = w.clock()
        if now < self._next:
            return
        self._next = now + w.config.limits.sweep_interval_s
        calls = {site: functools.partial(checked_owned, adapter)
                 for site, adapter in w.adapters.items()}
        orphans: dict[str, list[str]] = {}
        for site, owned in w.calls.run("owned", calls).items():
            result = reconcile_owned(w.store, site, owned, w.holder)
            if result.orphans:
                orphans[site] = result.orphans
                log.warning("cancelling orphans on %s: %s", site, ", ".join(result.orphans))
        self.cancelling.native(orphans)
        report.orphans.update(orphans)


def checked_owned(adapter: Adapter) -> list[OwnedJob]:
    """owned(), refusing an answer that is not a sequence of OwnedJob."""
    answer: Any = adapter.owned()
    if isinstance(answer, str | bytes) or not isinstance(answer, Sequence):
        raise TypeError(f"owned returned {type(answer).__name__}, not a sequence of OwnedJob")
    if not all(isinstance(o, OwnedJob) for o in answer):
        raise TypeError("owned returned something that is not an OwnedJob")
    return list(answer)
