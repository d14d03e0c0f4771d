"""The workload-replay trace simulator behind ``gridbridge simulate --trace SWF``.

A discrete-event replay of a Standard Workload Format trace against a simulated federation (an
HPC cluster with an EASY-backfill queue, EC2 spot and on-demand priced from real files, optional
edge pools), placing jobs with the same ``place()`` as the live reconciler and comparing it with
the ``hpc-only``, ``on-demand-only`` and ``spot-greedy`` baselines. See docs/simulate.md.

Invariant: every policy replays the same trace on the same federation with the same seed, and
the gridbridge policies decide only through the live ``place()``; a replay is a function of
those inputs (no clock, one seeded random stream).

    swf.read_swf ─┐
    market.*  ────┼─> run.prepare ─> Setup ─> run.simulate ─> engine.Replay x policy ─> report
    settings  ────┘                              (policies: place() or a baseline rule)
"""

from __future__ import annotations

from .engine import Replay, ReplayResult
from .market import MarketError
from .report import COLUMNS, summarize, write_svg_plots
from .run import Inputs, Setup, policy_names, prepare, run_policies, simulate
from .settings import SimSites, SitesError, load_sites
from .swf import SwfError, SwfJob, SwfTrace, read_swf

__all__ = [
    "COLUMNS",
    "Inputs",
    "MarketError",
    "Replay",
    "ReplayResult",
    "Setup",
    "SimSites",
    "SitesError",
    "SwfError",
    "SwfJob",
    "SwfTrace",
    "load_sites",
    "policy_names",
    "prepare",
    "read_swf",
    "run_policies",
    "simulate",
    "summarize",
    "write_svg_plots",
]
