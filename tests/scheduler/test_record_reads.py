"""Storage errors are not job errors: a result record storage cannot give back (a 503, a
timeout) leaves the attempt to be judged again later, and is LOST only after a bounded wait;
only a record that is there and malformed fails the attempt (real local processes)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gridbridge import Client
from gridbridge.adapter import AttemptStatus
from gridbridge.scheduler import endings
from gridbridge.scheduler.endings import judge
from gridbridge.scheduler.reconciler import _ending
from gridbridge.scheduler.records import Attempt
from gridbridge.states import AttemptState, JobState
from gridbridge.wire import Result

SLOW_DOWN = OSError("503 Slow Down")


def _flaky(failures: int | None) -> Callable[[str], Result | None]:
    """``read_result`` that raises a 503 the first ``failures`` times (None: always)."""
    real, calls = endings.read_result, []

    def read(url: str) -> Result | None:
        calls.append(url)
        if failures is None or len(calls) <= failures:
            raise SLOW_DOWN
        return real(url)
    return read


def test_one_503_on_the_result_record_and_the_job_still_succeeds(
    client: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(endings, "read_result", _flaky(1))
    f = client.submit_command([sys.executable, "-c", "pass"])
    assert f.wait(60) is JobState.SUCCEEDED, client.store.job(f.job_id).error
    [attempt] = client.store.attempts(f.job_id)
    assert attempt.state is AttemptState.SUCCEEDED


def test_storage_that_stays_unreadable_ends_the_attempt_lost_saying_so(
    client: Client, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_ending, "RECORD_READ_S", 1.0)
    monkeypatch.setattr(_ending, "_FIRST_WAIT_S", 0.2)
    monkeypatch.setattr(endings, "read_result", _flaky(None))
    f = client.submit_command([sys.executable, "-c", "pass"], max_attempts=1)
    assert f.wait(60) is JobState.FAILED
    [attempt] = client.store.attempts(f.job_id)
    assert attempt.state is AttemptState.LOST
    assert "storage could not be read" in attempt.reason, attempt.reason
    assert "503 Slow Down" in attempt.reason


def _attempt(url: str) -> Attempt:
    return Attempt(id="j1.1", job_id="j1", number=1, token=1, site="s",
                   state=AttemptState.RUNNING, native_id="n", native_state="", created_at=0.0,
                   started_at=0.0, ended_at=None, exit_code=None, reason="", last_step=None,
                   attempt_url=url, submit_tries=1, offer_key=None, price_json=None)


DONE = AttemptStatus(state=AttemptState.SUCCEEDED, native_state="exited:0", exit_code=0)


def test_a_malformed_record_fails_the_attempt(tmp_path: Path) -> None:
    (tmp_path / "result.json").write_text("{not json")
    verdict = judge(_attempt(tmp_path.as_uri()), DONE, (tmp_path / "ckpt").as_uri())
    assert verdict.status.state is AttemptState.FAILED
    assert "unreadable result record" in verdict.status.reason
    assert not verdict.unreadable


def test_an_io_error_leaves_the_sites_word_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(endings, "read_result", _flaky(None))
    verdict = judge(_attempt(tmp_path.as_uri()), DONE, (tmp_path / "ckpt").as_uri())
    assert verdict.status == DONE
    assert verdict.unreadable == "OSError: 503 Slow Down"
