"""GridCluster as a dask-jobqueue cluster: its keywords, ``job_script()`` and the
``jobqueue.gridbridge`` config section, with real schedulers and real worker jobs that
gridbridge places on the embedded default's two local sites (and really preempts)."""

from __future__ import annotations

import shlex
import sys
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("dask_jobqueue", reason="the dask extra: pip install 'gridbridge[dask]'")

import dask.config
from dask_jobqueue import JobQueueCluster
from distributed import Client as DaskClient

from gridbridge.config import GridConfig
from gridbridge.dask import GridCluster
from gridbridge.states import AttemptState, JobState
from tests.dask.test_dask import REPO, _attempts, _worker_by_name, until

pytestmark = [
    pytest.mark.dask,
    # as in test_dask.py: distributed closes comms from its loop thread after the test moved on
    pytest.mark.filterwarnings("ignore:unclosed:ResourceWarning"),
]


def _submitted_argv(script: str) -> list[str]:
    """The worker command of a job_script(): what follows ``-- `` on its last line."""
    return shlex.split(script.rstrip().splitlines()[-1].strip().removeprefix("-- "))


def test_a_jobqueue_style_cluster_shows_its_submission_and_survives_a_preemption(
    dask_grid: GridConfig,
) -> None:
    """The issue's Done-when: dask-jobqueue's keywords, job_script() showing the gridbridge
    submission, and a worker that is preempted, handed over and replaced as before."""
    with GridCluster(dask_grid, cores=1, memory="1GiB", processes=1, walltime="00:10:00",
                     job_extra_directives=["--team ml", "--priority=3"],
                     worker_extra_args=["--resources", "slots=2"],
                     worker_options={"retire_timeout_s": 10,
                                     "env": {"PYTHONPATH": str(REPO), "TOKEN": "s3cr3t"}}) as c:
        assert isinstance(c, JobQueueCluster)
        script = c.job_script()
        for shown in ["gridbridge submit", "--cpus 1", "--memory-gb 1", "--walltime-s 600",
                      "--team ml", "--priority 3", '--env "PYTHONPATH=$PYTHONPATH"',
                      f"-- {sys.executable} -m gridbridge.dask.worker {c.scheduler_address}"]:
            assert shown in script, (shown, script)
        assert '--env "TOKEN=$TOKEN"' in script
        assert "s3cr3t" not in script  # env values are read from the shell, never shown

        c.scale(jobs=2)
        with DaskClient(c) as dc:
            dc.wait_for_workers(2, timeout=90)
            names = sorted(c.workers)
            assert all(w["resources"] == {"slots": 2}  # worker_extra_args reach the worker
                       for w in dc.scheduler_info()["workers"].values())
            for name in names:  # what job_script() shows is what was submitted
                job = c.grid.store.job(c.workers[name].job_id)
                assert list(job.spec.command or ()) == _submitted_argv(
                    c.workers[name].job_script())
                assert job.spec.resources.walltime_s == 600
                assert (job.spec.owner.team, job.spec.priority) == ("ml", 3)
            sites = {n: c.grid.store.attempts(c.workers[n].job_id)[-1].site for n in names}
            victim = next(n for n in names if sites[n] == "spot-local")
            before = _worker_by_name(dc, victim)
            # a result only the victim holds, and which no other worker may compute again
            held = dc.submit(sum, [1, 2, 3], workers=[before], pure=False)
            assert held.result(timeout=30) == 6
            c.grid.preempt(c.workers[victim].job_id)
            attempts = until(lambda: _attempts(c, c.workers[victim].job_id, 2), 60,
                             "a second attempt")
            assert attempts[0].state is AttemptState.PREEMPTED
            until(lambda: _worker_by_name(dc, victim) not in (None, before), 90,
                  "the replacement worker")
            assert held.result(timeout=30) == 6  # handed over before the victim left
            holders = dc.who_has([held])[held.key]
            assert holders and before not in holders, holders
            assert dc.submit(sum, [4, 5], pure=False).result(timeout=30) == 9


