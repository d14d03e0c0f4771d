"""Finance's view: the cost ledger summed by site, team, project, user, tier or job.

Each ledger row is one finished attempt; savings are what the same work would have cost on
on-demand capacity minus what it cost, and ``lost`` is what the work thrown away by
preemptions cost.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Any

from gridbridge.views import fmt_money

__all__ = ["COST_COLUMNS", "MONEY_COLUMNS", "GroupBy", "cost_summary", "for_display"]


class GroupBy(StrEnum):
    SITE = "site"
    TEAM = "team"
    PROJECT = "project"
    USER = "user"
    TIER = "tier"
    JOB = "job_id"


COST_COLUMNS: Sequence[str] = (
    "attempts", "preempted", "core_hours", "gpu_hours", "cost", "on_demand_cost", "savings",
    "lost_cost",
)
MONEY_COLUMNS: Sequence[str] = ("cost", "on_demand_cost", "savings", "lost_cost")


def cost_summary(rows: Iterable[Mapping[str, Any]], by: GroupBy) -> list[dict[str, Any]]:
    """Sum ledger rows per group, sorted by cost (dearest first), with a TOTAL row last."""
    groups: dict[str, dict[str, Any]] = defaultdict(lambda: dict.fromkeys(COST_COLUMNS, 0.0))
    total: dict[str, Any] = dict.fromkeys(COST_COLUMNS, 0.0)
    for row in rows:
        for acc in (groups[str(row[by.value])], total):
            acc["attempts"] += 1
            acc["preempted"] += 1 if row["outcome"] in {"PREEMPTED", "LOST"} else 0
            for key in ("core_hours", "gpu_hours", "cost", "on_demand_cost", "lost_cost"):
                acc[key] += float(row[key])
            acc["savings"] = acc["on_demand_cost"] - acc["cost"]
    out = [{by.value: k, **v} for k, v in sorted(groups.items(), key=lambda kv: -kv[1]["cost"])]
    if out:
        out.append({by.value: "TOTAL", **total})
    for row in out:
        row["attempts"] = int(row["attempts"])
        row["preempted"] = int(row["preempted"])
    return out


def for_display(summary: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The summary with dollar columns as money strings and hours rounded, for a table."""
    out = []
    for row in summary:
        shown = dict(row)
        shown["core_hours"] = f"{row['core_hours']:.5f}"
        shown["gpu_hours"] = f"{row['gpu_hours']:.5f}"
        for key in MONEY_COLUMNS:
            shown[key] = fmt_money(row[key])
        out.append(shown)
    return out
