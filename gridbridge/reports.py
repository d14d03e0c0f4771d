"""Finance's view: the cost ledger summed by site, team, project, user, tier or job, over a
period, against budgets and prepaid allocations; a month-end forecast; what placement saved.

Each ledger row is one finished attempt, charged to the period in which it *ended* (the ledger
is append-only and an attempt is charged once, so a report for a past period gives the same
numbers however often it is regenerated). Savings are what the same work would have cost on
on-demand capacity minus what it cost, and ``lost_cost`` is what the work thrown away by
preemptions cost.

Money is :class:`~decimal.Decimal`: each ledger amount is rounded once to a millionth of the
currency unit (:data:`MONEY_PLACES`), so every total is the exact sum of the rows above it and
CSV or JSON carry no float artefacts. Everything here is pure: rows in, rows out, the clock
passed in as ``now``.
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from typing import Any

from gridbridge.views import fmt_money

__all__ = [
    "COST_COLUMNS",
    "FORECAST_COLUMNS",
    "MONEY_COLUMNS",
    "MONEY_PLACES",
    "PLACEMENT_COLUMNS",
    "Allocation",
    "Every",
    "GroupBy",
    "PeriodError",
    "Window",
    "cost_report",
    "cost_report_columns",
    "cost_summary",
    "csv_text",
    "for_display",
    "forecast",
    "money",
    "parse_instant",
    "placements",
    "placements_totals",
]


class GroupBy(StrEnum):
    SITE = "site"
    TEAM = "team"
    PROJECT = "project"
    USER = "user"
    TIER = "tier"
    JOB = "job_id"


class Every(StrEnum):
    """How a period is cut into rows: calendar days, ISO weeks (Monday first) or months, UTC."""

    DAY = "day"
    WEEK = "week"
    MONTH = "month"


COST_COLUMNS: Sequence[str] = (
    "attempts", "preempted", "core_hours", "gpu_hours", "cost", "on_demand_cost", "savings",
    "lost_cost",
)
MONEY_COLUMNS: Sequence[str] = ("cost", "on_demand_cost", "savings", "lost_cost")
MONEY_PLACES = Decimal("0.000001")
"""Ledger amounts are rounded once to this (a millionth of the currency unit): an attempt of a
few seconds on a cheap site costs well under a cent and must still add up."""
_HOURS = Decimal("0.000001")


def money(x: float | Decimal | None) -> Decimal:
    """An amount as a Decimal rounded to :data:`MONEY_PLACES` (``None`` is 0)."""
    if x is None:
        return Decimal(0).quantize(MONEY_PLACES)
    return Decimal(repr(x) if isinstance(x, float) else x).quantize(MONEY_PLACES,
                                                                    ROUND_HALF_EVEN)


class PeriodError(ValueError):
    """A period or date that cannot be read; the message says what is accepted."""


# -- periods -----------------------------------------------------------------------------------


def _ts(d: datetime) -> float:
    return d.timestamp()


def _month_start(ts: float) -> datetime:
    d = datetime.fromtimestamp(ts, UTC)
    return datetime(d.year, d.month, 1, tzinfo=UTC)


def _next_month(d: datetime) -> datetime:
    return datetime(d.year + (d.month == 12), d.month % 12 + 1, 1, tzinfo=UTC)


def parse_instant(text: str, what: str) -> datetime:
    """A date (``2026-11-27``, midnight UTC) or an ISO 8601 time (UTC unless it says)."""
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        d = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise PeriodError(f"{what}: {text!r} is not a date (2026-11-27) or an ISO 8601 time "
                          "(2026-11-27T13:00:00Z)") from e
    return d if d.tzinfo else d.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Window:
    """A half-open span of time ``[since, until)`` in UNIX seconds, with a label."""

    since: float
    until: float
    label: str

    @classmethod
    def period(cls, text: str) -> Window:
        """``2026`` (a year), ``2026-11`` (a month) or ``2026-11-27`` (a day), UTC."""
        if m := re.fullmatch(r"(\d{4})", text):
            y = int(m[1])
            return cls(_ts(datetime(y, 1, 1, tzinfo=UTC)), _ts(datetime(y + 1, 1, 1, tzinfo=UTC)),
                       text)
        if m := re.fullmatch(r"(\d{4})-(\d{2})", text):
            y, mo = int(m[1]), int(m[2])
            if not 1 <= mo <= 12:
                raise PeriodError(f"--period: month {mo} of {text!r} is not 01..12")
            start = datetime(y, mo, 1, tzinfo=UTC)
            return cls(_ts(start), _ts(_next_month(start)), text)
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            start = parse_instant(text, "--period")
            return cls(_ts(start), _ts(start + timedelta(days=1)), text)
        raise PeriodError(f"--period: {text!r} is not a year (2026), a month (2026-11) or a day "
                          "(2026-11-27)")

    @classmethod
    def between(cls, since: str | None, until: str | None, now: float) -> Window:
        """From ``since`` (default: the beginning of time) to ``until`` (default: now)."""
        lo = _ts(parse_instant(since, "--since")) if since else 0.0
        hi = _ts(parse_instant(until, "--until")) if until else now
        if hi <= lo:
            raise PeriodError(f"--until ({until or 'now'}) must come after --since ({since})")
        label = f"{since or 'start'}..{until or 'now'}"
        return cls(lo, hi, label)

    @classmethod
    def this_month(cls, now: float) -> Window:
        start = _month_start(now)
        return cls(_ts(start), _ts(_next_month(start)), start.strftime("%Y-%m"))

    def holds(self, ts: float) -> bool:
        return self.since <= ts < self.until

    def cut(self, every: Every | None) -> list[Window]:
        """The window as consecutive calendar pieces (itself when ``every`` is None)."""
        if every is None:
            return [self]
        out: list[Window] = []
        t = self.since
        while t < self.until:
            d = datetime.fromtimestamp(t, UTC)
            if every is Every.DAY:
                start = datetime(d.year, d.month, d.day, tzinfo=UTC)
                end, label = start + timedelta(days=1), start.strftime("%Y-%m-%d")
            elif every is Every.WEEK:
                start = datetime(d.year, d.month, d.day, tzinfo=UTC) - timedelta(days=d.weekday())
                iso = start.isocalendar()
                end, label = start + timedelta(days=7), f"{iso.year}-W{iso.week:02d}"
            else:
                start = datetime(d.year, d.month, 1, tzinfo=UTC)
                end, label = _next_month(start), start.strftime("%Y-%m")
            out.append(Window(max(t, _ts(start)), min(_ts(end), self.until), label))
            t = _ts(end)
        return out

    def months(self) -> list[Window]:
        """The calendar months this window touches, whole."""
        out = []
        start = _month_start(self.since)
        while _ts(start) < self.until:
            nxt = _next_month(start)
            out.append(Window(_ts(start), _ts(nxt), start.strftime("%Y-%m")))
            start = nxt
        return out


@dataclass(frozen=True)
class Allocation:
    """A site's prepaid core-hours: ``core_hours`` each calendar month (``every="month"``) or
    once for all time (``every="total"``); with ``offer_key``, only for that offer of the site
    (a Slurm partition's allocation)."""

    site: str
    core_hours: float
    every: str = "month"
    offer_key: str | None = None

    def covers(self, row: Mapping[str, Any]) -> bool:
        return row["site"] == self.site and (self.offer_key is None
                                             or row.get("offer_key") == self.offer_key)


# -- the cost report ---------------------------------------------------------------------------


def cost_report_columns(by: GroupBy, *, every: Every | None = None, budgets: bool = False,
                        allocations: bool = False) -> list[str]:
    """The columns :func:`cost_report` fills for these options, in order."""
    cols = ["period"] if every is not None else []
    cols.append(by.value)
    if by is GroupBy.JOB:
        cols += ["name", "state"]
    cols += list(COST_COLUMNS)
    if budgets and by in (GroupBy.TEAM, GroupBy.PROJECT):
        cols += ["budget", "budget_left"]
    if allocations and by is GroupBy.SITE:
        cols += ["allocation_core_hours", "allocation_used", "allocation_left"]
    return [*cols, "currency"]


def _blank() -> dict[str, Any]:
    acc: dict[str, Any] = {"attempts": 0, "preempted": 0}
    for key in ("core_hours", "gpu_hours"):
        acc[key] = Decimal(0)
    for key in MONEY_COLUMNS:
        acc[key] = money(0)
    return acc


def _add(acc: dict[str, Any], row: Mapping[str, Any]) -> None:
    acc["attempts"] += 1
    acc["preempted"] += 1 if row["outcome"] in {"PREEMPTED", "LOST"} else 0
    acc["core_hours"] += Decimal(repr(float(row["core_hours"]))).quantize(_HOURS)
    acc["gpu_hours"] += Decimal(repr(float(row["gpu_hours"]))).quantize(_HOURS)
    cost, od = money(row["cost"]), money(row["on_demand_cost"])
    acc["cost"] += cost
    acc["on_demand_cost"] += od
    acc["savings"] += od - cost
    acc["lost_cost"] += money(row["lost_cost"])


def cost_report(
    rows: Sequence[Mapping[str, Any]],
    by: GroupBy,
    window: Window,
    *,
    every: Every | None = None,
    jobs: Mapping[str, tuple[str, str]] | None = None,
    budgets: Mapping[str, float] | None = None,
    allocations: Sequence[Allocation] = (),
    currency: str = "USD",
) -> list[dict[str, Any]]:
    """Ledger rows that ended in ``window``, summed per (piece of the window, group), dearest
    first within a piece, then one TOTAL row for the whole window (the exact sum of the rows).

    ``rows`` may hold the whole ledger: budgets and allocations are judged on the whole months
    (or all time) they cover, up to the end of each row's piece. ``jobs`` maps a job id to its
    (name, state) for job rows. ``budgets`` maps a team or project name (matching ``by``) to
    its monthly budget: ``budget`` is that times the calendar months the piece touches, and
    ``budget_left`` what was left of it when the piece ended. ``allocation_*`` say the same of
    a site's prepaid core-hours.
    """
    key = by.value
    pieces = window.cut(every)
    groups: dict[tuple[int, str], dict[str, Any]] = {}
    total = _blank()
    for row in rows:
        if not window.holds(row["end"]):
            continue
        i = next(n for n, p in enumerate(pieces) if p.holds(row["end"]))
        acc = groups.setdefault((i, str(row[key])), _blank())
        _add(acc, row)
        _add(total, row)
    out: list[dict[str, Any]] = []
    for i, piece in enumerate(pieces):
        mine = [(g, acc) for (n, g), acc in groups.items() if n == i]
        for group, acc in sorted(mine, key=lambda ga: (-ga[1]["cost"], ga[0])):
            line: dict[str, Any] = {"period": piece.label, key: group, **acc,
                                    "currency": currency}
            if jobs is not None and by is GroupBy.JOB:
                line["name"], line["state"] = jobs.get(group, ("", ""))
            if budgets is not None and by in (GroupBy.TEAM, GroupBy.PROJECT):
                line.update(_budget(rows, key, group, piece, budgets))
            if by is GroupBy.SITE:
                line.update(_allocation(rows, group, piece, allocations))
            out.append(line)
    if out:
        out.append({"period": window.label, key: "TOTAL", **total, "currency": currency})
    return out


def _budget(rows: Iterable[Mapping[str, Any]], key: str, group: str, piece: Window,
            budgets: Mapping[str, float]) -> dict[str, Any]:
    if group not in budgets:
        return {"budget": None, "budget_left": None}
    months = piece.months()
    budget = money(budgets[group]) * len(months)
    spent = sum((money(r["cost"]) for r in rows
                 if str(r[key]) == group and months[0].since <= r["end"] < piece.until),
                money(0))
    return {"budget": budget, "budget_left": budget - spent}


def _allocation(rows: Sequence[Mapping[str, Any]], site: str, piece: Window,
                allocations: Sequence[Allocation]) -> dict[str, Any]:
    """A site's allocations (one, or one per partition) summed: granted, used, left."""
    mine = [a for a in allocations if a.site == site]
    if not mine:
        return {}
    granted = used = Decimal(0)
    for alloc in mine:
        per = Decimal(repr(float(alloc.core_hours))).quantize(_HOURS)
        if alloc.every == "total":
            since, grant = 0.0, per
        else:
            months = piece.months()
            since, grant = months[0].since, per * len(months)
        granted += grant
        used += sum((Decimal(repr(float(r["core_hours"]))).quantize(_HOURS) for r in rows
                     if alloc.covers(r) and since <= r["end"] < piece.until), Decimal(0))
    return {"allocation_core_hours": granted, "allocation_used": used,
            "allocation_left": granted - used}


# -- the forecast ------------------------------------------------------------------------------


FORECAST_COLUMNS: Sequence[str] = (
    "budget_of", "spent_to_date", "run_rate_per_day", "forecast_month_end", "budget",
    "forecast_left", "runs_out", "currency",
)


def forecast(rows: Sequence[Mapping[str, Any]], now: float, *,
             teams: Mapping[str, float], projects: Mapping[str, float],
             rate_window_s: float = 7 * 86400.0, currency: str = "USD") -> list[dict[str, Any]]:
    """Month-end spend per team and project at the current run rate, against its budget.

    The run rate is the spend of the last ``rate_window_s`` (a week by default) per second; the
    forecast is this month's spend so far plus that rate until the month ends. ``runs_out`` is
    when the budget would be gone at that rate (``exhausted`` if it already is, ``-`` if not
    within this month). Every team and project with a budget or with spend this month is
    listed, dearest forecast first.
    """
    month = Window.this_month(now)
    recent_since = now - rate_window_s
    spent: dict[str, Decimal] = defaultdict(lambda: money(0))
    recent: dict[str, Decimal] = defaultdict(lambda: money(0))
    for row in rows:
        for name in (f"team:{row['team']}", f"project:{row['project']}"):
            if month.since <= row["end"] < now:
                spent[name] += money(row["cost"])
            if recent_since <= row["end"] < now:
                recent[name] += money(row["cost"])
    budget_of = {**{f"team:{k}": v for k, v in teams.items()},
                 **{f"project:{k}": v for k, v in projects.items()}}
    left_s = Decimal(repr(max(month.until - now, 0.0)))
    out = []
    for name in sorted(set(spent) | set(budget_of)):
        rate_s = recent[name] / Decimal(repr(rate_window_s))
        projected = money(spent[name] + rate_s * left_s)
        line: dict[str, Any] = {
            "budget_of": name, "spent_to_date": spent[name],
            "run_rate_per_day": money(rate_s * 86400), "forecast_month_end": projected,
            "budget": None, "forecast_left": None, "runs_out": "", "currency": currency,
        }
        if name in budget_of:
            budget = money(budget_of[name])
            line.update(budget=budget, forecast_left=budget - projected)
            remaining = budget - spent[name]
            if remaining <= 0:
                line["runs_out"] = "exhausted"
            elif rate_s > 0 and now + float(remaining / rate_s) < month.until:
                at = datetime.fromtimestamp(now + float(remaining / rate_s), UTC)
                line["runs_out"] = at.strftime("%Y-%m-%dT%H:%M:%SZ")
            else:
                line["runs_out"] = "-"
        out.append(line)
    out.sort(key=lambda r: (-r["forecast_month_end"], r["budget_of"]))
    return out


# -- placements --------------------------------------------------------------------------------


PLACEMENT_COLUMNS: Sequence[str] = (
    "placed_at", "job_id", "name", "attempt", "site", "offer_key", "expected_cost",
    "runner_up", "runner_up_cost", "vs_runner_up", "on_demand_cost", "vs_on_demand",
    "actual_cost", "currency",
)


def placements(decisions: Iterable[Mapping[str, Any]], window: Window, *,
               jobs: Mapping[str, tuple[str, str]] | None = None,
               actual: Mapping[str, float] | None = None,
               currency: str = "USD") -> list[dict[str, Any]]:
    """One row per placement made in ``window``: where it went and its expected cost, the
    runner-up (the best other feasible candidate of the same decision, in placement's own
    order) and its expected cost, and the differences (positive: placement saved that much).

    ``decisions`` are the stored candidate rows (mappings with the decision table's columns,
    in id order); ``actual`` maps an attempt id (``JOB.N``) to what its ledger row charged.
    A placement with no feasible runner-up shows none and counts 0 against it.
    """
    by_decision: dict[tuple[str, int, float], list[Mapping[str, Any]]] = defaultdict(list)
    for d in decisions:
        if window.holds(d["at"]):
            by_decision[(d["job_id"], d["attempt"], d["at"])].append(d)
    out = []
    for (job_id, attempt, at), cands in by_decision.items():
        chosen = next((c for c in cands if c["chosen"]), None)
        if chosen is None:
            continue
        runner = next((c for c in cands if c["feasible"] and not c["chosen"]
                       and c["expected_cost"] is not None), None)
        cost = money(chosen["expected_cost"])
        od = money(chosen["on_demand_cost"]) if chosen["on_demand_cost"] is not None else None
        attempt_id = f"{job_id}.{attempt}"
        line: dict[str, Any] = {
            "placed_at": datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "job_id": job_id, "name": (jobs or {}).get(job_id, ("", ""))[0], "attempt": attempt,
            "site": _where(chosen), "expected_cost": cost,
            "offer_key": chosen["offer_key"] or "",
            "runner_up": _where(runner) if runner else "",
            "runner_up_cost": money(runner["expected_cost"]) if runner else None,
            "vs_runner_up": money(runner["expected_cost"]) - cost if runner else money(0),
            "on_demand_cost": od,
            "vs_on_demand": od - cost if od is not None else money(0),
            "actual_cost": (money(actual[attempt_id])
                            if actual is not None and attempt_id in actual else None),
            "currency": currency,
        }
        out.append(line)
    out.sort(key=lambda r: (r["placed_at"], r["job_id"], r["attempt"]))
    return out


def _where(cand: Mapping[str, Any]) -> str:
    key = cand.get("offer_key")
    return f"{cand['site']}/{key}" if key and key != "default" else str(cand["site"])


def placements_totals(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The sums a finance reader wants first: how much placement saved (expected) over always
    taking the runner-up and over always taking on-demand capacity."""
    return {
        "placements": len(rows),
        "with_runner_up": sum(1 for r in rows if r["runner_up"]),
        "expected_cost": sum((r["expected_cost"] for r in rows), money(0)),
        "saved_vs_runner_up": sum((r["vs_runner_up"] for r in rows), money(0)),
        "saved_vs_on_demand": sum((r["vs_on_demand"] for r in rows), money(0)),
        "actual_cost": sum((r["actual_cost"] for r in rows if r["actual_cost"] is not None),
                           money(0)),
    }


# -- CSV -------------------------------------------------------------------------------------


_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def csv_text(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    """Rows as CSV: amounts as their exact decimal text, None as nothing, and a text cell that
    a spreadsheet would run as a formula (a team named ``=HYPERLINK(...)``) prefixed with
    ``'`` so that it stays text. Numbers are never touched (a saving may be negative)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        cells = []
        for c in columns:
            v = row.get(c)
            text = "" if v is None else str(v)
            if isinstance(v, str) and text.startswith(_FORMULA):
                text = "'" + text
            cells.append(text)
        writer.writerow(cells)
    return buf.getvalue()


# -- the older whole-ledger summary (the demo and a few tests read it) -------------------------


def cost_summary(rows: Iterable[Mapping[str, Any]], by: GroupBy) -> list[dict[str, Any]]:
    """Sum ledger rows per group, sorted by cost (dearest first), with a TOTAL row last."""
    groups: dict[str, dict[str, Any]] = defaultdict(lambda: dict.fromkeys(COST_COLUMNS, 0.0))
    total: dict[str, Any] = dict.fromkeys(COST_COLUMNS, 0.0)
    for row in rows:
        for acc in (groups[str(row[by.value])], total):
            acc["attempts"] += 1
            acc["preempted"] += 1 if row["outcome"] in {"PREEMPTED", "LOST"} else 0
            for key in ("core_hours", "gpu_hours", "cost", "on_demand_cost", "lost_cost"):
                acc[key] += float(row[key])
            acc["savings"] = acc["on_demand_cost"] - acc["cost"]
    out = [{by.value: k, **v} for k, v in sorted(groups.items(), key=lambda kv: -kv[1]["cost"])]
    if out:
        out.append({by.value: "TOTAL", **total})
    for row in out:
        row["attempts"] = int(row["attempts"])
        row["preempted"] = int(row["preempted"])
    return out


def for_display(summary: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The summary with money columns as money strings and hours rounded, for a table. A
    money column holding a dollar or more is shown in cents, unless an amount in it would
    then read as zero; otherwise it keeps six places."""
    summary = list(summary)
    cents = {key for key in _MONEY_KEYS if _in_cents(summary, key)}
    out = []
    for row in summary:
        shown = dict(row)
        for key, value in row.items():
            if value is None:
                continue
            if key in ("core_hours", "gpu_hours", "allocation_core_hours", "allocation_used",
                       "allocation_left"):
                v = float(value)
                shown[key] = f"{v:,.3f}" if abs(v) >= 1 or v == 0 else f"{v:.5f}"
            elif key in cents:
                shown[key] = f"-${-float(value):,.2f}" if value < 0 else f"${float(value):,.2f}"
            elif key in _MONEY_KEYS:
                v = float(value)
                shown[key] = "-" + fmt_money(-v) if v < 0 else fmt_money(v)
        out.append(shown)
    return out


def _in_cents(rows: Sequence[Mapping[str, Any]], key: str) -> bool:
    amounts = [abs(float(r[key])) for r in rows if r.get(key) is not None]
    return any(a >= 1 for a in amounts) and not any(0 < a < 0.005 for a in amounts)


_MONEY_KEYS = frozenset({
    *MONEY_COLUMNS, "budget", "budget_left", "spent_to_date", "run_rate_per_day",
    "forecast_month_end", "forecast_left", "expected_cost", "runner_up_cost", "vs_runner_up",
    "on_demand_cost", "vs_on_demand", "actual_cost", "saved_vs_runner_up",
    "saved_vs_on_demand",
})

