"""What EC2 capacity costs and how often it is taken back, from the spot price history, the
on-demand price table and the AWS Spot Advisor feed. Pure functions of what is passed in.

Invariant: an attempt is billed per interval of constant spot price over the seconds its
instance ran, one minute at least, as EC2 bills Linux instances::

    prices (t0,$a) (t1,$b) ...   start ─────┬──────────── end
                                  [start,t1) at $a  [t1,end) at $b
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from gridbridge.adapter import BilledInterval
from gridbridge.costs import advisor_rate

__all__ = ["MIN_BILLED_S", "billed_intervals", "interruption_rate", "on_demand_price",
           "transition_time"]

MIN_BILLED_S = 60.0
_HOURS_PER_MONTH = 730.0


def billed_intervals(prices: Sequence[tuple[float, float]], start: float,
                     end: float) -> tuple[BilledInterval, ...]:
    """Split ``[start, end]`` at the price changes ``prices`` (``(time, $/h)``, sorted), one
    interval per price in force; the run is billed one minute at least."""
    end = max(end, start + MIN_BILLED_S)
    out: list[BilledInterval] = []
    for i, (at, price) in enumerate(prices):
        until = prices[i + 1][0] if i + 1 < len(prices) else math.inf
        lo, hi = max(start, at), min(end, until)
        if hi > lo:
            out.append(BilledInterval(start=lo, end=hi, per_hour=price))
    if prices and start < prices[0][0]:  # history starts late: its first price before it
        out.insert(0, BilledInterval(start=start, end=min(end, prices[0][0]),
                                     per_hour=prices[0][1]))
    return tuple(out)


def _open_text(path: Path) -> Iterator[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        yield from f


def _load_on_demand(path: Path, region: str) -> dict[str, float]:
    out = {}
    for row in csv.DictReader(_open_text(path)):
        if row.get("region") == region and row.get("linux_ondemand_usd_per_hour"):
            out[row["instance_type"]] = float(row["linux_ondemand_usd_per_hour"])
    return out


def _load_advisor(path: Path, region: str) -> dict[str, tuple[int, int]]:
    """``{type: (interruption bucket, saving %)}`` for Linux in ``region``."""
    data = json.loads("".join(_open_text(path)))
    entries = data.get("spot_advisor", {}).get(region, {}).get("Linux", {})
    return {t: (int(v["r"]), int(v["s"])) for t, v in entries.items()}

def on_demand_price(known: Mapping[str, float], advisor: Mapping[str, tuple[int, int]],
                    instance_type: str, spot: float) -> tuple[float, str]:
    """The on-demand price per hour of ``instance_type`` and a note on how it was found:
    ``known`` prices, else estimated from the Spot Advisor's saving, else the spot price."""
    if instance_type in known:
        return known[instance_type], ""
    if instance_type in advisor:
        saving = advisor[instance_type][1]
        return spot / max(0.01, 1 - saving / 100), (
            f"on-demand price estimated from the Spot Advisor's {saving}% saving")
    return spot, "no on-demand price known: no saving is claimed"


def interruption_rate(configured: Mapping[str, float], advisor: Mapping[str, tuple[int, int]],
                      instance_type: str, per_month: float) -> tuple[float, str]:
    """Interruptions per hour of ``instance_type`` and a note: ``configured``, else the Spot
    Advisor's bucket, else ``per_month`` (a chance within a month) as a rate."""
    if instance_type in configured:
        return configured[instance_type], ""
    if instance_type in advisor:
        return advisor_rate(advisor[instance_type][0]), ""
    return -math.log1p(-per_month) / _HOURS_PER_MONTH, (
        f"interruption rate unknown: {per_month:.0%} a month assumed")


def transition_time(reason: str) -> float | None:
    """The time in ``StateTransitionReason`` ('User initiated (2026-11-26 22:23:37 GMT)')."""
    m = re.search(r"\((\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (?:GMT|UTC)\)", reason)
    if not m:
        return None
    return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()

