"""Moving running jobs, live: the real reconciler, real local sites, real checkpointing jobs.

A job whose deadline's slack runs out on a preemptible site moves to the reliable one and
finishes on time from its checkpoint; ``sites drain`` empties a site (every job that may move
resumes elsewhere, nothing new is placed there, ``migrate: never`` jobs are left to end) and
``sites undrain`` reopens it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
import yaml

from gridbridge.client import Client
from gridbridge.config import load_config
from gridbridge.states import AttemptState, JobState
from tests.support import jobs
from tests.support.serving import wait_until

cloudpickle.register_pickle_by_value(jobs)


def _config(tmp_path: Path, cpus: int = 2, **migration: Any) -> Path:
    """Two local sites as the embedded default has them: ``spot`` cheap and preemptible,
    ``steady`` reliable and four times dearer; both restart in 20 s (the model's word)."""
    path = tmp_path / "gridbridge.yaml"
    site = {"adapter": "local", "tier": "cloud", "capacity": {"cpus": cpus, "memory_gb": 8},
            "restart_overhead_s": 20, "options": {"grace_s": 5}}
    path.write_text(yaml.safe_dump({
        "state_url": "sqlite:///state.db", "checkpoint_root": "checkpoints", "workdir": "run",
        "limits": {"tick_interval_s": 0.1, "lease_s": 5},
        "migration": migration,
        "sites": [
            {**site, "name": "spot", "price": {"per_core_hour": 0.012},
             "on_demand": {"per_core_hour": 0.048}, "preemptible": True,
             "preemption_rate_per_hour": 0.5},
            {**site, "name": "steady", "price": {"per_core_hour": 0.048}},
        ]}))
    return path


def _expected(total: int) -> int:
    return sum(s * 6 for s in range(total))


def _gb(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gridbridge.cli", "--config", str(config),
                           *args], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, COLUMNS="200"))


@pytest.mark.slow
def test_a_job_whose_slack_runs_out_on_spot_moves_to_reliable_capacity_and_is_on_time(
        tmp_path: Path) -> None:
    path = _config(tmp_path)
    total, work_s = 1000, 10.0
    # The safety rule fires once the deadline is no further than the reliable site's restart
    # (20 s) plus the work since the last checkpoint (all of it: the job saves only when
    # asked to stop) plus a tick: about 6 s after it starts, on the cheap spot site.
    deadline = datetime.now(UTC) + timedelta(seconds=work_s + 20 + 6)
    with Client(load_config(path)) as client:
        f = client.submit(jobs.counter, total, 10**6, resources={"expected_runtime_s": work_s},
                          checkpoint={"resumable": True}, max_attempts=1,
                          constraints={"deadline": deadline.isoformat()})
        assert f.result(timeout=120) == _expected(total)
        attempts = client.store.attempts(f.job_id)
        story = client.store.events(f.job_id)
        ledger = {r.attempt_id: r for r in client.store.ledger(f.job_id)}
    assert [(a.site, a.state) for a in attempts] == [
        ("spot", AttemptState.MOVED), ("steady", AttemptState.SUCCEEDED)], attempts
    moved, last = attempts
    assert moved.last_step is not None and moved.last_step > 0, "it saved before it stopped"
    assert last.ended_at is not None and last.ended_at <= deadline.timestamp(), "on time"
    asked = [e for e in story if e.kind == "moving"]
    assert len(asked) == 1 and "reliable capacity (steady)" in asked[0].reason, story
    assert "left to the deadline" in asked[0].reason and "saving" in asked[0].reason
    assert any(e.kind == "job" and f"resume from step {moved.last_step}" in e.reason
               for e in story), "resumed from its checkpoint; max_attempts=1 was not used up"
    assert ledger[moved.id].outcome == "MOVED"
    out = _gb(path, "explain", f.job_id, "--format", "json")
    assert out.returncode == 0, out.stderr
    spot = [r for r in json.loads(out.stdout) if r["site"] == "spot"]
    assert spot and "the job left it: moving from spot to reliable capacity" in spot[0]["why"]
    assert "expected saving" in spot[0]["why"], "explain says why it moved, and the saving"


