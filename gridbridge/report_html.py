"""``gridbridge report html``: one self-contained HTML file for finance.

Spend over time by team and by tier, savings against on-demand, each budget's burn-down, work
lost to preemption and the dearest jobs, as hand-drawn SVG (:mod:`gridbridge.svgchart`) with
the tables beside the charts. Nothing is fetched when the file is opened: no scripts, fonts or
images from elsewhere. Every table is built by the same functions as ``report costs`` and shows
the same text as its CSV for the same period. Every name a user gave (a team, a job) is
:func:`gridbridge.views.plain` text, HTML-escaped, in the tables and the charts alike.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gridbridge import svgchart
from gridbridge.reports import (
    Allocation,
    Every,
    GroupBy,
    Window,
    cost_report,
    for_display,
    money,
    placements_totals,
)
from gridbridge.units import fmt_money, fmt_time
from gridbridge.views import plain

__all__ = ["ReportInputs", "auto_every", "render_html"]


@dataclass(frozen=True)
class ReportInputs:
    """What the report is drawn from (read by the caller; nothing here touches a store)."""

    ledger: Sequence[Mapping[str, Any]]
    window: Window
    now: float
    jobs: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    team_budgets: Mapping[str, float] = field(default_factory=dict)
    project_budgets: Mapping[str, float] = field(default_factory=dict)
    allocations: Sequence[Allocation] = ()
    placements: Sequence[Mapping[str, Any]] = ()
    currency: str = "USD"
    title: str = "gridbridge cost report"


def auto_every(window: Window) -> Every:
    """Days for up to ~two months, weeks for up to half a year, months beyond."""
    days = (window.until - window.since) / 86400
    return Every.DAY if days <= 62 else Every.WEEK if days <= 190 else Every.MONTH


def cell(value: Any) -> str:
    """A value as the CSV shows it (Decimals as their exact text, None as nothing, no control
    characters)."""
    return "" if value is None else plain(str(value))


def _table(title: str, columns: Sequence[str], rows: Sequence[Mapping[str, Any]],
           ident: str) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    rows = for_display(rows, sign="")  # cents where a column's amounts allow; exact in CSV
    body = "".join(
        "<tr>" + "".join(f'<td data-col="{html.escape(c)}">{html.escape(cell(r.get(c)))}</td>'
                         for c in columns) + "</tr>"
        for r in rows)
    if not rows:
        body = f'<tr><td colspan="{len(columns)}">nothing in this period</td></tr>'
    return (f'<table id="{ident}"><caption>{html.escape(title)}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


_MOST_SERIES = 7
"""A chart shows this many groups by name; the rest are summed as "others"."""


def _per_piece(rows: Sequence[Mapping[str, Any]], key: str, labels: Sequence[str],
               column: str = "cost") -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    index = {lab: i for i, lab in enumerate(labels)}
    for r in rows:
        if r[key] == "TOTAL":
            continue
        name = plain(str(r[key]))
        out.setdefault(name, [0.0] * len(labels))[index[r["period"]]] += float(r[column])
    if len(out) <= _MOST_SERIES + 1:
        return out
    ranked = sorted(out, key=lambda k: -sum(out[k]))
    top = {k: out[k] for k in ranked[:_MOST_SERIES]}
    top[f"{len(ranked) - _MOST_SERIES} others"] = [
        sum(out[k][i] for k in ranked[_MOST_SERIES:]) for i in range(len(labels))]
    return top


def _burn_down(inp: ReportInputs) -> tuple[str, str]:
    """Cumulative spend through the last month the window touches, per team and project with
    a budget, against the budget (a dashed line); with no budget set, the dearest teams'."""
    month = inp.window.months()[-1]
    end = min(month.until, inp.window.until, max(inp.now, month.since + 1))
    days = list(Window(month.since, end, month.label).cut(Every.DAY))
    labels = [d.label[-2:] for d in days]
    series: dict[str, list[float]] = {}
    levels: dict[str, float] = {}
    wanted: list[tuple[str, str, float | None]] = [
        (kind, name, budget)
        for kind, budgets in (("team", inp.team_budgets), ("project", inp.project_budgets))
        for name, budget in budgets.items()]
    if not wanted:
        spent_by: dict[str, float] = {}
        for r in inp.ledger:
            if month.since <= r["end"] < end:
                spent_by[str(r["team"])] = spent_by.get(str(r["team"]), 0.0) + float(r["cost"])
        wanted = [("team", name, None) for name in
                  sorted(spent_by, key=lambda k: -spent_by[k])[:_MOST_SERIES]]
    for kind, name, budget in wanted:
        label = f"{kind}:{plain(name)}"
        spent = money(0)
        points = []
        ledger = sorted((r for r in inp.ledger if str(r[kind]) == name
                         and month.since <= r["end"] < end), key=lambda r: r["end"])
        j = 0
        for d in days:
            while j < len(ledger) and ledger[j]["end"] < d.until:
                spent += money(ledger[j]["cost"])
                j += 1
            points.append(float(spent))
        series[label] = points
        if budget is not None:
            levels[label] = float(budget)
    title = "Budget burn-down" if levels else "Month-to-date spend (no budgets set)"
    chart = svgchart.lines(f"{title}, {month.label} ({inp.currency})", labels, series,
                           inp.currency, levels)
    rows = [{"budget_of": name,
             "budget": money(levels[name]) if name in levels else None,
             "spent": money(vs[-1] if vs else 0.0),
             "left": money(levels[name]) - money(vs[-1] if vs else 0.0)
             if name in levels else None}
            for name, vs in series.items()]
    table = _table(f"Budgets, {month.label}", ["budget_of", "budget", "spent", "left"], rows,
                   "budgets")
    return chart, table


