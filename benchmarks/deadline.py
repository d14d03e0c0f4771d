"""The deadline scenario over the shared spot availability traces: the full table.

Usage: python benchmarks/deadline.py [--data DIR] [--folder NAME ...] [--stride-hours H]
                                     [--json FILE]

For each folder of ``../shared/data/spot-availability`` (or --folder), every policy on each
file alone and gridbridge / omniscient on all the folder's files as zones of one region, for
the paper's settings (48 h job; 52 and 70 h deadlines; restart 0.02, 0.05 and 0.1 h). The GCP
trace is 45.6 h long, shorter than those deadlines, so it runs the paper's Bioinformatics
settings instead (22.5 h job, 24 and 28 h deadlines). Prices per folder are in ``FOLDERS``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from gridbridge.sim.deadline import HpcTier, Prices, Setting, evaluate, load_trace
from gridbridge.views import emit

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "spot-availability"
PAPER = [Setting(48, d, r) for d in (52, 70) for r in (0.02, 0.05, 0.1)]
BIOINFO = [Setting(22.5, d, r) for d in (24, 28) for r in (0.02, 0.05, 0.1)]
P3 = Prices()  # $3.06 on-demand (shared table), $0.9731 spot where a file has none
FOLDERS: dict[str, tuple[list[Setting], Prices]] = {
    "preemption-1-node_aws-04-22-2023": (PAPER, P3),
    "1-node_aws-02-15-2023": (PAPER, P3),
    # r5.16xlarge: spot from the files; on-demand $4.032 = 64 vCPU x $0.063, the per-vCPU
    # price of every r5 size in us-east-1 in the shared on-demand table (r5.12xlarge $3.024)
    "preemption-1-node_aws-04-19-2023": (PAPER, Prices(on_demand=4.032)),
    "preemption-4-node_aws-08-03-2023": (PAPER, P3),
    # c3-highcpu-88: spot $0.34/h at a 91 % discount (the paper's Table 4) -> $3.78 on-demand
    "preemption-1-node_gcp-04-30-2023": (BIOINFO, Prices(on_demand=3.78, spot=0.34)),
}
COLUMNS = ["policy", "zones", "traces", "job_hours", "deadline_hours", "restart_hours", "runs",
           "mean_cost_fraction", "deadline_misses", "gap_to_omniscient"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--folder", action="append", choices=sorted(FOLDERS))
    ap.add_argument("--stride-hours", type=float, default=6.0)
    ap.add_argument("--match", help="only the files whose name contains this (e.g. us-east-1)")
    ap.add_argument("--hpc", nargs=3, type=float, metavar=("WAIT_H", "PRICE", "HOURS"),
                    help="also offer an HPC tier (overage at the on-demand price)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    console = Console(width=200)
    out: list[dict[str, Any]] = []
    for folder in args.folder or list(FOLDERS):
        settings, prices = FOLDERS[folder]
        if args.hpc:
            wait, price, hours = args.hpc
            prices = Prices(prices.on_demand, prices.spot,
                            HpcTier(wait, price, hours, prices.on_demand))
        traces = [load_trace(p) for p in sorted((args.data / folder).glob("*.json*"))
                  if args.match is None or args.match in p.name]
        t0 = time.perf_counter()
        rows = evaluate(traces, settings, prices, args.stride_hours)
        took = time.perf_counter() - t0
        shown = [{**r, **{k: round(r[k], 4) for k in ("mean_cost_fraction", "gap_to_omniscient")
                          if r[k] is not None}} for r in rows]
        emit(console, f"{folder} (stride {args.stride_hours:g} h, {took:.0f} s)", COLUMNS,
             shown)
        out += [{"folder": folder, **r} for r in rows]
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
