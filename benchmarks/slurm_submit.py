"""Slurm adapter submission throughput and poll latency against plain sbatch / squeue calls.

Usage: python benchmarks/slurm_submit.py [--jobs N] [--rounds R] [--poll-jobs M] [--json FILE]

Needs the Slurm cluster of deploy/dev/slurm-start.sh (partition ``normal``). In one process,
side by side:

* submit: per round, N ``SlurmAdapter.submit()`` calls (launch record written to file://
  storage, script on sbatch's stdin) vs a loop of N plain ``sbatch`` calls with the *same*
  options (``adapter.sbatch_argv``) and ``--wrap true``; every job on both sides is submitted
  ``--hold`` so the cluster is not flooded, and which side goes first alternates between
  rounds. jobs/s, median over rounds, and gridbridge / baseline;
* poll: with M held jobs in the queue, ``adapter.poll(all M ids)`` end to end vs one plain
  ``squeue --me -h -t all -o '%i %T'`` call, median of ``--poll-calls``.

Every job it creates is cancelled by id (one scancel per batch), also on Ctrl-C or an error;
jobs whose comment carries this run's federation tag (a fresh temp workdir) are swept too, so
one submitted just before an interrupt is not left behind. No other job is touched.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from gridbridge.adapter import SubmitRequest
from gridbridge.adapters.slurm import SlurmAdapter
from gridbridge.config import Capacity, SiteConfig
from gridbridge.spec import JobSpec

PARTITION = "normal"
TARGETS = {"submit_ratio": 0.9, "poll_ms": 50.0}
SCANCEL_BATCH = 1000


class HeldSlurmAdapter(SlurmAdapter):
    """The real adapter, with ``--hold`` appended to its sbatch line: the adapter has no way to
    submit held jobs, and an ``scontrol hold`` afterwards would add a call per job. Everything
    else (launch record, script, runner, parsing) is the adapter's own code."""

    def sbatch_argv(self, request: SubmitRequest, partition: str | None) -> list[str]:
        return [*super().sbatch_argv(request, partition), "--hold"]


def make_request(shared: Path) -> SubmitRequest:
    """A trivial command job, as gridbridge.testing.contract builds them (file:// storage)."""
    aid = f"sb{uuid.uuid4().hex[:10]}.1"
    job_id = aid.rpartition(".")[0]
    return SubmitRequest(
        attempt_id=aid, job_id=job_id, attempt=1, token=1,
        spec=JobSpec(name="bench.submit", command=("true",)),
        checkpoint_url=(shared / "ckpt" / job_id).as_uri(),
        attempt_url=(shared / "attempts" / aid).as_uri(),
    )


class Jobs:
    """Every job id this run created, cancelled by id in batches."""

    def __init__(self) -> None:
        self.live: set[str] = set()

    def add(self, native: str) -> None:
        self.live.add(native)

    def cancel(self, ids: Sequence[str] | None = None) -> None:
        chosen = sorted(self.live if ids is None else set(ids) & self.live, key=int)
        for i in range(0, len(chosen), SCANCEL_BATCH):
            batch = chosen[i:i + SCANCEL_BATCH]
            subprocess.run(["scancel", *batch], capture_output=True, check=False)
            self.live.difference_update(batch)


def _native(stdout: str) -> str:
    native = stdout.strip().split(";")[0]
    if not native.isdigit():
        raise RuntimeError(f"sbatch answered {stdout!r}")
    return native


def submit_baseline(argvs: list[list[str]], jobs: Jobs) -> tuple[float, list[str]]:
    ids: list[str] = []
    t0 = time.perf_counter()
    for argv in argvs:
        done = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              check=True)
        native = _native(done.stdout)
        jobs.add(native)
        ids.append(native)
    return time.perf_counter() - t0, ids


def submit_gridbridge(adapter: SlurmAdapter, requests: list[SubmitRequest],
                      jobs: Jobs) -> tuple[float, list[str]]:
    ids: list[str] = []
    t0 = time.perf_counter()
    for req in requests:
        native = adapter.submit(req)
        jobs.add(native)
        ids.append(native)
    return time.perf_counter() - t0, ids


