"""The simulated federation's offers: what each site would tell placement at a simulated time.

Invariant: offers are built from the market files and the site settings only, and are exactly
what a job of one size would be charged: a job of P cores and M GB runs on
``n = max(ceil(P / vcpus), ceil(M / memory))`` instances of one type, so a cloud offer's price is
``n x`` the type's price per hour and its preemption rate ``n x`` the per-instance rate (one lost
instance interrupts the whole job). Because that price is not linear in cores, offers are built
per job size, and placement is called once per size class in a round.

Pruning (``prune=True``) drops offers that cannot win under any policy whose score grows with
price and with interruption rate (cheapest, fastest, balanced, deadline all do; the restart
overhead is the same for every cloud offer): only the Pareto front of (price, rate) stays,
ties included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gridbridge.adapter import Offer, Pricing
from gridbridge.spec import Tier

from .market import Advisor, Availability, InstanceType, MarketError, PriceHistory, advisor_rate
from .settings import CloudSite, EdgeSite, HpcSite

__all__ = ["CloudType", "Federation", "Shape"]

_BIG = 10**9


@dataclass(frozen=True)
class Shape:
    """A job's size as the cloud sees it."""

    cores: int
    memory_gb: float

    def instances(self, t: CloudType) -> int:
        return max(math.ceil(self.cores / t.vcpus), math.ceil(self.memory_gb / t.memory_gb), 1)


@dataclass(frozen=True)
class CloudType:
    """An instance type offered by the cloud site: shape, prices, interruption rate, zones."""

    name: str
    vcpus: int
    memory_gb: float
    on_demand_per_hour: float
    rate_per_hour: float
    """Spot interruptions per instance-hour (Spot Advisor bucket)."""
    zones: tuple[str, ...]


