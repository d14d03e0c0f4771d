"""Whether running jobs should move: one pure decision, weighed for every running attempt at
once, that the live reconciler's migration phase and the simulators share.

Invariant: :func:`weigh` reads only its arguments (no store, no adapters, no clock): every
time comes in relative to a ``now`` the caller owns (seconds left to a deadline, seconds since
the last checkpoint, since the last move), so a simulator calls it with its own clock and gets
the live product's decisions. It computes with arrays of shape (attempts, offers); text is made
only for the moves it returns (:func:`why`).

The numbers are :mod:`gridbridge.costs`' model, as placement uses it: the expected run time of
the work left under Poisson preemptions at each offer's rate, with checkpoints every Young's
interval (capped at the job's own), times the offer's price. Per attempt ``i`` running on
offer ``c``, with ``W`` the work left after its last checkpoint and ``s`` the work done since
(lost if the site took it back now; a move asks the job to save, but is charged as if the save
failed, so a move is never cheaper than it may turn out)::

    stay[i]     = price[i,c] * E(W - s, on c)               (no restart: it runs already)
    there[i,j]  = price[i,j] * (R_j + E(W, on j))           (restart, then all of W again)
    move[i,j]   = price[i,j] * (R_j + s) + data_gb * egress (what the move itself costs)

    drain     its site is drained          -> the cheapest other offer (or none: it waits)
    deadline  on a preemptible offer, and  left <= min over reliable j of (R_j + W) + margin
              (Can't Be Late's safety rule: move while reliable capacity can still finish,
              even if the spot offer took the job back this very moment)
                                           -> the cheapest reliable offer that finishes in time
    cheaper   stay - there > factor * move, not moved within ``min_interval_s``, the offer
              finishes in time and, if preemptible, leaves the safety rule unbroken and
              repays its restart: its expected stretch 1/lam (lam: the site's own recent
              record) buys more than the restart at the cheapest reliable price h, i.e.
              h - price > h * R * lam (short stretches of spot cost more than they save)

:func:`start` is the same model for a job without an instance (pending, or preempted in a
simulator): the cheapest expected rest among offers that fit, finish in time, keep the safety
rule and repay their restart; with a ``pace`` it may wait for spot while ahead of it.

A simulator calls it as the reconciler does (``reconciler/_migrating.py``), on its own clock
``t``: ``left_s = deadline - t``, ``since_checkpoint_s = t - last_save``, ``since_move_s = t -
last_move``, ``work_left_s`` = the work after its last save, the offers as it sees them at
``t`` (a spot zone without capacity offers 0 cpus), ``margin_s`` = its step plus the config's;
then it stops and re-places the jobs of the moves it gets back.

Modes (``JobSpec.migrate``): ``never`` nothing; ``deadline`` drain and deadline; ``cost`` all
three. Moves are then walked best first against each target's free capacity (a deadline or
cost move whose target has no room is not made; it is weighed again next tick).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray

from gridbridge.adapter import Offer
from gridbridge.spec import JobSpec
from gridbridge.units import fmt_duration

__all__ = ["MODES", "Move", "Running", "Settings", "Trigger", "allowed", "modes", "offer_index",
           "start", "weigh", "why"]

Array = NDArray[np.float64]
_HOUR_S = 3600.0
MODES = {"never": 0, "deadline": 1, "cost": 2}
"""The ``migrate`` modes as the numbers :class:`Running` carries."""


class Trigger(StrEnum):
    """Why a job moves, strongest first."""

    DRAIN = "drain"
    """An operator drained its site (``gridbridge sites drain``)."""
    DEADLINE = "deadline"
    """Its deadline needs reliable capacity now (the safety rule)."""
    CHEAPER = "cheaper"
    """Another offer saves more than the move costs, by the factor."""


@dataclass(frozen=True)
class Settings:
    """The config's ``migration:`` with the tick it runs at."""

    min_interval_s: float = 600.0
    factor: float = 2.0
    margin_s: float = 0.0
    """The deadline rule's margin (the caller adds one tick to the config's)."""


