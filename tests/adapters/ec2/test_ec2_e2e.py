"""The whole loop on spot capacity: a training job placed on EC2 spot (the cheapest site),
interrupted through the instance metadata service or taken without notice, re-placed and
resumed bit-identical from its checkpoint on the S3 object store; launch failures that end in
a retry elsewhere or a FAILED job with the reason. EC2 is the emulation of
``gridbridge.testing.ec2`` (moto over HTTP, instances booting as local processes); the object
store is the real SeaweedFS."""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import cloudpickle
import fsspec
import pytest

from gridbridge import Client, checkpoint
from gridbridge.config import GridConfig, parse_config
from gridbridge.demo import train
from gridbridge.states import AttemptState, JobState
from tests.support import jobs
from tests.support.ec2site import price_at, site_options
from tests.support.serving import wait_until

cloudpickle.register_pickle_by_value(jobs)

pytestmark = [pytest.mark.ec2, pytest.mark.s3, pytest.mark.slow]

ON_DEMAND_RATE = 0.25  # per core-hour on the reliable site: dearer than any spot offer here


def grid(tmp_path: Path, ec2: Any, s3_server: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
         *, limits: dict[str, Any] | None = None, **spot: Any) -> GridConfig:
    """A spot site on the EC2 emulation and a reliable local site, checkpoints in the bucket.
    Storage credentials reach the instances through their environment, as an instance
    profile would give them, and the local site's runtime because it passes them on
    (``runtime.env_names``: a local job inherits nothing else of this process's)."""
    credentials = []
    for key, value in s3_server["storage_options"].items():
        monkeypatch.setenv(f"FSSPEC_S3_{key.upper()}", value)
        credentials.append(f"FSSPEC_S3_{key.upper()}")
    monkeypatch.setitem(fsspec.config.conf, "s3", dict(s3_server["storage_options"]))
    sites = [
        {"name": "spot", "adapter": "ec2spot", "tier": "cloud", "capacity": {"cpus": 64},
         "preemptible": True, "restart_overhead_s": 5,
         "runtime": {"heartbeat_s": 1, "shared_filesystem": False,
                     "python": __import__("sys").executable},
         "options": site_options(ec2, **spot)},
        {"name": "ondemand", "adapter": "local", "tier": "cloud", "capacity": {"cpus": 2},
         "price": {"per_core_hour": ON_DEMAND_RATE},
         "runtime": {"heartbeat_s": 1, "shared_filesystem": False,
                     "env_names": credentials}},
    ]
    return parse_config({
        "state_url": f"sqlite:///{tmp_path}/state.db",
        "checkpoint_root": f"s3://{s3_server['bucket']}/ec2-{uuid.uuid4().hex[:10]}",
        "workdir": str(tmp_path / "run"),
        "limits": {"tick_interval_s": 0.2, "lease_s": 15, "sweep_interval_s": 2,
                   "reject_backoff_s": 30, **(limits or {})},
        "sites": sites,
    })


def _commit_time(store: Any, step: int) -> float:
    return datetime.fromisoformat(store.commit_record(step)["time"]).timestamp()


