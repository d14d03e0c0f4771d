"""This process's own measurements of the control plane, for ``/metrics``: one registry
(:data:`REGISTRY`) that the store and the reconciler write to and the service serves beside
the store's counts. Labels are bounded words (a phase, a kind of transaction, a site, an
offer key), never a job.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram

__all__ = ["BUCKETS_S", "REGISTRY", "store_timed", "timed_into"]

REGISTRY = CollectorRegistry(auto_describe=True)
BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

_STORE = Histogram("gridbridge_store_transaction_seconds", "How long a transaction on the "
                   "state store was open (the database's latency and the work done in it), "
                   "by kind.", ["kind"], buckets=BUCKETS_S, registry=REGISTRY)


@contextlib.contextmanager
def timed_into(histogram: Histogram, label: str) -> Iterator[None]:
    """Observe how long the block takes into ``histogram``'s ``label`` child (an exception's
    time counts too)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        histogram.labels(label).observe(time.perf_counter() - started)


def store_timed(kind: str) -> contextlib.AbstractContextManager[None]:
    """Observe how long the block holds a ``kind`` (read or write) transaction."""
    return timed_into(_STORE, kind)