@dataclass(frozen=True)
class Running:
    """The running attempts weighed, as columns (one entry per attempt)."""

    offer: NDArray[np.int64]
    """Index into the offers of the one it runs on (-1: not among them; it is not weighed)."""
    cpus: Array
    gpus: Array
    memory_gb: Array
    work_left_s: Array
    """Work left after its last checkpoint (``W``)."""
    since_checkpoint_s: Array
    """Work done since its last checkpoint (``s``), lost if its site took it back now."""
    left_s: Array
    """Seconds to its deadline (inf: none)."""
    since_move_s: Array
    """Seconds since its last move (inf: never moved)."""
    interval_s: Array
    """Its own checkpoint interval."""
    mode: NDArray[np.int64]
    """:data:`MODES` of its ``migrate`` mode."""
    allowed: NDArray[np.bool_]
    """(attempts, offers): the offers its constraints allow (:func:`allowed`)."""
    data_gb: Array | None = None
    """Checkpoint data a move takes out of its site (None: unknown, counted as 0)."""

    def __len__(self) -> int:
        return len(self.offer)


@dataclass(frozen=True)
class Move:
    """One attempt to move: where to (-1: nowhere has room, it waits pending), and why."""

    row: int
    target: int
    trigger: Trigger
    saving: float
    """Expected cost of staying less that of moving (may be negative for a deadline)."""
    cost: float
    """What the move itself costs (restart, lost work, data)."""
    detail: str = ""


@dataclass
class _Columns:
    """The offers as arrays."""

    per_hour: Array
    per_core: Array
    per_gpu: Array
    lam: Array
    restart: Array
    free_cpus: Array
    free_gpus: Array
    free_mem: Array
    preemptible: NDArray[np.bool_]
    egress: Array
    drained: NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=np.bool_))

    @classmethod
    def of(cls, offers: Sequence[Offer], drained: Iterable[str]) -> _Columns:
        def arr(values: Iterable[float]) -> Array:
            return np.fromiter(values, dtype=np.float64, count=len(offers))

        gone = set(drained)
        return cls(
            per_hour=arr(o.price.per_hour for o in offers),
            per_core=arr(o.price.per_core_hour for o in offers),
            per_gpu=arr(o.price.per_gpu_hour for o in offers),
            lam=arr(o.preemption_rate_per_hour / _HOUR_S for o in offers),
            restart=arr(o.restart_overhead_s for o in offers),
            free_cpus=arr(o.cpus for o in offers), free_gpus=arr(o.gpus for o in offers),
            free_mem=arr(o.memory_gb for o in offers),
            preemptible=np.fromiter((o.preemptible for o in offers), dtype=np.bool_,
                                    count=len(offers)),
            egress=arr(o.price.per_gb_egress for o in offers),
            drained=np.fromiter((o.site in gone for o in offers), dtype=np.bool_,
                                count=len(offers)),
        )


def allowed(spec: JobSpec, offers: Sequence[Offer]) -> NDArray[np.bool_]:
    """The offers a job's constraints allow (sites, tiers, preemption, labels, latency): the
    rules placement applies, for one job (callers cache it per set of constraints)."""
    c = spec.constraints
    return np.fromiter(
        ((o.site not in c.denied_sites
          and (c.allowed_sites is None or o.site in c.allowed_sites)
          and o.tier in c.tiers and (c.preemptible_ok or not o.preemptible)
          and all(o.labels.get(k) == v for k, v in c.labels.items())
          and (c.max_latency_ms is None
               or (o.latency_ms is not None and o.latency_ms <= c.max_latency_ms)))
         for o in offers), dtype=np.bool_, count=len(offers))