def test_an_interrupted_training_job_checkpoints_in_time_moves_and_ends_bit_identical(
    tmp_path: Path, ec2: Any, s3_server: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    steps, every = 1500, 100
    reference = train(steps=steps, every=every, resumable=False)
    config = grid(tmp_path, ec2, s3_server, monkeypatch)
    with Client(config) as client:
        f = client.submit(train, steps, every, 0, 0.01, cpus=1, name="train",
                          checkpoint={"resumable": True, "interval_s": 5, "keep_last": 100})
        store = checkpoint.open(client.store.job(f.job_id).checkpoint_url)
        wait_until(lambda: f.status() is JobState.RUNNING and (store.latest() or 0) >= 200,
                   120, "the job to run on spot and commit step 200")
        [first] = client.store.attempts(f.job_id)
        assert first.site == "spot", "placement must pick the cheapest site"
        assert first.offer_key and first.native_id
        before = store.latest() or 0
        notice_s = 10.0
        noticed = time.time()
        ec2.interrupt(first.native_id, notice_s=notice_s)
        result = f.result(timeout=300)
        attempts = client.store.attempts(f.job_id)
        ledger = {row.attempt_id: row for row in client.store.ledger(f.job_id)}
        logs = f.logs()
    assert all(result[k].tobytes() == v.tobytes() for k, v in reference.items()), (
        "the resumed run must end bit-identical to an uninterrupted one")
    first, *rest = attempts
    assert first.state is AttemptState.PREEMPTED, first
    assert first.reason.startswith("spot interruption notice"), first.reason
    # it checkpointed on the notice, inside the two minutes (here shortened to ten seconds)
    assert first.last_step is not None and first.last_step > before
    assert noticed < _commit_time(store, first.last_step) < noticed + notice_s
    assert rest[-1].state is AttemptState.SUCCEEDED
    assert f"resumed from step {first.last_step}" in logs
    # re-placed where placement chose; not on the offer whose capacity was just reclaimed
    assert (rest[0].site, rest[0].offer_key) != (first.site, first.offer_key)
    # billed from the real spot price of its type and zone, on-demand beside it
    itype, zone = first.offer_key.split("/")
    row = ledger[first.id]
    hours = (row.end - row.start) / 3600
    assert row.end - row.start >= 60
    assert row.cost == pytest.approx(price_at(ec2.prices[(itype, zone)], row.start) * hours,
                                     rel=1e-6)
    on_demand = {"c5.large": 0.085, "c5.xlarge": 0.17, "m5.large": 0.096}[itype]
    assert row.on_demand_cost == pytest.approx(on_demand * hours, rel=1e-6)
    assert row.cost < row.on_demand_cost


def test_an_instance_taken_without_notice_loses_at_most_one_interval(
    tmp_path: Path, ec2: Any, s3_server: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    total, every = 3000, 100  # a step is 10 ms: a checkpoint every second or so
    config = grid(tmp_path, ec2, s3_server, monkeypatch)
    with Client(config) as client:
        f = client.submit(jobs.counter, total, every, cpus=1, name="count",
                          checkpoint={"resumable": True, "keep_last": 100})
        store = checkpoint.open(client.store.job(f.job_id).checkpoint_url)
        wait_until(lambda: (store.latest() or 0) >= 500, 120, "five checkpoints on spot")
        [first] = client.store.attempts(f.job_id)
        assert first.site == "spot" and first.native_id
        ec2.kill(first.native_id)
        killed = time.time()
        committed = store.latest()
        assert f.result(timeout=300) == sum(s * 6 for s in range(total))
        attempts = client.store.attempts(f.job_id)
        logs = f.logs()
    assert committed is not None
    assert attempts[0].state in {AttemptState.PREEMPTED, AttemptState.LOST}, attempts[0]
    assert attempts[0].last_step == committed, "every committed step survives"
    assert f"resumed from step {committed}" in logs
    lost_s = killed - _commit_time(store, committed)
    interval_s = every * 0.01
    assert lost_s <= interval_s + 1.0, f"{lost_s:.2f}s of work lost, interval {interval_s}s"
    assert attempts[-1].state is AttemptState.SUCCEEDED


@pytest.mark.parametrize("failure", ["capacity", "bad-ami", "throttling"])
def test_a_failed_launch_is_retried_elsewhere(
    tmp_path: Path, ec2: Any, s3_server: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
    failure: str,
) -> None:
    spot: dict[str, Any] = {}
    expect = {"capacity": "InsufficientInstanceCapacity", "bad-ami": "InvalidAMIID.NotFound",
              "throttling": "RequestLimitExceeded"}[failure]
    if failure == "capacity":
        ec2.launch_faults.extend([("InsufficientInstanceCapacity",
                                   "There is no Spot capacity available.")] * 50)
    elif failure == "bad-ami":
        spot["image_id"] = "ami-0123456789abcdef0"
    else:
        spot["api_attempts"] = 2
        ec2.launch_faults.extend([("RequestLimitExceeded", "Request limit exceeded.")] * 50)
    config = grid(tmp_path, ec2, s3_server, monkeypatch, **spot)
    with Client(config) as client:
        f = client.submit(jobs.add, 2, 3, cpus=1, name="add")
        assert f.result(timeout=120) == 5
        attempts = client.store.attempts(f.job_id)
        story = [e.reason for e in f.story()]
    assert attempts[0].site == "spot" and attempts[0].native_state == "rejected"
    assert expect in attempts[0].reason, attempts[0].reason
    assert any("rejected by spot: " in r and expect in r for r in story), story
    assert attempts[-1].site == "ondemand" and attempts[-1].state is AttemptState.SUCCEEDED
    assert ec2.live_instances() == []


def test_a_job_only_spot_could_run_fails_with_the_reason_instead_of_waiting_for_ever(
    tmp_path: Path, ec2: Any, s3_server: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = grid(tmp_path, ec2, s3_server, monkeypatch, unavailable_s=0,
                  limits={"reject_backoff_s": 0.5, "max_rejections": 3})
    ec2.launch_faults.extend([("InsufficientInstanceCapacity",
                               "There is no Spot capacity available.")] * 50)
    with Client(config) as client:
        f = client.submit(jobs.add, 1, 1, name="add", constraints={"allowed_sites": ["spot"]})
        state = f.wait(120)
        job = client.store.job(f.job_id)
        attempts = client.store.attempts(f.job_id)
    assert state is JobState.FAILED
    assert len(attempts) == 3 and all(a.native_state == "rejected" for a in attempts)
    assert job.error and "3 submissions rejected in a row" in job.error
    assert "InsufficientInstanceCapacity" in job.error
    assert ec2.live_instances() == []


def test_the_sweep_terminates_an_instance_no_attempt_owns(
    tmp_path: Path, ec2: Any, s3_server: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An instance left by a control plane that crashed before it recorded the attempt (here:
    launched by the site's adapter for an attempt the store never had) is found by its tags
    and terminated, with an orphan event."""
    from gridbridge.adapter import SubmitRequest
    from gridbridge.adapters.ec2spot import Ec2SpotAdapter
    from gridbridge.spec import JobSpec

    config = grid(tmp_path, ec2, s3_server, monkeypatch)
    adapter = Ec2SpotAdapter(config.sites[0], config.workdir)  # the same federation tag
    root = f"{config.checkpoint_root}/jorphan"
    stray = adapter.submit(SubmitRequest(
        attempt_id="jorphan.1", job_id="jorphan", attempt=1, token=1,
        spec=JobSpec(name="stray", command=(__import__("sys").executable, "-c",
                                            "import time; time.sleep(300)")),
        checkpoint_url=root, attempt_url=f"{root}/attempts/1"))
    wait_until(lambda: stray in ec2.running(), 30, "the stray instance to boot")
    with Client(config):
        wait_until(lambda: stray not in ec2.live_instances(), 60,
                   "the sweep to terminate the stray instance")
    described = ec2.client().describe_instances(InstanceIds=[stray])["Reservations"][0][
        "Instances"][0]
    assert described["State"]["Name"] in {"shutting-down", "terminated"}
    assert {t["Key"]: t["Value"] for t in described["Tags"]}.get("gridbridge:cancelled") == "1"
