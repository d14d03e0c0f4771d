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

Every policy is kept on time by one rule, checked before each tick (:meth:`_Run.safe`): an
action other than on-demand is taken only if, after this tick and assuming the spot instance
is then lost, on-demand (restart included) can still finish the rest. On-demand keeps that
rule true from any state where it holds, and it holds at the start whenever the deadline
allows restart + job on on-demand at all; so no policy can miss (a safety-margin argument,
tested on adversarial traces).
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

__all__ = [
    "DEFAULT_ON_DEMAND_PRICE",
    "DEFAULT_SPOT_PRICE",
    "POLICIES",
    "HpcTier",
    "Prices",
    "RunResult",
    "Setting",
    "Trace",
    "align",
    "evaluate",
    "load_trace",
    "omniscient",
    "simulate",
]

DEFAULT_ON_DEMAND_PRICE = 3.06
"""p3.2xlarge on-demand in us-east-1 (the shared on-demand table)."""
DEFAULT_SPOT_PRICE = 0.9731
"""p3.2xlarge spot as the paper's simulator prices it, for files without prices."""

IDLE, OD, HPC = -1, -2, -3
"""Where the job is: idle, on-demand, HPC; a zone is its index (0, 1, ...)."""

_RESTART_TOLERANCE = 0.02
_MAX_UNITS_PER_TICK = 64

Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Trace:
    """One zone's availability: ``available[i]`` holds during tick i (``gap_seconds`` long);
    ``prices[i]`` is the spot price per hour then, or None where the file carries none."""

    name: str
    gap_seconds: float
    available: Bools
    prices: Floats | None = None

    def __len__(self) -> int:
        return int(self.available.shape[0])


def load_trace(path: Path) -> Trace:
    """Read a spot-traces file (``.json`` or ``.json.gz``): ``{"metadata": {"gap_seconds": G},
    "data": [...], "prices": [...]?}``. Values 0/1 are the 1-node encoding (0: an instance
    runs, 1: none); a file with any value above 1 counts instances held (the 4-node files),
    and a one-instance job has spot wherever that count is at least 1. Raises ValueError
    naming the file and what is wrong with it."""
    try:
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable JSON trace ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise ValueError(f"{path}: expected an object with a 'data' list")
    gap = (doc.get("metadata") or {}).get("gap_seconds") if isinstance(
        doc.get("metadata"), dict) else None
    if isinstance(gap, bool) or not isinstance(gap, int | float) or not gap > 0:
        raise ValueError(f"{path}: metadata.gap_seconds must be a positive number, got {gap!r}")
    data = doc["data"]
    if not data:
        raise ValueError(f"{path}: 'data' is empty")
    bad = next((i for i, v in enumerate(data) if isinstance(v, bool)
                or not isinstance(v, int) or v < 0), None)
    if bad is not None:
        raise ValueError(f"{path}: data[{bad}] is {data[bad]!r}; expected a count >= 0")
    values = np.asarray(data, dtype=np.int64)
    available = values >= 1 if values.max() > 1 else values == 0
    prices = doc.get("prices")
    price_arr: Floats | None = None
    if prices is not None:
        if not isinstance(prices, list) or len(prices) != len(data):
            raise ValueError(f"{path}: 'prices' must be a list as long as 'data' ({len(data)})")
        bad = next((i for i, p in enumerate(prices) if isinstance(p, bool)
                    or not isinstance(p, int | float) or not p > 0), None)
        if bad is not None:
            raise ValueError(f"{path}: prices[{bad}] is {prices[bad]!r}; expected a price > 0")
        price_arr = np.asarray(prices, dtype=np.float64)
    name = path.name.removesuffix(".gz").removesuffix(".json")
    return Trace(name, float(gap), available, price_arr)


def align(traces: Sequence[Trace]) -> list[Trace]:
    """Zones of one region, cut to the shortest (they start together); all need one tick."""
    gaps = {t.gap_seconds for t in traces}
    if len(gaps) != 1:
        names = ", ".join(f"{t.name} ({t.gap_seconds:g} s)" for t in traces)
        raise ValueError(f"zones must share one tick to run as one region: {names}")
    n = min(len(t) for t in traces)
    return [Trace(t.name, t.gap_seconds, t.available[:n],
                  None if t.prices is None else t.prices[:n]) for t in traces]


