"""``gridbridge simulate ...``: what-if replays against a simulated federation. ``simulate
--trace`` replays an SWF workload under every policy; ``simulate deadline`` replays one long
job with a deadline on spot availability traces.

Invariant: the simulators (:mod:`gridbridge.sim`) are imported only inside these commands, so
the live CLI never loads them; their errors on bad inputs are usage errors (exit 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from gridbridge.units import fmt_money
from gridbridge.views import Format, emit

from ._common import FormatOpt, console, err, opt_path
from ._shell import Group

__all__ = ["app"]

app = typer.Typer(cls=Group,
                  help="What-if replays of real traces against a simulated federation.")


@app.command("deadline")
def simulate_deadline(
    availability: Annotated[list[Path], typer.Option(
        help="a spot-traces JSON file (.json or .json.gz), one zone; repeat for the zones "
        "of one region", exists=True, dir_okay=False, show_default=False)],
    job_hours: Annotated[list[float], typer.Option(help="job length (repeat)")] = [48.0],  # noqa: B006
    deadline_hours: Annotated[list[float], typer.Option(
        help="deadline after the start (repeat)")] = [52.0, 70.0],  # noqa: B006
    restart_hours: Annotated[list[float], typer.Option(
        help="restart overhead of each new instance (repeat)")] = [0.02, 0.05, 0.1],  # noqa: B006
    stride_hours: Annotated[float, typer.Option(help="hours between starts")] = 6.0,
    on_demand_price: Annotated[float, typer.Option(help="$/h")] = 3.06,
    spot_price: Annotated[float, typer.Option(help="$/h where a file has no prices")] = 0.9731,
    hpc_hours: Annotated[Optional[float], typer.Option(  # noqa: UP045
        help="offer an HPC tier with this allocation (hours)", show_default=False)] = None,
    hpc_price: Annotated[float, typer.Option(help="$/h inside the allocation")] = 0.0,
    hpc_overage_price: Annotated[Optional[float], typer.Option(  # noqa: UP045
        help="$/h beyond the allocation (default: on-demand)", show_default=False)] = None,
    hpc_wait_hours: Annotated[float, typer.Option(help="HPC queue wait")] = 0.0,
    fmt: FormatOpt = Format.TABLE,
) -> None:
    """Replay one long job with a deadline on spot availability traces, started every
    --stride-hours: greedy, uniform-progress, gridbridge and omniscient, each file alone and
    (gridbridge, omniscient) all files as zones of one region. Cost is a fraction of
    on-demand only; gap_to_omniscient is mean cost / omniscient's - 1."""
    from rich.progress import Progress

    from gridbridge.sim import deadline as sim

    try:
        traces = [sim.load_trace(p) for p in availability]
        hpc = None if hpc_hours is None else sim.HpcTier(
            hpc_wait_hours, hpc_price, hpc_hours,
            on_demand_price if hpc_overage_price is None else hpc_overage_price)
        prices = sim.Prices(on_demand_price, spot_price, hpc)
        settings = [sim.Setting(j, d, r) for j in job_hours for d in deadline_hours
                    for r in restart_hours]
        with Progress(console=err, transient=True, disable=not err.is_terminal) as bar:
            task = bar.add_task("simulating", total=None)
            rows = sim.evaluate(traces, settings, prices, stride_hours,
                                lambda done, total: bar.update(task, completed=done,
                                                               total=total))
    except ValueError as exc:
        err.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if fmt is Format.TABLE:
        rows = [{**r, **{k: round(r[k], 4) for k in ("mean_cost_fraction", "gap_to_omniscient")
                         if r[k] is not None}, "mean_cost": fmt_money(r["mean_cost"])}
                for r in rows]
    emit(console, "deadline jobs on spot availability", [
        "policy", "zones", "traces", "job_hours", "deadline_hours", "restart_hours", "runs",
        "mean_cost_fraction", "deadline_misses", "gap_to_omniscient", "mean_cost"], rows, fmt,
         drop=("traces", "runs", "restart_hours", "job_hours", "deadline_hours", "zones",
               "gap_to_omniscient"), notes=err)


@app.callback(invoke_without_command=True)
def simulate(
    ctx: typer.Context,
    trace: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        help="an SWF workload trace (.swf or .swf.gz) to replay", show_default=False)] = None,
    spot_prices: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        help="spot price history CSV (one region)", show_default=False)] = None,
    spot_advisor: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        help="AWS Spot Advisor JSON (interruption buckets)", show_default=False)] = None,
    spot_availability: Annotated[Optional[list[Path]], typer.Option(  # noqa: UP045
        help="spot availability trace JSON to replay instead of Poisson draws (repeat)",
        show_default=False)] = None,
    ondemand: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        help="on-demand price table CSV (instance shapes and prices)", show_default=False)] = None,
    sites: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        help="YAML of the simulated federation (default: see docs/simulate.md)",
        show_default=False)] = None,
    policy: Annotated[str, typer.Option(help="a policy name, or all")] = "all",
    seed: Annotated[int, typer.Option(help="seeds the interruption draws")] = 0,
    fmt: FormatOpt = Format.TABLE,
    plots: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        help="write cost-over-time and turnaround plots (SVG) into this folder",
        show_default=False)] = None,
    limit: Annotated[Optional[int], typer.Option(  # noqa: UP045
        min=1, help="replay only the trace's first N jobs", show_default=False)] = None,
    store: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="also write the replay of --policy (one policy) into this new state store "
        "(e.g. sqlite:///whatif.db), for gridbridge report ... --store", show_default=False)
    ] = None,
) -> None:
    """Replay an SWF trace: every policy (gridbridge's placement and the hpc-only,
    on-demand-only and spot-greedy baselines) on the same trace, sites and seed."""
    if ctx.invoked_subcommand is not None:
        return
    if trace is None:
        err.print("error: give --trace SWF (or a subcommand; see --help)")
        raise typer.Exit(2)
    from gridbridge.sim.workload.command import run_command
    from gridbridge.sim.workload.run import Inputs

    inputs = Inputs(trace=str(trace), spot_prices=opt_path(spot_prices),
                    spot_advisor=opt_path(spot_advisor), ondemand=opt_path(ondemand),
                    spot_availability=tuple(str(p) for p in spot_availability or ()),
                    sites=opt_path(sites), limit=limit)
    run_command(inputs, policy, seed, fmt, plots, (console, err), store)
