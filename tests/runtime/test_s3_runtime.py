"""The whole loop with every record on a real object store (SeaweedFS): the control plane and
the runtime share nothing but the bucket (and the runtime's own scratch folder)."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import cloudpickle
import fsspec
import pytest

from gridbridge import checkpoint
from gridbridge.client import Client
from gridbridge.config import GridConfig
from gridbridge.states import AttemptState, JobState
from gridbridge.wire import load_log, read_heartbeat, read_launch, read_result
from tests.support import jobs

cloudpickle.register_pickle_by_value(jobs)

pytestmark = pytest.mark.s3


@pytest.fixture
def s3_grid(grid: GridConfig, s3_server: dict[str, Any],
            monkeypatch: pytest.MonkeyPatch) -> GridConfig:
    """The embedded default with its checkpoint root in the bucket; credentials reach the
    runtime through the environment the site passes on (``runtime.env_names``; fsspec reads
    FSSPEC_S3_* when it is imported)."""
    options = s3_server["storage_options"]
    for key, value in options.items():
        monkeypatch.setenv(f"FSSPEC_S3_{key.upper()}", value)
    monkeypatch.setitem(fsspec.config.conf, "s3", dict(options))
    root = f"s3://{s3_server['bucket']}/e2e-{uuid.uuid4().hex[:10]}"
    passed_on = tuple(f"FSSPEC_S3_{key.upper()}" for key in options)  # as runtime.env_names
    sites = tuple(s.model_copy(update={"runtime": s.runtime.model_copy(
        update={"heartbeat_s": 0.5, "shared_filesystem": False, "env_names": passed_on})})
        for s in grid.sites)
    return grid.model_copy(update={"checkpoint_root": root, "sites": sites})


def test_a_job_runs_with_all_its_records_on_s3(s3_grid: GridConfig) -> None:
    with Client(s3_grid) as client:
        f = client.submit(jobs.counter, 60, 20)
        assert f.result(timeout=120) == sum(s * 6 for s in range(60))
        [attempt] = client.store.attempts(f.job_id)
        job = client.store.job(f.job_id)
        logs = f.logs()
    assert attempt.state is AttemptState.SUCCEEDED
    assert attempt.attempt_url.startswith("s3://") and job.checkpoint_url.startswith("s3://")
    assert job.spec.callable_ref and job.spec.callable_ref.startswith("s3://")
    launch = read_launch(attempt.attempt_url)
    assert launch.attempt_id == attempt.id and launch.callable_ref == job.spec.callable_ref
    beat = read_heartbeat(attempt.attempt_url)
    assert beat is not None and beat.attempt_id == attempt.id
    result = read_result(attempt.attempt_url)
    assert result is not None and result.reason == "succeeded" and result.last_step == 60
    assert "gridbridge-run: job" in (load_log(attempt.attempt_url) or "")
    assert "gridbridge-run: job" in logs
    assert checkpoint.open(job.checkpoint_url).latest() == 60
    fs = fsspec.filesystem("s3")
    names = {p.rsplit("/", 1)[-1] for p in fs.ls(attempt.attempt_url.removeprefix("s3://"))}
    assert names >= {"launch.json", "claim.json", "heartbeat.json", "output.log", "result.json",
                     "return.pkl"}
    scratch = Path(s3_grid.workdir) / "local" / attempt.site / attempt.id
    assert not (scratch / "launch.json").exists(), "the launch record lives only in storage"


def test_a_zombie_is_fenced_off_once_its_successor_exists(s3_grid: GridConfig) -> None:
    """The control plane raises the fence when it creates attempt 2; attempt 1, still alive
    somewhere, can no longer commit, and attempt 2's checkpoints stay intact."""
    with Client(s3_grid) as client:
        f = client.submit_command([sys.executable, "-c", ZOMBIE], max_attempts=3)
        state = f.wait(120)
        assert state is JobState.SUCCEEDED, (client.store.job(f.job_id).error, f.logs())
        attempts = client.store.attempts(f.job_id)
        job = client.store.job(f.job_id)
    assert [a.state for a in attempts] == [AttemptState.LOST, AttemptState.SUCCEEDED]
    store = checkpoint.open(job.checkpoint_url)
    assert store.latest() == 20
    restored = store.restore(20)
    assert restored.state["writer"].tolist() == [2, 2, 2]
    assert store.commit_record(20)["token"] == 2


ZOMBIE = """
import os, signal, sys, time
import numpy as np
import gridbridge
from gridbridge.checkpoint import FencedError
ctx = gridbridge.context()
if ctx.attempt == 1:
    ctx.checkpoint.save(10, {"writer": np.full(3, 1)})
    if os.fork() == 0:  # the zombie: outlives its runtime, tries to commit later
        os.setsid()
        time.sleep(6)
        try:
            ctx.checkpoint.save(20, {"writer": np.full(3, 1)})
            print("ZOMBIE COMMITTED", flush=True)
        except FencedError:
            print("zombie fenced", flush=True)
        os._exit(0)
    os.kill(os.getppid(), signal.SIGKILL)  # the node is lost
    time.sleep(60)
store = ctx.checkpoint
assert store.latest() == 10
store.save(20, {"writer": np.full(3, 2)})
time.sleep(8)  # the zombie wakes and tries to commit step 20 meanwhile
"""