@dataclass(frozen=True)
class Setting:
    """One row of the paper's grid: a job of ``job_hours`` due ``deadline_hours`` after it
    starts, each new instance costing ``restart_hours`` of no progress."""

    job_hours: float
    deadline_hours: float
    restart_hours: float


@dataclass(frozen=True)
class HpcTier:
    """A reliable tier: ``wait_hours`` in the queue, then ``price`` per hour for the first
    ``hours`` of the allocation and ``overage_price`` beyond it."""

    wait_hours: float
    price: float
    hours: float
    overage_price: float


@dataclass(frozen=True)
class Prices:
    """On-demand per hour; spot per hour where a file has no prices; the HPC tier, if any."""

    on_demand: float = DEFAULT_ON_DEMAND_PRICE
    spot: float = DEFAULT_SPOT_PRICE
    hpc: HpcTier | None = None


@dataclass(frozen=True)
class _Grid:
    """A setting on one trace's tick: m units a tick, restart r, work W, ticks T, slack S."""

    m: int
    q: float
    r: int
    work: int
    ticks: int
    wait: int
    alloc: int

    @property
    def slack(self) -> int:
        return self.ticks * self.m - self.work


def _grid(setting: Setting, gap: float, hpc: HpcTier | None) -> _Grid:
    """The coarsest split of a tick that makes the restart whole within 2 %. The deadline is
    rounded down to whole ticks (at most one tick early: stricter, never looser)."""
    d = setting.restart_hours * 3600
    m = 1
    if d > 0:
        m = next((k for k in range(1, _MAX_UNITS_PER_TICK + 1)
                  if round(d * k / gap) >= 1
                  and abs(round(d * k / gap) - d * k / gap) <= _RESTART_TOLERANCE * d * k / gap),
                 _MAX_UNITS_PER_TICK)
    q = gap / m
    r = round(d / q)
    work = math.ceil(setting.job_hours * 3600 / q - 1e-9)
    ticks = math.floor(setting.deadline_hours * 3600 / gap + 1e-9)
    wait = 0 if hpc is None else math.ceil(hpc.wait_hours * 3600 / q - 1e-9)
    alloc = 0 if hpc is None else math.floor(hpc.hours * 3600 / q + 1e-9)
    grid = _Grid(m, q, r, work, ticks, wait, alloc)
    if grid.slack < r:
        raise ValueError(f"deadline {setting.deadline_hours:g} h leaves no time for the job "
                         f"({setting.job_hours:g} h) plus one restart "
                         f"({setting.restart_hours:g} h) even on on-demand")
    return grid


def _hpc_cost(units: Any, g: _Grid, hpc: HpcTier) -> Any:
    """Cost of holding the HPC tier for ``units`` (scalar or array): allocation, then overage."""
    inside = np.minimum(units, g.alloc)
    return (inside * hpc.price + (units - inside) * hpc.overage_price) * g.q / 3600


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
    grid: _Grid
    remaining: int
    location: int
    available: Sequence[bool]
    spot_prices: Sequence[float]
    prices: Prices
    up_run: Sequence[int]
    check: Callable[[int, int], bool]

    def safe(self, action: int, fallback: int = OD) -> bool:
        """Whether after one tick of ``action`` the job can still finish on ``fallback``."""
        return self.check(action, fallback)

    @property
    def elapsed(self) -> int:
        return self.tick * self.grid.m

    @property
    def left(self) -> int:
        return (self.grid.ticks - self.tick) * self.grid.m


class Policy(Protocol):
    """Decides where the job runs next tick: IDLE, OD, HPC or an available zone."""

    def decide(self, view: View) -> int: ...


class _Run:
    """One replay of one job from tick ``start`` of aligned zones: the mechanics, no choices."""

    def __init__(self, zones: _Zones, start: int, grid: _Grid, prices: Prices) -> None:
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

    def run(self, policy: Policy) -> RunResult:
        """Replay the job under ``policy``; every action passes :meth:`safe` or becomes OD."""
        g, z = self.g, self.z
        window = slice(self.start, self.start + g.ticks)
        avail = z.available[:, window].T.tolist()
        spot = z.prices[:, window].T.tolist()
        up = z.up_run[:, window].T.tolist()
        for self.tick in range(g.ticks):
            if self.remaining == 0:
                break
            i = self.start + self.tick
            if self.location >= 0 and not avail[self.tick][self.location]:
                self.location, self.restart = IDLE, 0  # preempted
            view = View(self.tick, g, self.remaining, self.location, avail[self.tick],
                        spot[self.tick], self.prices, up[self.tick], self.safe)
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
            self.cost += float(_hpc_cost(self.hpc_used + held, self.g, hpc)
                               - _hpc_cost(self.hpc_used, self.g, hpc))
            self.hpc_used += held
            self.units["hpc"] += held
        elif action >= 0:
            self.cost += held * float(self.z.prices[action, i]) * k
            self.units["spot"] += held


