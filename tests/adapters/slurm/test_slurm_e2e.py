"""The whole loop on the real Slurm the session starts: a training job preempted by a
higher-priority job, a job longer than its partition's time limit, and ``kill -9`` of the
control plane between ``sbatch`` and recording the job id."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
import yaml

from gridbridge import Client
from gridbridge.config import GridConfig, parse_config
from gridbridge.demo import train
from gridbridge.states import AttemptState, JobState
from tests.support import jobs
from tests.support.jobs import BLAS_SETTINGS
from tests.support.serving import start_serve, wait_until

cloudpickle.register_pickle_by_value(jobs)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SCAVENGER_RATE = 0.01
NORMAL_RATE = 0.05


def slurm_site(partitions: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": "cluster", "adapter": "slurm", "tier": "hpc", "capacity": {"cpus": 12},
            "uncertain_submit": "replace", "restart_overhead_s": 5,
            "runtime": {"shared_filesystem": True, "heartbeat_s": 2,
                        "env_names": list(BLAS_SETTINGS)},
            "options": {"partitions": partitions, **extra}}


def grid_data(tmp_path: Path, site: dict[str, Any]) -> dict[str, Any]:
    return {"state_url": f"sqlite:///{tmp_path}/state.db",
            "checkpoint_root": str(tmp_path / "checkpoints"), "workdir": str(tmp_path / "run"),
            "limits": {"tick_interval_s": 0.2, "lease_s": 15, "sweep_interval_s": 2},
            "sites": [site]}


def sbatch(*args: str) -> str:
    done = subprocess.run(["sbatch", "--parsable", "--output=/dev/null", *args],
                          capture_output=True, text=True, check=True, timeout=30)
    return done.stdout.strip().split(";")[0]


def rates(client: Client, job_id: str) -> list[tuple[str | None, AttemptState, float]]:
    """(partition, state, price per core-hour actually charged) of each attempt."""
    ledger = {row.attempt_id: row for row in client.store.ledger(job_id)}
    out = []
    for a in client.store.attempts(job_id):
        row = ledger[a.id]
        out.append((a.offer_key, a.state, row.cost / row.core_hours if row.core_hours else 0.0))
    return out


def test_a_preempted_training_job_checkpoints_continues_and_ends_bit_identical(
    tmp_path: Path, slurm_cluster: dict[str, str]
) -> None:
    steps, every = 1500, 100
    grid: GridConfig = parse_config(grid_data(tmp_path, slurm_site({
        "scavenger": {"price": {"per_core_hour": SCAVENGER_RATE}, "preemptible": True,
                      "preemption_rate_per_hour": 0.05},
        "normal": {"price": {"per_core_hour": NORMAL_RATE}},
    })))
    reference = train(steps=steps, every=every, resumable=False)
    preemptor = None
    with Client(grid) as client:
        f = client.submit(train, steps, every, 0, 0.01, cpus=1, name="train",
                          checkpoint={"resumable": True, "interval_s": 5})
        from gridbridge import checkpoint

        store = checkpoint.open(client.store.job(f.job_id).checkpoint_url)
        wait_until(lambda: f.status() is JobState.RUNNING and (store.latest() or 0) >= 200,
                   90, "the job to run in scavenger and commit step 200")
        [first] = client.store.attempts(f.job_id)
        assert first.offer_key == "scavenger", "placement must pick the cheapest partition"
        # All of node3's CPUs in the high-priority partition: Slurm preempts the job.
        preemptor = sbatch("-p", "priority", "-c", "4", "--job-name=preemptor", "--wrap",
                           "sleep 600")
        try:
            result = f.result(timeout=240)
        finally:
            subprocess.run(["scancel", preemptor], check=False, timeout=30)
        assert all(result[k].tobytes() == v.tobytes() for k, v in reference.items()), (
            "the resumed run must end bit-identical to an uninterrupted one")
        attempts = client.store.attempts(f.job_id)
        assert attempts[0].state is AttemptState.PREEMPTED
        assert attempts[0].last_step is not None and attempts[0].last_step >= 200
        assert attempts[-1].state is AttemptState.SUCCEEDED
        assert "resumed from step" in f.logs()
        story = [(e.new, e.reason) for e in f.story() if e.new]
        assert (AttemptState.PREEMPTED.value, attempts[0].reason) in story
        assert attempts[0].reason.startswith("preempted"), attempts[0].reason
        for partition, state, rate in rates(client, f.job_id):
            want = SCAVENGER_RATE if partition == "scavenger" else NORMAL_RATE
            assert rate == pytest.approx(want, rel=1e-6), (partition, state, rate)


def test_a_job_longer_than_the_time_limit_goes_on_in_new_submissions(
    tmp_path: Path, slurm_cluster: dict[str, str]
) -> None:
    # The "short" partition's MaxTime is one minute; the job needs 65 s of work or more (at
    # least 10 ms a step), so no single submission can finish it.
    grid = parse_config(grid_data(tmp_path, slurm_site(
        {"short": {"price": {"per_core_hour": NORMAL_RATE}}}, signal_before_s=30)))
    total = 6_500  # 10 ms a step
    with Client(grid) as client:
        f = client.submit(jobs.counter, total, 500, cpus=1, walltime_s=600, name="long",
                          checkpoint={"resumable": True})
        assert f.result(timeout=420) == sum(s * 6 for s in range(total))
        attempts = client.store.attempts(f.job_id)
    assert len(attempts) >= 2
    for a in attempts[:-1]:
        assert a.state is AttemptState.PREEMPTED, a
        assert a.reason == "time limit reached", a
    assert attempts[-1].state is AttemptState.SUCCEEDED


def test_kill_minus_nine_between_sbatch_and_recording_the_id_adopts_the_job(
    tmp_path: Path, slurm_cluster: dict[str, str]
) -> None:
    # A wrapper sbatch runs the real one, then SIGKILLs the serve that called it before the
    # job id can be recorded (once: it removes its trigger file first).
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    trigger = tmp_path / "kill-after-sbatch"
    trigger.write_text("1")
    for name in ("squeue", "sacct", "scancel", "sinfo"):
        (bin_dir / name).symlink_to(f"/usr/bin/{name}")
    (bin_dir / "sbatch").write_text(
        "#!/bin/bash\n"
        "out=$(/usr/bin/sbatch \"$@\") || exit $?\n"
        f"if rm {trigger} 2>/dev/null; then kill -9 $PPID; sleep 1; fi\n"
        "echo \"$out\"\n")
    (bin_dir / "sbatch").chmod(0o755)
    ran = tmp_path / "ran.txt"
    config = tmp_path / "gridbridge.yaml"
    config.write_text(yaml.safe_dump(grid_data(tmp_path, slurm_site(
        {"normal": {}}, bin_dir=str(bin_dir)))))
    client = Client(config, start=False)
    code = "import sys, time; time.sleep(2); open(sys.argv[1], 'a').write('ran\\n')"
    f = client.submit_command([sys.executable, "-c", code, str(ran)], name="once")
    log = tmp_path / "serve.log"
    first = start_serve(config, log)
    assert first.wait(timeout=60) == -signal.SIGKILL, log.read_text()
    assert not trigger.exists(), "the wrapper ran sbatch"
    [attempt] = client.store.attempts(f.job_id)
    assert attempt.state is AttemptState.SUBMITTING and attempt.native_id is None

    second = start_serve(config, log)
    try:
        assert f.wait(120) is JobState.SUCCEEDED, log.read_text()
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)
    attempts = client.store.attempts(f.job_id)
    assert [a.id for a in attempts] == [attempt.id], "adopted, not placed again"
    assert attempts[0].native_id is not None
    assert ran.read_text() == "ran\n", "the job ran exactly once"
    # Slurm itself holds exactly one job for the attempt.
    comments = subprocess.run(["squeue", "--me", "-h", "-t", "all", "-O", "Comment:200"],
                              capture_output=True, text=True, check=True).stdout
    assert sum(line.strip().endswith(f":{attempt.id}") for line in comments.splitlines()) == 1
    time.sleep(0.1)
    assert os.path.exists(log)


@pytest.mark.parametrize("deadline_s", [None, 150.0], ids=["left-requeued", "moved"])
def test_a_job_slurm_requeues_is_left_there_or_moved_as_the_cost_model_decides(
    tmp_path: Path, slurm_cluster: dict[str, str], deadline_s: float | None
) -> None:
    # A job that ignores the warning signal is killed at the end of the grace time, and with
    # requeue: true Slurm queues it again under the same id. Staying is cheapest; with a
    # deadline the expected wait in scavenger's queue would miss, so it moves to normal.
    grid = parse_config(grid_data(tmp_path, slurm_site({
        "scavenger": {"price": {"per_core_hour": SCAVENGER_RATE}, "preemptible": True},
        "normal": {"price": {"per_core_hour": NORMAL_RATE}},
    }, requeue=True)))
    total = 4000
    options: dict[str, Any] = {"cpus": 1, "name": "stubborn", "walltime_s": 600,
                               "resources": {"expected_runtime_s": 60},
                               "checkpoint": {"resumable": True}}
    if deadline_s is not None:
        from datetime import UTC, datetime, timedelta

        options["constraints"] = {"deadline": datetime.now(UTC) + timedelta(seconds=deadline_s)}
    with Client(grid) as client:
        f = client.submit(jobs.stubborn_counter, total, 100, **options)
        from gridbridge import checkpoint

        store = checkpoint.open(client.store.job(f.job_id).checkpoint_url)
        wait_until(lambda: f.status() is JobState.RUNNING and (store.latest() or 0) >= 300,
                   90, "the job to run in scavenger and commit step 300")
        assert client.store.attempts(f.job_id)[0].offer_key == "scavenger"
        hold = "sleep 20" if deadline_s is None else "sleep 600"
        preemptor = sbatch("-p", "priority", "-c", "4", "--job-name=preemptor", "--wrap", hold)
        try:
            with contextlib.suppress(TimeoutError):
                f.wait(240)
        finally:
            subprocess.run(["scancel", preemptor], check=False, timeout=30)
        story = "\n".join(f"{e.kind} {e.new} {e.reason}" for e in client.store.events(f.job_id))
        assert f.result(timeout=1) == sum(s * 6 for s in range(total)), story
        attempts = client.store.attempts(f.job_id)
        requeued = [e.reason for e in client.store.events(f.job_id) if e.kind == "requeued"]
        logs = f.logs()
        ledger = client.store.ledger(f.job_id)
    assert requeued, "the story must say the site requeued the attempt"
    assert "requeued there by the site (1x)" in requeued[0]
    if deadline_s is None:
        assert "left requeued on cluster (scavenger)" in requeued[0], requeued
        assert [a.state for a in attempts] == [AttemptState.SUCCEEDED]
        assert "rerun 1: requeued by the site" in logs and "resumed from step" in logs
        # Billed for its two runs, not for the wait in the queue between them (at least the
        # cluster's 10 s cred_expire).
        [row] = ledger
        assert row.core_hours * 3600 < (row.end - row.start) - 5, row.__dict__
    else:
        assert "moved from the queue of cluster (scavenger)" in requeued[0], requeued
        assert "to cluster (normal)" in requeued[0], requeued
        assert [a.state for a in attempts] == [AttemptState.PREEMPTED, AttemptState.SUCCEEDED]
        assert attempts[1].offer_key == "normal"
