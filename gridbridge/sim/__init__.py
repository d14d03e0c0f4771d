"""The simulators: what-ifs that replay history against gridbridge's decisions, away from the
live scheduler.

Two of them, each a subpackage:

* :mod:`gridbridge.sim.workload` (``gridbridge simulate --trace SWF``): a discrete-event replay
  of a Standard Workload Format trace on a simulated federation (an EASY-backfill HPC queue,
  EC2 spot and on-demand priced from real files, edge pools), each job placed by the live
  :func:`gridbridge.scheduler.placement.place`, beside fixed-rule baselines.
* :mod:`gridbridge.sim.deadline` (``gridbridge simulate deadline``): one long job with a
  deadline on real spot availability traces, online policies against the omniscient optimum.

Invariant: the simulators call the live scheduler, never the other way round. Nothing in
:mod:`gridbridge.scheduler` imports :mod:`gridbridge.sim` (an import-linter contract in
pyproject.toml holds it), so a what-if can never change what the reconciler decides::

    gridbridge.cli ──> gridbridge.sim.workload ──> gridbridge.scheduler.placement.place()
                   └─> gridbridge.sim.deadline     (pure; no I/O below load_trace)
    gridbridge.scheduler ──X──> gridbridge.sim

The names here are the simulators' own (``SimAttempt``, ``SwfTrace``, ``AvailabilityTrace``,
``DeadlinePolicy``), so none reads as a live record or a live policy. Importing this package
imports nothing heavy: each subpackage is loaded when it is named.
"""

from __future__ import annotations

__all__: list[str] = []
