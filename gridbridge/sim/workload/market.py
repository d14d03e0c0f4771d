"""The cloud market a replay runs against: spot price histories, on-demand prices, Spot Advisor
interruption buckets and spot availability traces, all read from real files.

Invariant: every lookup is by *simulated* seconds since the trace started. A price history
covers ``[t0, t1]``; simulated time 0 is ``t0`` and time wraps around modulo ``t1 - t0`` when the
trace is longer than the history (a 333-day trace replays a 90-day history about four times).
The cost of holding an instance over ``[a, b]`` is the exact integral of the step function::

    F(x) = floor(x / period) * F(period) + F(x mod period),   cost = F(b) - F(a)

Interruption rates: AWS publishes only a bucket of the monthly share of instances reclaimed.
The bucket's middle is read as the probability ``p`` that one instance is reclaimed within a
month of 730 hours, so the Poisson rate per instance-hour is ``-ln(1 - p) / 730``
(``gridbridge.costs.advisor_rate``, which the EC2 adapter uses too)::

    bucket   <5%    5-10%   10-15%   15-20%   >20%
    p        2.5%   7.5%    12.5%    17.5%    25%
"""

from __future__ import annotations

import bisect
import csv
import gzip
import json
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from gridbridge.costs import ADVISOR_MONTHLY, advisor_rate

__all__ = [
    "ADVISOR_MONTHLY",
    "Advisor",
    "Availability",
    "InstanceType",
    "MarketError",
    "PriceHistory",
    "PriceSeries",
    "advisor_rate",
    "read_availability",
    "read_on_demand",
]


class MarketError(ValueError):
    """A market file that cannot be used: the message names the file, the line and the field."""


def _text(path: Path) -> Iterator[str]:
    if not path.is_file():
        raise MarketError(f"{path}: no such file")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            yield from f
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise MarketError(f"{path}: cannot read: {exc}") from None


def _float(path: Path, line: int, field: str, text: str | None) -> float:
    try:
        value = float(text if text is not None else "")
    except ValueError:
        raise MarketError(f"{path}:{line}: field {field!r} is {text!r}, not a number") from None
    if not math.isfinite(value) or value < 0:
        raise MarketError(f"{path}:{line}: field {field!r} is {text!r}")
    return value


def _columns(path: Path, reader: csv.DictReader[str], needed: Iterable[str]) -> None:
    missing = [c for c in needed if c not in (reader.fieldnames or [])]
    if missing:
        raise MarketError(f"{path}:1: missing column(s) {', '.join(missing)} "
                          f"(has: {', '.join(reader.fieldnames or [])})")


@dataclass(frozen=True)
class InstanceType:
    """An instance type's shape and on-demand price in one region."""

    name: str
    vcpus: int
    memory_gb: float
    on_demand_per_hour: float


def read_on_demand(path: str | Path, region: str) -> dict[str, InstanceType]:
    """The on-demand table's Linux prices and shapes for ``region``."""
    p = Path(path)
    reader = csv.DictReader(_text(p))
    _columns(p, reader, ("region", "instance_type", "vcpu", "memory_gib",
                         "linux_ondemand_usd_per_hour"))
    out: dict[str, InstanceType] = {}
    for line, row in enumerate(reader, start=2):
        if row["region"] != region or not row["linux_ondemand_usd_per_hour"]:
            continue
        out[row["instance_type"]] = InstanceType(
            name=row["instance_type"], vcpus=int(_float(p, line, "vcpu", row["vcpu"])),
            memory_gb=_float(p, line, "memory_gib", row["memory_gib"]),
            on_demand_per_hour=_float(p, line, "linux_ondemand_usd_per_hour",
                                      row["linux_ondemand_usd_per_hour"]))
    if not out:
        raise MarketError(f"{p}: no on-demand Linux prices for region {region!r}")
    return out


class PriceSeries:
    """One (instance type, zone) spot price step function, integrated exactly with wrap-around."""

    def __init__(self, starts: list[float], prices: list[float], period: float) -> None:
        self.starts = starts
        """Offsets from the history's start (the first is 0: the price in force then)."""
        self.prices = prices
        self.period = period
        self._hint = 0  # replays ask in time order: the last index is usually still right
        self._cum = [0.0]
        for i, price in enumerate(prices):
            until = starts[i + 1] if i + 1 < len(starts) else period
            self._cum.append(self._cum[-1] + price * (until - starts[i]) / 3600.0)

    def price_at(self, t: float) -> float:
        """$/h in force at simulated second ``t``."""
        x = t % self.period if self.period > 0 else 0.0
        i, starts = self._hint, self.starts
        if not (starts[i] <= x and (i + 1 == len(starts) or x < starts[i + 1])):
            i = self._hint = max(bisect.bisect_right(starts, x) - 1, 0)
        return self.prices[i]

    def _integral(self, t: float) -> float:
        if self.period <= 0:
            return self.prices[0] * t / 3600.0
        laps, x = divmod(t, self.period)
        i = max(bisect.bisect_right(self.starts, x) - 1, 0)
        part = self._cum[i] + self.prices[i] * (x - self.starts[i]) / 3600.0
        return laps * self._cum[-1] + part

    def cost(self, start: float, end: float) -> float:
        """Dollars for one instance held over simulated ``[start, end]``."""
        return self._integral(end) - self._integral(start) if end > start else 0.0


@dataclass
class PriceHistory:
    """The spot price histories of one region: ``series[(type, zone)]``."""

    path: str
    region: str
    start: datetime
    end: datetime
    series: dict[tuple[str, str], PriceSeries]

    @property
    def period_s(self) -> float:
        return (self.end - self.start).total_seconds()


