"""The deadline scenario's setting, prices and the exact grid it runs on.

Invariant: a setting is mapped to whole units once (:func:`grid_for`): the restart is a whole
number of units within 2 %, the work is rounded up and the deadline down to whole ticks, so
the grid is never looser than the setting; a setting that leaves no room for the job plus one
restart on on-demand is refused here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["DEFAULT_ON_DEMAND_PRICE", "DEFAULT_SPOT_PRICE", "HPC", "IDLE", "OD", "Grid",
           "HpcTier", "Prices", "Setting", "grid_for", "hpc_cost"]

DEFAULT_ON_DEMAND_PRICE = 3.06
"""p3.2xlarge on-demand in us-east-1 (the shared on-demand table)."""
DEFAULT_SPOT_PRICE = 0.9731
"""p3.2xlarge spot as the paper's simulator prices it, for files without prices."""

IDLE, OD, HPC = -1, -2, -3
"""Where the job is: idle, on-demand, HPC; a zone is its index (0, 1, ...)."""

_RESTART_TOLERANCE = 0.02
_MAX_UNITS_PER_TICK = 64


@dataclass(frozen=True)
class Setting:
    """One row of the paper's grid: a job of ``job_hours`` due ``deadline_hours`` after it
    starts, each new instance costing ``restart_hours`` of no progress."""

    job_hours: float
    deadline_hours: float
    restart_hours: float


@dataclass(frozen=True)
class HpcTier:
    """A reliable tier: ``wait_hours`` in the queue, then ``price`` per hour for the first
    ``hours`` of the allocation and ``overage_price`` beyond it."""

    wait_hours: float
    price: float
    hours: float
    overage_price: float


@dataclass(frozen=True)
class Prices:
    """On-demand per hour; spot per hour where a file has no prices; the HPC tier, if any."""

    on_demand: float = DEFAULT_ON_DEMAND_PRICE
    spot: float = DEFAULT_SPOT_PRICE
    hpc: HpcTier | None = None


@dataclass(frozen=True)
class Grid:
    """A setting on one trace's tick: m units a tick, restart r, work W, ticks T, slack S."""

    m: int
    q: float
    r: int
    work: int
    ticks: int
    wait: int
    alloc: int

    @property
    def slack(self) -> int:
        return self.ticks * self.m - self.work


def grid_for(setting: Setting, gap: float, hpc: HpcTier | None) -> Grid:
    """The coarsest split of a tick that makes the restart whole within 2 %. The deadline is
    rounded down to whole ticks (at most one tick early: stricter, never looser)."""
    d = setting.restart_hours * 3600
    m = 1
    if d > 0:
        m = next((k for k in range(1, _MAX_UNITS_PER_TICK + 1)
                  if round(d * k / gap) >= 1
                  and abs(round(d * k / gap) - d * k / gap) <= _RESTART_TOLERANCE * d * k / gap),
                 _MAX_UNITS_PER_TICK)
    q = gap / m
    r = round(d / q)
    work = math.ceil(setting.job_hours * 3600 / q - 1e-9)
    ticks = math.floor(setting.deadline_hours * 3600 / gap + 1e-9)
    wait = 0 if hpc is None else math.ceil(hpc.wait_hours * 3600 / q - 1e-9)
    alloc = 0 if hpc is None else math.floor(hpc.hours * 3600 / q + 1e-9)
    grid = Grid(m, q, r, work, ticks, wait, alloc)
    if grid.slack < r:
        raise ValueError(f"deadline {setting.deadline_hours:g} h leaves no time for the job "
                         f"({setting.job_hours:g} h) plus one restart "
                         f"({setting.restart_hours:g} h) even on on-demand")
    return grid


def hpc_cost(units: Any, g: Grid, hpc: HpcTier) -> Any:
    """Cost of holding the HPC tier for ``units`` (scalar or array): allocation, then overage."""
    inside = np.minimum(units, g.alloc)
    return (inside * hpc.price + (units - inside) * hpc.overage_price) * g.q / 3600
