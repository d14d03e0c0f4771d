"""The in-job runtime on its own: it starts from a launch record in storage, leaves a
heartbeat and its log there while it runs, refuses a second launch and an unknown format."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gridbridge.adapter import SubmitRequest, write_launch
from gridbridge.client import Client
from gridbridge.config import GridConfig
from gridbridge.spec import JobSpec
from gridbridge.states import AttemptState, JobState
from gridbridge.wire import (
    ALREADY_RAN_EXIT_CODE,
    FORMAT,
    Result,
    launch_arg,
    launch_target,
    load_log,
    read_heartbeat,
    read_launch,
    read_result,
)


def request(tmp_path: Path, code: str, attempt_id: str = "jrt0000001.1") -> SubmitRequest:
    job_id = attempt_id.rsplit(".", 1)[0]
    return SubmitRequest(
        attempt_id=attempt_id, job_id=job_id, attempt=1, token=1,
        spec=JobSpec(name="rt", command=(sys.executable, "-c", code)),
        checkpoint_url=(tmp_path / "store" / job_id).as_uri(),
        attempt_url=(tmp_path / "store" / job_id / "attempts" / "1").as_uri(),
    )


def runtime(url: str, scratch: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "gridbridge.runtime", "--launch", url, "--scratch", str(scratch)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )


def test_runs_from_a_launch_record_in_storage_and_leaves_its_records_there(
    tmp_path: Path,
) -> None:
    req = request(tmp_path, "print('from the job', flush=True)")
    url = write_launch(req, heartbeat_s=0.2)
    assert read_launch(req.attempt_url).format == FORMAT
    proc = runtime(url, tmp_path / "scratch")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert b"from the job" in out, "the output still reaches the site's own log"
    result = read_result(req.attempt_url)
    assert result is not None and result.reason == "succeeded"
    assert "from the job" in (load_log(req.attempt_url) or "")
    beat = read_heartbeat(req.attempt_url)
    assert beat is not None and beat.attempt_id == req.attempt_id and beat.pid == proc.pid
    storage = tmp_path / "store" / req.job_id / "attempts" / "1"
    assert {p.name for p in storage.iterdir()} >= {
        "launch.json", "claim.json", "heartbeat.json", "output.log", "result.json"}


def test_a_second_launch_of_one_attempt_exits_with_its_own_code(tmp_path: Path) -> None:
    req = request(tmp_path, "print('ran')")
    url = write_launch(req)
    first = runtime(url, tmp_path / "host-a")
    first.communicate(timeout=60)
    assert first.returncode == 0
    before = read_result(req.attempt_url)
    again = runtime(url, tmp_path / "host-b")  # another host: only storage can tell
    out, _ = again.communicate(timeout=60)
    assert again.returncode == ALREADY_RAN_EXIT_CODE, out
    assert b"already started" in out
    assert read_result(req.attempt_url) == before, "the duplicate touched nothing"


def test_an_incompatible_launch_format_is_refused_in_the_result_record(tmp_path: Path) -> None:
    req = request(tmp_path, "print('must not run')")
    url = launch_target(write_launch(req))[0]
    path = Path(url.removeprefix("file://"))
    record = json.loads(path.read_text())
    newer = json.dumps({**record, "format": "2.0", "a_new_field": 1}).encode()
    path.write_bytes(newer)  # as a newer control plane writes it, with its digest
    proc = runtime(launch_arg(url, newer), tmp_path / "scratch")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert b"must not run" not in out
    result = read_result(req.attempt_url)
    assert result is not None and result.reason == "failed"
    assert "format 2.0" in (result.error or "") and "same major version" in (result.error or "")


def test_records_with_fields_from_a_newer_minor_version_are_read(tmp_path: Path) -> None:
    now = time.time()
    body = Result(job_id="j", attempt=1, attempt_id="j.1", exit_code=0, reason="succeeded",
                  wall_s=1, cpu_s=1, started_at=now, ended_at=now, host="h").model_dump()
    (tmp_path / "result.json").write_text(json.dumps({**body, "format": "1.7", "gpu_s": 3}))
    result = read_result(tmp_path.as_uri())
    assert result is not None and result.exit_code == 0


def test_a_killed_attempts_log_is_in_storage(grid: GridConfig) -> None:
    sites = tuple(s.model_copy(update={"runtime": s.runtime.model_copy(
        update={"heartbeat_s": 0.2})}) for s in grid.sites)
    code = ("import time\nprint('before the kill', flush=True)\n"
            "open('ready', 'w').close()\ntime.sleep(60)")
    with Client(grid.model_copy(update={"sites": sites})) as client:
        # in its scratch folder's work/, not where the test runs (its submission folder)
        f = client.submit_command([sys.executable, "-c", code], max_attempts=1,
                                  submit_dir=None)
        deadline = time.monotonic() + 60
        while True:
            attempts = client.store.attempts(f.job_id)
            if attempts and attempts[0].native_id:
                scratch = Path(grid.workdir) / "local" / attempts[0].site / attempts[0].id
                if (scratch / "work" / "ready").exists():  # the job's working folder
                    break
            assert time.monotonic() < deadline
            time.sleep(0.05)
        while "before the kill" not in (load_log(attempts[0].attempt_url) or ""):
            assert time.monotonic() < deadline, "no heartbeat uploaded the log"
            time.sleep(0.05)
        pid = int((scratch / "pid").read_text().split()[0])
        os.killpg(pid, signal.SIGKILL)  # the whole attempt dies at once: no exit handler runs
        assert f.wait(60) is JobState.FAILED
        [attempt] = client.store.attempts(f.job_id)
        assert attempt.state is AttemptState.LOST
        assert "before the kill" in f.logs()
        assert "before the kill" in (load_log(attempt.attempt_url) or "")


@pytest.mark.parametrize("prologue", [("export GB_FROM_PROLOGUE='it'\"'\"'s set'",)])
def test_the_sites_prologue_runs_before_the_runtime(grid: GridConfig, prologue: tuple[str, ...],
                                                    tmp_path: Path) -> None:
    sites = tuple(s.model_copy(update={"runtime": s.runtime.model_copy(
        update={"prologue": prologue}), "preemptible": False, "preemption_rate_per_hour": 0})
        for s in grid.sites)
    out = tmp_path / "env.txt"
    code = "import os, sys; open(sys.argv[1], 'w').write(os.environ['GB_FROM_PROLOGUE'])"
    with Client(grid.model_copy(update={"sites": sites})) as client:
        f = client.submit_command([sys.executable, "-c", code, str(out)])
        assert f.wait(60) is JobState.SUCCEEDED
    assert out.read_text() == "it's set"
