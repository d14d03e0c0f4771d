"""Long jobs continue instead of failing: walltime ends and preemptions that advanced the
checkpoint are free, a walltime end with nothing to continue from is TIMEOUT, and a job that
stops making progress or keeps failing ends with the reason."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import cloudpickle
import pytest

from gridbridge.client import Client
from gridbridge.config import GridConfig
from gridbridge.reports import GroupBy, cost_summary
from gridbridge.states import AttemptState, JobState
from tests.support import jobs

cloudpickle.register_pickle_by_value(jobs)


@pytest.mark.slow
def test_a_walltime_end_without_a_checkpoint_is_timeout_with_no_savings(client: Client) -> None:
    f = client.submit_command([sys.executable, "-c", "import time; time.sleep(30)"],
                              walltime_s=3, max_attempts=5)
    assert f.wait(60) is JobState.TIMEOUT
    attempts = client.store.attempts(f.job_id)
    assert len(attempts) == 1, "rerunning it would end the same way"
    assert attempts[0].state is AttemptState.PREEMPTED
    assert attempts[0].reason == "walltime reached"
    assert "walltime" in (client.store.job(f.job_id).error or "")
    [row] = client.store.ledger(f.job_id)
    assert row.cost > 0
    assert row.on_demand_cost == row.cost, "no saving is booked on work that was thrown away"
    assert row.lost_cost == row.cost
    summary = cost_summary(client.store.ledger_records(f.job_id), GroupBy.JOB)
    assert [r["savings"] for r in summary] == [0.0, 0.0]  # the job's row and TOTAL


@pytest.mark.slow
def test_a_job_that_checkpoints_goes_on_through_five_walltime_ends(grid: GridConfig) -> None:
    total, every = 700, 10
    with Client(grid) as client:
        f = client.submit(jobs.counter, total, every, walltime_s=1.0, max_attempts=2)
        assert f.result(timeout=240) == sum(s * 6 for s in range(total))
        attempts = client.store.attempts(f.job_id)
    walltime_ends = [a for a in attempts
                     if a.state is AttemptState.PREEMPTED and a.reason == "walltime reached"]
    assert len(walltime_ends) >= 5, [(a.state, a.reason, a.last_step) for a in attempts]
    assert len(attempts) > 2, "preemptions that advanced the checkpoint used no attempts"
    steps = [a.last_step for a in walltime_ends]
    assert steps == sorted(steps) and len(set(steps)) == len(steps), "each one advanced"


SAVES_ONCE_THEN_DIES = """
import os, signal
import numpy as np
import gridbridge
ctx = gridbridge.context()
if ctx.attempt == 1:
    ctx.checkpoint.save(1, {"x": np.zeros(2)})
os.kill(os.getppid(), signal.SIGKILL)  # the runtime dies: the attempt is lost
"""


@pytest.mark.slow
def test_attempts_that_stop_making_progress_fail_the_job(client: Client) -> None:
    f = client.submit_command([sys.executable, "-c", SAVES_ONCE_THEN_DIES], max_attempts=10)
    assert f.wait(90) is JobState.FAILED
    attempts = client.store.attempts(f.job_id)
    assert [a.state for a in attempts] == [AttemptState.LOST] * 3
    assert [a.last_step for a in attempts] == [1, 1, 1]
    error = client.store.job(f.job_id).error or ""
    assert error.startswith("no progress: 2 attempts in a row"), error


FAILS_ONCE = """
import pathlib, sys
marker = pathlib.Path(sys.argv[1])
if not marker.exists():
    marker.write_text("failed once")
    sys.exit(4)
"""


def test_max_failures_retries_real_failures(client: Client, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    once = client.submit_command([sys.executable, "-c", FAILS_ONCE, str(marker)])
    assert once.wait(60) is JobState.FAILED, "one failure fails the job by default"
    marker.unlink()
    twice = client.submit_command([sys.executable, "-c", FAILS_ONCE, str(marker)],
                                  max_failures=2)
    assert twice.wait(60) is JobState.SUCCEEDED
    attempts = client.store.attempts(twice.job_id)
    assert [(a.state, a.exit_code) for a in attempts] == [
        (AttemptState.FAILED, 4), (AttemptState.SUCCEEDED, 0)]


SAVES_NINE = """
import json, sys, time
import numpy as np
import gridbridge
ctx = gridbridge.context()
for step in range(1, 10):
    ctx.checkpoint.save(step, {"x": np.full(2, step)})
due = []
for _ in range(35):
    if ctx.should_checkpoint():
        due.append(time.monotonic())
    time.sleep(0.1)
json.dump({"interval": ctx.checkpoint_interval_s, "due": due}, open(sys.argv[1], "w"))
"""


@pytest.mark.slow
def test_a_job_keeps_its_last_checkpoints_and_is_told_how_often_to_save(
    client: Client, tmp_path: Path,
) -> None:
    from gridbridge import checkpoint
    from gridbridge.spec import CheckpointPolicy

    out = tmp_path / "seen.json"
    f = client.submit_command([sys.executable, "-c", SAVES_NINE, str(out)],
                              checkpoint=CheckpointPolicy(interval_s=1.0, keep_last=3))
    assert f.wait(60) is JobState.SUCCEEDED
    store = checkpoint.open(client.store.job(f.job_id).checkpoint_url)
    assert store.steps() == [7, 8, 9]
    assert store.restore().state["x"].tolist() == [9, 9]
    seen = json.loads(out.read_text())
    assert seen["interval"] == 1.0
    due = seen["due"]
    assert len(due) >= 2, "3.5 s of steps at a 1 s interval"
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(due)), due


DIES_ONCE = """
import os, pathlib, signal, sys
marker = pathlib.Path(sys.argv[1])
if not marker.exists():
    marker.write_text("lost once")
    os.kill(os.getppid(), signal.SIGKILL)  # the runtime dies: the attempt is lost
"""


def test_a_site_with_one_offer_is_tried_again_at_once_after_a_lost_attempt(
        grid: GridConfig, tmp_path: Path) -> None:
    # Only the one site, and a long backoff: avoiding its only offer would keep the job
    # waiting for reject_backoff_s; an offer is avoided only where the site has others.
    one = grid.model_copy(update={
        "sites": grid.sites[:1],
        "limits": grid.limits.model_copy(update={"reject_backoff_s": 300.0})})
    with Client(one) as client:
        f = client.submit_command([sys.executable, "-c", DIES_ONCE, str(tmp_path / "m")])
        assert f.wait(60) is JobState.SUCCEEDED, client.store.attempts(f.job_id)
        attempts = client.store.attempts(f.job_id)
    assert [a.state for a in attempts] == [AttemptState.LOST, AttemptState.SUCCEEDED]
    assert {a.offer_key for a in attempts} == {"default"}
