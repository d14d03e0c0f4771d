"""The month-end forecast: this month's spend so far plus the recent run rate until the month
ends, per team and project, against each budget. Pure: the clock comes in as ``now``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from gridbridge.units import fmt_time

from ._money import money
from ._periods import Window

__all__ = ["FORECAST_COLUMNS", "forecast"]

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
            line.update(budget=budget, forecast_left=budget - projected,
                        runs_out=_runs_out(budget - spent[name], rate_s, now, month))
        out.append(line)
    out.sort(key=lambda r: (-r["forecast_month_end"], r["budget_of"]))
    return out


def _runs_out(remaining: Decimal, rate_s: Decimal, now: float, month: Window) -> str:
    """When ``remaining`` is gone at ``rate_s`` a second: a time within this month,
    ``exhausted`` when nothing is left, ``-`` when not this month."""
    if remaining <= 0:
        return "exhausted"
    if rate_s > 0 and now + float(remaining / rate_s) < month.until:
        return fmt_time(now + float(remaining / rate_s))
    return "-"