@dataclass(frozen=True)
class _Zones:
    """Aligned zones as arrays: availability, spot price, and the length of the current
    availability run (ticks up to and including i) -- [zone, tick]."""

    available: Bools
    prices: Floats
    up_run: npt.NDArray[np.int64]
    names: tuple[str, ...]
    gap_seconds: float

    @classmethod
    def of(cls, traces: Sequence[Trace], spot_price: float) -> _Zones:
        traces = align(traces)
        avail = np.stack([t.available for t in traces])
        prices = np.stack([np.full(len(t), spot_price) if t.prices is None else t.prices
                           for t in traces])
        up = np.zeros(avail.shape, dtype=np.int64)
        run = np.zeros(avail.shape[0], dtype=np.int64)
        for i in range(avail.shape[1]):
            run = np.where(avail[:, i], run + 1, 0)
            up[:, i] = run
        return cls(avail, prices, up, tuple(t.name for t in traces), traces[0].gap_seconds)


class Greedy:
    """The paper's strawman: any spot until preempted, idle otherwise, and on-demand to the
    end once idling (or spot) could no longer be made good by on-demand."""

    def __init__(self) -> None:
        self.committed = False

    def decide(self, v: View) -> int:
        if self.committed:
            return OD
        zone = self._zone(v)
        action = IDLE if zone is None else zone
        if not v.safe(action):
            self.committed = True
            return OD
        return action

    def _zone(self, v: View) -> int | None:
        if v.location >= 0:
            return v.location
        return next((z for z, a in enumerate(v.available) if a), None)


class UniformProgress(Greedy):
    """The paper's policy: keep progress on the line ``job x elapsed / deadline``; take any
    spot (Taking Risks, then Exploitation); when idle and behind, on-demand; once on
    on-demand, stay until two restarts ahead of the line (Hysteresis); Safety Net as greedy.

    The line here is :meth:`_line`: (work to do, by when), so a subclass can plan around a
    last tier that takes the end of the job.
    """

    def _line(self, v: View) -> tuple[float, float]:
        return v.grid.work, v.grid.ticks * v.grid.m

    def decide(self, v: View) -> int:
        if self.committed:
            return OD
        work, end = self._line(v)
        done = v.grid.work - v.remaining

        def expected(x: float) -> float:
            return 0.0 if work <= 0 or end <= 0 else work * min(x, end) / end

        zone = self._zone(v)
        if v.location >= 0:
            action = v.location
        elif v.location == OD and done < expected(v.elapsed + 2 * v.grid.r):
            action = OD
        elif zone is not None:
            action = zone
        elif done < expected(v.elapsed):
            action = OD
        else:
            action = IDLE
        if action != OD and not v.safe(action):
            self.committed = True
            return OD
        return action


class Gridbridge(UniformProgress):
    """gridbridge's policy: Uniform Progress over every spot zone of the region, with HPC as
    the last tier when it is cheaper than on-demand.

    - zones: stay on the zone held; otherwise take the cheapest available zone, the one
      whose current availability run is longest on a tie (the longer a spot has lasted,
      the longer it tends to last -- no parameter, no knowledge of these traces);
    - HPC, when offered: go now if finishing there costs no more than the rest would cost at
      the cheapest spot price with no restart at all (nothing can beat it); otherwise plan
      the end of the job on it -- the uniform-progress line covers only the work HPC cannot
      take at its allocation price, due when the queue wait and restart must begin -- and
      move there at the last tick it can still be reached;
    - on-demand exactly when the safety rule says so, as every policy here.
    On one zone without HPC it makes Uniform Progress's decisions, so it never costs more.
    """

    def _zone(self, v: View) -> int | None:
        if v.location >= 0:
            return v.location
        ready = [z for z, a in enumerate(v.available) if a]
        if not ready:
            return None
        return min(ready, key=lambda z: (v.spot_prices[z], -v.up_run[z], z))

    def _hpc_last(self, v: View) -> bool:
        hpc, g = v.prices.hpc, v.grid
        if hpc is None:
            return False
        rest = g.r + v.remaining
        return float(_hpc_cost(rest, g, hpc)) < v.prices.on_demand * rest * g.q / 3600

    def _line(self, v: View) -> tuple[float, float]:
        g, hpc = v.grid, v.prices.hpc
        if hpc is None or not self._hpc_last(v):
            return super()._line(v)
        cheap = g.work if hpc.overage_price < v.prices.on_demand else min(
            g.work, max(0, g.alloc - g.r))
        return g.work - cheap, g.ticks * g.m - g.wait - g.r - cheap

    def decide(self, v: View) -> int:
        hpc, g = v.prices.hpc, v.grid
        if hpc is not None and v.safe(HPC):
            rest = g.r + v.remaining
            floor = min(v.spot_prices) * v.remaining * g.q / 3600
            if float(_hpc_cost(rest, g, hpc)) <= floor:
                return HPC
            action = super().decide(v)
            if self._hpc_last(v) and not v.safe(action, HPC):
                return HPC
            return action
        return super().decide(v)


