"""What gridbridge costs a Dask user: task throughput on a GridCluster of local workers beside
a ``distributed.LocalCluster`` of the same size, in the same run, and the time from
``scale(n)`` to n workers connected.

Usage: python benchmarks/dask_overhead.py [--workers N] [--tasks T] [--rounds R] [--json FILE]

Per round, for each cluster kind (which goes first alternates between rounds):

* start: the cluster is made with no workers; the clock runs from ``scale(N)`` until N
  workers are connected to the scheduler. For the GridCluster that is N gridbridge jobs:
  submitted, placed by the embedded reconciler on the embedded default's local sites,
  started by the runtime, each a ``python -m gridbridge.dask.worker`` process;
* throughput, once the workers are up: T tiny tasks (``client.map``, then ``gather``) and a
  ``dask.array`` reduction over about T/2 chunks, tasks per second of each.

Both clusters have N workers of one thread in their own processes (LocalCluster's with a
nanny, GridCluster's without one). Medians over rounds, and GridCluster / LocalCluster.
The target is a throughput ratio of at least 0.9.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

TARGET_RATIO = 0.9


def inc(x: int) -> int:
    return x + 1


def measure(make: Callable[[], Any], workers: int, tasks: int) -> dict[str, float]:
    """Start a cluster with no workers, scale it to ``workers``, then time the work."""
    import dask
    import dask.array as da
    from distributed import Client

    with make() as cluster, Client(cluster) as client:
        t0 = time.perf_counter()
        cluster.scale(workers)
        client.wait_for_workers(workers, timeout=300)
        start_s = time.perf_counter() - t0
        client.gather(client.map(inc, range(50)))  # warm: functions shipped, comms open

        t0 = time.perf_counter()
        results = client.gather(client.map(inc, range(tasks), pure=False))
        map_s = time.perf_counter() - t0
        assert sum(results) == tasks * (tasks + 1) // 2

        chunks = max(2, tasks // 2)
        x = da.ones(chunks * 100, chunks=100)
        reduction = x.sum()
        n_tasks = len(dict(reduction.__dask_graph__()))
        t0 = time.perf_counter()
        with dask.config.set(scheduler=client):
            total = reduction.compute()
        array_s = time.perf_counter() - t0
        assert total == chunks * 100
    return {"start_s": start_s, "map_tasks_per_s": tasks / map_s,
            "array_tasks_per_s": n_tasks / array_s, "array_tasks": float(n_tasks)}


def local_cluster() -> Any:
    from distributed import LocalCluster

    return LocalCluster(n_workers=0, threads_per_worker=1, processes=True,
                        dashboard_address=None, host="127.0.0.1")


def grid_cluster(home: Path, workers: int) -> Callable[[], Any]:
    def make() -> Any:
        from gridbridge.config import default_config
        from gridbridge.dask import GridCluster

        config = default_config(home / f"run-{time.monotonic_ns()}", cpus=workers)
        return GridCluster(config, cores=1, memory="1 GiB")
    return make


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    console = Console()
    runs: dict[str, list[dict[str, float]]] = {"LocalCluster": [], "GridCluster": []}
    with tempfile.TemporaryDirectory(prefix="gridbridge-dask-bench-") as tmp:
        kinds = {"LocalCluster": local_cluster,
                 "GridCluster": grid_cluster(Path(tmp), args.workers)}
        for r in range(args.rounds):
            order = list(kinds) if r % 2 == 0 else list(reversed(kinds))
            for kind in order:
                figures = measure(kinds[kind], args.workers, args.tasks)
                runs[kind].append(figures)
                console.print(f"round {r + 1} {kind}: start {figures['start_s']:.2f}s, "
                              f"map {figures['map_tasks_per_s']:.0f}/s, "
                              f"array {figures['array_tasks_per_s']:.0f}/s", highlight=False)
    med = {kind: {k: statistics.median(f[k] for f in rows) for k in rows[0]}
           for kind, rows in runs.items()}
    table = Table(title=f"{args.workers} workers x 1 thread, {args.tasks} map tasks, "
                        f"{int(med['GridCluster']['array_tasks'])} array tasks, median of "
                        f"{args.rounds} rounds")
    for column in ["cluster", "scale(n) -> n connected", "map tasks/s", "array tasks/s"]:
        table.add_column(column, justify="left" if column == "cluster" else "right")
    for kind, m in med.items():
        table.add_row(kind, f"{m['start_s']:.2f} s", f"{m['map_tasks_per_s']:.0f}",
                      f"{m['array_tasks_per_s']:.0f}")
    ratio = {k: med["GridCluster"][k] / med["LocalCluster"][k]
             for k in ("map_tasks_per_s", "array_tasks_per_s")}
    start_ratio = med["GridCluster"]["start_s"] / med["LocalCluster"]["start_s"]
    table.add_row("Grid / Local", f"{start_ratio:.2f}x", f"{ratio['map_tasks_per_s']:.2f}x",
                  f"{ratio['array_tasks_per_s']:.2f}x")
    console.print(table)
    ok = all(v >= TARGET_RATIO for v in ratio.values())
    console.print(f"throughput target >= {TARGET_RATIO}x: {'met' if ok else 'NOT met'} "
                  f"({platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
                  f"Python {sys.version.split()[0]})", highlight=False)
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)},
                                         "median": med, "ratio": ratio, "runs": runs},
                                        indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
