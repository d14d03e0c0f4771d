"""How long ticks and their phases take, kept in this process for ``/metrics``.

Invariant: a histogram per process, in a registry of its own (:data:`TIMINGS`), observed by
the reconciler loop only; the service that runs the reconciler serves it beside the store's
counts. Labels are the phase names, nothing else.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram

__all__ = ["TIMINGS", "observe_tick", "timed"]

TIMINGS = CollectorRegistry(auto_describe=True)
"""The reconciler's timings in this process."""

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

_TICK = Histogram("gridbridge_tick_seconds", "How long a tick of the reconciler took (all "
                  "phases, when this process held the lease).", buckets=_BUCKETS,
                  registry=TIMINGS)
_PHASE = Histogram("gridbridge_phase_seconds", "How long one phase of a tick took "
                   "(placing: one placement round).", ["phase"], buckets=_BUCKETS,
                   registry=TIMINGS)


@contextlib.contextmanager
def timed(phase: str) -> Iterator[None]:
    """Observe how long the block takes as ``phase`` (an exception's time counts too)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        _PHASE.labels(phase).observe(time.perf_counter() - started)


def observe_tick(seconds: float) -> None:
    _TICK.observe(seconds)
