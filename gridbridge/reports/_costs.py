"""The cost report: ledger rows that ended in a window, summed per group (and per calendar
piece), with budgets and prepaid allocations judged on the whole months they cover.

Each ledger row is one finished attempt, charged to the period in which it *ended*; the sums
are exact (:mod:`._money`), so a TOTAL row is the sum of the rows above it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from ._money import MONEY_COLUMNS, hours, money
from ._periods import Every, Window

__all__ = ["COST_COLUMNS", "Allocation", "GroupBy", "cost_report", "cost_report_columns",
           "cost_summary"]


class GroupBy(StrEnum):
    SITE = "site"
    TEAM = "team"
    PROJECT = "project"
    USER = "user"
    TIER = "tier"
    JOB = "job_id"


COST_COLUMNS: Sequence[str] = (
    "attempts", "preempted", "moved", "core_hours", "gpu_hours", "cost", "on_demand_cost",
    "savings", "lost_cost",
)


@dataclass(frozen=True)
class Allocation:
    """A site's prepaid core-hours: ``core_hours`` each calendar month (``every="month"``) or
    once for all time (``every="total"``); with ``offer_key``, only for that offer of the site
    (a Slurm partition's allocation)."""

    site: str
    core_hours: float
    every: str = "month"
    offer_key: str | None = None

    def covers(self, row: Mapping[str, Any]) -> bool:
        return row["site"] == self.site and (self.offer_key is None
                                             or row.get("offer_key") == self.offer_key)


def cost_report_columns(by: GroupBy, *, every: Every | None = None, budgets: bool = False,
                        allocations: bool = False) -> list[str]:
    """The columns :func:`cost_report` fills for these options, in order."""
    cols = ["period"] if every is not None else []
    cols.append(by.value)
    if by is GroupBy.JOB:
        cols += ["name", "state"]
    cols += list(COST_COLUMNS)
    if budgets and by in (GroupBy.TEAM, GroupBy.PROJECT):
        cols += ["budget", "budget_left"]
    if allocations and by is GroupBy.SITE:
        cols += ["allocation_core_hours", "allocation_used", "allocation_left"]
    return [*cols, "currency"]


def _blank() -> dict[str, Any]:
    acc: dict[str, Any] = {"attempts": 0, "preempted": 0, "moved": 0}
    for key in ("core_hours", "gpu_hours"):
        acc[key] = Decimal(0)
    for key in MONEY_COLUMNS:
        acc[key] = money(0)
    return acc


def _add(acc: dict[str, Any], row: Mapping[str, Any]) -> None:
    acc["attempts"] += 1
    acc["preempted"] += 1 if row["outcome"] in {"PREEMPTED", "LOST"} else 0
    acc["moved"] += 1 if row["outcome"] == "MOVED" else 0  # moved on purpose: not a loss
    acc["core_hours"] += hours(row["core_hours"])
    acc["gpu_hours"] += hours(row["gpu_hours"])
    cost, od = money(row["cost"]), money(row["on_demand_cost"])
    acc["cost"] += cost
    acc["on_demand_cost"] += od
    acc["savings"] += od - cost
    acc["lost_cost"] += money(row["lost_cost"])


def cost_report(
    rows: Sequence[Mapping[str, Any]],
    by: GroupBy,
    window: Window,
    *,
    every: Every | None = None,
    jobs: Mapping[str, tuple[str, str]] | None = None,
    budgets: Mapping[str, float] | None = None,
    allocations: Sequence[Allocation] = (),
    currency: str = "USD",
) -> list[dict[str, Any]]:
    """Ledger rows that ended in ``window``, summed per (piece of the window, group), dearest
    first within a piece, then one TOTAL row for the whole window (the exact sum of the rows).

    ``rows`` may hold the whole ledger: budgets and allocations are judged on the whole months
    (or all time) they cover, up to the end of each row's piece. ``jobs`` maps a job id to its
    (name, state) for job rows. ``budgets`` maps a team or project name (matching ``by``) to
    its monthly budget: ``budget`` is that times the calendar months the piece touches, and
    ``budget_left`` what was left of it when the piece ended. ``allocation_*`` say the same of
    a site's prepaid core-hours.
    """
    key = by.value
    pieces = window.cut(every)
    groups: dict[tuple[int, str], dict[str, Any]] = {}
    total = _blank()
    for row in rows:
        if not window.holds(row["end"]):
            continue
        i = next(n for n, p in enumerate(pieces) if p.holds(row["end"]))
        acc = groups.setdefault((i, str(row[key])), _blank())
        _add(acc, row)
        _add(total, row)
    out: list[dict[str, Any]] = []
    for i, piece in enumerate(pieces):
        mine = [(g, acc) for (n, g), acc in groups.items() if n == i]
        for group, acc in sorted(mine, key=lambda ga: (-ga[1]["cost"], ga[0])):
            line: dict[str, Any] = {"period": piece.label, key: group, **acc,
                                    "currency": currency}
            if jobs is not None and by is GroupBy.JOB:
                line["name"], line["state"] = jobs.get(group, ("", ""))
            if budgets is not None and by in (GroupBy.TEAM, GroupBy.PROJECT):
                line.update(_budget(rows, key, group, piece, budgets))
            if by is GroupBy.SITE:
                line.update(_allocation(rows, group, piece, allocations))
            out.append(line)
    if out:
        out.append({"period": window.label, key: "TOTAL", **total, "currency": currency})
    return out


def _budget(rows: Iterable[Mapping[str, Any]], key: str, group: str, piece: Window,
            budgets: Mapping[str, float]) -> dict[str, Any]:
    if group not in budgets:
        return {"budget": None, "budget_left": None}
    months = piece.months()
    budget = money(budgets[group]) * len(months)
    spent = sum((money(r["cost"]) for r in rows
                 if str(r[key]) == group and months[0].since <= r["end"] < piece.until),
                money(0))
    return {"budget": budget, "budget_left": budget - spent}


def _allocation(rows: Sequence[Mapping[str, Any]], site: str, piece: Window,
                allocations: Sequence[Allocation]) -> dict[str, Any]:
    """A site's allocations (one, or one per partition) summed: granted, used, left."""
    mine = [a for a in allocations if a.site == site]
    if not mine:
        return {}
    granted = used = Decimal(0)
    for alloc in mine:
        per = hours(alloc.core_hours)
        if alloc.every == "total":
            since, grant = 0.0, per
        else:
            months = piece.months()
            since, grant = months[0].since, per * len(months)
        granted += grant
        used += sum((hours(r["core_hours"]) for r in rows
                     if alloc.covers(r) and since <= r["end"] < piece.until), Decimal(0))
    return {"allocation_core_hours": granted, "allocation_used": used,
            "allocation_left": granted - used}


def cost_summary(rows: Iterable[Mapping[str, Any]], by: GroupBy) -> list[dict[str, Any]]:
    """The older whole-ledger summary (the demo and a few tests read it): ledger rows summed
    per group as floats, sorted by cost (dearest first), with a TOTAL row last."""
    groups: dict[str, dict[str, Any]] = defaultdict(lambda: dict.fromkeys(COST_COLUMNS, 0.0))
    total: dict[str, Any] = dict.fromkeys(COST_COLUMNS, 0.0)
    for row in rows:
        for acc in (groups[str(row[by.value])], total):
            acc["attempts"] += 1
            acc["preempted"] += 1 if row["outcome"] in {"PREEMPTED", "LOST"} else 0
            acc["moved"] += 1 if row["outcome"] == "MOVED" else 0
            for key in ("core_hours", "gpu_hours", "cost", "on_demand_cost", "lost_cost"):
                acc[key] += float(row[key])
            acc["savings"] = acc["on_demand_cost"] - acc["cost"]
    out = [{by.value: k, **v} for k, v in sorted(groups.items(), key=lambda kv: -kv[1]["cost"])]
    if out:
        out.append({by.value: "TOTAL", **total})
    for row in out:
        row["attempts"] = int(row["attempts"])
        row["preempted"] = int(row["preempted"])
        row["moved"] = int(row["moved"])
    return out
