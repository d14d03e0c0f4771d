"""The offers of a round as columns: one numpy array per number, one entry per offer.

Invariant: built once per round from the offers given and never changed after; everything
placement computes per offer reads these arrays, in the offers' order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gridbridge.adapter import Offer
from gridbridge.spec import JobSpec

HOUR_S = 3600.0
Array = NDArray[np.float64]
Static = dict[tuple[Any, ...], NDArray[np.bool_]]
"""The offers each set of constraints allows (:meth:`Offers.static_ok`), kept for the round:
many classes of jobs share one set."""


@dataclass(frozen=True)
class Offers:
    """The offers as arrays, one entry per offer in the order given."""

    items: Sequence[Offer]
    cpus: Array
    memory: Array
    gpus: Array
    per_hour: Array
    per_core: Array
    per_gpu: Array
    od_hour: Array
    od_core: Array
    od_gpu: Array
    lam: Array
    """Preemptions per second."""
    restart: Array
    wait: Array
    limit: Array
    """max_walltime_s, inf where none."""
    preemptible: NDArray[np.bool_]
    order: NDArray[np.int64]
    """Rank of (site, key): the last tie-break."""
    site_of: list[int]
    site_idx: NDArray[np.int64]
    sites: list[str]
    tier: NDArray[np.str_]
    latency: Array
    """nan where the offer cannot say."""

    @classmethod
    def of(cls, offers: Sequence[Offer]) -> Offers:
        def arr(values: Sequence[float]) -> Array:
            return np.asarray(values, dtype=np.float64)

        sites = sorted({o.site for o in offers})
        index = {s: i for i, s in enumerate(sites)}
        names = sorted(range(len(offers)), key=lambda i: (offers[i].site, offers[i].key, i))
        order = np.empty(len(offers), dtype=np.int64)
        order[names] = np.arange(len(offers))
        return cls(
            items=offers,
            cpus=arr([o.cpus for o in offers]), memory=arr([o.memory_gb for o in offers]),
            gpus=arr([o.gpus for o in offers]),
            per_hour=arr([o.price.per_hour for o in offers]),
            per_core=arr([o.price.per_core_hour for o in offers]),
            per_gpu=arr([o.price.per_gpu_hour for o in offers]),
            od_hour=arr([o.on_demand.per_hour for o in offers]),
            od_core=arr([o.on_demand.per_core_hour for o in offers]),
            od_gpu=arr([o.on_demand.per_gpu_hour for o in offers]),
            lam=arr([o.preemption_rate_per_hour / HOUR_S for o in offers]),
            restart=arr([o.restart_overhead_s for o in offers]),
            wait=arr([o.queue_wait_s for o in offers]),
            limit=arr([math.inf if o.max_walltime_s is None else o.max_walltime_s
                       for o in offers]),
            preemptible=np.asarray([o.preemptible for o in offers], dtype=np.bool_),
            order=order, site_of=[index[o.site] for o in offers],
            site_idx=np.asarray([index[o.site] for o in offers], dtype=np.int64), sites=sites,
            tier=np.asarray([o.tier.value for o in offers], dtype=np.str_),
            latency=arr([math.nan if o.latency_ms is None else o.latency_ms for o in offers]),
        )

    def static_ok(self, spec: JobSpec, avoid: Mapping[str, str]) -> NDArray[np.bool_]:
        """Site, tier, preemption, label and latency rules (and the sites, or ``site/key``
        offers, to avoid), per offer: the vector form of :func:`._problems.site_problems`."""
        c = spec.constraints
        allowed = np.ones(len(self.sites), dtype=np.bool_)
        for i, site in enumerate(self.sites):
            if (site in c.denied_sites or site in avoid
                    or (c.allowed_sites is not None and site not in c.allowed_sites)):
                allowed[i] = False
        ok = allowed[self.site_idx] if len(self.items) else np.zeros(0, dtype=np.bool_)
        if any("/" in where for where in avoid):  # single offers to avoid: site/offer key
            ok &= np.asarray([f"{o.site}/{o.key}" not in avoid for o in self.items],
                             dtype=np.bool_)
        ok &= np.isin(self.tier, [t.value for t in c.tiers])
        if not c.preemptible_ok:
            ok &= ~self.preemptible
        for key, value in c.labels.items():
            ok &= np.asarray([o.labels.get(key) == value for o in self.items], dtype=np.bool_)
        if c.max_latency_ms is not None:
            with np.errstate(invalid="ignore"):
                ok &= self.latency <= c.max_latency_ms  # nan (unknown) compares False
        return ok
