"""The body of ``gridbridge simulate --trace SWF ...``, so the CLI module stays a thin wrapper.

Invariant: the rows printed are exactly :func:`.run.simulate`'s; the table formats money and
shares for people, CSV and JSON carry the raw numbers. Notes (what was dropped, what wraps
around, which site parameters were used) go to stderr, never into the CSV or JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from gridbridge.units import fmt_money
from gridbridge.views import Format, emit

from .report import COLUMNS, write_svg_plots
from .run import Inputs, Setup, prepare, simulate

__all__ = ["describe_sites", "run_command"]


def describe_sites(setup: Setup) -> str:
    """One line naming the federation's parameters, for the notes and the report."""
    fed, model = setup.federation, setup.sites.jobs
    parts = []
    if fed.hpc is not None:
        rate = f"${fed.hpc.per_core_hour:g}/core-h"
        if fed.hpc.allocation_core_hours:
            rate = f"{fed.hpc.allocation_core_hours:g} core-h prepaid, then {rate}"
        limit = f", limit {fed.hpc.max_walltime_s:g}s" if fed.hpc.max_walltime_s else ""
        parts.append(f"HPC {fed.hpc_cores} cores EASY, {rate}{limit}")
    if fed.cloud is not None and fed.types:
        region = fed.prices.region if fed.prices else (fed.cloud.region or "us-east-1")
        kinds = [k for k, on in (("spot", fed.cloud.spot and fed.prices is not None),
                                 ("on-demand", fed.cloud.on_demand)) if on]
        parts.append(f"{'+'.join(kinds)} {region}: {len(fed.types)} types "
                     f"({', '.join(fed.cloud.families if fed.cloud.types is None else ())}"
                     f"{', '.join(fed.cloud.types or ())}), restart "
                     f"{fed.cloud.restart_overhead_s:g}s")
    parts += [f"edge {e.name} {e.cores} cores ${e.per_core_hour:g}/core-h" for e in fed.edge]
    parts.append(f"checkpoint every {model.checkpoint_interval_s:g}s (or Young's) costing "
                 f"{model.checkpoint_cost_s:g}s; deadline submit + round + "
                 f"{model.deadline_factor:g} x requested; rounds every {model.round_s:g}s")
    return "; ".join(parts)


def _for_table(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["total_cost"] = fmt_money(row["total_cost"])
    for key in ("saving_vs_on_demand", "hpc_share", "spot_share", "on_demand_share",
                "edge_share"):
        if row.get(key) is not None:
            out[key] = f"{row[key] * 100:.1f}%"
    return out


def run_command(inputs: Inputs, policy: str, seed: int, fmt: Format,
                plots: Path | None, consoles: tuple[Console, Console],
                store: str | None = None) -> None:
    """Load, replay, print; errors (bad files, unknown policy) raise ``ValueError``.
    ``store``: also write the replay of ``policy`` (one, not ``all``) into that state store."""
    out, err = consoles
    if store is not None and policy == "all":
        raise ValueError("--store writes one policy's replay: give --policy NAME too")
    setup = prepare(inputs)
    for note in setup.notes:
        err.print(f"note: {note}", highlight=False, markup=False)
    err.print(f"sites: {describe_sites(setup)}", highlight=False, markup=False)
    rows, results = simulate(setup, policy, seed, console=err,
                             keep_decisions=store is not None)
    shown = rows if fmt is not Format.TABLE else [_for_table(r) for r in rows]
    title = f"{setup.trace.name}: {len(setup.trace.jobs)} jobs, seed {seed}"
    emit(out, title, COLUMNS, shown, fmt, notes=err,
         drop=("mean_turnaround_s", "lost_core_hours", "interruptions", "edge_share",
               "on_demand_share", "hpc_share", "spot_share", "unfinished"))
    if plots is not None:
        for path in write_svg_plots(results, plots, rows, title):
            err.print(f"wrote {path}", highlight=False, markup=False)
    if store is not None:
        from .books import write_books

        n = write_books(results[0], setup, store)
        err.print(f"wrote {n} attempts of {results[0].policy} into {store}: read them with "
                  f"gridbridge report costs --store {store}", highlight=False, markup=False)
