"""Amounts and hours as exact decimals: each ledger number is rounded once, here, so every total
a report prints is the exact sum of the rows above it.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_EVEN, Decimal

__all__ = ["MONEY_COLUMNS", "MONEY_PLACES", "hours", "money"]

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


def hours(x: float) -> Decimal:
    """Core- or GPU-hours as a Decimal rounded to a millionth of an hour."""
    return Decimal(repr(float(x))).quantize(_HOURS)
