"""What every phase of a tick shares: the world it acts on, and the report it fills.

Invariant: a phase keeps its own caches on its own object; what it shares with the others is
only this :class:`World` (configuration, store, adapters, site calls, lease, clock) and the
:class:`TickReport` of the tick, so no phase reads another's private state.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from gridbridge.adapter import Adapter, AttemptStatus
from gridbridge.config import GridConfig, SiteConfig
from gridbridge.states import AttemptState

from ..sitecalls import SiteCalls
from ..store import StateStore, StoreUnavailable
from ._lease import LeaseKeeper

__all__ = ["TickReport", "World", "one_attempt", "raise_fence", "status"]

log = logging.getLogger("gridbridge.reconciler")


@dataclass
class TickReport:
    """What one tick did, for logs and tests."""

    submitted: list[str] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    ended: dict[str, AttemptState] = field(default_factory=dict)
    placed: dict[str, str] = field(default_factory=dict)
    unplaced: dict[str, str] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)
    orphans: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class World:
    """What the phases act on, built once by the reconciler."""

    config: GridConfig
    store: StateStore
    adapters: dict[str, Adapter]
    calls: SiteCalls
    lease: LeaseKeeper
    clock: Callable[[], float]
    """Read at every use: a clock swapped on the reconciler reaches every phase."""
    sites: dict[str, SiteConfig] = field(init=False)

    def __post_init__(self) -> None:
        self.sites = {s.name: s for s in self.config.sites}

    @property
    def holder(self) -> str:
        """Who acts: the lease holder's name, the actor of every store write."""
        return self.lease.holder


@contextlib.contextmanager
def one_attempt(what: str, attempt_id: str) -> Iterator[None]:
    """One attempt's record that cannot be applied must not stop the others, or the tick; a
    store that is unavailable stops the tick (the loop retries it with backoff)."""
    try:
        yield
    except StoreUnavailable:
        raise
    except Exception:
        log.exception("could not %s %s", what, attempt_id)


def status(state: AttemptState, native_state: str, reason: str) -> AttemptStatus:
    return AttemptStatus(state=state, native_state=native_state, reason=reason)


def raise_fence(checkpoint_url: str, token: int) -> int:
    """Raise the job's checkpoint fence to ``token`` (never lowers it); returns the fence."""
    from gridbridge import checkpoint

    return checkpoint.raise_fence(checkpoint_url, token)