def _timestamp(path: Path, line: int, text: str | None) -> datetime:
    try:
        return datetime.fromisoformat(text or "")
    except ValueError:
        raise MarketError(f"{path}:{line}: field 'timestamp' is {text!r}, not ISO-8601") from None


def read_spot_prices(path: str | Path, types: Iterable[str] | None = None) -> PriceHistory:
    """Read a spot price CSV (one row per price change); ``types``: keep only these."""
    p = Path(path)
    wanted = None if types is None else set(types)
    reader = csv.DictReader(_text(p))
    _columns(p, reader, ("timestamp", "region", "availability_zone", "instance_type",
                         "spot_price_usd_per_hour"))
    raw: dict[tuple[str, str], list[tuple[datetime, float]]] = {}
    first: datetime | None = None
    last: datetime | None = None
    regions: set[str] = set()
    for line, row in enumerate(reader, start=2):
        ts = row["timestamp"]
        when = _timestamp(p, line, ts)
        first = when if first is None or when < first else first
        last = when if last is None or when > last else last
        if wanted is not None and row["instance_type"] not in wanted:
            continue
        regions.add(row["region"])
        price = _float(p, line, "spot_price_usd_per_hour", row["spot_price_usd_per_hour"])
        key = (row["instance_type"], row["availability_zone"] or row["region"])
        raw.setdefault(key, []).append((when, price))
    if first is None or last is None:
        raise MarketError(f"{p}: no price rows")
    if len(regions) > 1:
        raise MarketError(f"{p}: prices of several regions ({', '.join(sorted(regions))}); "
                          "give one region's history")
    period = (last - first).total_seconds()
    series = {}
    for key, rows in raw.items():
        rows.sort(key=lambda r: r[0])
        starts = [max((w - first).total_seconds(), 0.0) for w, _ in rows]
        starts[0] = 0.0  # the first price holds from the window's start
        keep = [i for i in range(len(starts)) if i + 1 == len(starts) or starts[i + 1] > starts[i]]
        series[key] = PriceSeries([starts[i] for i in keep], [rows[i][1] for i in keep], period)
    region = next(iter(regions), "")
    return PriceHistory(path=str(p), region=region, start=first, end=last, series=series)


@dataclass(frozen=True)
class Advisor:
    """Spot Advisor buckets and savings of one region (Linux): ``{type: (bucket, saving %)}``."""

    region: str
    entries: dict[str, tuple[int, int]]

    def rate(self, instance_type: str) -> float | None:
        entry = self.entries.get(instance_type)
        return None if entry is None else advisor_rate(entry[0])


def read_advisor(path: str | Path, region: str) -> Advisor:
    """Read an AWS Spot Advisor snapshot for ``region`` (the ``Linux`` entries)."""
    p = Path(path)
    try:
        data: Any = json.loads("".join(_text(p)))
    except json.JSONDecodeError as exc:
        raise MarketError(f"{p}:{exc.lineno}: not JSON: {exc.msg}") from None
    try:
        entries = data["spot_advisor"][region]["Linux"]
        out = {t: (int(e["r"]), int(e["s"])) for t, e in entries.items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise MarketError(f"{p}: no usable spot_advisor.{region}.Linux entries ({exc!r})") from None
    return Advisor(region=region, entries=out)


@dataclass(frozen=True)
class Availability:
    """A replayed spot availability trace for one (type, zone): one flag per tick, wrapped."""

    instance_type: str
    zone: str
    gap_s: float
    up: tuple[bool, ...]
    _down_ticks: tuple[int, ...]

    @property
    def period_s(self) -> float:
        return self.gap_s * len(self.up)

    def available(self, t: float) -> bool:
        """Whether an instance can be had at simulated second ``t``."""
        return self.up[int(t // self.gap_s) % len(self.up)]

    def next_loss(self, t: float) -> float:
        """The first simulated second after ``t`` at which the instance is taken back
        (``math.inf`` when the trace never loses it)."""
        if not self._down_ticks:
            return math.inf
        n = len(self.up)
        tick = int(t // self.gap_s) + 1
        lap, i = divmod(tick, n)
        j = bisect.bisect_left(self._down_ticks, i)
        if j == len(self._down_ticks):
            lap, j = lap + 1, 0
        return (lap * n + self._down_ticks[j]) * self.gap_s


_NODES_RE = re.compile(r"(\d+)-node")


def read_availability(path: str | Path, instance_type: str, zone: str,
                      nodes: int | None = None) -> Availability:
    """Read a SkyPilot spot trace (``{"metadata": {"gap_seconds": G}, "data": [...]}``).

    One-node traces: 1 means no instance, 0 an instance running. ``nodes`` > 1 (read from a
    ``N-node`` folder name when not given): the value is how many of the N are held, and the
    type counts as available while at least one is.
    """
    p = Path(path)
    if nodes is None:
        m = _NODES_RE.search(str(p))
        nodes = int(m.group(1)) if m else 1
    try:
        data: Any = json.loads("".join(_text(p)))
        gap = float(data["metadata"]["gap_seconds"])
        values = [float(v) for v in data["data"]]
    except json.JSONDecodeError as exc:
        raise MarketError(f"{p}:{exc.lineno}: not JSON: {exc.msg}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise MarketError(f"{p}: needs metadata.gap_seconds and a numeric data list "
                          f"({exc!r})") from None
    if gap <= 0 or not values:
        raise MarketError(f"{p}: gap_seconds must be > 0 and data non-empty")
    up = tuple((v == 0) if nodes == 1 else (v > 0) for v in values)
    down = tuple(i for i, u in enumerate(up) if not u)
    return Availability(instance_type, zone, gap, up, down)
