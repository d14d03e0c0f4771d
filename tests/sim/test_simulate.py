"""The workload-replay simulator: SWF reading, the EASY queue, billing, interruptions, and that
it decides exactly as a direct call of place() would."""

from __future__ import annotations

import csv
import json
import math
import random
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gridbridge.cli import app
from gridbridge.scheduler.placement import place
from gridbridge.sim.workload import Inputs, SitesError, SwfError, prepare, read_swf, simulate
from gridbridge.sim.workload.engine import Kind, Replay, plan_s, progress
from gridbridge.sim.workload.federation import CloudType, Federation
from gridbridge.sim.workload.hpc import EasyCluster, QueueItem
from gridbridge.sim.workload.market import advisor_rate, read_availability, read_spot_prices
from gridbridge.sim.workload.policies import chooser, offers_for, pending_job
from gridbridge.sim.workload.swf import SwfJob
from gridbridge.spec import Policy
from tests.support.paths import DATA as _DATA

DATA = _DATA
TRACE = DATA / "swf" / "KTH-SP2-1996-2.1-cln-first300.swf"
SPOT = DATA / "ec2" / "spot-prices-us-east-1-2021-03.csv"
ADVISOR = DATA / "ec2" / "spot-advisor-us-east-1-2021-02.json"
ONDEMAND = DATA / "ec2" / "ondemand-prices-us-east-1-2019-04.csv"
TYPES = ["c5.large", "c5.xlarge", "m5.large"]


def sites_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "sites.yaml"
    path.write_text(text)
    return str(path)


def inputs(tmp_path: Path, sites: str = "", **kw: Any) -> Inputs:
    body = f"cloud:\n  types: {json.dumps(TYPES)}\n" + sites
    return Inputs(trace=str(TRACE), spot_prices=str(SPOT), spot_advisor=str(ADVISOR),
                  ondemand=str(ONDEMAND), sites=sites_file(tmp_path, body), **kw)


# --- SWF -----------------------------------------------------------------------------------


def test_swf_excerpt_reads_with_header() -> None:
    trace = read_swf(TRACE)
    assert trace.max_procs == 100 and trace.unix_start == 843480031
    assert len(trace.jobs) + trace.dropped == 300
    first = trace.jobs[0]
    assert (first.job_id, first.submit_s, first.runtime_s, first.cores, first.requested_s) == (
        15, 599850, 3477, 4, 53940)
    assert [j.submit_s for j in trace.jobs] == sorted(j.submit_s for j in trace.jobs)


@pytest.mark.parametrize(("line", "needle"), [
    ("1 0 -1 10 x -1 -1 -1 -1 -1 -1 1 1 -1 -1 -1 -1 -1", ":3: field 5 (allocated processors)"),
    ("1 0 -1 10 2", ":3: 5 fields, an SWF line has 18"),
    ("1 -5 -1 10 2 -1 -1 -1 -1 -1 -1 1 1 -1 -1 -1 -1 -1", ":3: field 2 (submit time)"),
])
def test_swf_errors_name_file_line_and_field(tmp_path: Path, line: str, needle: str) -> None:
    bad = tmp_path / "bad.swf"
    bad.write_text("; MaxProcs: 4\n1 0 -1 10 2 -1 -1 -1 -1 -1 -1 1 1 -1 -1 -1 -1 -1\n"
                   + line + "\n")
    with pytest.raises(SwfError, match="bad.swf" + needle.replace("(", r"\(")
                       .replace(")", r"\)")):
        read_swf(bad)


# --- the EASY queue ---------------------------------------------------------------------------


def test_easy_backfills_only_what_cannot_delay_the_head() -> None:
    c = EasyCluster(10)
    a = QueueItem("A", 6, 100.0)
    c.submit(a)
    assert c.schedule(0.0) == [a]
    head, wide_long, narrow_long, short = (QueueItem("B", 8, 50.0), QueueItem("C", 4, 200.0),
                                           QueueItem("D", 2, 500.0), QueueItem("E", 2, 90.0))
    for item in (head, wide_long, narrow_long, short):
        c.submit(item)
    started = c.schedule(10.0)
    # the head needs A's 6 cores (shadow 100, 10 - 8 = 2 spare then): C (4 cores past 100)
    # would delay it; D takes the 2 spare cores; E ends by 100, so it may use any free core
    assert [i.key for i in started] == ["D", "E"]
    assert c.reservation(10.0) == 100.0
    c.finish(a)
    c.finish(short)
    assert [i.key for i in c.schedule(100.0)] == ["B"]


