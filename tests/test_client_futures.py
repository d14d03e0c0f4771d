"""What a future gives back (issue 26, item 11): ``story()`` with UTC datetimes, a failing
function's ``JobFailed`` chained to the remote exception (rebuilt from text, never unpickled),
and a command's ``result()`` as its exit status, on the embedded default with real runtimes."""

from __future__ import annotations

import pickle
import sys
import traceback
from datetime import UTC, datetime, timedelta

import cloudpickle
import pytest

from gridbridge import Client, JobFailed
from gridbridge.client import RemoteError
from tests.support import jobs

cloudpickle.register_pickle_by_value(jobs)


def test_story_times_are_utc_datetimes(client: Client) -> None:
    before = datetime.now(UTC)
    f = client.submit_command([sys.executable, "-c", "pass"])
    f.wait(60)
    story = f.story()
    assert [e.new for e in story if e.kind == "job"][:1] == ["PENDING"]
    for event in story:
        assert isinstance(event.at, datetime) and event.at.utcoffset() == timedelta(0)
        assert before - timedelta(seconds=5) <= event.at <= datetime.now(UTC)


def test_a_command_result_is_its_exit_status(client: Client) -> None:
    assert client.submit_command([sys.executable, "-c", "pass"]).result(timeout=60) == 0


def test_a_failed_function_chains_the_remote_exception(client: Client) -> None:
    f = client.submit(jobs.boom, "kaput-77")
    with pytest.raises(JobFailed) as failed:
        f.result(timeout=60)
    remote = failed.value.__cause__
    assert isinstance(remote, RemoteError)
    assert (remote.type_name, remote.message) == ("ValueError", "kaput-77")
    assert remote.traceback.startswith("Traceback (most recent call last):")
    assert "kaput-77" in str(failed.value) and failed.value.job_id == f.job_id
    printed = "".join(traceback.format_exception(failed.value))
    assert printed.index("ValueError: kaput-77") < printed.index(
        "The above exception was the direct cause")
    assert str(failed.value).count("Traceback") == 0  # the traceback prints once, as the cause
    assert isinstance(f.exception(), JobFailed)
    again = pickle.loads(pickle.dumps(remote))
    assert (again.type_name, again.traceback) == ("ValueError", remote.traceback)


def test_a_failed_command_has_no_remote_exception(client: Client) -> None:
    f = client.submit_command([sys.executable, "-c", "import sys; sys.exit(3)"])
    with pytest.raises(JobFailed) as failed:
        f.result(timeout=60)
    assert failed.value.__cause__ is None
    assert client.submit_command([sys.executable, "-c", "pass"]).exception(60) is None
