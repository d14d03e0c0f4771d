"""What a Slurm cluster can offer now, read from ``sinfo`` and the queue: one offer per
partition. Pure functions of the commands' text and the time passed in.

Invariant: a partition offers its idle CPUs less those that jobs already waiting for any of
its nodes will take (a preemptor in its grace time included), so capacity another job is
about to claim is never offered twice::

    sinfo -N -O ... ──► read_sinfo ──► {partition: _Partition}  ─┐
    squeue -t PD --start ──► read_pending ──► [_Pending] ────────┼─► partition_offer ──► Offer
    sacct (core-hours of gb- jobs) ──► core_hours_used ──────────┘
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated

from pydantic import Field

from gridbridge.adapter import Offer, Pricing
from gridbridge.adapters._slurm_status import gpus, parse_duration, timestamp, to_int
from gridbridge.config import SiteConfig
from gridbridge.frozen import Frozen
from gridbridge.spec import Tier

__all__ = ["PartitionOptions", "core_hours_used", "partition_offer", "read_pending",
           "read_sinfo"]

SINFO_FORMAT = "NodeList:|,Partition:|,Available:|,Time:|,CPUsState:|,Memory:|,Gres:|,GresUsed:"
_UNKNOWN_WAIT_S = 600.0
"""The wait assumed behind a pending job whose start Slurm cannot estimate."""


class PartitionOptions(Frozen):
    """How one partition is offered and billed (``options.partitions.<name>``)."""

    price: Pricing | None = None
    """Its rate card; default: the site's ``price``."""
    on_demand: Pricing | None = None
    preemptible: bool | None = None
    """Default: the site's ``preemptible``."""
    preemption_rate_per_hour: Annotated[float, Field(ge=0)] | None = None
    allocation_core_hours: Annotated[float, Field(gt=0)] | None = None
    """Prepaid core-hours: work here costs nothing at the margin until they are used up (by
    gridbridge's jobs in this partition), then ``overage``."""
    overage: Pricing | None = None
    """The rate once the allocation is used up; default: ``price``."""
    tier: Tier | None = None


@dataclass
class _Partition:
    """One partition that is up, summed over its nodes."""

    idle: int = 0
    total: int = 0
    mem_gb: float = 0.0
    """Memory in proportion to idle CPUs."""
    gpus: int = 0
    """Configured less in use."""
    nodes: set[str] = field(default_factory=set)
    limit_s: float | None = None


@dataclass(frozen=True)
class _Pending:
    """A job waiting to run: the partitions it may use, its CPUs and expected start."""

    partitions: list[str]
    cpus: int
    start: float | None


def read_sinfo(out: str) -> dict[str, _Partition]:
    """Each partition that is up in ``sinfo -h -N -O`` :data:`SINFO_FORMAT` output."""
    parts: dict[str, _Partition] = {}
    for line in out.splitlines():
        f = line.split("|")
        if len(f) < 8 or f[2].strip() != "up":
            continue
        node, name = f[0].strip(), f[1].strip().rstrip("*")
        _alloc, idle, _other, total = (
            to_int(x) or 0 for x in (f[4].split("/") + ["0"] * 4)[:4])
        mem_mb = to_int(f[5].rstrip("+")) or 0
        p = parts.setdefault(name, _Partition())
        p.idle += idle
        p.total += total
        p.mem_gb += mem_mb / 1024 * (idle / total if total else 0)
        p.gpus += max(0, gpus(f[6]) - gpus(f[7]))
        p.nodes.add(node)
        p.limit_s = parse_duration(f[3])
    return parts


def read_pending(out: str) -> list[_Pending]:
    """Jobs of ``squeue -h -t PD --start -o %P|%C|%S|%r`` that wait to run (held ones do
    not)."""
    jobs = []
    for line in out.splitlines():
        f = line.split("|")
        if len(f) == 4 and not f[3].startswith("JobHeld"):
            jobs.append(_Pending(f[0].split(","), to_int(f[1]) or 1, timestamp(f[2])))
    return jobs


def core_hours_used(out: str, partition: str) -> float:
    """Core-hours of gridbridge's jobs (``gb-`` names) in ``sacct`` output of
    ``JobName,NCPUS,ElapsedRaw`` (already of ``partition``) or
    ``JobName,Partition,NCPUS,ElapsedRaw``."""
    used = 0.0
    for line in out.splitlines():
        f = line.split("|")
        if len(f) == 4 and f[1] != partition:
            continue
        if f[0].startswith("gb-"):
            used += (to_int(f[-2]) or 0) * (to_int(f[-1]) or 0) / 3600
    return used


def _demand(name: str, parts: dict[str, _Partition], pending: Sequence[_Pending],
            now: float) -> tuple[int, float]:
    """CPUs that pending jobs sharing a node with ``name`` want, and the longest wait."""
    mine = parts[name].nodes
    demand, wait = 0, 0.0
    for job in pending:
        if any(parts[q].nodes & mine for q in job.partitions if q in parts):
            demand += job.cpus
            wait = max(wait, (job.start - now) if job.start is not None else _UNKNOWN_WAIT_S)
    return demand, wait


def partition_offer(site: SiteConfig, name: str, popt: PartitionOptions,
                    parts: dict[str, _Partition], pending: Sequence[_Pending], now: float,
                    used: float | None) -> Offer:
    """The offer of partition ``name`` (one of ``parts``); ``used``: the core-hours of its
    allocation used so far, None without one."""
    p = parts[name]
    demand, wait = _demand(name, parts, pending, now)
    free = max(0, p.idle - demand)
    price = popt.price or site.price
    note = f"{demand} CPUs wanted by pending jobs" if demand else ""
    if popt.allocation_core_hours is not None and used is not None:
        left = popt.allocation_core_hours - used
        note = f"allocation: {used:.1f} of {popt.allocation_core_hours:g} core-hours used"
        price = Pricing() if left > 0 else (popt.overage or price)
    preemptible = popt.preemptible if popt.preemptible is not None else site.preemptible
    rate = (popt.preemption_rate_per_hour if popt.preemption_rate_per_hour is not None
            else site.preemption_rate_per_hour)
    share = free / p.idle if p.idle else 0.0
    limits = [v for v in (p.limit_s, site.max_walltime_s) if v is not None]
    return Offer(
        site=site.name, key=name, shape={"partition": name},
        tier=popt.tier or site.tier,
        cpus=min(free, site.capacity.cpus),
        memory_gb=min(p.mem_gb * share, site.capacity.memory_gb),
        gpus=min(p.gpus, site.capacity.gpus),
        price=price, on_demand=popt.on_demand or site.on_demand_price,
        preemptible=preemptible,
        preemption_rate_per_hour=rate if preemptible else 0.0,
        restart_overhead_s=site.restart_overhead_s,
        queue_wait_s=0.0 if free > 0 else max(0.0, wait),
        max_walltime_s=min(limits) if limits else None,
        note=note,
    )
