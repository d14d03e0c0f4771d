"""The deadline scenario: one long job replayed against real spot availability traces.

Invariant: everything below :func:`load_trace` is pure -- no I/O, no clock, no randomness -- so
the same traces and settings always give the same table.

The model is the one of "Can't Be Late" (Wu et al., NSDI 2024), on a grid fine enough to be exact::

    time   ticks of the trace's gap g, each split into m units of q = g/m seconds, m chosen
           so that the restart d is a whole number r of units (within 2 %, see _grid)
    job    W units of work; done once W units ran on instances after their restarts
    spot   a zone's instance runs during tick t only if the trace says so; a preemption ends it
    start  every new instance (idle -> spot, spot -> on-demand, another zone, after a
           preemption) first spends r units restarting: billed, no progress
    HPC    optional: a reliable last tier -- queue wait (not billed), then restart, then work;
           a prepaid allocation at one price, overage at another; once there the job stays
    bill   price x units held; the job stops paying when it is done (mid-tick)

Every policy is kept on time by one rule, checked before each tick (:meth:`_replay.Run.safe`): an
action other than on-demand is taken only if, after this tick and assuming the spot instance
is then lost, on-demand (restart included) can still finish the rest. On-demand keeps that
rule true from any state where it holds, and it holds at the start whenever the deadline
allows restart + job on on-demand at all; so no policy can miss (a safety-margin argument,
tested on adversarial traces).

The modules, one idea each::

    _trace     load_trace, align ──> Zones (availability, price, run length per [zone, tick])
    _grid      Setting, Prices, HpcTier ──> grid_for ──> Grid (units, restart, slack)
    _replay    simulate(policy, ...) ──> Run: mechanics + the safety rule ──> RunResult
    _policies  Greedy, UniformProgress (the paper's)
    _live      "gridbridge": the live decision (scheduler.moves.weigh, start) on the replay clock
    _omniscient  the DP optimum per start
    _evaluate  evaluate: every policy and the optimum over many starts ──> rows of the table
"""

from __future__ import annotations

from ._evaluate import POLICIES, evaluate
from ._grid import (
    DEFAULT_ON_DEMAND_PRICE,
    DEFAULT_SPOT_PRICE,
    HPC,
    IDLE,
    OD,
    HpcTier,
    Prices,
    Setting,
)
from ._live import Gridbridge
from ._omniscient import omniscient
from ._policies import Greedy, UniformProgress
from ._replay import DeadlinePolicy, RunResult, View, simulate
from ._trace import AvailabilityTrace, align, load_trace

__all__ = [
    "DEFAULT_ON_DEMAND_PRICE",
    "DEFAULT_SPOT_PRICE",
    "HPC",
    "IDLE",
    "OD",
    "POLICIES",
    "AvailabilityTrace",
    "DeadlinePolicy",
    "Greedy",
    "Gridbridge",
    "HpcTier",
    "Prices",
    "RunResult",
    "Setting",
    "UniformProgress",
    "View",
    "align",
    "evaluate",
    "load_trace",
    "omniscient",
    "simulate",
]