def test_the_jobqueue_gridbridge_config_section_supplies_defaults(
    dask_grid: GridConfig,
) -> None:
    assert dask.config.get("jobqueue.gridbridge.walltime") == "01:00:00"  # registered
    settings = {"jobqueue.gridbridge.cores": 1, "jobqueue.gridbridge.memory": "512 MiB",
                "jobqueue.gridbridge.walltime": "00:05:00",
                "jobqueue.gridbridge.job-extra-directives": ["--project climate"],
                "jobqueue.gridbridge.worker-extra-args": ["--retire-timeout", "5"]}
    with dask.config.set(settings), GridCluster(dask_grid) as c:
        script = c.job_script()
    for shown in ["--cpus 1", "--memory-gb 0.5", "--walltime-s 300", "--project climate"]:
        assert shown in script, (shown, script)
    assert _submitted_argv(script)[-2:] == ["--retire-timeout", "5"]
    with dask.config.set(settings), GridCluster(dask_grid, cores=2, walltime=120) as c:
        script = c.job_script()  # a keyword wins over the config
    assert "--cpus 2" in script and "--walltime-s 120" in script


def test_dask_jobqueue_keywords_are_checked_before_anything_runs(
    dask_grid: GridConfig,
) -> None:
    with pytest.raises(ValueError, match=r"cores= and memory= .*jobqueue\.gridbridge\.cores"):
        GridCluster(dask_grid)
    with pytest.raises(ValueError, match=r"walltime='soon'"):
        GridCluster(dask_grid, cores=1, memory="1GiB", walltime="soon")
    with pytest.raises(ValueError, match=r"'-C geyser' is not a gridbridge submit option.*"
                                         r"--team"):
        GridCluster(dask_grid, cores=1, memory="1GiB", job_extra_directives=["-C geyser"])
    with pytest.raises(ValueError, match=r"'--nanny' is not an option of python -m "
                                         r"gridbridge\.dask\.worker.*--retire-timeout"):
        GridCluster(dask_grid, cores=1, memory="1GiB", worker_extra_args=["--nanny"])


def test_a_normal_close_ends_the_worker_jobs_as_scaled_down_without_a_traceback(
    dask_grid: GridConfig, capfd: pytest.CaptureFixture[str],
) -> None:
    """Item 7: scaling down and closing retire the workers through the scheduler, so each
    job ends by itself (SUCCEEDED), never 'cancelled by user'; no CommClosedError traceback;
    the banner's dashboard line is what this process really serves."""
    with GridCluster(dask_grid, cores=1, memory="512 MiB") as c:
        c.scale(jobs=2)
        with DaskClient(c) as dc:
            dc.wait_for_workers(2, timeout=90)
            assert dc.submit(sum, [1, 2], pure=False).result(timeout=30) == 3
            c.scale(jobs=1)
            until(lambda: len(dc.scheduler_info()["workers"]) == 1, 60, "one worker to go")
            dropped = until(lambda: [j for j in c.jobs if j.done()], 60, "its job to end")
            assert [j.status() for j in dropped] == [JobState.SUCCEEDED]
        banner = next(line for line in capfd.readouterr().out.splitlines()
                      if line.startswith(f"GridCluster {c.name}:"))
        _check_dashboard_line(banner, c)
    until(lambda: all(j.done() for j in c.jobs), 60, "every worker job to end")
    store = c.grid.store
    for job in c.jobs:
        assert job.status() is JobState.SUCCEEDED, store.events(job.job_id)
        reasons = [e.reason for e in store.events(job.job_id)]
        assert "cancelled by user" not in reasons, reasons
        assert "retired by the scheduler (scaled down)" in c.grid.logs(job.job_id)
    out = capfd.readouterr()
    assert "CommClosedError" not in out.out + out.err and "Traceback" not in out.err, out.err