@pytest.mark.slow
def test_drain_moves_every_movable_job_off_a_site_and_undrain_reopens_it(
        tmp_path: Path) -> None:
    path = _config(tmp_path, cpus=3)
    total = 1500
    with Client(load_config(path)) as client:
        movable = [client.submit(jobs.counter, total, 50, resources={"expected_runtime_s": 15},
                                 checkpoint={"resumable": True}, migrate="deadline")
                   for _ in range(2)]
        stays = client.submit(jobs.counter, 600, 50, resources={"expected_runtime_s": 6},
                              checkpoint={"resumable": True}, migrate="never")
        everyone = [*movable, stays]

        def all_running() -> bool:
            return all(client.store.job(f.job_id).state is JobState.RUNNING for f in everyone)

        wait_until(all_running, 60, "three jobs running")
        assert {client.store.attempts(f.job_id)[-1].site for f in everyone} == {"spot"}
        time.sleep(1.5)  # each has committed a few periodic checkpoints
        out = _gb(path, "sites", "drain", "spot", "--reason", "maintenance")
        assert out.returncode == 0 and "site spot drained" in out.stdout, out.stderr
        later = client.submit(jobs.add, 1, 2)
        assert later.result(timeout=60) == 3
        for f in movable:
            assert f.result(timeout=120) == _expected(total)
        assert stays.result(timeout=60) == _expected(600)
        runs = {f.job_id: client.store.attempts(f.job_id) for f in [*everyone, later]}
        out = _gb(path, "sites", "undrain", "spot")
        assert out.returncode == 0 and "site spot open" in out.stdout, out.stderr
        reopened = client.submit(jobs.add, 2, 3)
        assert reopened.result(timeout=60) == 5
        back = client.store.attempts(reopened.job_id)
        events = client.store.site_events("spot")
    for f in movable:
        first, *rest = runs[f.job_id]
        assert first.site == "spot" and first.state is AttemptState.MOVED, runs[f.job_id]
        assert first.last_step is not None and first.last_step > 0, "resumed from a checkpoint"
        assert [a.site for a in rest] == ["steady"], runs[f.job_id]
    assert [(a.site, a.state) for a in runs[stays.job_id]] == [
        ("spot", AttemptState.SUCCEEDED)], "a never-moving job is left to end where it runs"
    assert [a.site for a in runs[later.job_id]] == ["steady"], "nothing new on a drained site"
    assert [a.site for a in back] == ["spot"], "undrained: placements use it again"
    assert [e.kind for e in events if e.kind in {"drained", "undrained"}] == [
        "drained", "undrained"]
    assert any(e.reason == "maintenance" for e in events)


@pytest.mark.slow
def test_a_cost_mode_job_moves_once_to_cheaper_capacity_when_it_frees_up(tmp_path: Path) -> None:
    path = _config(tmp_path, cpus=1)
    total = 1500
    with Client(load_config(path)) as client:
        blocker = client.submit(jobs.counter, 400, 50, migrate="never")
        wait_until(lambda: client.store.job(blocker.job_id).state is JobState.RUNNING, 60,
                   "the blocker running on spot")
        # An hour of work by the estimate: on the spot site it saves far more than twice
        # what the move costs (a 20 s restart and the work since its last checkpoint).
        f = client.submit(jobs.counter, total, 50, resources={"expected_runtime_s": 3600},
                          checkpoint={"resumable": True}, migrate="cost")
        assert f.result(timeout=120) == _expected(total)
        assert blocker.result(timeout=30) == _expected(400)
        attempts = client.store.attempts(f.job_id)
        story = client.store.events(f.job_id)
    assert [(a.site, a.state) for a in attempts] == [
        ("steady", AttemptState.MOVED), ("spot", AttemptState.SUCCEEDED)], attempts
    assert attempts[0].last_step is not None and attempts[0].last_step > 0
    [asked] = [e for e in story if e.kind == "moving"]
    assert "moving from steady to spot: cheaper there (expected saving $" in asked.reason
