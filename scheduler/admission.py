"""Admission: a job that no configured site could ever run is refused when it is submitted.

"Ever" means on a site's whole, empty capacity at its configured prices: the same pure
:func:`~gridbridge.scheduler.placement.place` the reconciler uses, given one ideal offer per
site. A job that fails only because capacity is busy right now is admitted and waits; the
reconciler then says why (a ``waiting`` event on the job). Under ``budgets.strict`` a job whose
team has no budget (neither its own nor ``budgets.default``) is refused too.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from gridbridge.adapter import Offer
from gridbridge.config import GridConfig
from gridbridge.spec import JobSpec

from .placement import PendingJob, place

__all__ = ["JobRefused", "check_admissible", "check_budgeted", "ideal_offers"]


class JobRefused(ValueError):
    """No configured site could ever run the job; the message gives the reason per site."""


def ideal_offers(config: GridConfig) -> list[Offer]:
    """One offer per configured site: all of its capacity, at its configured prices."""
    return [
        Offer(site=s.name, tier=s.tier, cpus=s.capacity.cpus, memory_gb=s.capacity.memory_gb,
              gpus=s.capacity.gpus, price=s.price, on_demand=s.on_demand_price,
              preemptible=s.preemptible, preemption_rate_per_hour=s.preemption_rate_per_hour,
              restart_overhead_s=s.restart_overhead_s, max_walltime_s=s.max_walltime_s)
        for s in config.sites
    ]


def check_admissible(spec: JobSpec, config: GridConfig, now: datetime | None = None) -> None:
    """Raise :class:`JobRefused` unless some configured site could run ``spec`` (and, under
    ``budgets.strict``, its team has a budget)."""
    check_budgeted(spec, config)
    names = [s.name for s in config.sites]
    allowed = spec.constraints.allowed_sites
    unknown = sorted(set(allowed or ()) - set(names))
    if unknown:
        raise JobRefused(f"unknown site(s) {', '.join(map(repr, unknown))}; "
                         f"valid choices: {', '.join(names)}")
    # Labels and latency belong to live offers (a node's labels, a measured round trip), not
    # to a site's configured whole: a job is not refused for them, it waits and says why.
    live_only = spec.constraints.model_copy(update={"labels": {}, "max_latency_ms": None})
    spec = spec.model_copy(update={"constraints": live_only})
    when = now or datetime.now(UTC)
    if spec.constraints.deadline is not None and spec.constraints.deadline.tzinfo is None:
        when = when.replace(tzinfo=None)
    [decision] = place([PendingJob(job_id="new", spec=spec, submitted_at=when)],
                       ideal_offers(config), when, config.policy)
    if decision.site is None:
        reasons = "\n".join(f"  {c.site}: {_whole(c.reason)}" for c in decision.candidates)
        raise JobRefused(f"no configured site could ever run this job:\n{reasons}")


_FREE = re.compile(r"(\d+(?:\.\d+)?(?: GB)?) free\b")


def _whole(reason: str) -> str:
    """Placement's reason said of an ideal offer: what it calls free is the site's whole
    capacity (``needs 4 cpus, 2 free`` -> ``needs 4 cpus, the site has 2 in all``)."""
    return _FREE.sub(r"the site has \1 in all", reason)


def check_budgeted(spec: JobSpec, config: GridConfig) -> None:
    """Under ``budgets.strict``, raise :class:`JobRefused` for a job whose team has no budget."""
    budgets, team = config.budgets, spec.owner.team
    if budgets.strict and budgets.team_budget(team) is None:
        raise JobRefused(f"team {team!r} has no budget and budgets.strict is set: give it one "
                         "under budgets.teams, or set budgets.default")
