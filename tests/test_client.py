"""The Python API end to end on the embedded default: real runtime processes, real signals."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import cloudpickle
import pytest

from gridbridge import Client, GridConfig, JobCancelled, JobFailed
from gridbridge.states import AttemptState, JobState
from tests.support import jobs

cloudpickle.register_pickle_by_value(jobs)


def test_callable_result_and_kwargs(client: Client) -> None:
    f = client.submit(jobs.add, 2, 3, kwargs={"scale": 10}, name="add")
    assert f.result(timeout=60) == 50
    assert f.status() is JobState.SUCCEEDED
    [attempt] = client.store.attempts(f.job_id)
    assert attempt.state is AttemptState.SUCCEEDED and attempt.site == "spot-local"


def test_map_runs_every_item(client: Client) -> None:
    futures = client.map(jobs.sleepy, [0.1, 0.2, 0.3])
    assert [f.result(timeout=60) for f in futures] == [0.1, 0.2, 0.3]


def test_failure_is_not_retried_and_carries_the_traceback(client: Client) -> None:
    f = client.submit(jobs.boom, "kaput-42")
    with pytest.raises(JobFailed, match="kaput-42"):
        f.result(timeout=60)
    attempts = client.store.attempts(f.job_id)
    assert [a.state for a in attempts] == [AttemptState.FAILED]
    assert "ValueError: kaput-42" in f.logs()


def test_command_exit_code_is_recorded(client: Client) -> None:
    f = client.submit_command([sys.executable, "-c", "import sys; sys.exit(3)"])
    assert f.wait(60) is JobState.FAILED
    assert client.store.attempts(f.job_id)[0].exit_code == 3


def test_hostile_argv_reaches_the_program_verbatim(client: Client) -> None:
    hostile = "a'b\"; rm -rf / \n$(touch pwned) `id` ..\\"
    f = client.submit_command([sys.executable, "-c", "import sys; print(repr(sys.argv[1]))",
                               hostile])
    assert f.wait(60) is JobState.SUCCEEDED
    assert repr(hostile) in f.logs()


def test_bad_options_name_the_field(client: Client) -> None:
    with pytest.raises(ValueError, match="name"):
        client.submit_command(["true"], name="bad;name")
    with pytest.raises(ValueError, match="cpus"):
        client.submit_command(["true"], cpus=0)
    with pytest.raises(TypeError, match="argv"):
        client.submit_command("echo hi")  # type: ignore[arg-type]


def test_cancel_a_running_job(client: Client) -> None:
    f = client.submit_command([sys.executable, "-c", "import time; time.sleep(60)"])
    deadline = time.monotonic() + 30
    while f.status() is not JobState.RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert f.cancel()
    assert f.wait(30) is JobState.CANCELLED
    with pytest.raises(JobCancelled):
        f.result()
    assert client.store.attempts(f.job_id)[-1].state is AttemptState.CANCELLED


@pytest.mark.slow
def test_preempted_job_resumes_from_its_checkpoint_on_another_site(client: Client) -> None:
    total, every = 300, 50
    expected = sum(int(s) * sum(range(4)) for s in range(total))
    f = client.submit(jobs.counter, total, every, name="counter")
    store = None
    deadline = time.monotonic() + 60
    while True:
        assert time.monotonic() < deadline
        if f.status() is JobState.RUNNING:
            from gridbridge import checkpoint

            store = store or checkpoint.open(client.store.job(f.job_id).checkpoint_url)
            if (store.latest() or 0) >= 100:
                break
        time.sleep(0.05)
    client.preempt(f.job_id)
    assert f.result(timeout=60) == expected
    first, second = client.store.attempts(f.job_id)
    assert first.state is AttemptState.PREEMPTED and first.site == "spot-local"
    assert second.state is AttemptState.SUCCEEDED and second.site == "ondemand-local"
    assert first.last_step is not None and first.last_step >= 100
    logs = f.logs()
    assert f"resumed from step {first.last_step}" in logs
    saved = [json.loads(line.split(" ", 2)[2]) for line in logs.splitlines()
             if line.startswith("gridbridge: checkpoint.saved ")]
    assert {(e["step"], e["token"]) for e in saved} >= {(first.last_step, 1), (total, 2)}
    ledger = {row.attempt_id: row for row in client.store.ledger(f.job_id)}
    assert ledger[first.id].outcome == "PREEMPTED"
    assert ledger[first.id].on_demand_cost > ledger[first.id].cost > 0
    assert ledger[second.id].lost_cost == 0


@pytest.mark.slow
def test_lost_attempts_are_retried_until_max_attempts(client: Client) -> None:
    # The command kills its own runtime: the site sees a process vanish without a result.
    suicide = "import os, signal; os.kill(os.getppid(), signal.SIGKILL)"
    f = client.submit_command([sys.executable, "-c", suicide], max_attempts=2)
    assert f.wait(60) is JobState.FAILED
    attempts = client.store.attempts(f.job_id)
    assert [a.state for a in attempts] == [AttemptState.LOST, AttemptState.LOST]
    assert "no attempts left" in (client.store.job(f.job_id).error or "") or any(
        "no attempts left" in e.reason for e in f.story()
    )


def test_walltime_end_is_a_preemption_and_the_job_resumes(grid: GridConfig) -> None:
    from gridbridge import checkpoint

    with Client(grid) as client:
        f = client.submit(jobs.counter, 150, 25, walltime_s=1.0)
        assert f.result(timeout=90) == sum(s * 6 for s in range(150))
        attempts = client.store.attempts(f.job_id)
        assert len(attempts) >= 2
        assert attempts[0].state is AttemptState.PREEMPTED
        assert attempts[0].reason == "walltime reached"
        assert checkpoint.open(client.store.job(f.job_id).checkpoint_url).latest() == 150


def test_default_names_are_made_valid(client: Client) -> None:
    def _private_helper() -> int:
        return 7

    f = client.submit(_private_helper)
    assert client.store.job(f.job_id).name == "private_helper"
    assert f.result(timeout=60) == 7
    g = client.submit_command([sys.executable, "-c", "pass"])
    assert client.store.job(g.job_id).name == Path(sys.executable).name
    assert g.wait(60) is JobState.SUCCEEDED
    assert not g.cancel(), "cancelling a finished job reports False"


def test_owner_defaults_to_the_submitting_user(client: Client) -> None:
    import getpass

    f = client.submit_command([sys.executable, "-c", "pass"])
    assert client.store.job(f.job_id).spec.owner.user == getpass.getuser()
    g = client.submit_command([sys.executable, "-c", "pass"],
                              owner={"user": "ada", "team": "climate", "project": "p7"})
    assert client.store.job(g.job_id).spec.owner.team == "climate"
    assert f.wait(60) is JobState.SUCCEEDED and g.wait(60) is JobState.SUCCEEDED
    teams = {row.team for row in client.store.ledger()}
    assert teams == {"default", "climate"}
