"""One online replay of one job: the mechanics (restarts, preemptions, billing) and the
safety rule every policy is held to; the choices are the policy's.

Invariant: before each tick the policy's action is checked by :meth:`Run.safe`; an action
other than on-demand that would leave on-demand unable to finish in time becomes on-demand.
A policy sees only the present (:class:`View`), never the rest of the trace.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ._grid import HPC, IDLE, OD, Grid, Prices, Setting, grid_for, hpc_cost
from ._trace import AvailabilityTrace, Zones

__all__ = ["DeadlinePolicy", "Run", "RunResult", "View", "replay", "simulate"]


@dataclass(frozen=True)
class RunResult:
    """One replay: dollars spent, whether it finished by the deadline, and where it ran."""

    cost: float
    finished: bool
    units_by_place: dict[str, int] = field(default_factory=dict)


@dataclass
class View:
    """What an online policy sees before tick ``tick``: no future, only the present."""

    tick: int
    grid: Grid
    remaining: int
    location: int
    available: Sequence[bool]
    spot_prices: Sequence[float]
    prices: Prices
    up_run: Sequence[int]
    check: Callable[[int, int], bool]
    rates: Sequence[float] = ()
    """Each zone's preemptions per hour as its record up to now shows (learned online)."""
    restart_left: int = 0
    """Units of restart still to run where it is."""

    def safe(self, action: int, fallback: int = OD) -> bool:
        """Whether after one tick of ``action`` the job can still finish on ``fallback``."""
        return self.check(action, fallback)

    @property
    def elapsed(self) -> int:
        return self.tick * self.grid.m

    @property
    def left(self) -> int:
        return (self.grid.ticks - self.tick) * self.grid.m


class DeadlinePolicy(Protocol):
    """Decides where the job runs next tick: IDLE, OD, HPC or an available zone."""

    def decide(self, view: View) -> int: ...


class Run:
    """One replay of one job from tick ``start`` of aligned zones: the mechanics, no choices."""

    def __init__(self, zones: Zones, start: int, grid: Grid, prices: Prices) -> None:
        self.z, self.start, self.g, self.prices = zones, start, grid, prices
        self.location, self.restart, self.queue = IDLE, 0, 0
        self.remaining, self.cost, self.hpc_used = grid.work, 0.0, 0
        self.units = {"spot": 0, "on-demand": 0, "hpc": 0}

    def after(self, action: int) -> tuple[int, int, int, int]:
        """(location, restart left, queue left, work left) after one tick of ``action``."""
        restart, queue = self.restart, self.queue
        if action != self.location:
            restart = 0 if action == IDLE else self.g.r
            queue = self.g.wait if action == HPC else 0
        if action == IDLE:
            return action, 0, 0, self.remaining
        budget = self.g.m
        waited = min(queue, budget)
        budget -= waited
        restarted = min(restart, budget)
        worked = min(self.remaining, budget - restarted)
        return action, restart - restarted, queue - waited, self.remaining - worked

    def safe(self, action: int, fallback: int = OD) -> bool:
        """Whether after this tick of ``action`` the job can still finish on ``fallback``
        (OD or HPC) even if it then has no spot instance at all."""
        location, restart, queue, remaining = self.after(action)
        left = (self.g.ticks - self.tick - 1) * self.g.m
        if remaining == 0:
            return True
        if location == fallback or (location == HPC and fallback == OD):
            return left >= queue + restart + remaining
        reserve = self.g.r + (self.g.wait if fallback == HPC else 0)
        if location == OD and fallback == HPC:
            return left >= reserve + remaining
        return left >= remaining + reserve

    def run(self, policy: DeadlinePolicy) -> RunResult:
        """Replay the job under ``policy``; every action passes :meth:`safe` or becomes OD."""
        g, z = self.g, self.z
        window = slice(self.start, self.start + g.ticks)
        avail = z.available[:, window].T.tolist()
        spot = z.prices[:, window].T.tolist()
        up = z.up_run[:, window].T.tolist()
        rates = (z.rates[:, window].T.tolist() if z.rates is not None
                 else [[0.0] * z.available.shape[0]] * g.ticks)
        for self.tick in range(g.ticks):
            if self.remaining == 0:
                break
            i = self.start + self.tick
            if self.location >= 0 and not avail[self.tick][self.location]:
                self.location, self.restart = IDLE, 0  # preempted
            view = View(self.tick, g, self.remaining, self.location, avail[self.tick],
                        spot[self.tick], self.prices, up[self.tick], self.safe,
                        rates[self.tick], self.restart)
            action = HPC if self.location == HPC else policy.decide(view)
            self._check(action, i)
            if action != OD and not self.safe(action):
                action = OD
            self._advance(action, i)
        finished = self.remaining == 0
        if not finished:  # billed as if finished on on-demand after the deadline
            self.cost += (g.r + self.remaining) * self.prices.on_demand * g.q / 3600
        return RunResult(self.cost, finished, dict(self.units))

    def _check(self, action: int, i: int) -> None:
        ok = action in (IDLE, OD) or (action == HPC and self.prices.hpc is not None) or (
            0 <= action < self.z.available.shape[0] and bool(self.z.available[action, i]))
        if not ok:
            raise ValueError(f"policy chose {action} at tick {self.tick}: not available")

    def _advance(self, action: int, i: int) -> None:
        location, restart, queue, remaining = self.after(action)
        held = (self.restart if action == self.location else
                (0 if action == IDLE else self.g.r)) - restart
        held += self.remaining - remaining
        self.location, self.restart, self.queue, self.remaining = (
            location, restart, queue, remaining)
        k = self.g.q / 3600
        if action == OD:
            self.cost += held * self.prices.on_demand * k
            self.units["on-demand"] += held
        elif action == HPC:
            hpc = self.prices.hpc
            assert hpc is not None
            self.cost += float(hpc_cost(self.hpc_used + held, self.g, hpc)
                               - hpc_cost(self.hpc_used, self.g, hpc))
            self.hpc_used += held
            self.units["hpc"] += held
        elif action >= 0:
            self.cost += held * float(self.z.prices[action, i]) * k
            self.units["spot"] += held


def simulate(policy: DeadlinePolicy, traces: Sequence[AvailabilityTrace], start: int,
             setting: Setting, prices: Prices) -> RunResult:
    """Replay one job started at tick ``start`` of ``traces`` (zones of one region)."""
    return replay(policy, Zones.of(traces, prices.spot), start, setting, prices)


def replay(policy: DeadlinePolicy, zones: Zones, start: int, setting: Setting,
           prices: Prices) -> RunResult:
    """:func:`simulate` on zones already aligned (:meth:`Zones.of`), as :func:`evaluate`
    replays many starts of them."""
    grid = grid_for(setting, zones.gap_seconds, prices.hpc)
    if start < 0 or start + grid.ticks > zones.available.shape[1]:
        raise ValueError(f"start tick {start} leaves less than the deadline in the trace")
    return Run(zones, start, grid, prices).run(policy)
