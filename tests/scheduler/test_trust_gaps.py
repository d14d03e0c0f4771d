"""The last holes of the trust work: a storage hiccup on the EC2 and the unconfirmed-submit
paths leaves the attempt unconcluded (judged again, with backoff); an attempt never seen
running is billed from the last poll that saw it waiting; lost attempts are fenced side by side;
a remote run folder is its owner's alone (real local processes and files where they can run)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gridbridge import Client, GridConfig
from gridbridge.adapter import AttemptStatus, Pricing
from gridbridge.adapters._host import HostOptions, SiteHost
from gridbridge.adapters._run import Completed, LocalRunner
from gridbridge.config import Capacity, SiteConfig
from gridbridge.scheduler import endings
from gridbridge.scheduler.endings import Verdict, ledger_row
from gridbridge.scheduler.reconciler import _ending
from gridbridge.scheduler.reconciler._polling import Polling
from gridbridge.scheduler.reconciler._submitting import _Submitted
from gridbridge.scheduler.reconciler._tick import TickReport
from gridbridge.scheduler.records import Attempt, Job
from gridbridge.spec import JobSpec, Resources
from gridbridge.states import AttemptState, JobState
from gridbridge.wire import Result, read_result

SLOW_DOWN = OSError("503 Slow Down")


def _flaky(real: Callable[[str], Result | None], failures: int) -> Callable[[str], Result | None]:
    calls: list[str] = []

    def read(url: str) -> Result | None:
        calls.append(url)
        if len(calls) <= failures:
            raise SLOW_DOWN
        return real(url)
    return read


# 3. storage errors are not job errors ---------------------------------------------------------


def test_ec2_one_503_on_the_result_record_is_no_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The instance ended after its runtime wrote a succeeded result; one read of it fails:
    the adapter judges nothing (LOST: the record decides), and the control plane's own read
    of the record then finds it SUCCEEDED."""
    from gridbridge.adapters import ec2spot
    from gridbridge.adapters._ec2_options import TAG_URL
    from gridbridge.adapters.ec2spot import Ec2SpotAdapter
    from gridbridge.wire import FORMAT, Record, put_bytes

    url = (tmp_path / "attempt").as_uri()
    put_bytes(f"{url}/{Record.RESULT}", (
        f'{{"format": "{FORMAT}", "job_id": "j1", "attempt": 1, "attempt_id": "j1.1", '
        '"exit_code": 0, "reason": "succeeded", "wall_s": 1, "cpu_s": 1, "started_at": 1, '
        '"ended_at": 2, "host": "h"}').encode())
    site = SiteConfig(name="e", adapter="ec2spot", capacity=Capacity(cpus=4), options={
        "image_id": "ami-1", "instance_types": ["m5.large"]})
    adapter = Ec2SpotAdapter(site, tmp_path, client=object())
    monkeypatch.setattr(ec2spot, "read_result", _flaky(read_result, 1))
    inst: dict[str, Any] = {
        "InstanceId": "i-0123456789abcdef0", "InstanceType": "m5.large",
        "State": {"Name": "terminated"}, "Placement": {"AvailabilityZone": "us-east-1a"},
        "StateReason": {"Code": "Client.InstanceInitiatedShutdown"},
        "Tags": [{"Key": TAG_URL, "Value": url}], "LaunchTime": datetime.now(UTC)}
    first = adapter._status(inst)
    assert first.state is not AttemptState.FAILED, first
    assert first.state is AttemptState.LOST and "could not be read yet" in first.reason
    verdict = endings.judge(_attempt(url), first, (tmp_path / "ckpt").as_uri())
    assert verdict.status.state is AttemptState.SUCCEEDED
    assert verdict.status.runs == first.runs, "what the site ran is kept"
    assert adapter._status(inst).state is AttemptState.SUCCEEDED  # the next poll reads it


