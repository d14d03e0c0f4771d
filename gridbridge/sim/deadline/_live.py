"""The deadline replay's "gridbridge" row: the live decision code, called on the replay's clock.

Invariant: every choice is :mod:`gridbridge.scheduler.moves`': a running job is weighed by
:func:`~gridbridge.scheduler.moves.weigh` exactly as the reconciler's migration phase weighs
it (the deadline's safety rule, cheaper elsewhere with the config's factor and hysteresis), and
a job without an instance is started by :func:`~gridbridge.scheduler.moves.start`, the same
cost model. This module only translates: the replay's state becomes offers and one
:class:`~gridbridge.scheduler.moves.Running` row, the answer becomes an action. It knows no
trace beyond the present tick; a zone's preemption rate is what its record so far shows
(:attr:`View.rates`), as a live site's offer carries its own recent record::

    View(tick) ──> offers: each zone (spot, cpus 1 if up now, its rate so far), on-demand,
                   the HPC tier if any (reliable; its queue wait counted as its restart)
               ──> on an instance?  weigh(Running)  ──> a move: its target, else stay
                   none?            start(Running)  ──> an offer, or -1: idle
"""

from __future__ import annotations

import numpy as np

from gridbridge.adapter import Offer, Pricing
from gridbridge.scheduler import moves
from gridbridge.spec import Tier

from ._grid import HPC, IDLE, OD, hpc_cost
from ._replay import View

__all__ = ["Gridbridge"]

_ON_DEMAND, _HPC = "on-demand", "hpc"
_RELIABLE = (_ON_DEMAND, _HPC)


class Gridbridge:
    """gridbridge's live decisions over every spot zone of the region and on-demand, with the
    live defaults (:class:`moves.Settings`: factor 2, 600 s between moves; ``migrate: cost``)
    and no margin: the reconciler adds its tick because a site may take an instance back
    mid-tick; here availability holds for a whole tick, so the rule is exact without one."""

    def __init__(self) -> None:
        self.moved_at: float = -np.inf
        self._offers: dict[tuple[object, ...], Offer] = {}

    def _offer(self, site: str, price: float, on_demand: float, up: bool, rate: float,
               restart_s: float) -> Offer:
        key = (site, price, up, rate, restart_s)
        if key not in self._offers:
            self._offers[key] = Offer(
                site=site, tier=Tier.CLOUD, cpus=1 if up else 0, memory_gb=1.0,
                price=Pricing(per_hour=price), on_demand=Pricing(per_hour=on_demand),
                preemptible=site not in _RELIABLE, preemption_rate_per_hour=rate,
                restart_overhead_s=restart_s)
        return self._offers[key]

    def decide(self, v: View) -> int:
        g, od = v.grid, v.prices.on_demand
        restart_s = g.r * g.q
        zones = len(v.available)
        offers = [self._offer(f"zone-{z}", float(v.spot_prices[z]), od, bool(v.available[z]),
                              float(v.rates[z]) if v.rates else 0.0, restart_s)
                  for z in range(zones)]
        offers.append(self._offer(_ON_DEMAND, od, od, True, 0.0, restart_s))
        hpc = v.prices.hpc
        if hpc is not None:  # the allocation's mean price over the rest; the wait delays it
            rest = g.r + v.remaining
            hourly = float(hpc_cost(rest, g, hpc)) / (rest * g.q / 3600)
            offers.append(self._offer(_HPC, hourly, od, True, 0.0, (g.wait + g.r) * g.q))
        here = v.location if v.location >= 0 else (zones if v.location == OD else -1)
        now = v.elapsed * g.q
        running = _row(v, here, len(offers), now - self.moved_at)
        settings = moves.Settings()  # margin 0: a zone up at a tick's start stays up all tick
        if here >= 0:
            found = moves.weigh(running, offers, settings)
            if not found or found[0].target < 0:
                return v.location
            target = found[0].target
        else:
            target = int(moves.start(running, offers, settings,
                                     pace=np.array([g.work / (g.ticks * g.m)]))[0])
            if target < 0:
                return IDLE
        self.moved_at = now
        return {zones: OD, zones + 1: HPC}.get(target, target)


def _row(v: View, here: int, n_offers: int, since_move_s: float) -> moves.Running:
    """The job as the reconciler sees a running attempt: progress is kept across restarts
    (the paper's model), so nothing is lost since the last checkpoint."""
    g = v.grid

    def col(x: float) -> np.ndarray:
        return np.array([x], dtype=np.float64)

    return moves.Running(
        offer=np.array([here], dtype=np.int64), cpus=col(1), gpus=col(0), memory_gb=col(1),
        work_left_s=col((v.remaining + v.restart_left) * g.q), since_checkpoint_s=col(0),
        left_s=col(v.left * g.q), since_move_s=col(since_move_s), interval_s=col(g.q),
        mode=np.array([moves.MODES["cost"]], dtype=np.int64),
        allowed=np.ones((1, n_offers), dtype=np.bool_))
