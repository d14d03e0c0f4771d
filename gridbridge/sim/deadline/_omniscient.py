"""The omniscient optimum: the least cost of finishing by the deadline with the whole trace
known, by dynamic programming.

Invariant: pure and exact on the grid: the same zones, starts, setting and prices give the
same costs; a start whose deadline runs past the trace is refused, and ``inf`` means no way to
finish in time exists.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from ._grid import Grid, Prices, Setting, grid_for, hpc_cost
from ._trace import AvailabilityTrace, Floats, Zones

__all__ = ["omniscient", "omniscient_on"]

_CHUNK = 32


def omniscient(traces: Sequence[AvailabilityTrace], starts: Sequence[int], setting: Setting,
               prices: Prices) -> Floats:
    """The least cost of finishing by the deadline with the whole trace known, per start.

    Dynamic programming over (tick, where the job is, lost units), vectorised over lost units
    and over starts. ``lost = elapsed - progress`` never decreases and may not pass the slack
    ``S = ticks x m - W``, so it is all the state progress needs. A new instance is charged its
    restart as it starts (lost += r): a stint too short to finish its restart then looks worse
    than idling, which it is, so the optimum is unchanged. HPC is a terminal move from any
    state (queue, restart, the rest of the work), which is how the policies use it.
    """
    return omniscient_on(Zones.of(traces, prices.spot), starts, setting, prices)


def omniscient_on(z: Zones, starts: Sequence[int], setting: Setting, prices: Prices) -> Floats:
    """:func:`omniscient` on zones already aligned, in chunks of starts (memory stays flat)."""
    g = grid_for(setting, z.gap_seconds, prices.hpc)
    if any(s < 0 or s + g.ticks > z.available.shape[1] for s in starts):
        raise ValueError("a start leaves less than the deadline in the trace")
    out = np.empty(len(starts))
    for lo in range(0, len(starts), _CHUNK):
        chunk = np.asarray(starts[lo:lo + _CHUNK], dtype=np.int64)
        out[lo:lo + len(chunk)] = _chunk(z, chunk, g, prices)
    return out


def _chunk(z: Zones, starts: npt.NDArray[np.int64], g: Grid, prices: Prices) -> Floats:
    n, zones, size, m, r = len(starts), z.available.shape[0], g.slack + 1, g.m, g.r
    k = g.q / 3600
    lost = np.arange(size)
    cost = np.full((n, zones + 2, size), np.inf)  # [start, 0 idle | 1 OD | 2+ zone, lost]
    cost[:, 0, 0] = 0.0
    best = np.full(n, np.inf)
    hpc_ok = lost <= g.slack - g.wait - r
    for t in range(g.ticks):
        low = cost.min(axis=1)
        if prices.hpc is not None and hpc_ok.any():
            rest = g.work - t * m + lost[hpc_ok]
            end = low[:, hpc_ok] + hpc_cost(r + rest, g, prices.hpc)
            best = np.minimum(best, end.min(axis=1))
        new = np.full_like(cost, np.inf)
        if m < size:
            new[:, 0, m:] = low[:, :size - m]
        fresh = np.full_like(low, np.inf)
        if r < size:
            fresh[:, r:] = low[:, :size - r]
        run = np.minimum(cost[:, 1:], fresh[:, None, :])
        idx = starts + t
        run[:, 1:][~z.available[:, idx].T] = np.inf
        price = np.concatenate([np.full((n, 1), prices.on_demand), z.prices[:, idx].T], axis=1)
        finish = (t + 1) * m - g.work  # lost <= finish: the work is done within this tick
        if finish >= 0:
            upto = min(finish, size - 1)
            used = np.clip(m - (finish - lost[:upto + 1]), 0, m)
            done = run[:, :, :upto + 1] + price[:, :, None] * used * k
            best = np.minimum(best, done.min(axis=(1, 2)))
            run[:, :, :upto + 1] = np.inf
        new[:, 1:] = run + price[:, :, None] * m * k
        cost = new
    return best
