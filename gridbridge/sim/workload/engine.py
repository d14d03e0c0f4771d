"""The discrete-event replay: jobs arrive, a policy places them in rounds, attempts run, end,
are interrupted or hit a time limit, and every second held is billed.

Invariant: the replay is a function of (trace, federation, policy, seed): one seeded random
stream draws the interruptions, the event heap breaks ties by a sequence number, and nothing
reads a clock. An attempt's life::

    start (HPC: when EASY starts it; cloud, edge: at once)
      [restart R, if the job has a checkpoint] [work tau][ckpt C][work tau][ckpt C] ... [rest]
      ends first of:  done  |  interrupted (Poisson per instance, or a replayed trace)
                            |  the site's time limit (a checkpoint at the limit, no loss)
    interrupted -> work since the last completed checkpoint is lost; the job is pending again
                   and pays R when it resumes; both count in ``lost_core_hours``

Placement sees only the user's estimate (SWF requested time); the real run time decides when
an attempt ends.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from gridbridge.spec import JobSpec

from .federation import Federation, Shape
from .hpc import EasyCluster, QueueItem
from .settings import JobModel
from .swf import SwfJob

if TYPE_CHECKING:
    from gridbridge.scheduler.placement import Decision

__all__ = [
    "Choice",
    "Chooser",
    "Kind",
    "Replay",
    "ReplayResult",
    "SimAttempt",
    "SimJob",
    "SimOutcome",
    "progress",
]

_END, _ARRIVE, _ROUND = 0, 1, 2
"""Event kinds, in the order they are handled at one instant: capacity frees up first."""


class Kind(StrEnum):
    """Where an attempt runs."""

    HPC = "hpc"
    SPOT = "spot"
    ON_DEMAND = "on-demand"
    EDGE = "edge"


class SimOutcome(StrEnum):
    """How a simulated attempt ended (the live store's words are ``AttemptState``)."""

    DONE = "done"
    INTERRUPTED = "interrupted"
    WALLTIME = "walltime"


@dataclass(eq=False)
class SimJob:
    """One trace job as the replay tracks it."""

    index: int
    trace: SwfJob
    shape: Shape
    deadline_s: float
    done_s: float = 0.0
    """Work committed by checkpoints (or finished)."""
    attempts: int = 0
    finish_s: float | None = None
    spec: JobSpec | None = None
    """Built by the policies that call placement (cached here)."""
    restart_owed: bool = False
    """Its last attempt was interrupted: the next start's restart counts as lost."""

    @property
    def remaining_s(self) -> float:
        return max(self.trace.runtime_s - self.done_s, 0.0)

    @property
    def remaining_estimate_s(self) -> float:
        """What placement may know: the estimate less the committed work (at least a second)."""
        return max(self.trace.requested_s - self.done_s, 1.0)


@dataclass(frozen=True)
class Choice:
    """Where a policy sends a job, and how it runs there."""

    kind: Kind
    site: str
    key: str
    interval_s: float
    restart_s: float
    instances: int = 1
    rate_per_hour: float = 0.0
    """Interruptions per hour of the whole attempt (all its instances)."""
    edge: int = -1


@dataclass(eq=False)
class SimAttempt:
    """One try of a job on one site in the replay (a simulated record, never a live
    ``scheduler.records.Attempt``): its plan, when it ran, how it ended, what it cost."""

    job: SimJob
    choice: Choice
    plan_s: float
    """Wall time it needs to finish, restart and checkpoints included."""
    restart_s: float
    start_s: float | None = None
    end_s: float | None = None
    outcome: SimOutcome | None = None
    cost: float = 0.0
    item: QueueItem | None = None
    placed_s: float = 0.0
    """When the policy sent it there (an HPC attempt may start later)."""
    decision: Decision | None = None
    """Placement's whole decision, kept only when the replay is asked to
    (:attr:`Replay.keep_decisions`), for a what-if written as a store."""


@dataclass
class ReplayResult:
    """What one replay did: every job, every attempt, and the totals the report needs."""

    policy: str
    jobs: list[SimJob]
    attempts: list[SimAttempt]
    lost_core_hours: float
    interruptions: int
    unplaced: dict[int, str] = field(default_factory=dict)
    """Jobs no site could ever take, with why."""


class Chooser(Protocol):
    """A policy: places the given pending jobs through ``replay.start`` and returns those it
    could not place now."""

    @property
    def name(self) -> str: ...

    def place(self, replay: Replay, jobs: Sequence[SimJob], now: float) -> list[SimJob]: ...


def progress(elapsed: float, restart_s: float, work_s: float, interval_s: float,
             checkpoint_s: float) -> tuple[float, float]:
    """(work committed by completed checkpoints, work done since) after ``elapsed`` seconds."""
    y = elapsed - restart_s
    if y <= 0:
        return 0.0, 0.0
    cycle = interval_s + checkpoint_s
    k = math.floor(y / cycle)
    committed = min(k * interval_s, work_s)
    return committed, min(y - k * cycle, interval_s, work_s - committed)


def plan_s(restart_s: float, work_s: float, interval_s: float, checkpoint_s: float) -> float:
    """Wall seconds to do ``work_s`` checkpointing every ``interval_s`` (none after the end)."""
    checkpoints = max(math.ceil(work_s / interval_s) - 1, 0) if work_s > 0 else 0
    return restart_s + work_s + checkpoints * checkpoint_s


class Replay:
    """One policy over one trace on one federation (see the module docstring)."""

    def __init__(self, federation: Federation, jobs: Sequence[SwfJob], model: JobModel,
                 base: datetime, seed: int) -> None:
        self.fed = federation
        self.model = model
        self.base = base
        self.rng = random.Random(seed)
        self.cluster = (EasyCluster(federation.hpc_cores) if federation.hpc is not None
                        else None)
        self.edge_free = [e.cores for e in federation.edge]
        self.jobs = [self._job(i, j) for i, j in enumerate(jobs)]
        self.attempts: list[SimAttempt] = []
        self.alloc_left = federation.hpc.allocation_core_hours if federation.hpc else 0.0
        self.lost_core_hours = 0.0
        self.interruptions = 0
        self._heap: list[tuple[float, int, int, object]] = []
        self._seq = 0
        self._pending: list[SimJob] = []
        self._round_at: float | None = None
        self._last_round = -math.inf
        self.keep_decisions = False
        """Keep each attempt's placement decision (memory: every candidate of every one)."""

    def _job(self, index: int, t: SwfJob) -> SimJob:
        memory = t.cores * (t.memory_gb_per_core or self.model.memory_gb_per_core)
        deadline = t.submit_s + self.model.round_s + self.model.deadline_factor * t.requested_s
        return SimJob(index, t, Shape(t.cores, memory), deadline)

    def at(self, t: float) -> datetime:
        """The datetime placement sees for simulated second ``t``."""
        return self.base + timedelta(seconds=t)

    def hpc_marginal_per_core_hour(self) -> float:
        """The cluster's price for the next core-hour: 0 while the allocation lasts."""
        assert self.fed.hpc is not None
        return 0.0 if self.alloc_left > 0 else self.fed.hpc.per_core_hour

    def run(self, chooser: Chooser, tick: Callable[[int], None] | None = None) -> ReplayResult:
        """Replay every job under ``chooser``; ``tick(n)`` is called as jobs finish."""
        for job in self.jobs:
            self._push(job.trace.submit_s, _ARRIVE, job)
        finished = 0
        while self._heap:
            now, kind, _, obj = heapq.heappop(self._heap)
            if kind == _END:
                assert isinstance(obj, SimAttempt)
                if self._end(obj, now) and tick is not None:
                    finished += 1
                    tick(finished)
            elif kind == _ARRIVE:
                assert isinstance(obj, SimJob)
                self._pending.append(obj)
                self._want_round(now)
            else:
                self._round(chooser, now)
        unplaced = {j.index: "no site could take it" for j in self._pending}
        return ReplayResult(chooser.name, self.jobs, self.attempts, self.lost_core_hours,
                            self.interruptions, unplaced)

    def _push(self, t: float, kind: int, obj: object) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, kind, self._seq, obj))

    def _want_round(self, now: float) -> None:
        if self._round_at is None:
            self._round_at = max(now, self._last_round + self.model.round_s)
            self._push(self._round_at, _ROUND, None)

    def _round(self, chooser: Chooser, now: float) -> None:
        self._round_at, self._last_round = None, now
        jobs = sorted(self._pending, key=lambda j: (j.trace.submit_s, j.index))
        self._pending = chooser.place(self, jobs, now)

    def start(self, job: SimJob, choice: Choice, now: float) -> None:
        """Send ``job`` where ``choice`` says: queued on the cluster, or started at once."""
        restart = choice.restart_s if job.done_s > 0 else 0.0
        att = SimAttempt(job, choice, plan_s(restart, job.remaining_s, choice.interval_s,
                                          self.model.checkpoint_cost_s), restart, placed_s=now)
        self.attempts.append(att)
        if choice.kind is Kind.HPC:
            assert self.cluster is not None
            estimate = plan_s(restart, job.remaining_estimate_s, choice.interval_s,
                              self.model.checkpoint_cost_s)
            att.item = QueueItem(att, job.trace.cores, estimate)
            self.cluster.submit(att.item)
            self._schedule_hpc(now)
            return
        if choice.kind is Kind.EDGE:
            self.edge_free[choice.edge] -= job.trace.cores
        self._begin(att, now)

    def _schedule_hpc(self, now: float) -> None:
        assert self.cluster is not None
        for item in self.cluster.schedule(now):
            assert isinstance(item.key, SimAttempt)
            self._begin(item.key, now)

    def _begin(self, att: SimAttempt, now: float) -> None:
        job, choice = att.job, att.choice
        job.attempts += 1
        att.start_s = now
        if job.restart_owed:
            self.lost_core_hours += att.restart_s * job.trace.cores / 3600.0
            job.restart_owed = False
        run = att.plan_s
        outcome = SimOutcome.DONE
        limit = self.fed.hpc.max_walltime_s if (choice.kind is Kind.HPC and self.fed.hpc) else None
        if limit is not None and limit < run:
            run, outcome = limit, SimOutcome.WALLTIME
        loss = self._time_to_interruption(choice, now)
        if loss < run:
            run, outcome = loss, SimOutcome.INTERRUPTED
        att.outcome = outcome
        self._push(now + run, _END, att)

    def _time_to_interruption(self, choice: Choice, now: float) -> float:
        if choice.kind is Kind.SPOT:
            type_name, _, zone = choice.key.partition("/")
            trace = self.fed.availability.get((type_name, zone))
            if trace is not None:
                return trace.next_loss(now) - now
        if choice.rate_per_hour <= 0 or choice.kind not in (Kind.SPOT, Kind.EDGE):
            return math.inf
        return self.rng.expovariate(choice.rate_per_hour / 3600.0)

    def _end(self, att: SimAttempt, now: float) -> bool:
        """Close an attempt; True when its job is now finished."""
        job, choice = att.job, att.choice
        assert att.start_s is not None
        att.end_s = now
        elapsed = now - att.start_s
        att.cost = self._bill(att, elapsed)
        if choice.kind is Kind.HPC:
            assert self.cluster is not None and att.item is not None
            self.cluster.finish(att.item)
        elif choice.kind is Kind.EDGE:
            self.edge_free[choice.edge] += job.trace.cores
        finished = att.outcome is SimOutcome.DONE
        if finished:
            job.done_s, job.finish_s = job.trace.runtime_s, now
        else:
            committed, since = progress(elapsed, att.restart_s, job.remaining_s,
                                        choice.interval_s, self.model.checkpoint_cost_s)
            if att.outcome is SimOutcome.INTERRUPTED:
                self.interruptions += 1
                self.lost_core_hours += since * job.trace.cores / 3600.0
                job.restart_owed = True
                job.done_s += committed
            else:  # the time limit: it checkpoints what it did
                job.done_s += committed + since
            self._pending.append(job)
        if choice.kind is Kind.HPC:
            self._schedule_hpc(now)
        if self._pending:
            self._want_round(now)
        return finished

    def _bill(self, att: SimAttempt, elapsed: float) -> float:
        choice, cores = att.choice, att.job.trace.cores
        assert att.start_s is not None
        hours = elapsed / 3600.0
        if choice.kind is Kind.SPOT:
            t = self.fed.cloud_type(choice.key.partition("/")[0])
            zone = choice.key.partition("/")[2]
            return choice.instances * self.fed.spot_cost(t, zone, att.start_s,
                                                         att.start_s + elapsed)
        if choice.kind is Kind.ON_DEMAND:
            return choice.instances * self.fed.cloud_type(choice.key).on_demand_per_hour * hours
        if choice.kind is Kind.EDGE:
            return cores * hours * self.fed.edge[choice.edge].per_core_hour
        assert self.fed.hpc is not None
        core_hours = cores * hours
        prepaid = min(self.alloc_left, core_hours)
        self.alloc_left -= prepaid
        return (core_hours - prepaid) * self.fed.hpc.per_core_hour
