"""Loading a replay's inputs and running the policies over them: what ``gridbridge simulate``
and ``benchmarks/simulate.py`` call.

Invariant: every policy replays the same trace on the same federation with the same seed; the
on-demand-only replay is always run, because every row's saving is measured against it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .engine import Replay, ReplayResult
from .federation import Federation
from .market import (
    Advisor,
    Availability,
    InstanceType,
    MarketError,
    PriceHistory,
    read_advisor,
    read_availability,
    read_on_demand,
    read_spot_prices,
)
from .policies import BASELINES, chooser, gridbridge_policies
from .report import summarize
from .settings import AvailabilityFile, SimSites, load_sites
from .swf import SwfTrace, read_swf

__all__ = ["Inputs", "Setup", "policy_names", "prepare", "run_policies", "simulate"]

_TRACE_TYPES = {"v100_1": "p3.2xlarge", "intel_64": "r5.16xlarge"}
"""Instance types of the SkyPilot spot traces, by file-name suffix (their README says which)."""
_TRACE_NAME = re.compile(r"^(?P<zone>[a-z]+-[a-z]+-\d[a-z])_(?P<kind>.+?)\.json(\.gz)?$")


@dataclass(frozen=True)
class Inputs:
    """The files of one replay, as the command line names them."""

    trace: str
    spot_prices: str | None = None
    spot_advisor: str | None = None
    spot_availability: tuple[str, ...] = ()
    ondemand: str | None = None
    sites: str | None = None
    limit: int | None = None
    """Replay only the trace's first that many jobs."""


@dataclass
class Setup:
    """Everything loaded: the trace, the federation, the settings, the clock's origin."""

    trace: SwfTrace
    sites: SimSites
    federation: Federation
    base: datetime
    notes: list[str] = field(default_factory=list)


def _availability_files(inputs: Inputs, sites: SimSites) -> list[AvailabilityFile]:
    files = list(sites.cloud.availability) if sites.cloud else []
    for path in inputs.spot_availability:
        m = _TRACE_NAME.match(Path(path).name)
        if m is None or m["kind"] not in _TRACE_TYPES:
            raise MarketError(f"{path}: cannot tell the instance type and zone from the name; "
                              "name them in the sites file under cloud.availability")
        files.append(AvailabilityFile(file=path, instance_type=_TRACE_TYPES[m["kind"]],
                                      zone=m["zone"]))
    return files


def _market(inputs: Inputs, sites: SimSites, notes: list[str],
            ) -> tuple[PriceHistory | None, dict[str, InstanceType], Advisor | None]:
    cloud = sites.cloud
    if cloud is None:
        return None, {}, None
    if inputs.ondemand is None:
        raise MarketError("the cloud sites need --ondemand CSV (the table gives the instance "
                          "shapes and on-demand prices); or set cloud: null in the sites file")
    prices = None
    if cloud.spot and inputs.spot_prices is not None:
        prices = read_spot_prices(inputs.spot_prices)
    elif cloud.spot:
        notes.append("no --spot-prices: the spot site is left out")
    region = prices.region if prices is not None else (cloud.region or "us-east-1")
    table = read_on_demand(inputs.ondemand, region)
    advisor = read_advisor(inputs.spot_advisor, region) if inputs.spot_advisor else None
    if advisor is None and prices is not None:
        notes.append(f"no --spot-advisor: every type gets bucket {cloud.unknown_bucket}")
    return prices, table, advisor


def prepare(inputs: Inputs) -> Setup:
    """Read every file and build the federation; errors name the file, line and field."""
    trace = read_swf(inputs.trace, limit=inputs.limit)
    sites = load_sites(inputs.sites)
    notes: list[str] = []
    if trace.dropped:
        notes.append(f"{trace.dropped} jobs dropped (run time <= 0 or no width)")
    if trace.estimated_from_runtime:
        notes.append(f"{trace.estimated_from_runtime} jobs have no requested time: their "
                     "estimate is their real run time")
    prices, table, advisor = _market(inputs, sites, notes)
    availability: dict[tuple[str, str], Availability] = {}
    for f in _availability_files(inputs, sites):
        if prices is not None and (f.instance_type, f.zone) not in prices.series:
            raise MarketError(f"{f.file}: {prices.path} has no spot prices for "
                              f"{f.instance_type} in {f.zone}")
        availability[(f.instance_type, f.zone)] = read_availability(
            f.file, f.instance_type, f.zone, f.nodes)
    cores = max(j.cores for j in trace.jobs)
    hpc_cores = (sites.hpc.cores if sites.hpc and sites.hpc.cores else trace.max_procs or cores)
    fed = Federation.build(sites.hpc, hpc_cores, sites.cloud, (prices, table, advisor),
                           availability, sites.edge)
    if prices is not None:
        span = trace.jobs[-1].submit_s
        if span > prices.period_s:
            notes.append(f"the trace spans {span / 86400:.0f} days, the price history "
                         f"{prices.period_s / 86400:.0f}: prices wrap around")
        base = prices.start
    else:
        base = datetime.fromtimestamp(trace.unix_start or 0, UTC)
    return Setup(trace, sites, fed, base, notes)


def policy_names(policy: str) -> list[str]:
    """``all`` (the baselines, then every gridbridge policy) or one name, checked."""
    if policy == "all":
        return [*BASELINES, *gridbridge_policies()]
    chooser(policy)  # an unknown name fails here, with the valid ones
    return [policy]


def run_policies(setup: Setup, names: Sequence[str], seed: int,
                 tick: Callable[[str], Callable[[int], None] | None] | None = None,
                 keep_decisions: bool = False) -> list[ReplayResult]:
    """Replay each policy (``tick(name)`` gives a per-job callback, e.g. a progress bar;
    ``keep_decisions``: each attempt keeps placement's decision)."""
    out = []
    for name in names:
        replay = Replay(setup.federation, setup.trace.jobs, setup.sites.jobs, setup.base, seed)
        replay.keep_decisions = keep_decisions
        out.append(replay.run(chooser(name), tick(name) if tick else None))
    return out


def simulate(setup: Setup, policy: str, seed: int, console: Console | None = None,
             keep_decisions: bool = False) -> tuple[list[dict[str, Any]], list[ReplayResult]]:
    """Run ``policy`` (or ``all``) and on-demand-only; rows in the order asked for.

    With a ``console``, a progress bar per policy is drawn on it (transient)."""
    names = policy_names(policy)
    wanted = list(names)
    if "on-demand-only" not in names and setup.federation.types:
        names = [*names, "on-demand-only"]
    if console is None:
        results = run_policies(setup, names, seed, keep_decisions=keep_decisions)
    else:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console, transient=True) as bar:
            def tick(name: str) -> Callable[[int], None]:
                task = bar.add_task(name, total=len(setup.trace.jobs))
                return lambda n: bar.update(task, completed=n) if n % 200 == 0 else None
            results = run_policies(setup, names, seed, tick, keep_decisions)
    by_name = {r.policy: r for r in results}
    od = by_name.get("on-demand-only")
    od_cost = sum(a.cost for a in od.attempts) if od is not None else None
    rows = [summarize(by_name[n], od_cost) for n in wanted]
    return rows, [by_name[n] for n in wanted]