def test_an_unconfirmed_submission_that_ran_survives_one_503(
    grid: GridConfig, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It ran although its submission was never confirmed, and succeeded; one read of its
    result record fails: the attempt stays unconcluded, and is judged SUCCEEDED later."""
    monkeypatch.setattr(_ending, "_FIRST_WAIT_S", 0.0)
    with Client(grid, start=False) as client:
        f = client.submit_command([sys.executable, "-c", "pass"])
        client.reconciler.tick()
        [attempt] = client.store.attempts(f.job_id)
        deadline = time.monotonic() + 60
        while read_result(attempt.attempt_url) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        monkeypatch.setattr(endings, "read_result", _flaky(endings.read_result, 1))
        submitting = client.reconciler.submitting
        submitting._apply(attempt.site, _Submitted(attempt, "ran"), TickReport())
        assert not client.store.attempts(f.job_id)[0].state.terminal, "judged on a 503"
        submitting._apply(attempt.site, _Submitted(attempt, "ran"), TickReport())
        assert client.store.attempts(f.job_id)[0].state is AttemptState.SUCCEEDED
        assert client.store.job(f.job_id).state is JobState.SUCCEEDED


# 4. billing an attempt never seen running -----------------------------------------------------

SITE = SiteConfig(name="s", adapter="local", capacity=Capacity(cpus=8),
                  price=Pricing(per_core_hour=1.0))


def _attempt(url: str = "file:///nowhere", started_at: float | None = 0.0) -> Attempt:
    return Attempt(id="j1.1", job_id="j1", number=1, token=1, site="s",
                   state=AttemptState.RUNNING, native_id="n", native_state="",
                   created_at=10.0, started_at=started_at, ended_at=None, exit_code=None,
                   reason="", last_step=None, attempt_url=url, submit_tries=1,
                   offer_key=None, price_json=None)


def _job() -> Job:
    spec = JobSpec(name="j", command=("true",), resources=Resources(cpus=4))
    return Job(id="j1", name="j", spec=spec, state=JobState.RUNNING, priority=0,
               created_at=0.0, updated_at=0.0, attempts=1, cancel_requested=False,
               checkpoint_url="file:///nowhere", error=None)


def test_an_attempt_never_seen_running_is_billed_from_the_last_poll_that_saw_it_wait() -> None:
    """It waited an hour in the queue (the polls saw it queued), ran and ended between two
    polls: charged from the last poll that saw it waiting, not from its submission."""
    done = AttemptStatus(state=AttemptState.SUCCEEDED, native_state="done")
    row = ledger_row(_job(), _attempt(started_at=None), SITE,
                     Verdict(done, None, waiting_at=3610.0), 3670.0)
    assert (row.start, row.end) == (3610.0, 3670.0)
    assert row.cost == pytest.approx(4 * 60 / 3600)
    early = ledger_row(_job(), _attempt(started_at=None), SITE,
                       Verdict(done, None, waiting_at=5.0), 3670.0)  # before its submission
    assert early.start == 10.0


def test_the_poll_that_saw_it_waiting_reaches_the_ledger(tmp_path: Path) -> None:
    """Polling keeps the last poll that saw each attempt waiting and hands it to the verdict."""
    seen: list[dict[str, Any]] = []

    class _Ending:
        def judge(self, attempt: Attempt, status: AttemptStatus, now: float,
                  **polls: Any) -> None:
            seen.append(polls)

        def forget_unread(self, live: set[str]) -> None:
            pass

    statuses = iter([AttemptStatus(state=AttemptState.SUBMITTED, native_state="PD",
                                   queued=True),
                     AttemptStatus(state=AttemptState.SUCCEEDED, native_state="CD")])
    clock = iter([100.0, 160.0])
    world = SimpleNamespace(adapters={"s": SimpleNamespace(poll=lambda ids: {
        "n": next(statuses)})}, clock=lambda: next(clock))
    polling = Polling(world, _Ending())  # type: ignore[arg-type]
    attempt = _attempt(started_at=None)
    attempt = Attempt(**{**attempt.__dict__, "state": AttemptState.SUBMITTED})
    polling._poll_site("s", [attempt])
    polling._poll_site("s", [attempt])
    assert seen == [{"alive_at": None, "waiting_at": 100.0}]


# 5. lost attempts fenced side by side ---------------------------------------------------------


def test_many_lost_attempts_take_about_one_fence_time(tmp_path: Path) -> None:
    fence_s, n = 0.5, 8
    raised: list[int] = []

    def slow_fence(job: Any, token: int) -> int:
        time.sleep(fence_s)  # storage that answers slowly, within fence_timeout_s
        raised.append(token)
        return token

    cancelled: list[list[str]] = []
    world = SimpleNamespace(
        fences=SimpleNamespace(raise_now=slow_fence),
        store=SimpleNamespace(job=lambda job_id: job_id),
        lease=SimpleNamespace(fence=lambda: None),
        adapters={"s": SimpleNamespace(cancel=cancelled.append)})
    polling = Polling(world, None)  # type: ignore[arg-type]
    lost = [Attempt(**{**_attempt().__dict__, "id": f"j{i}.1", "job_id": f"j{i}",
                       "native_id": f"n{i}"}) for i in range(n)]
    started = time.monotonic()
    polling._stop_lost("s", lost)
    took = time.monotonic() - started
    assert sorted(raised) == [2] * n and cancelled == [[f"n{i}" for i in range(n)]]
    assert took < 3 * fence_s, f"{n} fences took {took:.2f}s: one after another"


# 6. remote run folders are private ------------------------------------------------------------


class _Recording(LocalRunner):
    """This host's runner, keeping each argv it ran."""

    def __init__(self) -> None:
        super().__init__()
        self.argvs: list[list[str]] = []

    def run(self, argv: Any, **kwargs: Any) -> Completed:
        self.argvs.append(list(argv))
        return super().run(argv, **kwargs)


def test_a_run_folder_is_made_mode_0700_whatever_the_umask(tmp_path: Path) -> None:
    runner = _Recording()
    folder = tmp_path / "shared" / "run"
    host = SiteHost.for_site(HostOptions(remote_dir=str(folder)), tmp_path, kind="slurm",
                             site="s", runner=runner)
    old = os.umask(0o022)
    try:
        host.ensure_dir(lambda real: True, "a usable folder")
    finally:
        os.umask(old)
    assert runner.argvs[0] == ["mkdir", "-p", "-m", "700", "--", str(folder)]
    assert folder.stat().st_mode & 0o777 == 0o700
