"""The deadline simulator's own "gridbridge" policy: Uniform Progress over every spot zone,
with HPC as the last tier.

This is the simulator's own code, not gridbridge's: no live module runs it, and the live
scheduler's placement (``gridbridge.scheduler.placement.place``) decides differently. It is
kept apart, under this name, so that nobody reads its numbers as the live scheduler's; a later
issue replaces it with the live decision code.

Invariant: on one zone without HPC it makes Uniform Progress's decisions, so it never costs
more than Uniform Progress there; it passes the same safety rule as every policy.
"""

from __future__ import annotations

from ._grid import HPC, hpc_cost
from ._policies import UniformProgress
from ._replay import View

__all__ = ["Gridbridge"]


class Gridbridge(UniformProgress):
    """gridbridge's policy: Uniform Progress over every spot zone of the region, with HPC as
    the last tier when it is cheaper than on-demand.

    - zones: stay on the zone held; otherwise take the cheapest available zone, the one
      whose current availability run is longest on a tie (the longer a spot has lasted,
      the longer it tends to last -- no parameter, no knowledge of these traces);
    - HPC, when offered: go now if finishing there costs no more than the rest would cost at
      the cheapest spot price with no restart at all (nothing can beat it); otherwise plan
      the end of the job on it -- the uniform-progress line covers only the work HPC cannot
      take at its allocation price, due when the queue wait and restart must begin -- and
      move there at the last tick it can still be reached;
    - on-demand exactly when the safety rule says so, as every policy here.
    On one zone without HPC it makes Uniform Progress's decisions, so it never costs more.
    """

    def _zone(self, v: View) -> int | None:
        if v.location >= 0:
            return v.location
        ready = [z for z, a in enumerate(v.available) if a]
        if not ready:
            return None
        return min(ready, key=lambda z: (v.spot_prices[z], -v.up_run[z], z))

    def _hpc_last(self, v: View) -> bool:
        hpc, g = v.prices.hpc, v.grid
        if hpc is None:
            return False
        rest = g.r + v.remaining
        return float(hpc_cost(rest, g, hpc)) < v.prices.on_demand * rest * g.q / 3600

    def _line(self, v: View) -> tuple[float, float]:
        g, hpc = v.grid, v.prices.hpc
        if hpc is None or not self._hpc_last(v):
            return super()._line(v)
        cheap = g.work if hpc.overage_price < v.prices.on_demand else min(
            g.work, max(0, g.alloc - g.r))
        return g.work - cheap, g.ticks * g.m - g.wait - g.r - cheap

    def decide(self, v: View) -> int:
        hpc, g = v.prices.hpc, v.grid
        if hpc is not None and v.safe(HPC):
            rest = g.r + v.remaining
            floor = min(v.spot_prices) * v.remaining * g.q / 3600
            if float(hpc_cost(rest, g, hpc)) <= floor:
                return HPC
            action = super().decide(v)
            if self._hpc_last(v) and not v.safe(action, HPC):
                return HPC
            return action
        return super().decide(v)