def test_easy_never_delays_the_head_past_its_reservation() -> None:
    """With exact estimates, each job starts no later than the reservation it got when it
    became the queue head (random traces on a small cluster)."""
    for seed in range(20):
        rng = random.Random(seed)
        c = EasyCluster(16)
        arrivals = sorted((rng.uniform(0, 400), rng.randint(1, 16), rng.uniform(5, 120))
                          for _ in range(60))
        ends: list[tuple[float, QueueItem]] = []
        promised: dict[object, float] = {}
        t, i = 0.0, 0
        while i < len(arrivals) or ends or c.queue:
            next_end = min(ends, key=lambda e: e[0])[0] if ends else math.inf
            next_arrival = arrivals[i][0] if i < len(arrivals) else math.inf
            t = min(next_end, next_arrival)
            for e in [e for e in ends if e[0] == t]:
                ends.remove(e)
                c.finish(e[1])
            if next_arrival == t:
                c.submit(QueueItem(i, arrivals[i][1], arrivals[i][2]))
                i += 1
            for item in c.schedule(t):
                assert item.start_s is not None
                ends.append((item.start_s + item.estimate_s, item))
                assert item.start_s <= promised.get(item.key, math.inf) + 1e-9
            if c.queue and c.queue[0].key not in promised:
                promised[c.queue[0].key] = c.reservation(t) or t


def test_predicted_start_serves_the_queue_in_order() -> None:
    c = EasyCluster(8)
    run = QueueItem("r", 6, 100.0)
    c.submit(run)
    c.schedule(0.0)
    assert c.predicted_start(2, 10.0, 0.0) == 0.0
    c.submit(QueueItem("q", 8, 50.0))
    assert c.schedule(0.0) == []
    assert c.predicted_start(1, 10.0, 20.0) == 150.0  # after r ends (100) and q runs 50 s


# --- checkpoints, interruptions -------------------------------------------------------------


def test_progress_and_plan() -> None:
    # restart 10, work 100 in segments of 30 with 5 s checkpoints: 10 + 100 + 3 * 5
    assert plan_s(10, 100, 30, 5) == 125
    assert progress(9, 10, 100, 30, 5) == (0.0, 0.0)
    assert progress(10 + 35 + 12, 10, 100, 30, 5) == (30.0, 12.0)
    assert progress(10 + 35 + 33, 10, 100, 30, 5) == (30.0, 30.0)  # mid-checkpoint: not saved
    assert advisor_rate(0) == pytest.approx(-math.log(0.975) / 730)


# --- whole replays --------------------------------------------------------------------------


def test_a_cluster_big_enough_gives_zero_wait_and_hpc_only_costs_the_rate_card(
        tmp_path: Path) -> None:
    sites = ("hpc:\n  cores: 4096\n  per_core_hour: 0.037\njobs:\n  round_s: 0\n"
             "  checkpoint_cost_s: 0\n")
    setup = prepare(inputs(tmp_path, sites))
    rows, results = simulate(setup, "hpc-only", seed=1)
    (result,) = results
    for job in result.jobs:
        assert job.finish_s == pytest.approx(job.trace.submit_s + job.trace.runtime_s)
    core_hours = sum(j.cores * j.runtime_s for j in setup.trace.jobs) / 3600
    assert rows[0]["total_cost"] == pytest.approx(round(0.037 * core_hours, 2), abs=0.006)
    assert rows[0]["deadline_misses"] == sum(
        1 for j in setup.trace.jobs if j.runtime_s > 3 * j.requested_s)


def test_a_small_cluster_makes_jobs_wait(tmp_path: Path) -> None:
    setup = prepare(inputs(tmp_path, "hpc:\n  cores: 100\n"))
    (row,), _ = simulate(setup, "hpc-only", seed=1)
    runtime = sum(j.runtime_s for j in setup.trace.jobs) / len(setup.trace.jobs)
    assert row["mean_turnaround_s"] > runtime + 60


def _step_integral(path: Path, instance_type: str, zone: str, start: float, end: float) -> float:
    """Dollars for one instance over [start, end] seconds after the file's first row, summed
    step by step from the CSV (independently of the simulator's integral)."""
    with path.open() as f:
        rows = list(csv.DictReader(f))
    t0 = min(datetime.fromisoformat(r["timestamp"]) for r in rows)
    steps = sorted(((datetime.fromisoformat(r["timestamp"]) - t0).total_seconds(),
                    float(r["spot_price_usd_per_hour"])) for r in rows
                   if r["instance_type"] == instance_type and r["availability_zone"] == zone)
    total = 0.0
    for i, (at, price) in enumerate(steps):
        lo = 0.0 if i == 0 else at
        hi = steps[i + 1][0] if i + 1 < len(steps) else math.inf
        total += price * max(0.0, min(hi, end) - max(lo, start)) / 3600
    return total


def test_spot_greedy_without_interruptions_pays_the_price_integral() -> None:
    prices = read_spot_prices(SPOT, ["c5.large"])
    t = CloudType("c5.large", 2, 4.0, 0.085, 0.0, ("us-east-1a", "us-east-1b"))
    from gridbridge.sim.workload.settings import CloudSite, JobModel

    fed = Federation(None, 1, CloudSite(types=("c5.large",), on_demand=False), (t,), prices,
                     {}, ())
    jobs = [SwfJob(i, 1800.0 * i, 5000.0 + 700 * i, 1 + i % 5, 9000.0, None, 1, 1)
            for i in range(12)]
    model = JobModel(round_s=0, checkpoint_cost_s=0)
    replay = Replay(fed, jobs, model, prices.start, seed=3)
    result = replay.run(chooser("spot-greedy"))
    assert result.interruptions == 0
    expected = 0.0
    for a in result.attempts:
        assert a.start_s is not None and a.end_s is not None
        assert a.end_s - a.start_s == pytest.approx(a.job.trace.runtime_s)
        zone = a.choice.key.split("/")[1]
        expected += a.choice.instances * _step_integral(SPOT, "c5.large", zone, a.start_s,
                                                        a.end_s)
        assert a.choice.instances == math.ceil(a.job.trace.cores / 2)
    assert sum(a.cost for a in result.attempts) == pytest.approx(expected, rel=1e-9)