def _check_dashboard_line(banner: str, c: GridCluster) -> None:
    """Without bokeh the line says so and names the address distributed reports, which
    really answers; with bokeh it is the dashboard's link."""
    import importlib.util

    link = c.dashboard_link
    assert link, "distributed reports no dashboard address"
    if importlib.util.find_spec("bokeh") is not None:
        assert f"dashboard {link};" in banner
        return
    assert "dashboard not available (bokeh is not installed: pip install bokeh)" in banner
    served = link.removesuffix("/status")
    assert served in banner and served.startswith("http://127.0.0.1:")  # loopback only
    with urllib.request.urlopen(f"{served}/health", timeout=10) as answer:
        assert answer.read() == b"ok"


def test_import_jobqueue_reads_through_dask_s_config_loader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """dask's loader, not a hand-rolled one: a config folder merges like dask merges it,
    ``job_extra_directives`` is ``job-extra-directives`` (dask's canonical names), and with no
    path the import sees what dask-jobqueue sees, DASK_* variables included."""
    from gridbridge.jobqueue_import import load_dask_config, load_jobqueue

    folder = tmp_path / "dask"
    folder.mkdir()
    (folder / "a-jobqueue.yaml").write_text(
        "jobqueue:\n  slurm:\n    cores: 4\n    memory: 8GiB\n"
        "    job_extra_directives: ['--qos=high']\n")
    (folder / "b-site.yaml").write_text("jobqueue:\n  slurm:\n    queue: short\n")
    [site] = load_jobqueue(folder).config["sites"]
    assert site["name"] == "slurm-short" and site["capacity"] == {"cpus": 4, "memory_gb": 8.0}
    assert site["options"]["qos"] == "high"

    monkeypatch.setattr(dask.config, "paths", [str(folder)])
    monkeypatch.setenv("DASK_JOBQUEUE__SLURM__CORES", "16")
    result = load_dask_config()
    [site] = result.config["sites"]
    assert site["capacity"]["cpus"] == 16 and site["options"]["partitions"] == {"short": {}}


_LEFT_OPEN = """
import json, sys
from gridbridge.config import default_config
from gridbridge.dask import GridCluster
from distributed import Client as DaskClient

config = default_config(sys.argv[1], cpus=2)
limits = config.limits.model_copy(update={"tick_interval_s": 0.1, "lease_s": 5.0})
cluster = GridCluster(config.model_copy(update={"limits": limits}), cores=1, memory="512 MiB")
cluster.scale(jobs=2)
dc = DaskClient(cluster)
dc.wait_for_workers(2, timeout=90)
assert dc.submit(sum, [1, 2]).result() == 3
print(json.dumps([j.job_id for j in cluster.jobs]), flush=True)
# no close(): the script ends with the cluster open, and distributed closes it at exit
"""


def test_a_cluster_left_open_at_exit_retires_its_workers_without_a_traceback(
    tmp_path: Path,
) -> None:
    """Item 7's traceback: a script that ends with its cluster open (distributed closes it
    from an atexit hook, after Python's thread pools stopped taking work) printed
    CommClosedError and CancelledError tracebacks, and left its worker jobs running."""
    import json
    import os
    import subprocess

    from gridbridge import Client
    from gridbridge.config import default_config

    ran = subprocess.run([sys.executable, "-c", _LEFT_OPEN, str(tmp_path / "home")],
                         capture_output=True, text=True, timeout=180, check=False,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert ran.returncode == 0, ran.stderr[-3000:]
    output = ran.stdout + ran.stderr
    assert "Traceback" not in output and "CommClosedError" not in output, output[-4000:]
    job_ids = json.loads(ran.stdout.strip().splitlines()[-1])
    # the workers retired and exited 0; the next reconciler records it (none runs at exit)
    config = default_config(tmp_path / "home", cpus=2)
    limits = config.limits.model_copy(update={"tick_interval_s": 0.1, "lease_s": 5.0})
    with Client(config.model_copy(update={"limits": limits})) as client:
        client.start()
        states = [client.job(j).wait(60) for j in job_ids]
        logs = [client.logs(j) for j in job_ids]
    assert states == [JobState.SUCCEEDED, JobState.SUCCEEDED], states
    assert all("retired by the scheduler (scaled down)" in log for log in logs)