@dataclass
class Federation:
    """The sites of one replay and the market behind them."""

    hpc: HpcSite | None
    hpc_cores: int
    cloud: CloudSite | None
    types: tuple[CloudType, ...]
    prices: PriceHistory | None
    availability: dict[tuple[str, str], Availability]
    edge: tuple[EdgeSite, ...]

    @classmethod
    def build(cls, hpc: HpcSite | None, hpc_cores: int, cloud: CloudSite | None,
              market: tuple[PriceHistory | None, dict[str, InstanceType], Advisor | None],
              availability: dict[tuple[str, str], Availability],
              edge: tuple[EdgeSite, ...] = ()) -> Federation:
        """Pick the cloud types the settings name from what the market files hold."""
        prices, table, advisor = market
        types: list[CloudType] = []
        if cloud is not None:
            extra = {name for name, _ in availability}
            types = _cloud_types(cloud, prices, table, advisor, extra)
        return cls(hpc, hpc_cores, cloud, tuple(types), prices, availability, edge)

    def spot_price(self, t: CloudType, zone: str, now: float) -> float:
        assert self.prices is not None
        return self.prices.series[(t.name, zone)].price_at(now)

    def spot_cost(self, t: CloudType, zone: str, start: float, end: float) -> float:
        assert self.prices is not None
        return self.prices.series[(t.name, zone)].cost(start, end)

    def spot_offers(self, shape: Shape, now: float, copies: int, prune: bool) -> list[Offer]:
        """One offer per (type, zone) available now, priced for ``shape`` at ``now``
        (``prune``: the Pareto front only)."""
        if self.cloud is None or not self.cloud.spot or self.prices is None:
            return []
        found: list[_Found] = []
        for t, zone, price, rate in self._spot_now(now, prune):
            n = shape.instances(t)
            found.append((n * price, n * rate, zone, t, n))
        if prune:
            found = _pareto(found)
        return [self._cloud_offer(t, n, copies, _Priced(f"{t.name}/{zone}", price, rate, zone))
                for price, rate, zone, t, n in found]

    def cheapest_spot_offer(self, shape: Shape, now: float) -> Offer | None:
        """The spot offer with the lowest price for ``shape`` now, whatever its rate (ties:
        the lower rate, then type and zone names)."""
        if self.cloud is None or not self.cloud.spot or self.prices is None:
            return None
        best: _Found | None = None
        for t, zone, price, rate in self._spot_now(now, True):
            n = shape.instances(t)
            f = (n * price, n * rate, zone, t, n)
            if best is None or (f[0], f[1], t.name, zone) < (best[0], best[1], best[3].name,
                                                              best[2]):
                best = f
        if best is None:
            return None
        price, rate, zone, t, n = best
        return self._cloud_offer(t, n, 1, _Priced(f"{t.name}/{zone}", price, rate, zone))

    def _spot_now(self, now: float, cheapest_zone: bool,
                  ) -> list[tuple[CloudType, str, float, float]]:
        """(type, zone, $/h per instance, rate per instance-hour) of what is available now;
        ``cheapest_zone``: of zones with the advisor's rate, only each type's cheapest.
        Remembered for the last ``now`` (a round asks once per job size)."""
        memo = self._memo.get(cheapest_zone)
        if memo is not None and memo[0] == now:
            return memo[1]
        out: list[tuple[CloudType, str, float, float]] = []
        for t in self.types:
            plain: list[tuple[float, str]] = []
            for zone in t.zones:
                trace = self.availability.get((t.name, zone))
                if trace is None:
                    plain.append((self.spot_price(t, zone, now), zone))
                elif trace.available(now):
                    out.append((t, zone, self.spot_price(t, zone, now), _trace_rate(trace)))
            if cheapest_zone and plain:
                low = min(plain)[0]
                plain = [p for p in plain if p[0] == low]
            out += [(t, zone, price, t.rate_per_hour) for price, zone in plain]
        self._memo[cheapest_zone] = (now, out)
        return out

    def on_demand_offers(self, shape: Shape, copies: int, prune: bool) -> list[Offer]:
        """One offer per on-demand type, priced for ``shape`` (``prune``: the cheapest)."""
        if self.cloud is None or not self.cloud.on_demand:
            return []
        found = [(shape.instances(t) * t.on_demand_per_hour, 0.0, "", t, shape.instances(t))
                 for t in self.types]
        if prune:
            found = _pareto(found)
        return [self._cloud_offer(t, n, copies, _Priced(t.name, price, 0.0, None))
                for price, _, _, t, n in found]

    def cheapest_on_demand_per_hour(self, shape: Shape) -> float:
        """The on-demand price of ``shape`` (0 when the federation has no cloud types)."""
        return min((shape.instances(t) * t.on_demand_per_hour for t in self.types), default=0.0)

    def _cloud_offer(self, t: CloudType, n: int, copies: int, priced: _Priced) -> Offer:
        assert self.cloud is not None
        spot = priced.zone is not None
        return Offer(
            site=self.cloud.spot_site if spot else self.cloud.on_demand_site, key=priced.key,
            shape={"instance_type": t.name, "zone": priced.zone or "", "instances": str(n)},
            tier=Tier.CLOUD, cpus=n * t.vcpus * copies, memory_gb=n * t.memory_gb * copies,
            price=Pricing(per_hour=priced.per_hour),
            on_demand=Pricing(per_hour=n * t.on_demand_per_hour), preemptible=spot,
            preemption_rate_per_hour=priced.rate, restart_overhead_s=self.cloud.restart_overhead_s)

    def hpc_offer(self, wait_s: float, marginal_per_core_hour: float, on_demand_per_hour: float,
                  ) -> Offer:
        """The cluster's offer for a job whose predicted queue wait is ``wait_s``."""
        assert self.hpc is not None
        return Offer(
            site=self.hpc.name, key="batch", tier=Tier.HPC, cpus=self.hpc_cores,
            memory_gb=float(_BIG), price=Pricing(per_core_hour=marginal_per_core_hour),
            on_demand=Pricing(per_hour=on_demand_per_hour), queue_wait_s=max(wait_s, 0.0),
            max_walltime_s=self.hpc.max_walltime_s,
            restart_overhead_s=self.hpc.restart_overhead_s)

    @staticmethod
    def edge_offer(site: EdgeSite, free_cores: int, on_demand_per_hour: float) -> Offer:
        """An edge pool's offer: its free cores now."""
        return Offer(
            site=site.name, key="pool", tier=Tier.EDGE, cpus=max(free_cores, 0),
            memory_gb=float(_BIG), price=Pricing(per_core_hour=site.per_core_hour),
            on_demand=Pricing(per_hour=on_demand_per_hour),
            preemptible=site.interruptions_per_hour > 0,
            preemption_rate_per_hour=site.interruptions_per_hour,
            restart_overhead_s=site.restart_overhead_s)

    def cloud_type(self, name: str) -> CloudType:
        """The offered type of that name."""
        return self._by_name[name]

    def __post_init__(self) -> None:
        self._by_name = {t.name: t for t in self.types}
        self._memo: dict[bool, tuple[float, list[tuple[CloudType, str, float, float]]]] = {}