POLICIES: dict[str, Callable[[], Policy]] = {
    "greedy": Greedy,
    "uniform-progress": UniformProgress,
    "gridbridge": Gridbridge,
}
"""The online policies by name (a fresh one per run: they keep per-run state)."""


def simulate(policy: Policy, traces: Sequence[Trace], start: int, setting: Setting,
             prices: Prices) -> RunResult:
    """Replay one job started at tick ``start`` of ``traces`` (zones of one region)."""
    return _replay(policy, _Zones.of(traces, prices.spot), start, setting, prices)


def _replay(policy: Policy, zones: _Zones, start: int, setting: Setting,
            prices: Prices) -> RunResult:
    grid = _grid(setting, zones.gap_seconds, prices.hpc)
    if start < 0 or start + grid.ticks > zones.available.shape[1]:
        raise ValueError(f"start tick {start} leaves less than the deadline in the trace")
    return _Run(zones, start, grid, prices).run(policy)


_CHUNK = 32


def omniscient(traces: Sequence[Trace], starts: Sequence[int], setting: Setting,
               prices: Prices) -> Floats:
    """The least cost of finishing by the deadline with the whole trace known, per start.

    Dynamic programming over (tick, where the job is, lost units), vectorised over lost units
    and over starts. ``lost = elapsed - progress`` never decreases and may not pass the slack
    ``S = ticks x m - W``, so it is all the state progress needs. A new instance is charged its
    restart as it starts (lost += r): a stint too short to finish its restart then looks worse
    than idling, which it is, so the optimum is unchanged. HPC is a terminal move from any
    state (queue, restart, the rest of the work), which is how the policies use it.
    """
    return _omniscient(_Zones.of(traces, prices.spot), starts, setting, prices)


def _omniscient(z: _Zones, starts: Sequence[int], setting: Setting, prices: Prices) -> Floats:
    g = _grid(setting, z.gap_seconds, prices.hpc)
    if any(s < 0 or s + g.ticks > z.available.shape[1] for s in starts):
        raise ValueError("a start leaves less than the deadline in the trace")
    out = np.empty(len(starts))
    for lo in range(0, len(starts), _CHUNK):
        chunk = np.asarray(starts[lo:lo + _CHUNK], dtype=np.int64)
        out[lo:lo + len(chunk)] = _omniscient_chunk(z, chunk, g, prices)
    return out


def _omniscient_chunk(z: _Zones, starts: npt.NDArray[np.int64], g: _Grid,
                      prices: Prices) -> Floats:
    n, zones, size, m, r = len(starts), z.available.shape[0], g.slack + 1, g.m, g.r
    k = g.q / 3600
    lost = np.arange(size)
    cost = np.full((n, zones + 2, size), np.inf)  # [start, 0 idle | 1 OD | 2+ zone, lost]
    cost[:, 0, 0] = 0.0
    best = np.full(n, np.inf)
    hpc_ok = lost <= g.slack - g.wait - r
    for t in range(g.ticks):
        low = cost.min(axis=1)
        if prices.hpc is not None and hpc_ok.any():
            rest = g.work - t * m + lost[hpc_ok]
            end = low[:, hpc_ok] + _hpc_cost(r + rest, g, prices.hpc)
            best = np.minimum(best, end.min(axis=1))
        new = np.full_like(cost, np.inf)
        if m < size:
            new[:, 0, m:] = low[:, :size - m]
        fresh = np.full_like(low, np.inf)
        if r < size:
            fresh[:, r:] = low[:, :size - r]
        run = np.minimum(cost[:, 1:], fresh[:, None, :])
        idx = starts + t
        run[:, 1:][~z.available[:, idx].T] = np.inf
        price = np.concatenate([np.full((n, 1), prices.on_demand), z.prices[:, idx].T], axis=1)
        finish = (t + 1) * m - g.work  # lost <= finish: the work is done within this tick
        if finish >= 0:
            upto = min(finish, size - 1)
            used = np.clip(m - (finish - lost[:upto + 1]), 0, m)
            done = run[:, :, :upto + 1] + price[:, :, None] * used * k
            best = np.minimum(best, done.min(axis=(1, 2)))
            run[:, :, :upto + 1] = np.inf
        new[:, 1:] = run + price[:, :, None] * m * k
        cost = new
    return best