def render_html(inp: ReportInputs) -> str:
    """The whole report as one HTML document."""
    w, cur = inp.window, inp.currency
    every = auto_every(w)
    labels = [p.label for p in w.cut(every)]
    shown = [_short(lab, every) for lab in labels]
    by_team = cost_report(inp.ledger, GroupBy.TEAM, w, every=every, currency=cur)
    by_tier = cost_report(inp.ledger, GroupBy.TIER, w, every=every, currency=cur)
    team_total = cost_report(inp.ledger, GroupBy.TEAM, w, budgets=inp.team_budgets,
                             currency=cur)
    tier_total = cost_report(inp.ledger, GroupBy.TIER, w, currency=cur)
    site_total = cost_report(inp.ledger, GroupBy.SITE, w, allocations=inp.allocations,
                             currency=cur)
    jobs = cost_report(inp.ledger, GroupBy.JOB, w, jobs=inp.jobs, currency=cur)
    top_jobs = [r for r in jobs if r["job_id"] != "TOTAL"][:10]
    total = next((r for r in team_total if r["team"] == "TOTAL"), None)

    per_piece = cost_report(inp.ledger, GroupBy.TIER, w, every=every, currency=cur)
    cost_s = [sum(v) for v in zip(*_per_piece(per_piece, "tier", labels).values(),
                                  strict=True)] or [0.0] * len(labels)
    save_s = [sum(v) for v in zip(*_per_piece(per_piece, "tier", labels, "savings").values(),
                                  strict=True)] or [0.0] * len(labels)
    lost_s = [sum(v) for v in zip(*_per_piece(per_piece, "tier", labels, "lost_cost").values(),
                                  strict=True)] or [0.0] * len(labels)

    charts = {
        "spend-by-team": svgchart.bars(f"Spend by team per {every.value} ({cur})", shown,
                                       _per_piece(by_team, "team", labels), cur),
        "spend-by-tier": svgchart.bars(f"Spend by tier per {every.value} ({cur})", shown,
                                       _per_piece(by_tier, "tier", labels), cur),
        "savings": svgchart.bars(f"Cost and saving against on-demand per {every.value} ({cur})",
                                 shown, {"cost": cost_s, "saving vs on-demand": save_s}, cur,
                                 {"cost": svgchart.PALETTE[0],
                                  "saving vs on-demand": svgchart.PALETTE[2]}),
        "lost-work": svgchart.bars(f"Work lost to preemption per {every.value} ({cur})", shown,
                                   {"lost": lost_s}, cur, {"lost": svgchart.PALETTE[3]}),
        "top-jobs": svgchart.hbars(f"Top jobs by cost ({cur})",
                                   [plain(str(r["name"] or r["job_id"])) for r in top_jobs],
                                   [float(r["cost"]) for r in top_jobs], cur),
    }
    burn_chart, burn_table = _burn_down(inp)
    charts["budget-burn-down"] = burn_chart

    money_cols = ["cost", "on_demand_cost", "savings"]
    alloc = ["allocation_used", "allocation_left"] if inp.allocations else []
    teams_shown = _dearest(team_total, "team")
    tables = {
        "spend-by-team": _table(_caption("Costs by team", team_total, teams_shown),
                                ["team", "attempts", *money_cols], teams_shown,
                                "costs-by-team"),
        "spend-by-tier": _table("Costs by tier", ["tier", "attempts", "core_hours",
                                                  *money_cols], tier_total, "costs-by-tier"),
        "savings": _table("Costs by site", ["site", *money_cols, *alloc],
                          site_total, "costs-by-site"),
        "lost-work": _table("Lost work by tier", ["tier", "attempts", "preempted", "lost_cost"],
                            tier_total, "lost-by-tier"),
        "top-jobs": _table("Top jobs by cost", ["job_id", "name", "state", "attempts", "cost"],
                           top_jobs, "top-jobs"),
        "budget-burn-down": burn_table,
    }
    tiles = _tiles(total, inp.placements, cur)
    sections = "".join(
        f'<section class="pair" id="{key}"><figure data-chart="{key}">{charts[key]}</figure>'
        f'<div class="side">{tables[key]}</div></section>'
        for key in ("spend-by-team", "spend-by-tier", "savings", "budget-burn-down",
                    "lost-work", "top-jobs"))
    made = fmt_time(inp.now)
    span = f"{fmt_time(w.since)} to {fmt_time(w.until)}"
    return _PAGE.format(title=html.escape(inp.title), period=html.escape(w.label),
                        span=html.escape(span), made=made, tiles=tiles, sections=sections,
                        currency=html.escape(cur))


