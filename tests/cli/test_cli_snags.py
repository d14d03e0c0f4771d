"""What a new user hit (round two), each as they would hit it: a glob for ``--name`` and a
word on what filters left out, ``debug preempt JOB``, cancelling a job that ended, the logs of
a job that never ran, ``--expected-runtime-s``, and choice errors without pydantic's words."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
import yaml

from gridbridge.client import Client
from gridbridge.states import JobState
from tests.cli.test_cli_ux import gb, one_error_line, queue
from tests.support.serving import cheap_and_steady_config


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return cheap_and_steady_config(
        tmp_path, options={"grace_s": 1, "reclaim_after_preemption_s": 30})


def test_name_takes_a_glob(config: Path) -> None:
    ids = queue(config, ("dask-c810c89e-0", {}), ("dask-c810c89e-1", {}), ("train", {}),
                ("dask_x", {}))
    out = gb("--config", str(config), "status", "--name", "dask-*", "--format", "json")
    assert out.returncode == 0, out.stderr
    assert sorted(r["job"] for r in json.loads(out.stdout)) == sorted(ids[:2])
    # LIKE's own wildcards are taken literally: '_' is not "any one character"
    literal = gb("--config", str(config), "status", "--name", "dask_*", "--format", "json")
    assert [r["job"] for r in json.loads(literal.stdout)] == [ids[3]]


def test_an_empty_listing_says_what_filtered_everything_out(config: Path) -> None:
    queue(config, ("train", {}), ("eval", {}))
    out = gb("--config", str(config), "status", "--name", "dask")
    assert out.returncode == 0, out.stderr
    assert "no job matches; 2 job(s) in the store, all filtered out by --name dask" in out.stderr


def test_a_bad_choice_reads_without_pydantic_words(config: Path) -> None:
    line = one_error_line(gb("--config", str(config), "status", "--state", "nope"))
    assert "Value error" not in line and "'nope' is not one of" in line


def test_logs_of_a_job_that_never_ran_say_so(config: Path) -> None:
    [job] = queue(config, ("never", {}))
    out = gb("--config", str(config), "logs", job)
    assert out.returncode == 0 and out.stdout == ""
    assert f"job {job} has no attempts yet, so no output" in out.stderr


def test_expected_runtime_reaches_the_spec(config: Path) -> None:
    out = gb("--config", str(config), "submit", "--expected-runtime-s", "2", "--", "true")
    assert out.returncode == 0, out.stderr
    with Client(config, start=False) as client:
        job = client.store.job(out.stdout.split()[0])
    assert job.spec.resources.expected_runtime_s == 2


@pytest.mark.slow
def test_a_short_job_of_a_small_budget_runs_when_it_says_how_long_it_takes(
        config: Path) -> None:
    """Team lab may spend what a quarter of an hour costs on the cheap site (a cent an hour):
    a job estimated at its one-hour walltime is held, one that says it takes 2 s runs."""
    data = yaml.safe_load(config.read_text())
    data["budgets"] = {"teams": {"lab": 0.0025}}
    config.write_text(yaml.safe_dump(data))
    held = gb("--config", str(config), "submit", "--team", "lab", "--", "true")
    assert held.returncode == 0, held.stderr
    quick = gb("--config", str(config), "submit", "--team", "lab", "--expected-runtime-s", "2",
               "--wait", "--", "true")
    assert quick.returncode == 0, quick.stdout + quick.stderr
    with Client(config, start=False) as client:
        held_job = client.store.job(held.stdout.split()[0])
        assert held_job.state is JobState.PENDING
        assert "budget" in client.store.detail(held_job.id)
        assert client.store.job(quick.stdout.split()[0]).state is JobState.SUCCEEDED


@pytest.mark.slow
def test_debug_preempt_takes_a_job_id_and_cancel_of_an_ended_job_fails(config: Path) -> None:
    waits = ("import gridbridge, sys, time\n"
             "ctx = gridbridge.context()\n"
             "while not ctx.should_stop(): time.sleep(0.05)\n"
             "sys.exit(75 if ctx.attempt == 1 else 0)\n")
    with Client(config) as client:
        future = client.submit_command([sys.executable, "-c", waits], name="waits")
        deadline = time.monotonic() + 60
        while future.status() is not JobState.RUNNING:
            assert time.monotonic() < deadline, "never ran"
            time.sleep(0.05)
        out = gb("--config", str(config), "debug", "preempt", future.job_id)
        assert out.returncode == 0, out.stderr
        assert f"preempted {future.job_id}.1 on cheap" in out.stdout
        while len(client.store.attempts(future.job_id)) < 2 or future.status() is not (
                JobState.RUNNING):
            assert time.monotonic() < deadline + 60, "never resumed"
            time.sleep(0.05)
        future.cancel()  # its program exits 0 on the stop request: it may end SUCCEEDED
        ended = future.wait(60)
        assert ended in (JobState.CANCELLED, JobState.SUCCEEDED)
    again = gb("--config", str(config), "cancel", future.job_id)
    assert again.returncode == 1
    assert f"job {future.job_id} already ended {ended.value}; nothing to cancel" in again.stderr
    none = gb("--config", str(config), "debug", "preempt", future.job_id)
    assert none.returncode == 2 and "has no running attempt" in none.stderr
