"""Cancelling native jobs: the user's cancellations, orphans, lost and moved attempts.

Invariant: every native cancel runs on the site's worker right after a check that this
reconciler still holds its lease (:meth:`LeaseKeeper.fence`), so a reconciler that slept
through its lease cancels nothing when it wakes.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Mapping, Sequence

from ..records import Attempt
from ._tick import World

__all__ = ["Cancelling"]


class Cancelling:
    """The cancel phase, and the fenced native cancel the other phases use; keeps no state."""

    def __init__(self, world: World) -> None:
        self.world = world

    def run(self, active: Sequence[Attempt]) -> None:
        """Cancel the native jobs of live attempts whose job the user cancelled."""
        cancelled = self.world.store.cancel_requested({a.job_id for a in active})
        by_site: dict[str, list[str]] = defaultdict(list)
        for attempt in active:
            if attempt.native_id and attempt.job_id in cancelled:
                by_site[attempt.site].append(attempt.native_id)
        self.native(by_site)

    def native(self, by_site: Mapping[str, Sequence[str]]) -> set[str]:
        """Cancel native ids per site (fenced); returns the sites whose call succeeded."""
        calls = {site: functools.partial(self._fenced, site, list(ids))
                 for site, ids in by_site.items() if ids and site in self.world.adapters}
        return set(self.world.calls.run("cancel", calls))

    def _fenced(self, site: str, native_ids: list[str]) -> None:
        self.world.lease.fence()
        self.world.adapters[site].cancel(native_ids)