def _runtime(work: Array, lam: Array, tau: Array, restart: Array) -> Array:
    """:func:`gridbridge.costs.expected_runtime_s`, elementwise (broadcast)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        young = np.sqrt(2 * restart / lam)
        tau = np.where((lam > 0) & (restart > 0), np.minimum(tau, young), tau)
        tau = np.where(work > 0, np.minimum(tau, np.maximum(work, 1e-9)), tau)
        full = np.where(work > 0, np.floor(work / tau), 0.0)
        rest = np.maximum(work - full * tau, 0.0)
        out = np.exp(lam * restart) / lam * (full * np.expm1(lam * tau) + np.expm1(lam * rest))
        out = np.where((lam == 0) | (work <= 0), np.maximum(work, 0.0), out)
    return np.where(np.isfinite(out), out, np.inf)


def weigh(running: Running, offers: Sequence[Offer], settings: Settings,
          drained: Iterable[str] = ()) -> list[Move]:
    """The moves to make now, strongest trigger first, then largest saving."""
    n, m = len(running), len(offers)
    if n == 0 or m == 0:
        return []
    o = _Columns.of(offers, drained)
    r = running
    here = np.clip(r.offer, 0, m - 1)
    live = (r.offer >= 0) & (r.mode > 0)
    hourly = (o.per_hour[None, :] + r.cpus[:, None] * o.per_core[None, :]
              + r.gpus[:, None] * o.per_gpu[None, :])
    rows = np.arange(n)
    lost = np.minimum(r.since_checkpoint_s, r.work_left_s)
    stay_t = _runtime(r.work_left_s - lost, o.lam[here], r.interval_s, o.restart[here])
    stay = hourly[rows, here] * stay_t / _HOUR_S
    there_t = o.restart[None, :] + _runtime(r.work_left_s[:, None], o.lam[None, :],
                                            r.interval_s[:, None], o.restart[None, :])
    there = hourly * there_t / _HOUR_S
    data = np.zeros(n) if r.data_gb is None else r.data_gb
    cost = hourly * (o.restart[None, :] + lost[:, None]) / _HOUR_S
    cost = cost + (data * o.egress[here])[:, None]
    fits = ((o.free_cpus[None, :] >= r.cpus[:, None]) & (o.free_gpus[None, :] >= r.gpus[:, None])
            & (o.free_mem[None, :] >= r.memory_gb[:, None]))
    elsewhere = r.allowed & ~o.drained[None, :] & (np.arange(m)[None, :] != here[:, None])
    on_time = there_t <= r.left_s[:, None]
    steady = r.allowed & ~o.drained[None, :] & ~o.preemptible[None, :]
    reliable = elsewhere & steady
    # the safety rule: what reliable capacity (the one it is on included) needs to finish
    need = np.where(steady, there_t, np.inf).min(axis=1) + settings.margin_s
    drain = live & o.drained[here]
    deadline = (live & ~drain & o.preemptible[here] & np.isfinite(r.left_s)
                & (r.left_s <= need))
    saving = stay[:, None] - there
    keeps_safe = (~o.preemptible[None, :] | ~np.isfinite(r.left_s)[:, None]
                  | (r.left_s[:, None] - o.restart[None, :] > need[:, None] + settings.margin_s))
    good = (elsewhere & on_time & keeps_safe & _repays(o, hourly, r.allowed)
            & (saving > settings.factor * cost) & (saving > 0))
    cheaper = (live & (r.mode >= MODES["cost"]) & ~drain & ~deadline
               & (r.since_move_s >= settings.min_interval_s) & good.any(axis=1))
    moves: list[Move] = []
    if drain.any():
        pick = np.where(elsewhere & (on_time | ~np.isfinite(r.left_s)[:, None]), there, np.inf)
        moves += _moves(np.flatnonzero(drain), pick, saving, cost, Trigger.DRAIN)
    if deadline.any():
        pick = np.where(reliable & on_time, there, np.inf)
        late = ~np.isfinite(pick).any(axis=1)  # none in time: the one that finishes first
        pick[late] = np.where(reliable[late], there_t[late], np.inf)
        moves += _moves(np.flatnonzero(deadline), pick, saving, cost, Trigger.DEADLINE,
                        need=need, left=r.left_s)
    if cheaper.any():
        pick = np.where(good, -saving, np.inf)
        moves += _moves(np.flatnonzero(cheaper), pick, saving, cost, Trigger.CHEAPER)
    return _walk(moves, running, o, fits)


def _repays(o: _Columns, hourly: Array, allowed: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """(attempts, offers): whether taking the offer repays its restart. A preemptible offer
    runs for a stretch of ``1/lam`` on average (``lam`` is what the site's own recent record
    says), of which the restart ``R`` buys nothing; the same work on the cheapest reliable
    offer ``h`` allowed costs ``h * (1/lam - R)``, so spot is worth its restart only while
    ``hourly / lam < h * (1/lam - R)``, i.e. ``h - hourly > h * R * lam``. Reliable offers,
    and any offer when no reliable one is allowed, always repay."""
    steady = allowed & ~o.preemptible[None, :]
    h = np.where(steady, hourly, np.inf).min(axis=1)[:, None]
    with np.errstate(invalid="ignore"):
        pays = (h - hourly) > h * o.restart[None, :] * o.lam[None, :]
    out: NDArray[np.bool_] = ~o.preemptible[None, :] | ~np.isfinite(h) | pays
    return out


def start(running: Running, offers: Sequence[Offer], settings: Settings,
          pace: Array | None = None, drained: Iterable[str] = ()) -> NDArray[np.int64]:
    """Where each pending attempt of ``running`` (its ``offer`` is ignored) should start now,
    by the same cost model: the offer with the least expected cost of the rest (restart, then
    all of ``W`` at its preemption rate) among those it fits, that finish in time, leave the
    safety rule unbroken and repay their restart (:func:`_repays`); -1: wait.

    ``pace`` (work per second the job planned: its work over its deadline) lets a job wait for
    preemptible capacity: while its work left over its time left is no more than its pace,
    and an allowed preemptible offer that repays exists but has no room now, it waits rather
    than start on reliable capacity (the slack is spent waiting, the safety rule bounds it).
    """
    n, m = len(running), len(offers)
    if n == 0 or m == 0:
        return np.full(n, -1, dtype=np.int64)
    o = _Columns.of(offers, drained)
    r = running
    hourly = (o.per_hour[None, :] + r.cpus[:, None] * o.per_core[None, :]
              + r.gpus[:, None] * o.per_gpu[None, :])
    there_t = o.restart[None, :] + _runtime(r.work_left_s[:, None], o.lam[None, :],
                                            r.interval_s[:, None], o.restart[None, :])
    usable = r.allowed & ~o.drained[None, :]
    steady = usable & ~o.preemptible[None, :]
    need = np.where(steady, there_t, np.inf).min(axis=1) + settings.margin_s
    keeps_safe = (~o.preemptible[None, :] | ~np.isfinite(r.left_s)[:, None]
                  | (r.left_s[:, None] - o.restart[None, :] > need[:, None] + settings.margin_s))
    fits = ((o.free_cpus[None, :] >= r.cpus[:, None]) & (o.free_gpus[None, :] >= r.gpus[:, None])
            & (o.free_mem[None, :] >= r.memory_gb[:, None]))
    repays = _repays(o, hourly, r.allowed)
    late = ~np.isfinite(r.left_s)[:, None] | (there_t <= r.left_s[:, None])
    cand = usable & fits & late & keeps_safe & repays
    pick = np.where(cand, hourly * there_t, np.inf)
    best = pick.argmin(axis=1)
    rows = np.arange(n)
    out = np.where(np.isfinite(pick[rows, best]), best, -1)
    if pace is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            ahead = r.work_left_s / r.left_s <= pace
        hoped = (usable & ~fits & o.preemptible[None, :] & repays).any(axis=1)
        waits = ahead & hoped & (out >= 0) & ~o.preemptible[np.clip(out, 0, m - 1)]
        out = np.where(waits, -1, out)
    return out.astype(np.int64)


def _moves(idx: NDArray[np.int64], pick: Array, saving: Array, cost: Array, trigger: Trigger,
           *, need: Array | None = None, left: Array | None = None) -> list[Move]:
    """One move per row of ``idx``, to the offer with the least ``pick`` (-1: none finite)."""
    if len(idx) == 0:
        return []
    sub = pick[idx]
    best = sub.argmin(axis=1)
    none = ~np.isfinite(sub[np.arange(len(idx)), best])
    out = []
    for k, i in enumerate(idx.tolist()):
        j = -1 if none[k] else int(best[k])
        detail = ""
        if need is not None and left is not None:
            detail = (f"{fmt_duration(float(left[i]))} left to the deadline, reliable capacity "
                      f"needs {fmt_duration(float(need[i]))} with its restart")
        out.append(Move(i, j, trigger, float(saving[i, j]) if j >= 0 else 0.0,
                        float(cost[i, j]) if j >= 0 else 0.0, detail))
    return out


def _walk(moves: list[Move], r: Running, o: _Columns, fits: NDArray[np.bool_]) -> list[Move]:
    """Each move, strongest trigger then largest saving first, takes its target's room; a
    deadline or cost move whose target has none left is not made (a drain goes anyway)."""
    rank = {Trigger.DRAIN: 0, Trigger.DEADLINE: 1, Trigger.CHEAPER: 2}
    moves.sort(key=lambda mv: (rank[mv.trigger], -mv.saving, mv.row))
    cpus, gpus, mem = o.free_cpus.copy(), o.free_gpus.copy(), o.free_mem.copy()
    out = []
    for mv in moves:
        i, j = mv.row, mv.target
        if j >= 0 and fits[i, j] and cpus[j] >= r.cpus[i] and gpus[j] >= r.gpus[i] \
                and mem[j] >= r.memory_gb[i]:
            cpus[j] -= r.cpus[i]
            gpus[j] -= r.gpus[i]
            mem[j] -= r.memory_gb[i]
            out.append(mv)
        elif mv.trigger is Trigger.DRAIN:
            out.append(Move(i, -1, mv.trigger, 0.0, 0.0, mv.detail))
    return out


def why(move: Move, offers: Sequence[Offer], here: Offer | None) -> str:
    """One line for the job's story and the serve log."""
    where = _name(here) if here is not None else "its site"
    to = _name(offers[move.target]) if move.target >= 0 else None
    money = f"expected saving ${move.saving:.4f} for a move costing ${move.cost:.4f}"
    if move.trigger is Trigger.DRAIN:
        return (f"moving off {where}: its site is drained" +
                (f"; to {to} ({money})" if to else "; no other offer has room: it waits"))
    if move.trigger is Trigger.DEADLINE:
        return (f"moving from {where} to reliable capacity ({to}): {move.detail} "
                f"(the deadline's safety rule; {money})")
    return f"moving from {where} to {to}: cheaper there ({money})"


def _name(o: Offer) -> str:
    return o.site + (f" ({o.key})" if o.key != "default" else "")


def modes(specs: Iterable[JobSpec], default: str | None) -> NDArray[np.int64]:
    """:data:`MODES` of each spec's ``migrate`` mode."""
    return np.fromiter((MODES[s.migrate_mode(default)] for s in specs), dtype=np.int64)


def offer_index(offers: Sequence[Offer]) -> Mapping[tuple[str, str], int]:
    """Where each (site, offer key) is among ``offers``."""
    return {(o.site, o.key): i for i, o in enumerate(offers)}

