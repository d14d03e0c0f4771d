"""What this process's reconciler saw, kept for ``/metrics``: how long ticks and their
phases take, and the offers of its last placement round.

Invariant: one registry per process (:data:`TIMINGS`), written by the reconciler loop only;
the service that runs the reconciler serves it beside the store's counts. Labels are phase
names, sites and offer keys (which the config bounds), nothing else.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence

from prometheus_client import Gauge, Histogram

from gridbridge.adapter import Offer

from .._observed import BUCKETS_S, timed_into
from .._observed import REGISTRY as TIMINGS

__all__ = ["TIMINGS", "observe_offers", "observe_tick", "timed"]

_TICK = Histogram("gridbridge_tick_seconds", "How long a tick of the reconciler took (all "
                  "phases, when this process held the lease).", buckets=BUCKETS_S,
                  registry=TIMINGS)
_PHASE = Histogram("gridbridge_phase_seconds", "How long one phase of a tick took "
                   "(placing: one placement round).", ["phase"], buckets=BUCKETS_S,
                   registry=TIMINGS)


def timed(phase: str) -> contextlib.AbstractContextManager[None]:
    """Observe how long the block takes as ``phase`` (an exception's time counts too)."""
    return timed_into(_PHASE, phase)


def observe_tick(seconds: float) -> None:
    _TICK.observe(seconds)


_OFFER = ["site", "tier", "offer"]
_FREE_CPUS = Gauge("gridbridge_offer_free_cpus", "CPUs an offer had free at the last "
                   "placement round.", _OFFER, registry=TIMINGS)
_FREE_GPUS = Gauge("gridbridge_offer_free_gpus", "GPUs an offer had free at the last "
                   "placement round.", _OFFER, registry=TIMINGS)
_PRICE = Gauge("gridbridge_offer_price_per_core_hour", "An offer's price per core-hour at "
               "the last placement round (the config's currency).", _OFFER, registry=TIMINGS)
_HOURLY = Gauge("gridbridge_offer_price_per_hour", "An offer's price per hour of one "
                "instance or node, whatever it runs (0 where it is priced per core-hour).",
                _OFFER, registry=TIMINGS)
_PREEMPT = Gauge("gridbridge_offer_preemptions_per_hour", "How often an offer's work is "
                 "expected to be preempted, per hour.", _OFFER, registry=TIMINGS)
_SEEN = Gauge("gridbridge_offers_seen_timestamp_seconds", "When the offers were last asked "
              "for (Unix time; a site that failed offers none).", registry=TIMINGS)


def observe_offers(offers: Sequence[Offer]) -> None:
    """Replace the offer gauges with ``offers`` (an offer gone since is dropped)."""
    for gauge in (_FREE_CPUS, _FREE_GPUS, _PRICE, _HOURLY, _PREEMPT):
        gauge.clear()
    for o in offers:
        labels = (o.site, o.tier.value, o.key)
        _FREE_CPUS.labels(*labels).set(o.cpus)
        _FREE_GPUS.labels(*labels).set(o.gpus)
        _PRICE.labels(*labels).set(o.price.per_core_hour)
        _HOURLY.labels(*labels).set(o.price.per_hour)
        _PREEMPT.labels(*labels).set(o.preemption_rate_per_hour)
    _SEEN.set(time.time())
