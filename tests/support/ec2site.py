"""What the ``ec2`` tests share: the EC2 emulation per test, real price data placed in time,
and an ``ec2spot`` site on it. (``gridbridge.testing.ec2`` documents the emulation.)"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any

from gridbridge.adapters.ec2spot import Ec2SpotAdapter
from gridbridge.config import Capacity, RuntimeSettings, SiteConfig
from gridbridge.testing.ec2 import Ec2Emulator, load_spot_prices
from tests.support.paths import DATA as _DATA

DATA = _DATA / "ec2"
SPOT_PRICES = DATA / "spot-prices-us-east-1-2021-03.csv"
ON_DEMAND = DATA / "ondemand-prices-us-east-1-2019-04.csv"
ADVISOR = DATA / "spot-advisor-us-east-1-2021-02.json"
TYPES = ("c5.large", "c5.xlarge", "m5.large", "g4dn.xlarge")
ZONES = ("us-east-1a", "us-east-1b")

Series = Mapping[tuple[str, str], list[tuple[float, float]]]
Prices = dict[tuple[str, str], list[tuple[float, float]]]


def real_prices(types: tuple[str, ...] = TYPES) -> Prices:
    return load_spot_prices(SPOT_PRICES, types, ZONES)


def ending_now(series: Series, ago_s: float = 60.0) -> Prices:
    """The history moved in time so that its last change happened ``ago_s`` ago."""
    last = max(at for rows in series.values() for at, _ in rows)
    shift = time.time() - ago_s - last
    return {k: [(at + shift, p) for at, p in rows] for k, rows in series.items()}


def compressed(series: Series, start: float, seconds_per_hour: float) -> Prices:
    """The history replayed from ``start`` with one real hour lasting ``seconds_per_hour``:
    the same prices, changing faster."""
    first = min(at for rows in series.values() for at, _ in rows)
    return {k: [(start + (at - first) / 3600 * seconds_per_hour, p) for at, p in rows]
            for k, rows in series.items()}


def price_at(rows: list[tuple[float, float]], t: float) -> float:
    """The price in force at ``t`` (the last change at or before it)."""
    return [p for at, p in rows if at <= t][-1]


def site_options(emu: Ec2Emulator, **extra: Any) -> dict[str, Any]:
    return {"endpoint_url": emu.endpoint, "instance_types": list(TYPES), "zones": list(ZONES),
            "image_id": emu.image_id(), "on_demand_prices": str(ON_DEMAND),
            "spot_advisor": str(ADVISOR), "imds_poll_s": 0.5, "unavailable_s": 30, **extra}


def spot_site(emu: Ec2Emulator, name: str = "spot", **extra: Any) -> SiteConfig:
    return SiteConfig(name=name, adapter="ec2spot", tier="cloud", capacity=Capacity(cpus=64),
                      preemptible=True, restart_overhead_s=5,
                      runtime=RuntimeSettings(python=sys.executable, heartbeat_s=1),
                      options=site_options(emu, **extra))


def drain(adapter: Ec2SpotAdapter, emu: Ec2Emulator, timeout: float = 20.0) -> None:
    """Terminate whatever the adapter still runs and wait until EC2 shows nothing live."""
    adapter.cancel([o.native_id for o in adapter.owned()])
    deadline = time.monotonic() + timeout
    while (adapter.owned() or emu.live_instances()) and time.monotonic() < deadline:
        time.sleep(0.1)