def baseline_argvs(adapter: SlurmAdapter, shared: Path, n: int) -> list[list[str]]:
    """The same option set the adapter uses (``--hold`` included), with a one-line wrap script
    in place of the runtime script on stdin; built before the clock starts."""
    return [[*adapter.sbatch_argv(make_request(shared), PARTITION), "--wrap", "true"]
            for _ in range(n)]


def bench_submit(adapter: SlurmAdapter, shared: Path, n: int, rounds: int,
                 jobs: Jobs) -> dict[str, Any]:
    # One untimed job per side first: the adapter's one-off mkdir and sinfo (partition time
    # limit), and the first sbatch of the process, are paid once by a long-lived control plane.
    warm = [adapter.submit(make_request(shared)),
            _native(subprocess.run(baseline_argvs(adapter, shared, 1)[0], capture_output=True,
                                   text=True, stdin=subprocess.DEVNULL, check=True).stdout)]
    for w in warm:
        jobs.add(w)
    jobs.cancel(warm)
    secs: dict[str, list[float]] = {"baseline": [], "gridbridge": []}
    for rnd in range(rounds):
        requests = [make_request(shared) for _ in range(n)]
        argvs = baseline_argvs(adapter, shared, n)
        sides = [("baseline", lambda a=argvs: submit_baseline(a, jobs)),
                 ("gridbridge", lambda r=requests: submit_gridbridge(adapter, r, jobs))]
        for name, run in sides if rnd % 2 == 0 else sides[::-1]:
            print(f"  round {rnd + 1}/{rounds}: {name} submitting {n} held jobs ...",
                  file=sys.stderr)
            elapsed, ids = run()
            secs[name].append(elapsed)
            jobs.cancel(ids)  # untimed, one scancel call
    rate = {k: [n / s for s in v] for k, v in secs.items()}
    med = {k: statistics.median(v) for k, v in rate.items()}
    return {
        "jobs_per_round": n, "rounds": rounds, "seconds": secs, "jobs_s": rate,
        "baseline_jobs_s": med["baseline"], "gridbridge_jobs_s": med["gridbridge"],
        "ratio": med["gridbridge"] / med["baseline"],
        "ratio_per_round": [g / b for g, b in zip(rate["gridbridge"], rate["baseline"],
                                                  strict=True)],
        "baseline_ms_per_job": 1e3 / med["baseline"],
        "gridbridge_ms_per_job": 1e3 / med["gridbridge"],
        "target_ratio": TARGETS["submit_ratio"],
    }


def bench_poll(adapter: SlurmAdapter, shared: Path, m: int, calls: int,
               jobs: Jobs) -> dict[str, Any]:
    print(f"  poll: submitting {m} held jobs ...", file=sys.stderr)
    ids = []
    for _ in range(m):
        native = adapter.submit(make_request(shared))
        jobs.add(native)
        ids.append(native)
    squeue = ["squeue", "--me", "-h", "-t", "all", "-o", "%i %T"]
    rows = subprocess.run(squeue, capture_output=True, text=True, check=True).stdout
    statuses = adapter.poll(ids)  # warm-up, and a check that every job is seen
    seen = sum(1 for s in statuses.values() if s.native_state.startswith("PENDING"))
    secs: dict[str, list[float]] = {"baseline": [], "gridbridge": []}
    for i in range(calls):
        sides = [("baseline", lambda: subprocess.run(squeue, capture_output=True, text=True,
                                                     check=True)),
                 ("gridbridge", lambda: adapter.poll(ids))]
        for name, run in sides if i % 2 == 0 else sides[::-1]:
            t0 = time.perf_counter()
            run()
            secs[name].append(time.perf_counter() - t0)
    jobs.cancel(ids)
    med = {k: statistics.median(v) for k, v in secs.items()}
    return {
        "jobs": m, "calls": calls, "squeue_rows": len(rows.splitlines()),
        "pending_seen": seen, "seconds": secs,
        "baseline_ms": med["baseline"] * 1e3, "gridbridge_ms": med["gridbridge"] * 1e3,
        "ratio": med["gridbridge"] / med["baseline"],
        "target_ms": TARGETS["poll_ms"],
    }