_MOST_ROWS = 15


def _dearest(rows: Sequence[Mapping[str, Any]], key: str) -> list[Mapping[str, Any]]:
    """The dearest :data:`_MOST_ROWS` groups and the TOTAL (rows come dearest first)."""
    groups = [r for r in rows if r[key] != "TOTAL"]
    return [*groups[:_MOST_ROWS], *(r for r in rows if r[key] == "TOTAL")]


def _caption(title: str, rows: Sequence[Mapping[str, Any]],
             shown: Sequence[Mapping[str, Any]]) -> str:
    hidden = len(rows) - len(shown)
    return f"{title} (the {len(shown) - 1} dearest of {len(rows) - 1})" if hidden else title


def _short(label: str, every: Every) -> str:
    """An axis label: 11-27 for a day, W48 for a week, the month as it is."""
    if every is Every.DAY:
        return label[5:]
    if every is Every.WEEK:
        return label.split("-", 1)[1]
    return label


def _tiles(total: Mapping[str, Any] | None, placements: Sequence[Mapping[str, Any]],
           cur: str) -> str:
    zero = money(0)
    t: Mapping[str, Any] = total or {}
    p = placements_totals(placements)
    items = [
        ("spent", t.get("cost", zero)), ("on-demand equivalent", t.get("on_demand_cost", zero)),
        ("saved vs on-demand", t.get("savings", zero)),
        ("lost to preemption", t.get("lost_cost", zero)),
        ("placement saved vs runner-up (expected)", p["saved_vs_runner_up"]),
    ]
    return "".join(f'<div class="tile"><div class="v" data-tile="{html.escape(k)}">'
                   f"{fmt_money(v, readable=True, sign='')} {html.escape(cur)}</div>"
                   f"<div>{html.escape(k)}</div></div>"
                   for k, v in items)


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}: {period}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; color: #222; background: #fafafa; }}
h1 {{ margin: 0 0 4px 0; font-size: 22px; }}
.sub {{ color: #666; margin-bottom: 18px; }}
.tiles {{ display: flex; flex-wrap: wrap; gap: 12px; margin-bottom: 18px; }}
.tile {{ background: white; border: 1px solid #ddd; border-radius: 6px; padding: 10px 16px;
  min-width: 150px; }}
.tile .v {{ font-size: 20px; font-weight: bold; }}
.pair {{ display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; background: white;
  border: 1px solid #ddd; border-radius: 6px; padding: 12px; margin-bottom: 16px; }}
figure {{ margin: 0; }}
.side {{ flex: 1; min-width: 320px; overflow-x: auto; }}
table {{ border-collapse: collapse; font-size: 12px; }}
caption {{ text-align: left; font-weight: bold; padding-bottom: 4px; }}
th, td {{ border-bottom: 1px solid #eee; padding: 3px 8px; text-align: right;
  white-space: nowrap; }}
th:first-child, td:first-child {{ text-align: left; }}
</style></head>
<body>
<h1>{title}</h1>
<div class="sub">Period {period} ({span}), in {currency}; attempts are charged to the period in
which they ended. Generated {made}.</div>
<div class="tiles">{tiles}</div>
{sections}
</body></html>
"""
