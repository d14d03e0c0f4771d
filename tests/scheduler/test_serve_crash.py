"""``kill -9`` of ``gridbridge serve`` in the middle of 20 jobs, then a restart: every job
ends exactly once — none lost, none run twice to completion."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from gridbridge.client import Client
from gridbridge.states import AttemptState, JobState
from tests.support.serving import start_serve, two_site_config, wait_until

pytestmark = pytest.mark.slow

JOB = (
    "import sys, time\n"
    "time.sleep(float(sys.argv[2]))\n"
    "with open(sys.argv[1], 'a') as f:\n"
    "    f.write(sys.argv[3] + '\\n')\n"
)


def test_kill_minus_nine_of_serve_then_restart_ends_every_job_exactly_once(tmp_path: Path) -> None:
    config = two_site_config(tmp_path)
    done_file = tmp_path / "done.txt"
    client = Client(config, start=False)
    futures = [
        client.submit_command(
            [sys.executable, "-c", JOB, str(done_file), str(0.3 + (i % 4) * 0.2), f"job{i}"],
            name=f"job{i}",
        )
        for i in range(20)
    ]
    serve_log = tmp_path / "serve.log"
    first = start_serve(config, serve_log)

    def finished() -> int:
        return sum(1 for f in futures if f.status() is JobState.SUCCEEDED)

    wait_until(lambda: finished() >= 4, 60)
    running = sum(1 for f in futures if f.status() in {JobState.SCHEDULED, JobState.RUNNING})
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    assert finished() < 20, "the crash must land in the middle of the run"
    assert running > 0, "some attempts must be in flight when serve dies"

    second = start_serve(config, serve_log)
    try:
        wait_until(lambda: all(f.done() for f in futures), 120)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)

    lines = done_file.read_text().split()
    assert sorted(lines) == sorted(f"job{i}" for i in range(20)), "each job completes once"
    for f in futures:
        assert f.status() is JobState.SUCCEEDED
        attempts = client.store.attempts(f.job_id)
        assert [a.state for a in attempts].count(AttemptState.SUCCEEDED) == 1
        assert len(client.store.ledger(f.job_id)) == len(attempts)
    assert "taking over the lease" in serve_log.read_text()
    client.close()
