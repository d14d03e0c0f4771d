"""Scoring: every class of jobs against every offer at once, with gridbridge.costs' model.

Invariant: the numbers are those of :mod:`gridbridge.costs` (expected run time under Poisson
preemptions with checkpoints every Young's interval, expected cost, on-demand cost), computed
as arrays of shape (classes, offers); ``now`` is the only time they read and nothing is
changed but the round's cache of what each set of constraints allows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

from ._classes import JobClass
from ._offers import HOUR_S, Array, Offers, Static


@dataclass(frozen=True)
class Rows:
    """Classes against every offer (one row per class)."""

    runtime: Array
    cost: Array
    on_demand: Array
    finish: Array
    """Seconds from now to the expected finish (inf: never)."""
    interval: Array
    chance: Array
    """Lower bound of the chance of finishing by the deadline (1 without one)."""
    ok: NDArray[np.bool_]
    """Feasible before capacity, slots and budgets are counted."""
    has_deadline: bool = False


def score_rows(ks: Sequence[JobClass], o: Offers, now: datetime, static: Static) -> Rows:
    """Each class's numbers on every offer, with gridbridge.costs' formulas, as arrays of
    shape (classes, offers), and which offers each class's rules allow."""
    n = len(o.items)
    cpus = _column([k.spec.resources.cpus for k in ks])
    gpus = _column([k.spec.resources.gpus for k in ks])
    runtime, cost, on_demand, finish, interval = _estimates(ks, o, cpus, gpus)
    # an offer too small for the job even when empty can never take it
    ok = (np.isfinite(finish) & (o.cpus[None, :] >= cpus) & (o.gpus[None, :] >= gpus)
          & (o.memory[None, :] >= _column([k.spec.resources.memory_gb for k in ks])))
    chance = np.ones((len(ks), n))
    for r, k in enumerate(ks):
        spec = k.spec
        c = spec.constraints
        key = (c.allowed_sites, c.denied_sites, c.tiers, c.preemptible_ok,
               tuple(sorted(c.labels.items())), c.max_latency_ms, tuple(sorted(k.avoid)))
        if key not in static:
            static[key] = o.static_ok(spec, k.avoid)
        ok[r] &= static[key]
        if not k.resumable:
            ok[r] &= ~(spec.resources.walltime_s > o.limit)
        if c.deadline is not None:
            left = (c.deadline - now).total_seconds()
            ok[r] &= finish[r] <= left
            chance[r] = _on_time_chance(k.work, left - o.wait, o.lam, interval[r], o.restart)
            if k.policy.name == "deadline":
                ok[r] &= chance[r] >= k.policy.target
        if spec.max_cost is not None:
            ok[r] &= cost[r] <= spec.max_cost
    has_deadline = len(ks) == 1 and ks[0].spec.constraints.deadline is not None
    return Rows(runtime, cost, on_demand, finish, interval, chance, ok, has_deadline)


def _column(values: Sequence[float]) -> Array:
    out: Array = np.asarray(values, dtype=np.float64)[:, None]
    return out


def _estimates(ks: Sequence[JobClass], o: Offers, cpus: Array, gpus: Array
               ) -> tuple[Array, Array, Array, Array, Array]:
    """Expected run time, cost, on-demand cost, seconds to the expected finish (inf: never)
    and checkpoint interval of each class (needing ``cpus`` and ``gpus``, columns) on each
    offer."""
    work = _column([k.work for k in ks])
    own = _column([k.spec.checkpoint.interval_s for k in ks])
    lam, restart = o.lam[None, :], o.restart[None, :]
    saves = [k.cost_c for k in ks]
    cost_c = np.where(np.isnan(_column([math.nan if c is None else c for c in saves])),
                      restart, _column([0.0 if c is None else c for c in saves]))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        young = np.sqrt(2 * cost_c / lam)
        interval = np.where((lam > 0) & (cost_c > 0), np.minimum(own, young), own)
        tau = np.where(work > 0, np.minimum(interval, work), interval)
        full = np.where(work > 0, np.floor(work / tau), 0.0)
        rest = np.maximum(work - full * tau, 0.0)
        grow = np.exp(lam * restart) / lam
        runtime = grow * (full * np.expm1(lam * tau) + np.expm1(lam * rest))
        runtime = np.where((lam == 0) | (work == 0), work, runtime)
        runtime = np.where(np.isfinite(runtime), runtime, np.inf)
        limit = o.limit[None, :]
        walls = (work > limit) & np.isfinite(runtime)
        restarts = (np.ceil(work / np.where(np.isfinite(limit), limit, 1.0)) - 1) * restart
        runtime = np.where(walls, runtime + restarts, runtime)
        hourly = o.per_hour[None, :] + cpus * o.per_core[None, :] + gpus * o.per_gpu[None, :]
        cost = np.where(hourly == 0, 0.0, hourly * runtime / HOUR_S)
        od = o.od_hour[None, :] + cpus * o.od_core[None, :] + gpus * o.od_gpu[None, :]
        on_demand = np.where(od == 0, 0.0, od * work / HOUR_S)
        finish = o.wait[None, :] + runtime
    return runtime, cost, on_demand, finish, interval


def _on_time_chance(work: float, window: Array, lam: Array, interval: Array,
                    restart: Array) -> Array:
    """A lower bound of P(the job finishes within ``window`` seconds of starting).

    Each interruption costs at most one interval of work plus the restart, so the job is on
    time whenever at most ``k = floor((window - work) / (interval + R))`` interruptions strike
    during ``window``; interruptions are Poisson with rate ``lam``: ``P >= P(Poisson(lam *
    window) <= k)``."""
    slack = window - work
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        k = np.floor(slack / (np.minimum(interval, max(work, 1e-9)) + restart))
    mu = lam * np.maximum(window, 0.0)
    out = np.zeros_like(mu)
    out[slack >= 0] = 1.0
    risky = (slack >= 0) & (mu > 0)
    sure = risky & (k >= mu + 12 * np.sqrt(mu) + 12)
    calc = risky & ~sure
    if calc.any():
        kk, mm = k[calc], mu[calc]
        top = int(min(kk.max(), 10_000))
        term = np.exp(-mm)
        total = np.where(kk >= 0, term, 0.0)
        for i in range(1, top + 1):
            term = term * mm / i
            total += np.where(kk >= i, term, 0.0)
        out[calc] = np.minimum(total, 1.0)
    return out