def test_the_simulator_decides_as_place_does(tmp_path: Path) -> None:
    setup = prepare(inputs(tmp_path))
    trace = setup.trace.jobs[:1]
    replay = Replay(setup.federation, trace, setup.sites.jobs, setup.base, seed=0)
    job = replay.jobs[0]
    now = job.trace.submit_s
    offers = offers_for(replay, job.shape, now, prune=False)
    (direct,) = place([pending_job(replay, job)], offers, replay.at(now), Policy())
    result = Replay(setup.federation, trace, setup.sites.jobs, setup.base, seed=0).run(
        chooser("cheapest"))
    first = result.attempts[0].choice
    assert (first.site, first.key) == (direct.site, direct.offer_key)
    assert first.interval_s == pytest.approx(direct.checkpoint_interval_s)
    assert len(offers) > len(offers_for(replay, job.shape, now))  # pruning really pruned


def test_replays_are_deterministic_and_interruptions_lose_work(tmp_path: Path) -> None:
    # a dear cluster and a risky market: jobs go to spot and get interrupted
    sites = ("hpc: null\n"
             "jobs:\n  checkpoint_interval_s: 1800\n")
    setup = prepare(inputs(tmp_path, sites, limit=120))
    fed = setup.federation
    risky = tuple(CloudType(t.name, t.vcpus, t.memory_gb, t.on_demand_per_hour, 0.2, t.zones)
                  for t in fed.types)
    setup.federation = Federation(None, 1, fed.cloud, risky, fed.prices, {}, ())
    one, _ = simulate(setup, "spot-greedy", seed=7)
    two, results = simulate(setup, "spot-greedy", seed=7)
    assert one == two
    assert one[0]["interruptions"] > 0 and one[0]["lost_core_hours"] > 0
    assert one[0]["unfinished"] == 0
    for job in results[0].jobs:
        assert job.done_s == job.trace.runtime_s
        assert all(a.choice.kind is Kind.SPOT for a in results[0].attempts)


def test_cli_json_has_every_policy_and_field(tmp_path: Path) -> None:
    args = ["simulate", "--trace", str(TRACE), "--spot-prices", str(SPOT), "--spot-advisor",
            str(ADVISOR), "--ondemand", str(ONDEMAND), "--limit", "80", "--format", "json",
            "--sites", sites_file(tmp_path, f"cloud:\n  types: {json.dumps(TYPES)}\n"),
            "--plots", str(tmp_path / "plots")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    names = [r["policy"] for r in rows]
    assert names[:4] == ["hpc-only", "on-demand-only", "spot-greedy", "cheapest"]
    for row in rows:
        for key in ("policy", "total_cost", "saving_vs_on_demand", "jobs_per_day",
                    "mean_turnaround_s", "p95_turnaround_s", "lost_core_hours",
                    "deadline_misses"):
            assert key in row
    assert (tmp_path / "plots" / "cost_over_time.svg").read_text().startswith("<svg")


def test_bad_inputs_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(SitesError, match=r"sites.yaml: hpc.cores"):
        prepare(inputs(tmp_path, "hpc:\n  cores: many\n"))
    with pytest.raises(SitesError, match=r"sites.yaml: hpc.corez"):
        prepare(inputs(tmp_path, "hpc:\n  corez: 3\n"))
    with pytest.raises(ValueError, match="unknown policy 'nope'; valid choices: hpc-only"):
        chooser("nope")
    with pytest.raises(ValueError, match="need --ondemand CSV"):
        prepare(Inputs(trace=str(TRACE)))


def test_a_replayed_availability_trace_interrupts_at_its_next_loss(tmp_path: Path) -> None:
    path = tmp_path / "us-east-1a_v100_1.json"
    path.write_text(json.dumps({"metadata": {"gap_seconds": 10}, "data": [0, 0, 1, 0, 0, 0]}))
    trace = read_availability(path, "p3.2xlarge", "us-east-1a")
    assert [trace.available(t) for t in (0, 15, 20, 29, 30)] == [True, True, False, False, True]
    assert trace.next_loss(0) == 20
    assert trace.next_loss(31) == 80  # wraps around: the next lap's tick 2
    four = tmp_path / "preemption-4-node_x" / "z.json"
    four.parent.mkdir()
    four.write_text(json.dumps({"metadata": {"gap_seconds": 5}, "data": [4, 1, 0, 2]}))
    assert read_availability(four, "p3.2xlarge", "z").up == (True, True, False, True)
