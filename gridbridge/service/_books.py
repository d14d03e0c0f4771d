"""The books a report reads besides the store: budgets, the currency and the allocations.

Invariant: one function turns a configuration into what ``gridbridge report`` needs from it,
so a report made on the service's host and one made over ``--url`` (``GET /v1/books``) price
and compare against the same numbers. Nothing here is a secret: budgets are for finance and
operators, and a researcher's report shows only their own rows against them.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from gridbridge.reports import Allocation

if TYPE_CHECKING:
    from gridbridge.config import Budgets, GridConfig

__all__ = ["allocations", "books_json", "books_of"]


def allocations(config: GridConfig) -> list[Allocation]:
    """Each site's ``allocation:``, and each Slurm partition's ``allocation_core_hours``
    (prepaid for all time, as the adapter counts it)."""
    out = [Allocation(site=s.name, core_hours=s.allocation.core_hours,
                      every=s.allocation.every)
           for s in config.sites if s.allocation is not None]
    for s in config.sites:
        partitions = s.options.get("partitions") if s.adapter == "slurm" else None
        for name, opts in (partitions or {}).items():
            hours = (opts or {}).get("allocation_core_hours")
            if hours:
                out.append(Allocation(site=s.name, core_hours=float(hours), every="total",
                                      offer_key=name))
    return out


def books_json(config: GridConfig) -> dict[str, Any]:
    """What ``GET /v1/books`` answers."""
    return {"budgets": config.budgets.model_dump(mode="json"),
            "allocations": [asdict(a) for a in allocations(config)]}


def books_of(data: dict[str, Any]) -> tuple[Budgets, list[Allocation]]:
    """The budgets and allocations a ``GET /v1/books`` answer holds."""
    from gridbridge.config import Budgets

    return (Budgets.model_validate(data["budgets"]),
            [Allocation(**a) for a in data["allocations"]])
