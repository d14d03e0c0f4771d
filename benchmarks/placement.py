"""One placement round at growing sizes, up to 100,000 pending jobs x 1,000 offers.

Usage: python benchmarks/placement.py [--jobs N ...] [--offers M ...] [--rounds R]
                                      [--distinct] [--moves N] [--move-offers M] [--json FILE]

Each size is timed ``--rounds`` times (median shown): ``plan()`` (every job's site decided) and,
separately, the explanations a reconciler stores for one tick (``Plan.decision`` of the first
100 jobs placed). Jobs take their shapes (cores, requested time) from a real workload, KTH-SP2
(the shared data folder, else ``tests/data/swf`` if present, else a synthetic mix); owners come
from four teams with budgets; offers mix HPC partitions with queue waits, spot types and zones
with interruption rates, and on-demand capacity. ``--distinct`` gives every job its own run
time too (no two jobs alike: the worst case for the class grouping).

Side by side in the same process, at the smallest size, the baseline: one job at a time,
scoring every offer with ``gridbridge.costs.estimate`` (what placement did before it was
vectorised); the ratio is baseline time / round time.

A migration tick is timed beside it: :func:`gridbridge.scheduler.moves.weigh` for ``--moves``
running attempts (10,000) against ``--move-offers`` offers (100), every job in ``cost`` mode
with a deadline, so every trigger is weighed (target: <= 1 s).

The machine may be shared, so before each size's rounds the same process also times a fixed
reference workload (a pure-Python loop and a numpy sort, :func:`reference`, its median shown
beside each size): the column ``round / ref`` is the round in units of it, which moves much
less with the load than seconds do.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import itertools
import json
import platform
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from gridbridge.adapter import Offer, Pricing
from gridbridge.costs import checkpoint_interval_s, estimate
from gridbridge.scheduler.placement import PendingJob, plan
from gridbridge.spec import CheckpointPolicy, JobSpec, Owner, Resources, Tier

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[1]
TRACES = [ROOT.parent / "shared" / "data" / "KTH-SP2-1996-2.1-cln.swf.gz",
          ROOT / "tests" / "data" / "swf" / "KTH-SP2-excerpt.swf"]
TARGET_S = 1.0


def shapes() -> tuple[list[tuple[int, float]], str]:
    """(cores, requested seconds) of each job of a real trace, or a synthetic mix."""
    for path in TRACES:
        if path.exists():
            opener = gzip.open if path.suffix == ".gz" else open
            out = []
            with opener(path, "rt") as f:  # type: ignore[operator]
                for line in f:
                    if line.startswith(";") or not line.strip():
                        continue
                    field = line.split()
                    cores, requested = int(field[7]), float(field[8])
                    if cores > 0 and requested > 0:
                        out.append((min(cores, 256), requested))
            return out, path.name
    rng = random.Random(0)
    return ([(rng.choice([1, 2, 4, 8, 16, 32, 64]), rng.choice([600, 3600, 14400, 86400]))
             for _ in range(2000)], "synthetic")


def make_jobs(n: int, pool: list[tuple[int, float]], distinct: bool,
              seed: int = 1) -> list[PendingJob]:
    rng = random.Random(seed)
    teams = ["vision", "nlp", "physics", "bio"]
    jobs = []
    for i in range(n):
        cores, requested = pool[rng.randrange(len(pool))]
        if distinct:
            requested = requested * rng.uniform(0.5, 1.5)
        spec = JobSpec(name="bench", command=("true",),
                       resources=Resources(cpus=cores, memory_gb=cores * 2.0,
                                           walltime_s=requested),
                       checkpoint=CheckpointPolicy(interval_s=1800, resumable=True),
                       priority=rng.choice([0, 0, 0, 1, 5]),
                       owner=Owner(team=teams[i % 4], project=f"p{i % 10}"))
        jobs.append(PendingJob(job_id=f"j{i:06d}", spec=spec,
                               submitted_at=NOW - timedelta(seconds=rng.randrange(86400))))
    return jobs


def make_offers(m: int, seed: int = 2) -> list[Offer]:
    rng = random.Random(seed)
    offers = []
    for i in range(m):
        kind = i % 3
        if kind == 0:  # an HPC partition: cheap per core, a queue
            offers.append(Offer(
                site=f"hpc{i % 5}", key=f"part{i}", tier=Tier.HPC, cpus=rng.choice([512, 2048]),
                memory_gb=8192.0, price=Pricing(per_core_hour=rng.uniform(0.005, 0.03)),
                on_demand=Pricing(per_core_hour=0.048), queue_wait_s=rng.uniform(0, 6 * 3600),
                max_walltime_s=rng.choice([86400.0, 172800.0]), restart_overhead_s=60))
        elif kind == 1:  # a spot type and zone
            vcpus = rng.choice([2, 4, 8, 16, 32, 64, 96])
            offers.append(Offer(
                site=f"spot{i % 4}", key=f"type{i}/zone{i % 6}", tier=Tier.CLOUD,
                cpus=vcpus * 8, memory_gb=vcpus * 8 * 4.0,
                price=Pricing(per_core_hour=rng.uniform(0.008, 0.02)),
                on_demand=Pricing(per_core_hour=0.048), preemptible=True,
                preemption_rate_per_hour=rng.choice([0.0001, 0.0005, 0.002, 0.01]),
                restart_overhead_s=120))
        else:  # on-demand
            offers.append(Offer(
                site=f"ondemand{i % 3}", key=f"od{i}", tier=Tier.CLOUD, cpus=4096,
                memory_gb=16384.0, price=Pricing(per_core_hour=rng.uniform(0.04, 0.06)),
                on_demand=Pricing(per_core_hour=0.048), restart_overhead_s=60))
    return offers


def moves_tick(n: int, m: int, rounds: int, seed: int = 3) -> dict[str, Any]:
    """Median seconds of one ``weigh()`` over ``n`` running attempts and ``m`` offers."""
    import numpy as np

    from gridbridge.scheduler.moves import MODES, Running, Settings, weigh

    offers = make_offers(m)
    rng = np.random.default_rng(seed)
    running = Running(
        offer=rng.integers(0, m, n), cpus=rng.choice([1.0, 4.0, 16.0], n), gpus=np.zeros(n),
        memory_gb=np.full(n, 4.0), work_left_s=rng.uniform(0, 48 * 3600, n),
        since_checkpoint_s=rng.uniform(0, 600, n), left_s=rng.uniform(0, 72 * 3600, n),
        since_move_s=rng.uniform(0, 3600, n), interval_s=np.full(n, 600.0),
        mode=np.full(n, MODES["cost"]), allowed=np.ones((n, m), dtype=np.bool_))
    times, moved = [], 0
    for _ in range(rounds):
        t0 = time.perf_counter()
        moved = len(weigh(running, offers, Settings()))
        times.append(time.perf_counter() - t0)
    return {"running": n, "offers": m, "moves": moved, "tick_s": statistics.median(times)}


def reference() -> float:
    """Seconds for a fixed CPU workload: a million multiply-adds in Python, then sorting a
    million seeded random floats with numpy."""
    import numpy as np

    data = np.random.default_rng(0).random(1_000_000)
    t0 = time.perf_counter()
    total = 0
    for i in range(1_000_000):
        total += i * i
    np.sort(data)
    return time.perf_counter() - t0


def baseline(jobs: list[PendingJob], offers: list[Offer]) -> list[int]:
    """One job at a time, every offer scored with gridbridge.costs.estimate."""
    free = [[o.cpus, o.memory_gb, o.gpus] for o in offers]
    choice = []
    for j in sorted(jobs, key=lambda j: (-j.spec.priority, j.submitted_at, j.job_id)):
        best: tuple[float, float, int] | None = None
        res = j.spec.resources
        for i, o in enumerate(offers):
            if free[i][0] < res.cpus or free[i][1] < res.memory_gb:
                continue
            est = estimate(j.spec, o, interval_s=checkpoint_interval_s(j.spec, o))
            rank = (est.expected_cost, o.queue_wait_s + est.expected_runtime_s, i)
            if best is None or rank < best:
                best = rank
        if best is not None:
            free[best[2]][0] -= res.cpus
            free[best[2]][1] -= res.memory_gb
            choice.append(best[2])
    return choice


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[1000, 10_000, 30_000, 100_000])
    parser.add_argument("--offers", type=int, nargs="+", default=[100, 300, 1000, 1000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--distinct", action="store_true",
                        help="no two jobs alike (every run time differs)")
    parser.add_argument("--moves", type=int, default=10_000,
                        help="running attempts a migration tick weighs (0: skip)")
    parser.add_argument("--move-offers", type=int, default=100)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if len(args.offers) == 1:
        args.offers = args.offers * len(args.jobs)
    if len(args.offers) != len(args.jobs):
        parser.error("give one --offers per --jobs size, or one for all")
    console = Console()
    pool, source = shapes()
    budgets = {"team:vision": 1e6, "team:nlp": 5e4, "project:p3": 2e4}
    rows: list[dict[str, Any]] = []
    for n, m in zip(args.jobs, args.offers, strict=True):
        jobs, offers = make_jobs(n, pool, args.distinct), make_offers(m)
        times, explain, refs, placed, classes = [], [], [], 0, 0
        gc.collect()
        for _ in range(args.rounds):
            refs.append(reference())
            t0 = time.perf_counter()
            p = plan(jobs, offers, NOW, budgets=budgets)
            times.append(time.perf_counter() - t0)
            first = [i for i in p.order if p.choice[i] >= 0][:100]
            t0 = time.perf_counter()
            for i in first:
                p.decision(i)
            explain.append(time.perf_counter() - t0)
            placed, classes = sum(c >= 0 for c in p.choice), p.classes
        rows.append({"jobs": n, "offers": m, "classes": classes, "placed": placed,
                     "round_s": statistics.median(times),
                     "explain_100_s": statistics.median(explain),
                     "reference_s": statistics.median(refs)})
    small_jobs, small_offers = make_jobs(args.jobs[0], pool, args.distinct), make_offers(
        args.offers[0])
    t0 = time.perf_counter()
    baseline(small_jobs, small_offers)
    base_s = time.perf_counter() - t0
    table = Table(title=f"one placement round (median of {args.rounds}; shapes from {source}"
                        f"{', every job distinct' if args.distinct else ''})")
    for col in ("jobs", "offers", "job classes", "placed", "round, s", "per job, us",
                "explain 100, ms", "ref, s", "round / ref", "target"):
        table.add_column(col, justify="right")
    for r in rows:
        target = "<= 1 s" if (r["jobs"], r["offers"]) == (100_000, 1000) else ""
        met = "" if not target else (" met" if r["round_s"] <= TARGET_S else " NOT met")
        table.add_row(f"{r['jobs']:,}", f"{r['offers']:,}", f"{r['classes']:,}",
                      f"{r['placed']:,}", f"{r['round_s']:.3f}",
                      f"{r['round_s'] / r['jobs'] * 1e6:.1f}", f"{r['explain_100_s'] * 1e3:.0f}",
                      f"{r['reference_s']:.3f}", f"{r['round_s'] / r['reference_s']:.1f}",
                      target + met)
    console.print(table)
    ratio = base_s / rows[0]["round_s"]
    console.print(f"baseline (one job at a time, costs.estimate per offer) at "
                  f"{args.jobs[0]:,} x {args.offers[0]:,}: {base_s:.3f} s; the round is "
                  f"{ratio:,.0f}x faster")
    for a, b in itertools.pairwise(rows):
        pairs = (b["jobs"] * b["offers"]) / (a["jobs"] * a["offers"])
        console.print(f"{a['jobs']:,}x{a['offers']:,} -> {b['jobs']:,}x{b['offers']:,}: "
                      f"pairs x{pairs:.1f}, time x{b['round_s'] / a['round_s']:.1f}")
    tick = moves_tick(args.moves, args.move_offers, args.rounds) if args.moves else None
    if tick:
        met = "met" if tick["tick_s"] <= TARGET_S else "NOT met"
        console.print(f"migration tick: weigh() for {tick['running']:,} running x "
                      f"{tick['offers']:,} offers: {tick['tick_s']:.3f} s (median of "
                      f"{args.rounds}; {tick['moves']:,} moves; target <= 1 s {met})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "benchmark": "placement", "python": sys.version.split()[0],
            "machine": platform.machine(), "source": source, "distinct": args.distinct,
            "rounds": rows, "baseline_s": base_s, "baseline_ratio": ratio,
            "target_s": TARGET_S, "migration_tick": tick}, indent=2))
    big = [r for r in rows if (r["jobs"], r["offers"]) == (100_000, 1000)]
    return 0 if all(r["round_s"] <= TARGET_S for r in big) or not big else 1


if __name__ == "__main__":
    sys.exit(main())
