"""Spot availability traces: reading one zone's file, aligning the zones of one region, and
the aligned zones as arrays the replay and the omniscient optimum index by [zone, tick].

Invariant: a trace is read whole and checked before anything uses it; a bad file fails with
its path and what is wrong, never with a bare ``KeyError``. Aligned zones share one tick and
one start, cut to the shortest.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = ["AvailabilityTrace", "Bools", "Floats", "Zones", "align", "load_trace"]

Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class AvailabilityTrace:
    """One zone's availability: ``available[i]`` holds during tick i (``gap_seconds`` long);
    ``prices[i]`` is the spot price per hour then, or None where the file carries none."""

    name: str
    gap_seconds: float
    available: Bools
    prices: Floats | None = None

    def __len__(self) -> int:
        return int(self.available.shape[0])


def load_trace(path: Path) -> AvailabilityTrace:
    """Read a spot-traces file (``.json`` or ``.json.gz``): ``{"metadata": {"gap_seconds": G},
    "data": [...], "prices": [...]?}``. Values 0/1 are the 1-node encoding (0: an instance
    runs, 1: none); a file with any value above 1 counts instances held (the 4-node files),
    and a one-instance job has spot wherever that count is at least 1. Raises ValueError
    naming the file and what is wrong with it."""
    try:
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable JSON trace ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise ValueError(f"{path}: expected an object with a 'data' list")
    gap = (doc.get("metadata") or {}).get("gap_seconds") if isinstance(
        doc.get("metadata"), dict) else None
    if isinstance(gap, bool) or not isinstance(gap, int | float) or not gap > 0:
        raise ValueError(f"{path}: metadata.gap_seconds must be a positive number, got {gap!r}")
    data = doc["data"]
    if not data:
        raise ValueError(f"{path}: 'data' is empty")
    bad = next((i for i, v in enumerate(data) if isinstance(v, bool)
                or not isinstance(v, int) or v < 0), None)
    if bad is not None:
        raise ValueError(f"{path}: data[{bad}] is {data[bad]!r}; expected a count >= 0")
    values = np.asarray(data, dtype=np.int64)
    available = values >= 1 if values.max() > 1 else values == 0
    prices = doc.get("prices")
    price_arr: Floats | None = None
    if prices is not None:
        if not isinstance(prices, list) or len(prices) != len(data):
            raise ValueError(f"{path}: 'prices' must be a list as long as 'data' ({len(data)})")
        bad = next((i for i, p in enumerate(prices) if isinstance(p, bool)
                    or not isinstance(p, int | float) or not p > 0), None)
        if bad is not None:
            raise ValueError(f"{path}: prices[{bad}] is {prices[bad]!r}; expected a price > 0")
        price_arr = np.asarray(prices, dtype=np.float64)
    name = path.name.removesuffix(".gz").removesuffix(".json")
    return AvailabilityTrace(name, float(gap), available, price_arr)


def align(traces: Sequence[AvailabilityTrace]) -> list[AvailabilityTrace]:
    """Zones of one region, cut to the shortest (they start together); all need one tick."""
    gaps = {t.gap_seconds for t in traces}
    if len(gaps) != 1:
        names = ", ".join(f"{t.name} ({t.gap_seconds:g} s)" for t in traces)
        raise ValueError(f"zones must share one tick to run as one region: {names}")
    n = min(len(t) for t in traces)
    return [AvailabilityTrace(t.name, t.gap_seconds, t.available[:n],
                  None if t.prices is None else t.prices[:n]) for t in traces]


@dataclass(frozen=True)
class Zones:
    """Aligned zones as arrays: availability, spot price, the length of the current
    availability run (ticks up to and including i), and the preemption rate per hour each
    zone's own record shows up to and including tick i (stretches ended over time up; 0
    before any ended) -- [zone, tick]. The rate is learned online: tick i sees only 0..i."""

    available: Bools
    prices: Floats
    up_run: npt.NDArray[np.int64]
    names: tuple[str, ...]
    gap_seconds: float
    rates: Floats | None = None

    @classmethod
    def of(cls, traces: Sequence[AvailabilityTrace], spot_price: float) -> Zones:
        traces = align(traces)
        avail = np.stack([t.available for t in traces])
        prices = np.stack([np.full(len(t), spot_price) if t.prices is None else t.prices
                           for t in traces])
        up = np.zeros(avail.shape, dtype=np.int64)
        run = np.zeros(avail.shape[0], dtype=np.int64)
        for i in range(avail.shape[1]):
            run = np.where(avail[:, i], run + 1, 0)
            up[:, i] = run
        gap = traces[0].gap_seconds
        ended = np.zeros(avail.shape, dtype=np.bool_)
        ended[:, 1:] = avail[:, :-1] & ~avail[:, 1:]
        seen_h = np.cumsum(avail, axis=1) * gap / 3600
        with np.errstate(divide="ignore", invalid="ignore"):
            rates = np.where(seen_h > 0, np.cumsum(ended, axis=1) / seen_h, 0.0)
        return cls(avail, prices, up, tuple(t.name for t in traces), gap, rates)
