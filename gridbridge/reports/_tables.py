"""Report rows as people and spreadsheets read them: table cells with money as money and hours
rounded. CSV is :func:`gridbridge.views.csv_text` (exact decimal text, and no cell a spreadsheet
would run as a formula), the one CSV writer of the reports and the CLI, re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from gridbridge.views import csv_text

from ._money import MONEY_COLUMNS

__all__ = ["csv_text", "for_display"]


_HOUR_KEYS = frozenset({"core_hours", "gpu_hours", "allocation_core_hours", "allocation_used",
                        "allocation_left"})
_MONEY_KEYS = frozenset({
    *MONEY_COLUMNS, "budget", "budget_left", "spent_to_date", "run_rate_per_day",
    "forecast_month_end", "forecast_left", "expected_cost", "runner_up_cost", "vs_runner_up",
    "on_demand_cost", "vs_on_demand", "actual_cost", "saved_vs_runner_up",
    "saved_vs_on_demand", "spent", "left",
})


def for_display(summary: Iterable[Mapping[str, Any]], sign: str = "$") -> list[dict[str, Any]]:
    """The summary with money columns as money strings and hours rounded, for a table. A
    money column holding a dollar or more is shown in cents, unless an amount in it would
    then read as zero; otherwise it keeps six places. ``sign``: before each amount ("" where
    the currency is said once, as the HTML report does)."""
    summary = list(summary)
    cents = {key for key in _MONEY_KEYS if _in_cents(summary, key)}
    out = []
    for row in summary:
        shown = dict(row)
        for key, value in row.items():
            if value is None:
                continue
            if key in _HOUR_KEYS:
                v = _decimal(value)
                shown[key] = _rounded(v, 3 if abs(v) >= 1 or v == 0 else 5)
            elif key in _MONEY_KEYS:
                v = _decimal(value)
                places = 2 if key in cents or abs(v) >= 1 else 6  # fmt_money's columns
                text = _rounded(abs(v), places)
                shown[key] = f"-{sign}{text}" if v < 0 else f"{sign}{text}"
        out.append(shown)
    return out


def _decimal(value: Any) -> Decimal:
    """The exact amount: a Decimal as it is, a float as its shortest repr (as the CSV has it)."""
    return value if isinstance(value, Decimal) else Decimal(repr(float(value)))


def _rounded(value: Decimal, places: int) -> str:
    """``value`` to ``places`` decimals, half to even as the books round (float formatting
    would round 0.000105 up, the books down), with thousands separators."""
    return f"{value.quantize(Decimal(1).scaleb(-places), ROUND_HALF_EVEN):,.{places}f}"


def _in_cents(rows: Sequence[Mapping[str, Any]], key: str) -> bool:
    amounts = [abs(float(r[key])) for r in rows if r.get(key) is not None]
    nothing = all(a == 0 for a in amounts)  # a column of zeros reads 0.00, not 0.000000
    return (nothing or any(a >= 1 for a in amounts)) and not any(0 < a < 0.005 for a in amounts)
