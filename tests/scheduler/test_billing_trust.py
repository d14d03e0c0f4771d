"""The books trust only what the control plane saw: a job that forges the times in its own
records is billed for the run the polls saw, in the month it ran (real local processes on the
embedded default, and the ledger's rule on its own)."""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gridbridge import Client
from gridbridge.adapter import AttemptStatus, Pricing
from gridbridge.config import Capacity, GridConfig, SiteConfig
from gridbridge.scheduler.endings import Verdict, ledger_row
from gridbridge.scheduler.records import Attempt, Job
from gridbridge.spec import JobSpec, Resources
from gridbridge.states import AttemptState, JobState

RUN_S = 2.0
FORGE = (
    # Work, then write a result record claiming the attempt ran for no time at all, a day
    # after the epoch, and kill the runtime before it writes the true one.
    "import json, os, signal, time\n"
    "from gridbridge.wire import FORMAT, Record, put_bytes\n"
    f"time.sleep({RUN_S})\n"
    "env = os.environ\n"
    "job, n = env['GRIDBRIDGE_JOB_ID'], int(env['GRIDBRIDGE_ATTEMPT'])\n"
    "forged = {'format': FORMAT, 'job_id': job, 'attempt': n, 'attempt_id': f'{job}.{n}',\n"
    "          'exit_code': 0, 'reason': 'succeeded', 'wall_s': 0.0, 'cpu_s': 0.0,\n"
    "          'started_at': 86400.0, 'ended_at': 86400.0, 'host': 'forged'}\n"
    "put_bytes(f\"{env['GRIDBRIDGE_ATTEMPT_URL']}/{Record.RESULT}\", json.dumps(forged).encode())\n"
    "os.kill(os.getppid(), signal.SIGKILL)\n"
)


def _month_report(grid: GridConfig) -> list[dict[str, str]]:
    """``gridbridge report costs --by job`` for this month, as the console script prints it."""
    env = dict(os.environ, GRIDBRIDGE_HOME=str(Path(grid.workdir).parent))
    env.pop("GRIDBRIDGE_CONFIG", None)
    out = subprocess.run(
        [sys.executable, "-m", "gridbridge.cli", "report", "costs", "--by", "job",
         "--format", "csv", "--store", grid.state_url],
        env=env, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    return list(csv.DictReader(io.StringIO(out.stdout)))


def test_a_job_that_forges_its_result_times_is_charged_its_observed_run(
    grid: GridConfig,
) -> None:
    submitted = time.time()
    with Client(grid) as client:
        f = client.submit_command([sys.executable, "-c", FORGE], cpus=2, max_attempts=1)
        assert f.wait(60).terminal
        [attempt] = client.store.attempts(f.job_id)
        [row] = client.store.ledger(f.job_id)
    assert attempt.started_at is not None, "the polls saw it run"
    assert submitted <= row.start <= row.end <= time.time()
    # Observed: from the first poll that saw it running to the poll that saw it gone, which
    # holds its two seconds of sleep (less the start of its interpreter, at most).
    assert row.core_hours >= 2 * (RUN_S - 0.5) / 3600, row.core_hours
    assert row.cost > 0
    month = datetime.now(UTC).strftime("%Y-%m")
    assert datetime.fromtimestamp(row.end, UTC).strftime("%Y-%m") == month
    [listed] = [r for r in _month_report(grid) if r["job_id"] == f.job_id]
    assert float(listed["cost"]) > 0, listed


# The rule itself, on made-up rows: what the control plane saw bounds what a job's records say.

SPEC = JobSpec(name="j", command=("true",), resources=Resources(cpus=4))
JOB = Job(id="j1", name="j", spec=SPEC, state=JobState.RUNNING, priority=0, created_at=0.0,
          updated_at=0.0, attempts=1, cancel_requested=False, checkpoint_url="memory://c/j1",
          error=None)
SITE = SiteConfig(name="cloud", adapter="local", capacity=Capacity(cpus=64),
                  price=Pricing(per_core_hour=1.0))


def _attempt(started_at: float | None) -> Attempt:
    return Attempt(id="j1.1", job_id="j1", number=1, token=1, site="cloud",
                   state=AttemptState.RUNNING, native_id="n", native_state="", created_at=10.0,
                   started_at=started_at, ended_at=None, exit_code=None, reason="",
                   last_step=None, attempt_url="memory://a", submit_tries=1, offer_key=None,
                   price_json=None)


def _lost(last_seen: float | None, alive_at: float | None) -> Verdict:
    return Verdict(AttemptStatus(state=AttemptState.LOST, native_state="gone"), None,
                   last_seen=last_seen, alive_at=alive_at)


def test_a_forged_heartbeat_cannot_end_a_lost_attempt_before_a_poll_saw_it_running() -> None:
    row = ledger_row(JOB, _attempt(100.0), SITE, _lost(last_seen=5.0, alive_at=3700.0), 7300.0)
    assert (row.start, row.end) == (100.0, 3700.0)
    assert row.cost == pytest.approx(4.0)  # one hour of four cores at $1


def test_a_heartbeat_after_the_poll_that_saw_the_end_counts_until_that_poll() -> None:
    row = ledger_row(JOB, _attempt(100.0), SITE, _lost(last_seen=1e12, alive_at=None), 3700.0)
    assert row.end == 3700.0


def test_an_attempt_never_seen_running_is_billed_from_its_submission() -> None:
    row = ledger_row(JOB, _attempt(None), SITE,
                     Verdict(AttemptStatus(state=AttemptState.SUCCEEDED, native_state="done"),
                             None), 3610.0)
    assert (row.start, row.end) == (10.0, 3610.0)


def test_a_lost_attempt_is_billed_to_the_sightings_an_earlier_reconciler_recorded() -> None:
    # The reconciler that saw it run for an hour stopped; the one that took over never saw it
    # alive (the node was gone at its first poll), and its only heartbeat was its first.
    seen = dataclasses.replace(_attempt(100.0), seen_at=3700.0)
    row = ledger_row(JOB, seen, SITE, _lost(last_seen=101.0, alive_at=None), 7300.0)
    assert (row.start, row.end) == (100.0, 3700.0)
    assert row.cost == pytest.approx(4.0)
    # a recorded sighting never reaches past the poll that saw the end
    late = dataclasses.replace(_attempt(100.0), seen_at=9999.0)
    assert ledger_row(JOB, late, SITE, _lost(last_seen=101.0, alive_at=None), 7300.0).end == (
        7300.0)



@pytest.mark.slow
def test_the_polls_record_when_they_saw_an_attempt_running(grid: GridConfig) -> None:
    from gridbridge.scheduler.reconciler._polling import SEEN_EVERY_S

    with Client(grid) as client:
        f = client.submit_command([sys.executable, "-c", "import time; time.sleep(60)"])
        deadline = time.monotonic() + 30
        sightings: list[float] = []
        while len(sightings) < 2:  # the first poll that saw it, then one SEEN_EVERY_S on
            assert time.monotonic() < deadline, f"sightings recorded: {sightings}"
            attempts = client.store.attempts(f.job_id)
            seen = attempts[-1].seen_at if attempts else None
            if seen is not None and seen not in sightings:
                sightings.append(seen)
            time.sleep(0.1)
        [attempt] = client.store.attempts(f.job_id)
        assert attempt.started_at is not None
        assert abs(sightings[0] - attempt.started_at) < 1.0  # the poll that saw it start
        assert sightings[1] - sightings[0] >= SEEN_EVERY_S
        assert sightings[1] <= time.time()
        f.cancel()