def _trace_rate(trace: Availability) -> float:
    """Losses per instance-hour up in a replayed availability trace (what an offer shows)."""
    ups = sum(trace.up)
    losses = sum(1 for a, b in zip(trace.up, trace.up[1:], strict=False) if a and not b)
    return losses / (ups * trace.gap_s / 3600.0) if ups else math.inf


@dataclass(frozen=True)
class _Priced:
    key: str
    per_hour: float
    rate: float
    zone: str | None
    """None: on-demand."""


_Found = tuple[float, float, str, CloudType, int]


def _pareto(found: list[_Found]) -> list[_Found]:
    """The offers no other offer beats on both price and interruption rate (ties kept)."""
    out: list[_Found] = []
    best_rate = math.inf
    last: tuple[float, float] | None = None
    for f in sorted(found, key=lambda f: (f[0], f[1], f[3].name, f[2])):
        if f[1] < best_rate or (f[0], f[1]) == last:
            out.append(f)
            best_rate, last = min(best_rate, f[1]), (f[0], f[1])
    return out


def _wanted(cloud: CloudSite, name: str) -> bool:
    if cloud.types is not None:
        return name in cloud.types
    family, _, size = name.partition(".")
    return family in cloud.families and "metal" not in size


def _cloud_types(cloud: CloudSite, prices: PriceHistory | None, table: dict[str, InstanceType],
                 advisor: Advisor | None, extra: set[str]) -> list[CloudType]:
    """The offered types: those the settings name, and those with a replayed availability
    trace (``extra``), which must be in the on-demand table and the price history."""
    zones: dict[str, list[str]] = {}
    if prices is not None:
        for name, zone in sorted(prices.series):
            zones.setdefault(name, []).append(zone)
    names = sorted({n for n in [*table, *zones] if _wanted(cloud, n)} | extra)
    if cloud.types is not None or extra:
        missing = [n for n in (*(cloud.types or ()), *sorted(extra)) if n not in table]
        if missing:
            raise MarketError(f"instance type(s) {', '.join(missing)} not in the on-demand "
                              "price table")
    out = []
    for name in names:
        if name not in table:
            continue
        if cloud.spot and prices is not None and name not in zones and (
                cloud.types is not None or name in extra):
            raise MarketError(f"{prices.path}: no spot prices for {name}")
        shape = table[name]
        rate = advisor.rate(name) if advisor is not None else None
        out.append(CloudType(
            name=name, vcpus=shape.vcpus, memory_gb=shape.memory_gb,
            on_demand_per_hour=shape.on_demand_per_hour,
            rate_per_hour=rate if rate is not None else advisor_rate(cloud.unknown_bucket),
            zones=tuple(zones.get(name, ()))))
    if not out:
        raise MarketError("no cloud instance type is both wanted by the sites file and priced "
                          "in the on-demand table")
    return out
