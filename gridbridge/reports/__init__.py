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
passed in as ``now``::

    ledger rows ──┬─> cost_report(by, Window.cut(every))  ─> rows + TOTAL  ──┐
                  └─> forecast(now, budgets)              ─> rows          ──┼─> csv_text
    decision rows ──> placements(window) ─> placements_totals              ──┘   for_display

Private modules, one idea each: ``_periods`` (windows of time), ``_money`` (exact amounts),
``_costs``, ``_forecast``, ``_placements`` (the three reports), ``_tables`` (CSV and cells).
"""

from __future__ import annotations

from ._costs import (
    COST_COLUMNS,
    Allocation,
    GroupBy,
    cost_report,
    cost_report_columns,
    cost_summary,
)
from ._forecast import FORECAST_COLUMNS, forecast
from ._money import MONEY_COLUMNS, MONEY_PLACES, money
from ._periods import Every, PeriodError, Window, parse_instant
from ._placements import PLACEMENT_COLUMNS, placements, placements_totals
from ._tables import csv_text, for_display

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