def machine() -> dict[str, Any]:
    def out(argv: list[str]) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True).stdout.strip()
        except OSError:
            return ""

    return {
        "host": platform.node(), "platform": platform.platform(),
        "python": platform.python_version(), "cpus": os.cpu_count(),
        "loadavg": os.getloadavg(), "slurm": out(["sbatch", "--version"]),
    }


def render(submit: dict[str, Any], poll: dict[str, Any]) -> None:
    s, p = submit, poll
    table = Table(
        title="slurm adapter benchmark (medians)",
        caption="baseline: sbatch with the adapter's own options (+ --hold, --wrap true); "
        "squeue --me -h -t all -o '%i %T'. submit ratio per round: "
        + ", ".join(f"{r:.2f}" for r in s["ratio_per_round"])
        + f". poll: {p['squeue_rows']} squeue rows, {p['pending_seen']} ids seen PENDING",
    )
    for col in ("metric", "gridbridge", "baseline", "ratio", "target", "met"):
        table.add_column(col)
    sub_met = s["ratio"] >= TARGETS["submit_ratio"]
    poll_met = p["gridbridge_ms"] <= TARGETS["poll_ms"]
    table.add_row(f"submit jobs/s ({s['jobs_per_round']} x {s['rounds']})",
                  f"{s['gridbridge_jobs_s']:.1f}", f"{s['baseline_jobs_s']:.1f}",
                  f"{s['ratio']:.2f}x", f">= {TARGETS['submit_ratio']}x",
                  "met" if sub_met else "NOT met")
    table.add_row("submit ms/job", f"{s['gridbridge_ms_per_job']:.2f}",
                  f"{s['baseline_ms_per_job']:.2f}", "", "", "")
    table.add_row(f"poll {p['jobs']} ids, ms", f"{p['gridbridge_ms']:.1f}",
                  f"{p['baseline_ms']:.1f}", f"{p['ratio']:.2f}x",
                  f"<= {TARGETS['poll_ms']:.0f} ms", "met" if poll_met else "NOT met")
    Console().print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200, help="jobs per side per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--poll-jobs", type=int, default=500)
    parser.add_argument("--poll-calls", type=int, default=10)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    jobs = Jobs()
    host = machine()  # before the run: the load average others put on the machine
    with tempfile.TemporaryDirectory(prefix="gb-slurm-bench-") as tmp:
        shared = Path(tmp) / "shared"
        shared.mkdir()
        site = SiteConfig(name="bench", adapter="slurm", capacity=Capacity(cpus=8),
                          options={"partitions": {PARTITION: {}}})
        adapter = HeldSlurmAdapter(site, Path(tmp) / "work")
        try:
            # Poll first, so its queue holds the M held jobs and not also the cancelled ones
            # of the submit rounds (squeue -t all keeps those for MinJobAge).
            poll = bench_poll(adapter, shared, args.poll_jobs, args.poll_calls, jobs)
            submit = bench_submit(adapter, shared, args.jobs, args.rounds, jobs)
        finally:
            try:  # jobs submitted but not yet recorded when interrupted carry our tag
                jobs.live.update(o.native_id for o in adapter.owned())
            finally:
                jobs.cancel()
    render(submit, poll)
    if args.json:
        params = {"jobs": args.jobs, "rounds": args.rounds, "poll_jobs": args.poll_jobs,
                  "poll_calls": args.poll_calls, "partition": PARTITION}
        args.json.write_text(json.dumps({"submit": submit, "poll": poll, "machine": host,
                                         "params": params}, indent=2))


if __name__ == "__main__":
    main()