def _on_demand_only(setting: Setting, prices: Prices) -> float:
    return (setting.job_hours + setting.restart_hours) * prices.on_demand


def _starts(length: int, ticks: int, stride: int) -> list[int]:
    return list(range(0, length - ticks + 1, stride))


def evaluate(traces: Sequence[Trace], settings: Sequence[Setting], prices: Prices,
             stride_hours: float, on_progress: Callable[[int, int], None] | None = None,
             ) -> list[dict[str, Any]]:
    """The table: per setting, every policy on each trace alone (``zones`` 1), and when there
    are several traces gridbridge and omniscient on all of them as zones of one region.

    Starts are every ``stride_hours`` (at least one tick) from the trace's beginning, as
    many as leave the deadline inside the trace; ``runs`` counts them. ``on_progress(done,
    total)`` is called after each batch of runs.
    """
    if not traces:
        raise ValueError("no availability trace given")
    if not stride_hours > 0:
        raise ValueError(f"stride must be > 0 hours, got {stride_hours!r}")
    groups: list[tuple[list[Trace], list[str]]] = [
        ([t], [*POLICIES, "omniscient"]) for t in traces]
    if len(traces) > 1:
        groups.append((align(traces), ["gridbridge", "omniscient"]))
    zones_of = [_Zones.of(group, prices.spot) for group, _ in groups]
    plans = []
    for setting in settings:
        for (group, names), zones in zip(groups, zones_of, strict=True):
            grid = _grid(setting, group[0].gap_seconds, prices.hpc)
            stride = max(1, round(stride_hours * 3600 / group[0].gap_seconds))
            plans.append((setting, group, zones, names,
                          _starts(len(group[0]), grid.ticks, stride)))
    total = sum(len(p[3]) * len(p[4]) for p in plans)
    done = 0
    rows: list[dict[str, Any]] = []
    for setting, group, zones, names, starts in plans:
        costs: dict[str, Floats] = {}
        misses: dict[str, int] = {}
        for name in names:
            if name == "omniscient":
                costs[name] = _omniscient(zones, starts, setting, prices)
                misses[name] = int(np.isinf(costs[name]).sum())
            else:
                results = [_replay(POLICIES[name](), zones, s, setting, prices)
                           for s in starts]
                costs[name] = np.array([x.cost for x in results])
                misses[name] = sum(not x.finished for x in results)
            done += len(starts)
            if on_progress is not None:
                on_progress(done, total)
        rows += _rows(setting, group, costs, misses, prices)
    return rows


def _rows(setting: Setting, group: Sequence[Trace], costs: dict[str, Floats],
          misses: dict[str, int], prices: Prices) -> list[dict[str, Any]]:
    base = _on_demand_only(setting, prices)
    best = float(costs["omniscient"].mean()) if costs["omniscient"].size else None
    rows = []
    for name, c in costs.items():
        mean = float(c.mean()) if c.size else None
        gap: float | None = None
        if mean is not None and best is not None and math.isfinite(best):
            gap = mean / best - 1 if best > 0 else (0.0 if mean == 0 else None)
        rows.append({
            "policy": name, "zones": len(group), "traces": "+".join(t.name for t in group),
            "job_hours": setting.job_hours, "deadline_hours": setting.deadline_hours,
            "restart_hours": setting.restart_hours, "runs": int(c.size),
            "mean_cost": mean, "mean_cost_fraction": None if mean is None else mean / base,
            "deadline_misses": misses[name], "gap_to_omniscient": gap,
        })
    return rows
