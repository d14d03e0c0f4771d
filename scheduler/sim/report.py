"""What a replay measured, one row per policy, and the two plots (self-contained SVG).

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


_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f")
_W, _H, _PAD = 720, 420, 60


def _polyline(xs: Sequence[float], ys: Sequence[float], box: tuple[float, float, float, float],
              colour: str) -> str:
    x0, x1, y0, y1 = box
    sx = (_W - 2 * _PAD) / ((x1 - x0) or 1.0)
    sy = (_H - 2 * _PAD) / ((y1 - y0) or 1.0)
    pts = " ".join(f"{_PAD + (x - x0) * sx:.1f},{_H - _PAD - (y - y0) * sy:.1f}"
                   for x, y in zip(xs, ys, strict=True))
    return f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{pts}"/>'


def _frame(title: str, xlabel: str, ylabel: str, box: tuple[float, float, float, float],
           fmts: tuple[str, str] = ("{:g}", "{:,.0f}")) -> list[str]:
    xfmt, yfmt = fmts
    x0, x1, y0, y1 = box
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" '
           'font-family="sans-serif" font-size="11">',
           f'<rect width="{_W}" height="{_H}" fill="white"/>',
           f'<text x="{_W / 2}" y="20" text-anchor="middle" font-size="14">'
           f'{html.escape(title)}</text>',
           f'<line x1="{_PAD}" y1="{_H - _PAD}" x2="{_W - _PAD}" y2="{_H - _PAD}" stroke="black"/>',
           f'<line x1="{_PAD}" y1="{_PAD}" x2="{_PAD}" y2="{_H - _PAD}" stroke="black"/>',
           f'<text x="{_W / 2}" y="{_H - 15}" text-anchor="middle">{html.escape(xlabel)}</text>',
           f'<text x="15" y="{_H / 2}" transform="rotate(-90 15 {_H / 2})" '
           f'text-anchor="middle">{html.escape(ylabel)}</text>']
    for i in range(5):
        fx = x0 + (x1 - x0) * i / 4
        fy = y0 + (y1 - y0) * i / 4
        px = _PAD + (_W - 2 * _PAD) * i / 4
        py = _H - _PAD - (_H - 2 * _PAD) * i / 4
        out.append(f'<text x="{px:.0f}" y="{_H - _PAD + 15}" text-anchor="middle">'
                   f'{xfmt.format(fx)}</text>')
        out.append(f'<text x="{_PAD - 5}" y="{py + 4:.0f}" text-anchor="end">'
                   f'{yfmt.format(fy)}</text>')
    return out


def _legend(names: Sequence[str]) -> list[str]:
    return [f'<text x="{_PAD + 10}" y="{_PAD + 14 * i}" fill="{_COLOURS[i % len(_COLOURS)]}">'
            f'{html.escape(n)}</text>' for i, n in enumerate(names)]


def _cost_svg(results: Sequence[ReplayResult]) -> str:
    series = []
    for r in results:
        ends = sorted((a.end_s or 0.0, a.cost) for a in r.attempts)
        xs = [e / 86400.0 for e, _ in ends]
        ys = list(np.cumsum([c for _, c in ends])) if ends else []
        series.append((r.policy, [0.0, *xs], [0.0, *(float(y) for y in ys)]))
    box = (0.0, max((s[1][-1] for s in series), default=1.0), 0.0,
           max((s[2][-1] for s in series), default=1.0) or 1.0)
    out = _frame("Cumulative cost", "simulated day", "dollars", box, ("{:.0f}", "{:,.0f}"))
    out += [_polyline(_thin(xs), _thin(ys), box, _COLOURS[i % len(_COLOURS)])
            for i, (_, xs, ys) in enumerate(series)]
    return "\n".join([*out, *_legend([s[0] for s in series]), "</svg>"])


def _turnaround_svg(results: Sequence[ReplayResult]) -> str:
    series = []
    for r in results:
        t = np.sort([max(j.finish_s - j.trace.submit_s, 1.0) for j in r.jobs
                     if j.finish_s is not None])
        if len(t):
            series.append((r.policy, list(np.log10(t)), list(np.arange(1, len(t) + 1) / len(t))))
    hi = max((s[1][-1] for s in series), default=1.0)
    box = (0.0, math.ceil(hi), 0.0, 1.0)
    out = _frame("Turnaround distribution (CDF)", "log10 turnaround (s)", "share of jobs", box,
                 ("{:g}", "{:.2f}"))
    out += [_polyline(_thin(xs), _thin(ys), box, _COLOURS[i % len(_COLOURS)])
            for i, (_, xs, ys) in enumerate(series)]
    return "\n".join([*out, *_legend([s[0] for s in series]), "</svg>"])


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
