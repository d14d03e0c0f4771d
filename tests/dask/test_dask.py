"""GridCluster end to end: a real distributed scheduler here, real worker processes that
gridbridge places on the embedded default's two local sites, real preemptions (SIGTERM to
the attempt's process group, capacity reclaimed on the spot site)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("distributed", reason="the dask extra: pip install 'gridbridge[dask]'")

import dask.array as da
from distributed import Client as DaskClient
from distributed import SchedulerPlugin, wait

from gridbridge.config import GridConfig
from gridbridge.dask import GridCluster
from gridbridge.dask.worker import worker_argv
from gridbridge.reports import GroupBy, cost_summary
from gridbridge.states import AttemptState, JobState
from tests.support.paths import REPO as _REPO

pytestmark = [
    pytest.mark.dask,
    # distributed's Client and cluster close their comms from the event loop thread while
    # the test thread has already moved on; a comm that is garbage-collected a moment before
    # its close completes raises this ResourceWarning (a known distributed behaviour, not a
    # leak of ours: every worker job is checked to have ended below).
    pytest.mark.filterwarnings("ignore:unclosed:ResourceWarning"),
]

BLOCKS, CHUNK, TASK_S = 240, 1000, 0.04
REPO = _REPO


def slow_double(block: Any) -> Any:
    time.sleep(TASK_S)
    return block * 2


class Transitions(SchedulerPlugin):  # type: ignore[misc]
    """Counts, per key, how often it reached memory: more than once means it was computed
    again after its result had been lost."""

    def __init__(self) -> None:
        self.to_memory: Counter[str] = Counter()
        self.lock = threading.Lock()

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        if finish == "memory":
            with self.lock:
                self.to_memory[str(key)] += 1


def until(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.1)


@pytest.fixture
def cluster(dask_grid: GridConfig) -> Iterator[GridCluster]:
    with GridCluster(dask_grid, cores=1, memory="512 MiB",
                     # distributed pickles this module's functions by reference
                     worker_options={"retire_timeout_s": 10,
                                     "env": {"PYTHONPATH": str(REPO)}}) as c:
        yield c
    for job in c.jobs:  # nothing of the cluster runs on after close
        assert job.status().terminal, job


def _worker_by_name(dc: DaskClient, name: str) -> str | None:
    for addr, info in dc.scheduler_info(n_workers=-1)["workers"].items():
        if info["name"] == name:
            return str(addr)
    return None


def _attempts(cluster: GridCluster, job_id: str, n: int) -> list[Any] | None:
    attempts = cluster.grid.store.attempts(job_id)
    return attempts if len(attempts) >= n else None


def test_preempted_worker_hands_its_results_over_and_is_replaced(
    cluster: GridCluster,
) -> None:
    """One of three workers (two on spot-local, one on ondemand-local) is preempted while a
    persisted array is being computed: its results move to the others before it exits, no
    finished task is computed again, the answer is right, and gridbridge starts a
    replacement on ondemand-local (spot-local's capacity is reclaimed)."""
    cluster.scale(3)
    plugin = Transitions()
    cluster.scheduler.add_plugin(plugin)
    with DaskClient(cluster) as dc:
        dc.wait_for_workers(3, timeout=90)
        sites = {w.name: cluster.grid.store.attempts(w.job.job_id)[-1].site
                 for w in cluster.workers.values()}
        assert sorted(sites.values()) == ["ondemand-local", "spot-local", "spot-local"]
        victim = sorted(n for n, s in sites.items() if s == "spot-local")[0]
        victim_addr = _worker_by_name(dc, victim)
        assert victim_addr is not None

        x = da.arange(BLOCKS * CHUNK, chunks=CHUNK, dtype="int64")
        y = x.map_blocks(slow_double, dtype="int64").persist()
        held = until(lambda: [k for k in dc.has_what([victim_addr]).get(victim_addr, ())]
                     if len(dc.has_what([victim_addr]).get(victim_addr, ())) >= 20 else None,
                     60, "the victim to hold 20 results")
        victim_job = cluster.workers[victim].job
        assert victim_job is not None
        cluster.grid.preempt(victim_job.job_id)

        wait(y, timeout=120)
        total = y.sum().compute()
        assert total == 2 * (BLOCKS * CHUNK - 1) * BLOCKS * CHUNK // 2

        # handed over: every result the victim held is now on another worker, and no key
        # of the computation reached memory twice (nothing finished was computed again)
        holders = dc.who_has([str(k) for k in held])
        assert all(h and victim_addr not in h for h in holders.values()), holders
        recomputed = {k: n for k, n in plugin.to_memory.items() if n > 1}
        assert not recomputed, f"computed again: {recomputed}"
        assert all(plugin.to_memory[str(k)] == 1 for k in y.__dask_keys__())

        # replaced: a second attempt of the same job, a worker of the same name, elsewhere
        attempts = until(lambda: _attempts(cluster, victim_job.job_id, 2), 60,
                         "a second attempt")
        assert attempts[0].state is AttemptState.PREEMPTED
        assert attempts[1].site == "ondemand-local"
        until(lambda: _worker_by_name(dc, victim), 90, "the replacement worker")
        assert _worker_by_name(dc, victim) != victim_addr
        log = cluster.grid.logs(victim_job.job_id)
        assert "Closing worker gracefully" in log or "retire" in log.lower(), log[-2000:]
    decisions = [d for d in cluster.grid.store.decisions(victim_job.job_id) if d.attempt == 2]
    spot = [d for d in decisions if d.site == "spot-local"]
    assert spot and not spot[0].chosen


def test_a_worker_killed_without_warning_loses_its_results(cluster: GridCluster) -> None:
    """The check above can fail: a worker SIGKILLed (no stop request, no hand-over) takes
    its results with it, and the scheduler computes them again; gridbridge still replaces
    it, since its attempt is LOST."""
    cluster.scale(2)
    plugin = Transitions()
    cluster.scheduler.add_plugin(plugin)
    with DaskClient(cluster) as dc:
        dc.wait_for_workers(2, timeout=90)
        victim = sorted(cluster.workers)[0]
        victim_addr = _worker_by_name(dc, victim)
        assert victim_addr is not None
        x = da.arange(BLOCKS // 2 * CHUNK, chunks=CHUNK, dtype="int64")
        y = x.map_blocks(slow_double, dtype="int64").persist()
        until(lambda: len(dc.has_what([victim_addr]).get(victim_addr, ())) >= 10, 60,
              "the victim to hold 10 results")
        job = cluster.workers[victim].job
        assert job is not None
        [attempt] = [a for a in cluster.grid.store.attempts(job.job_id) if a.state.active]
        scratch = cluster.grid.config.workdir + f"/local/{attempt.site}/{attempt.id}"
        pid = int(Path(scratch, "pid").read_text().split()[0])
        os.killpg(pid, signal.SIGKILL)
        wait(y, timeout=120)
        assert y.sum().compute() == 2 * (BLOCKS // 2 * CHUNK - 1) * (BLOCKS // 2 * CHUNK) // 2
        assert any(n > 1 for n in plugin.to_memory.values()), "nothing was computed again"
        attempts = until(lambda: _attempts(cluster, job.job_id, 2), 60, "a second attempt")
        assert attempts[0].state is AttemptState.LOST


def test_adapt_scales_from_zero_under_load_and_back_to_zero_and_bills_every_worker(
    cluster: GridCluster,
) -> None:
    cluster.adapt(minimum=0, maximum=3, interval="300ms", wait_count=4,
                  target_duration="1s")
    with DaskClient(cluster) as dc:
        assert len(dc.scheduler_info()["workers"]) == 0
        seen = [0]
        futures = dc.map(lambda i: time.sleep(0.4) or i, range(60), pure=False)

        def watch() -> None:
            while futures and not all(f.done() for f in futures):
                seen[0] = max(seen[0], len(dc.scheduler_info()["workers"]))
                time.sleep(0.1)

        watcher = threading.Thread(target=watch)
        watcher.start()
        assert sum(dc.gather(futures)) == sum(range(60))
        watcher.join()
        futures.clear()  # results the client holds keep a worker up to hold them
        assert seen[0] == 3, f"at most {seen[0]} workers under load"
        until(lambda: not dc.scheduler_info()["workers"] and not cluster.workers, 60,
              "the cluster to scale back to 0")
    jobs = cluster.jobs
    assert len(jobs) >= 3
    until(lambda: all(j.done() for j in jobs), 60, "every worker job to end")
    assert all(j.status() is not JobState.FAILED for j in jobs)
    store = cluster.grid.store
    by_job = {row["job_id"] for row in cost_summary(store.ledger_records(), GroupBy.JOB)}
    assert {j.job_id for j in jobs} <= by_job
    for j in jobs:
        spec = store.job(j.job_id).spec
        assert spec.name.startswith(f"{cluster.name}-") and spec.name.startswith("dask-")
        assert spec.owner.user not in {"", "unknown"} or os.environ.get("USER") is None
        assert all(row.cost > 0 for row in store.ledger(j.job_id))


def test_bad_arguments_name_the_field_and_the_valid_choices(dask_grid: GridConfig) -> None:
    with pytest.raises(ValueError, match="memory='lots'"):
        GridCluster(dask_grid, cores=1, memory="lots")
    with pytest.raises(ValueError, match="cores"):
        GridCluster(dask_grid, cores=0, memory="1 GiB")
    with pytest.raises(ValueError, match="processes=3 exceeds cores=2"):
        GridCluster(dask_grid, cores=2, memory="1 GiB", processes=3)
    with pytest.raises(ValueError, match="valid choices: spot-local, ondemand-local"):
        GridCluster(dask_grid, cores=1, memory="1 GiB", sites=["spot-locale"])
    with pytest.raises(ValueError, match=r"valid fields: .*walltime_s"):
        GridCluster(dask_grid, cores=1, memory="1 GiB", worker_options={"wall": 5})
    with pytest.raises(ValueError, match="no configured site could ever run"):
        GridCluster(dask_grid, cores=64, memory="1 GiB")
    with pytest.raises(ValueError, match=r"policy='cheapst': name: .*'cheapest'.*'fastest'"):
        GridCluster(dask_grid, cores=1, memory="1 GiB", policy="cheapst")


def test_workers_carry_the_cluster_s_policy_and_sites_through_a_given_client(
    dask_grid: GridConfig,
) -> None:
    """A running gridbridge Client can be handed in (and is left open); every worker job
    carries the cluster's policy and site list, and lands where they allow."""
    from gridbridge import Client

    with Client(dask_grid) as client:
        with GridCluster(client, cores=1, memory="512 MiB", policy="fastest",
                         sites=["ondemand-local"], name="etl") as c, DaskClient(c) as dc:
            c.scale(1)
            dc.wait_for_workers(1, timeout=90)
            [job] = c.jobs
            spec = client.store.job(job.job_id).spec
            assert spec.name == "dask-etl-0"  # tagged as a Dask worker
            assert [w["name"] for w in dc.scheduler_info()["workers"].values()] == ["etl-0"]
            assert spec.policy is not None and spec.policy.name == "fastest"
            assert spec.constraints.allowed_sites == frozenset({"ondemand-local"})
            assert client.store.attempts(job.job_id)[-1].site == "ondemand-local"
        # the worker retired at close; the given client is still open and usable
        assert job.status() in {JobState.SUCCEEDED, JobState.CANCELLED}
        assert client.submit_command([sys.executable, "-c", "pass"]).wait(60) is (
            JobState.SUCCEEDED)


def test_the_worker_entry_point_stays_light() -> None:
    """A worker process imports neither the control plane's store nor, until it runs,
    distributed: ``--help`` answers without them."""
    import json
    import subprocess

    code = ("import json, sys, gridbridge.dask.worker as w; "
            "print(json.dumps([m for m in ('sqlalchemy', 'distributed', 'gridbridge.dask.cluster')"
            " if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert json.loads(out.stdout) == []
    helped = subprocess.run([sys.executable, "-m", "gridbridge.dask.worker", "--help"],
                            capture_output=True, text=True, check=True, timeout=60)
    assert "--retire-timeout" in helped.stdout


def test_worker_argv_carries_hostile_values_verbatim() -> None:
    hostile = "a'b\"; rm -rf / $(id) `id`\n"
    argv = worker_argv(sys.executable, "tcp://127.0.0.1:1", "w-0", nthreads=2,
                       memory_limit=10, extra={"local-directory": hostile})
    assert argv[-2:] == ["--local-directory", hostile]
    assert argv[:4] == [sys.executable, "-m", "gridbridge.dask.worker", "tcp://127.0.0.1:1"]


def test_processes_split_one_job_into_several_workers(dask_grid: GridConfig) -> None:
    """``processes=2``: one gridbridge job of 2 cpus runs two single-thread workers, named as
    dask-jobqueue names a job's group (NAME-0, NAME-1), both retired when the job goes."""
    with GridCluster(dask_grid, cores=2, memory="1 GiB", processes=2) as c, \
            DaskClient(c) as dc:
        c.scale(2)  # workers, i.e. one job
        dc.wait_for_workers(2, timeout=90)
        [job] = c.jobs
        assert c.grid.store.job(job.job_id).spec.resources.cpus == 2
        names = sorted(w["name"] for w in dc.scheduler_info()["workers"].values())
        assert names == [f"{c.name}-0-0", f"{c.name}-0-1"]
        assert {w["nthreads"] for w in dc.scheduler_info()["workers"].values()} == {1}
        assert dc.submit(sum, [1, 2, 3]).result() == 6
        c.scale(0)
        until(lambda: not dc.scheduler_info()["workers"], 60, "both workers to leave")
        until(job.done, 60, "the job to end")


def test_a_worker_whose_job_ended_for_good_is_started_afresh(dask_grid: GridConfig) -> None:
    """A worker job that reaches its walltime retires and ends TIMEOUT (it has no checkpoint
    to continue from); the cluster still wants the worker, so it submits a new job under the
    same name, and the worker comes back."""
    with GridCluster(dask_grid, cores=1, memory="512 MiB",
                     worker_options={"walltime_s": 6}) as c, DaskClient(c) as dc:
        c.scale(1)
        dc.wait_for_workers(1, timeout=90)
        [name] = list(c.workers)
        first = _worker_by_name(dc, name)
        until(lambda: len(c.jobs) >= 2, 60, "a second job")
        assert c.jobs[0].status() is JobState.TIMEOUT
        assert c.grid.store.attempts(c.jobs[0].job_id)[-1].state is AttemptState.PREEMPTED
        until(lambda: _worker_by_name(dc, name) not in (None, first), 60, "the new worker")
        assert dc.submit(sum, [1, 2]).result(timeout=30) == 3


def test_asynchronous_use(dask_grid: GridConfig, capsys: pytest.CaptureFixture[str]) -> None:
    """``asynchronous=True`` inside a running event loop, as distributed's clusters allow."""
    import asyncio

    async def main() -> int:
        async with GridCluster(dask_grid, cores=1, memory="512 MiB",
                               asynchronous=True) as c:
            c.scale(1)
            async with DaskClient(c, asynchronous=True) as dc:
                await dc.wait_for_workers(1, timeout=90)
                value: int = await dc.submit(sum, [4, 5])
                return value

    assert asyncio.run(main()) == 9
    assert "scheduler tcp://127.0.0.1:" in capsys.readouterr().out
