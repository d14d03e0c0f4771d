"""The table: every policy and the omniscient optimum over many starts of each setting.

Invariant: every policy replays the same starts of the same zones; costs are compared with
on-demand only (``mean_cost_fraction``) and with the omniscient optimum
(``gap_to_omniscient``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._grid import Prices, Setting, grid_for
from ._live import Gridbridge
from ._omniscient import omniscient_on
from ._policies import Greedy, UniformProgress
from ._replay import DeadlinePolicy, replay
from ._trace import AvailabilityTrace, Floats, Zones, align

__all__ = ["POLICIES", "evaluate"]

POLICIES: dict[str, Callable[[], DeadlinePolicy]] = {
    "greedy": Greedy,
    "uniform-progress": UniformProgress,
    "gridbridge": Gridbridge,
}
"""The online policies by name (a fresh one per run: they keep per-run state)."""


def _on_demand_only(setting: Setting, prices: Prices) -> float:
    return (setting.job_hours + setting.restart_hours) * prices.on_demand


def _starts(length: int, ticks: int, stride: int) -> list[int]:
    return list(range(0, length - ticks + 1, stride))


def evaluate(traces: Sequence[AvailabilityTrace], settings: Sequence[Setting], prices: Prices,
             stride_hours: float, on_progress: Callable[[int, int], None] | None = None,
             ) -> list[dict[str, Any]]:
    """The table: per setting, every policy on each trace alone (``zones`` 1), and when there
    are several traces gridbridge and omniscient on all of them as zones of one region.

    Starts are every ``stride_hours`` (at least one tick) from the trace's beginning, as
    many as leave the deadline inside the trace; ``runs`` counts them. ``on_progress(done,
    total)`` is called after each batch of runs.
    """
    if not traces:
        raise ValueError("no availability trace given")
    if not stride_hours > 0:
        raise ValueError(f"stride must be > 0 hours, got {stride_hours!r}")
    groups: list[tuple[list[AvailabilityTrace], list[str]]] = [
        ([t], [*POLICIES, "omniscient"]) for t in traces]
    if len(traces) > 1:
        groups.append((align(traces), ["gridbridge", "omniscient"]))
    zones_of = [Zones.of(group, prices.spot) for group, _ in groups]
    plans = []
    for setting in settings:
        for (group, names), zones in zip(groups, zones_of, strict=True):
            grid = grid_for(setting, group[0].gap_seconds, prices.hpc)
            stride = max(1, round(stride_hours * 3600 / group[0].gap_seconds))
            plans.append((setting, group, zones, names,
                          _starts(len(group[0]), grid.ticks, stride)))
    total = sum(len(p[3]) * len(p[4]) for p in plans)
    done = 0
    rows: list[dict[str, Any]] = []
    for setting, group, zones, names, starts in plans:
        costs: dict[str, Floats] = {}
        misses: dict[str, int] = {}
        for name in names:
            if name == "omniscient":
                costs[name] = omniscient_on(zones, starts, setting, prices)
                misses[name] = int(np.isinf(costs[name]).sum())
            else:
                results = [replay(POLICIES[name](), zones, s, setting, prices)
                           for s in starts]
                costs[name] = np.array([x.cost for x in results])
                misses[name] = sum(not x.finished for x in results)
            done += len(starts)
            if on_progress is not None:
                on_progress(done, total)
        rows += _rows(setting, group, costs, misses, prices)
    return rows


def _rows(setting: Setting, group: Sequence[AvailabilityTrace], costs: dict[str, Floats],
          misses: dict[str, int], prices: Prices) -> list[dict[str, Any]]:
    base = _on_demand_only(setting, prices)
    best = float(costs["omniscient"].mean()) if costs["omniscient"].size else None
    rows = []
    for name, c in costs.items():
        mean = float(c.mean()) if c.size else None
        gap: float | None = None
        if mean is not None and best is not None and math.isfinite(best):
            gap = mean / best - 1 if best > 0 else (0.0 if mean == 0 else None)
        rows.append({
            "policy": name, "zones": len(group), "traces": "+".join(t.name for t in group),
            "job_hours": setting.job_hours, "deadline_hours": setting.deadline_hours,
            "restart_hours": setting.restart_hours, "runs": int(c.size),
            "mean_cost": mean, "mean_cost_fraction": None if mean is None else mean / base,
            "deadline_misses": misses[name], "gap_to_omniscient": gap,
        })
    return rows
