"""What a replay measured, one row per policy, and the two plots (SVG drawn by
:mod:`gridbridge.svgchart`, the one drawer and palette of gridbridge).

Invariant: every number is computed from the replay's jobs and attempts, never estimated:

* ``total_cost``: every attempt's bill (spot from the price integral, on-demand and HPC from
  their rate cards, edge amortised); queue waits are not billed.
* ``saving_vs_on_demand``: ``1 - total_cost / total_cost(on-demand-only)`` on the same trace.
* ``jobs_per_day``: finished jobs / days from the first submit to the last finish.
* ``mean_turnaround_s``, ``p95_turnaround_s``: finish - submit over finished jobs.
* ``lost_core_hours``: work done since the last checkpoint when an interruption struck, plus
  the restart the job then paid, in core-hours.
* ``deadline_misses``: finished after its deadline (submit + round + factor x requested time),
  or never finished.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gridbridge import svgchart

from .engine import Kind, ReplayResult

__all__ = ["COLUMNS", "summarize", "write_svg_plots"]

COLUMNS = ("policy", "total_cost", "saving_vs_on_demand", "jobs_per_day", "mean_turnaround_s",
           "p95_turnaround_s", "lost_core_hours", "deadline_misses", "interruptions",
           "hpc_share", "spot_share", "on_demand_share", "edge_share", "unfinished")


def summarize(result: ReplayResult, on_demand_cost: float | None) -> dict[str, Any]:
    """The row of one replay (``on_demand_cost``: the on-demand-only total on this trace)."""
    done = [j for j in result.jobs if j.finish_s is not None]
    turnaround = np.array([j.finish_s - j.trace.submit_s for j in done if j.finish_s is not None])
    total = sum(a.cost for a in result.attempts)
    first = min(j.trace.submit_s for j in result.jobs)
    last = max((j.finish_s for j in done if j.finish_s is not None), default=first)
    days = max(last - first, 1.0) / 86400.0
    misses = sum(1 for j in result.jobs if j.finish_s is None or j.finish_s > j.deadline_s)
    core_s = {k: 0.0 for k in Kind}
    for a in result.attempts:
        if a.start_s is not None and a.end_s is not None:
            core_s[a.choice.kind] += (a.end_s - a.start_s) * a.job.trace.cores
    held = sum(core_s.values()) or 1.0
    saving = None
    if on_demand_cost:
        saving = 1.0 - total / on_demand_cost
    return {
        "policy": result.policy,
        "total_cost": round(total, 2),
        "saving_vs_on_demand": None if saving is None else round(saving, 4),
        "jobs_per_day": round(len(done) / days, 2),
        "mean_turnaround_s": round(float(turnaround.mean()), 1) if len(done) else None,
        "p95_turnaround_s": round(float(np.percentile(turnaround, 95)), 1) if len(done) else None,
        "lost_core_hours": round(result.lost_core_hours, 2),
        "deadline_misses": misses,
        "interruptions": result.interruptions,
        "hpc_share": round(core_s[Kind.HPC] / held, 4),
        "spot_share": round(core_s[Kind.SPOT] / held, 4),
        "on_demand_share": round(core_s[Kind.ON_DEMAND] / held, 4),
        "edge_share": round(core_s[Kind.EDGE] / held, 4),
        "unfinished": len(result.jobs) - len(done),
    }


def _cost_svg(results: Sequence[ReplayResult]) -> str:
    series: dict[str, tuple[list[float], list[float]]] = {}
    for r in results:
        ends = sorted((a.end_s or 0.0, a.cost) for a in r.attempts)
        xs = [0.0, *(e / 86400.0 for e, _ in ends)]
        ys = [0.0, *(float(y) for y in np.cumsum([c for _, c in ends]))]
        series[r.policy] = (_thin(xs), _thin(ys))
    return svgchart.curves("Cumulative cost", series, ("simulated day", "dollars"))


def _turnaround_svg(results: Sequence[ReplayResult]) -> str:
    series: dict[str, tuple[list[float], list[float]]] = {}
    for r in results:
        t = np.sort([max(j.finish_s - j.trace.submit_s, 1.0) for j in r.jobs
                     if j.finish_s is not None])
        if len(t):
            series[r.policy] = (_thin(list(np.log10(t))),
                                _thin(list(np.arange(1, len(t) + 1) / len(t))))
    hi = max((xs[-1] for xs, _ in series.values()), default=1.0)
    return svgchart.curves("Turnaround distribution (CDF)", series,
                           ("log10 turnaround (s)", "share of jobs"), x_top=math.ceil(hi))


def _thin(values: Sequence[float], most: int = 2000) -> list[float]:
    """At most ``most`` points (always the last), so a plot of 28k jobs stays small."""
    if len(values) <= most:
        return list(values)
    step = math.ceil(len(values) / most)
    return [*values[::step], values[-1]]


def write_svg_plots(results: Sequence[ReplayResult], folder: str | Path,
                    rows: Sequence[dict[str, Any]] = (), title: str = "") -> list[Path]:
    """Write ``cost_over_time.svg``, ``turnaround.svg`` and ``report.html`` (both plots and
    the ``rows`` as a table, in one self-contained page) into ``folder``; returns the paths."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "cost_over_time.svg", out / "turnaround.svg", out / "report.html"]
    cost, turnaround = _cost_svg(results), _turnaround_svg(results)
    paths[0].write_text(cost, encoding="utf-8")
    paths[1].write_text(turnaround, encoding="utf-8")
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>"
                                    for c in COLUMNS) + "</tr>" for r in rows)
    paths[2].write_text(
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title or 'gridbridge simulate')}</title><style>"
        "body{font-family:sans-serif;margin:24px}table{border-collapse:collapse;"
        "font-size:12px}td,th{border-bottom:1px solid #ddd;padding:3px 8px;text-align:right}"
        f"</style></head><body><h1>{html.escape(title or 'gridbridge simulate')}</h1>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        f"<figure>{cost}</figure><figure>{turnaround}</figure></body></html>\n",
        encoding="utf-8")
    return paths
