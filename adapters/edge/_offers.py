"""What a node offers and how it is: one round trip each (``offers.sh``, ``check.sh``).

A node's offer is its CPUs, memory and GPUs less what this site's live attempts there hold
(``busy`` lines), priced at its ``cost_per_hour``; its recent reliability is its interruption
rate: each time it stopped answering in the last hour counts as one interruption an hour.
"""

from __future__ import annotations

import time
from typing import NamedTuple, Protocol, runtime_checkable

from gridbridge.adapter import NodeCheck, Offer, Pricing
from gridbridge.adapters._run import HostKeyRefused, RunnerError
from gridbridge.adapters.edge._fleet import Fleet
from gridbridge.adapters.edge._options import EdgeNode
from gridbridge.config import SiteConfig
from gridbridge.spec import Tier

__all__ = ["Measured", "check_node", "measure", "node_offer"]


class Measured(NamedTuple):
    """A node's answer to ``offers.sh``."""

    facts: dict[str, float]
    """``nproc``, ``memavail`` and ``memtotal`` (KiB), ``load``."""
    busy: tuple[float, float, float]
    """CPUs, memory (GiB) and GPUs our live attempts there hold."""
    rtt_ms: float


@runtime_checkable
class Pinging(Protocol):
    """A runner that can time the network alone (an SSH runner, or a test's wrapper of one)."""

    def ping(self, timeout: float = 10.0) -> float: ...


def measure(fleet: Fleet, node: str) -> Measured:
    """Ask ``node`` how it is (RunnerError when it does not answer)."""
    base = fleet.base(node)
    t0 = time.monotonic()
    out = fleet.sh(node, "offers.sh", base)
    rtt_ms = (time.monotonic() - t0) * 1000  # a command's round trip, shell start included
    runner = fleet.runners[node]
    if isinstance(runner, Pinging):  # the network's alone: what a latency bound is about
        rtt_ms = float(runner.ping(fleet.options.command_timeout_s))
    facts: dict[str, float] = {}
    busy = [0.0, 0.0, 0.0]
    for line in out.splitlines():
        word, _, rest = line.partition(" ")
        try:
            if word == "busy":
                for i, v in enumerate(rest.split()[:3]):
                    busy[i] += float(v)
            elif word in {"nproc", "memavail", "memtotal", "load"}:
                facts[word] = float(rest)
        except ValueError:
            continue
    return Measured(facts, (busy[0], busy[1], busy[2]), rtt_ms)


def node_offer(site: SiteConfig, node: EdgeNode, measured: Measured, flaps: int) -> Offer:
    """The offer of a node that answered, ``flaps`` times down in the last hour."""
    facts, busy, rtt_ms = measured
    tier = site.tier if "tier" in site.model_fields_set else Tier.EDGE
    cpus = node.cpus if node.cpus is not None else int(facts.get("nproc", 0))
    mem_free = facts.get("memavail", 0.0) / 2**20
    mem = min(node.memory_gb, mem_free) if node.memory_gb is not None else mem_free
    price = Pricing(per_hour=node.cost_per_hour)
    shape = {**node.labels, "node": node.name, "rtt_ms": f"{rtt_ms:.1f}",
             "load": f"{facts.get('load', 0.0):g}"}
    return Offer(
        site=site.name, key=node.name, shape=shape, tier=tier,
        cpus=max(0, min(cpus - int(busy[0]), site.capacity.cpus)),
        memory_gb=max(0.0, mem - busy[1]),
        gpus=max(0, node.gpus - int(busy[2])),
        price=price,
        on_demand=site.on_demand if site.on_demand is not None else price,
        preemptible=site.preemptible or flaps > 0,
        preemption_rate_per_hour=site.preemption_rate_per_hour + flaps,
        restart_overhead_s=site.restart_overhead_s,
        max_walltime_s=site.max_walltime_s,
        labels=dict(node.labels), latency_ms=round(rtt_ms, 2),
        note=f"rtt {rtt_ms:.1f} ms" + (f", {flaps} flaps in the last hour" if flaps else ""),
    )


def check_node(fleet: Fleet, node: str, python: str) -> NodeCheck:
    """Reachable, host key accepted, ``python``'s and gridbridge's versions there, free CPUs
    and memory, round trip time."""
    t0 = time.monotonic()
    try:
        out = fleet.sh(node, "check.sh", python)
    except HostKeyRefused as exc:
        return NodeCheck(node=node, reachable=True, host_key_ok=False, error=str(exc))
    except RunnerError as exc:
        return NodeCheck(node=node, reachable=False, error=str(exc))
    rtt_ms = (time.monotonic() - t0) * 1000
    facts: dict[str, str] = {}
    for line in out.splitlines():
        word, _, rest = line.partition(" ")
        facts[word] = rest
    versions = facts.get("versions", "").split()
    return NodeCheck(
        node=node, reachable=True, host_key_ok=True,
        python=versions[0] if len(versions) == 2 else None,
        gridbridge=versions[1] if len(versions) == 2 else None,
        cpus=int(facts["nproc"]) if facts.get("nproc", "").isdigit() else None,
        memory_gb=(int(facts["memavail"]) / 2**20
                   if facts.get("memavail", "").isdigit() else None),
        rtt_ms=round(rtt_ms, 1), error=facts.get("python-error", ""))
