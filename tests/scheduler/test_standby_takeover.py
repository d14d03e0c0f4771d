"""Two ``gridbridge serve`` on one PostgreSQL: one active, one standing by on the lease.
``kill -9`` of the active one; the standby takes over within ``lease_s`` + one tick, and every
job runs to completion exactly once (each run appends a line to a file: the lines are counted).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from gridbridge.client import Client
from gridbridge.scheduler.reconciler._lease import LEASE
from gridbridge.states import AttemptState, JobState
from tests.support.postgres import PostgresServer
from tests.support.serving import kill_attempt_groups, start_serve, two_site_config, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

LEASE_S, TICK_S, JOBS = 4.0, 0.1, 16
JOB = (
    "import sys, time\n"
    "time.sleep(float(sys.argv[2]))\n"
    "with open(sys.argv[1], 'a') as f:\n"
    "    f.write(sys.argv[3] + '\\n')\n"
)


def _holder_pid(client: Client) -> int | None:
    held = client.store.lease_holder(LEASE)
    return int(held[0].split(":")[1]) if held else None


def _up(log: Path) -> bool:
    return b"gridbridge serve:" in log.read_bytes()


def test_kill_minus_nine_of_the_active_serve_hands_over_to_the_standby(
        tmp_path: Path, postgres_server: PostgresServer) -> None:
    config = two_site_config(tmp_path, lease_s=LEASE_S)
    with postgres_server.fresh_database() as url:
        raw = yaml.safe_load(config.read_text())
        raw["state_url"] = url
        raw["limits"]["tick_interval_s"] = TICK_S
        config.write_text(yaml.safe_dump(raw))
        config.chmod(0o600)
        done = tmp_path / "done.txt"
        client = Client(config, start=False)
        serves: list[subprocess.Popen[bytes]] = []
        try:
            futures = [client.submit_command(
                [sys.executable, "-c", JOB, str(done), str(0.4 + (i % 4) * 0.2), f"job{i}"],
                name=f"job{i}") for i in range(JOBS)]
            for n in range(2):
                serves.append(start_serve(config, tmp_path / f"serve-{n}.log"))
                wait_until(lambda n=n: _up(tmp_path / f"serve-{n}.log"), 60, f"serve {n}")
            wait_until(lambda: _holder_pid(client) in {p.pid for p in serves}, 30, "a holder")
            active = next(p for p in serves if p.pid == _holder_pid(client))
            standby = next(p for p in serves if p is not active)
            wait_until(lambda: any(f.status() is JobState.SUCCEEDED for f in futures), 60,
                       "a first job to finish")
            in_flight = sum(f.status() in {JobState.SCHEDULED, JobState.RUNNING}
                            for f in futures)
            assert standby.poll() is None and _holder_pid(client) == active.pid
            os.kill(active.pid, signal.SIGKILL)
            killed_at = time.monotonic()
            wait_until(lambda: _holder_pid(client) == standby.pid, LEASE_S + TICK_S + 5,
                       "the standby to hold the lease")
            took = time.monotonic() - killed_at
            print(f"standby took over {took:.2f}s after kill -9 ({in_flight} jobs in flight)")
            assert took <= LEASE_S + TICK_S + 0.5, f"took {took:.2f}s"
            assert in_flight > 0, "the kill must land with jobs in flight"
            wait_until(lambda: all(f.done() for f in futures), 120, "every job to end")
            lines = Counter(done.read_text().split())
            assert lines == Counter(f"job{i}" for i in range(JOBS)), lines
            for f in futures:
                attempts = client.store.attempts(f.job_id)
                assert f.status() is JobState.SUCCEEDED
                assert [a.state for a in attempts].count(AttemptState.SUCCEEDED) == 1
                assert len(client.store.ledger(f.job_id)) == len(attempts)
        finally:
            for p in serves:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM if p.poll() is None else 0)
            for p in serves:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=30)
            for site in ("a", "b"):
                kill_attempt_groups(Path(client.config.workdir) / "local" / site)
            client.close()
