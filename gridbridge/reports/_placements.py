"""What placement chose and what it would otherwise have cost: one row per placement with its
runner-up (the best other feasible candidate of the same decision) and the differences.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gridbridge.units import fmt_time

from ._money import money
from ._periods import Window

__all__ = ["PLACEMENT_COLUMNS", "placements", "placements_totals"]

PLACEMENT_COLUMNS: Sequence[str] = (
    "placed_at", "job_id", "name", "attempt", "site", "offer_key", "expected_cost",
    "runner_up", "runner_up_cost", "vs_runner_up", "on_demand_cost", "vs_on_demand",
    "actual_cost", "currency",
)


def placements(decisions: Iterable[Mapping[str, Any]], window: Window, *,
               jobs: Mapping[str, tuple[str, str]] | None = None,
               actual: Mapping[str, float] | None = None,
               currency: str = "USD") -> list[dict[str, Any]]:
    """One row per placement made in ``window``: where it went and its expected cost, the
    runner-up (the best other feasible candidate of the same decision, in placement's own
    order) and its expected cost, and the differences (positive: placement saved that much).

    ``decisions`` are the stored candidate rows (mappings with the decision table's columns,
    in id order); ``actual`` maps an attempt id (``JOB.N``) to what its ledger row charged.
    A placement with no feasible runner-up shows none and counts 0 against it.
    """
    by_decision: dict[tuple[str, int, float], list[Mapping[str, Any]]] = defaultdict(list)
    for d in decisions:
        if window.holds(d["at"]):
            by_decision[(d["job_id"], d["attempt"], d["at"])].append(d)
    out = []
    for (job_id, attempt, at), cands in by_decision.items():
        chosen = next((c for c in cands if c["chosen"]), None)
        if chosen is None:
            continue
        runner = next((c for c in cands if c["feasible"] and not c["chosen"]
                       and c["expected_cost"] is not None), None)
        cost = money(chosen["expected_cost"])
        od = money(chosen["on_demand_cost"]) if chosen["on_demand_cost"] is not None else None
        attempt_id = f"{job_id}.{attempt}"
        line: dict[str, Any] = {
            "placed_at": fmt_time(at),
            "job_id": job_id, "name": (jobs or {}).get(job_id, ("", ""))[0], "attempt": attempt,
            "site": _where(chosen), "expected_cost": cost,
            "offer_key": chosen["offer_key"] or "",
            "runner_up": _where(runner) if runner else "",
            "runner_up_cost": money(runner["expected_cost"]) if runner else None,
            "vs_runner_up": money(runner["expected_cost"]) - cost if runner else money(0),
            "on_demand_cost": od,
            "vs_on_demand": od - cost if od is not None else money(0),
            "actual_cost": (money(actual[attempt_id])
                            if actual is not None and attempt_id in actual else None),
            "currency": currency,
        }
        out.append(line)
    out.sort(key=lambda r: (r["placed_at"], r["job_id"], r["attempt"]))
    return out


def _where(cand: Mapping[str, Any]) -> str:
    key = cand.get("offer_key")
    return f"{cand['site']}/{key}" if key and key != "default" else str(cand["site"])


def placements_totals(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The sums a finance reader wants first: how much placement saved (expected) over always
    taking the runner-up and over always taking on-demand capacity."""
    return {
        "placements": len(rows),
        "with_runner_up": sum(1 for r in rows if r["runner_up"]),
        "expected_cost": sum((r["expected_cost"] for r in rows), money(0)),
        "saved_vs_runner_up": sum((r["vs_runner_up"] for r in rows), money(0)),
        "saved_vs_on_demand": sum((r["vs_on_demand"] for r in rows), money(0)),
        "actual_cost": sum((r["actual_cost"] for r in rows if r["actual_cost"] is not None),
                           money(0)),
    }
