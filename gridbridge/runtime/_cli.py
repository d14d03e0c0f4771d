"""The command line of ``python -m gridbridge.runtime``: arguments in, :func:`run`'s exit code
out. Invariant: it only parses and passes on; everything the attempt does is in ``_loop``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ._loop import run
from ._spot import IMDS_ENDPOINT_ENV

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gridbridge.runtime",
                                     description="Run one gridbridge attempt.")
    parser.add_argument("--launch", required=True, help="URL of the attempt's launch.json")
    parser.add_argument("--scratch", type=Path, default=None,
                        help="a local folder for this attempt's run files")
    parser.add_argument("--rerun-env", default=None, metavar="NAME",
                        help="an environment variable holding how many times the site has "
                             "requeued this attempt (e.g. SLURM_RESTART_COUNT); a rerun "
                             "continues the attempt from its last checkpoint")
    parser.add_argument("--imds", default=None, metavar="URL",
                        help="an EC2 instance metadata service to watch for a spot "
                             "interruption notice, e.g. http://169.254.169.254 "
                             f"(${IMDS_ENDPOINT_ENV} overrides it)")
    parser.add_argument("--imds-interval", type=float, default=5.0, metavar="SECONDS",
                        help="how often to ask it (default 5)")
    parser.add_argument("--memory-gb", type=float, default=None, metavar="GB",
                        help="hold the job to this much memory; more ends the attempt FAILED "
                             "with the reason out of memory")
    parser.add_argument("--memory-cgroup", default=None, metavar="DIR",
                        help="a cgroup directory, limited to the job's memory by the adapter, "
                             "that the runtime joins before it starts the job")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the attempt the arguments name (``sys.argv`` by default); returns the exit code."""
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    rerun = 0
    if args.rerun_env:
        value = os.environ.get(args.rerun_env, "0").strip() or "0"
        rerun = int(value) if value.isdigit() else 0
    if args.memory_gb is not None:
        os.environ["GRIDBRIDGE_MEMORY_GB"] = f"{args.memory_gb:g}"
    return run(args.launch, args.scratch, rerun, args.imds, args.imds_interval, args.memory_gb,
               args.memory_cgroup)
