"""Pickles cross no jobs: a payload or a return value that someone else replaced ends in
``digest mismatch``, and not one byte of it is unpickled. The replacement is a pickle whose
loading makes a marker folder, the code an attacker's pickle would run, so a marker that does
not exist proves nothing of it ran."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import cloudpickle
import pytest

from gridbridge import Client, GridConfig
from gridbridge.states import JobState
from gridbridge.wire import (
    DigestMismatch,
    check_digest,
    digest_of,
    get_bytes,
    pin,
    put_bytes,
    read_launch,
    read_result,
    unpin,
)
from tests.support import jobs

cloudpickle.register_pickle_by_value(jobs)


class _Trap:
    """Unpickling it makes the folder ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.mkdir, (self.marker,)


def _payload_url(client: Client, job_id: str) -> str:
    ref = client.store.job(job_id).spec.callable_ref
    assert ref is not None
    return unpin(ref)[0]


def test_a_replaced_payload_fails_with_digest_mismatch_and_runs_nothing(
    grid: GridConfig, tmp_path: Path,
) -> None:
    marker = tmp_path / "payload-ran"
    with Client(grid, start=False) as client:
        f = client.submit(jobs.add, 2, 3)
        put_bytes(_payload_url(client, f.job_id), pickle.dumps(_Trap(marker)))
        client.start()
        assert f.wait(60) is JobState.FAILED
        error = client.store.job(f.job_id).error or ""
        [attempt] = client.store.attempts(f.job_id)
    assert not marker.exists(), "the replaced payload was unpickled"
    result = read_result(attempt.attempt_url)
    assert result is not None and (result.error or "").startswith("digest mismatch")
    assert "digest mismatch" in error


def test_a_replaced_return_value_raises_digest_mismatch_and_runs_nothing(
    client: Client, tmp_path: Path,
) -> None:
    marker = tmp_path / "return-ran"
    f = client.submit(jobs.add, 2, 3)
    assert f.wait(60) is JobState.SUCCEEDED
    [attempt] = client.store.attempts(f.job_id)
    put_bytes(f"{attempt.attempt_url}/return.pkl", pickle.dumps(_Trap(marker)))
    try:
        with pytest.raises(DigestMismatch, match="digest mismatch"):
            f.result()
    finally:
        assert not marker.exists(), "the replaced return value was unpickled"


def test_the_digests_are_recorded_where_the_bytes_are_checked(client: Client) -> None:
    f = client.submit(jobs.add, 2, 3, kwargs={"scale": 10})
    assert f.result(timeout=60) == 50
    job = client.store.job(f.job_id)
    [attempt] = client.store.attempts(f.job_id)
    assert job.spec.callable_ref is not None
    url, pinned = unpin(job.spec.callable_ref)
    assert url.endswith(f"/{f.job_id}/payload.pkl")
    assert pinned == digest_of(get_bytes(url))  # in the job's row of the state store
    assert read_launch(attempt.attempt_url).callable_ref == job.spec.callable_ref
    result = read_result(attempt.attempt_url)
    assert result is not None
    assert result.return_digest == digest_of(get_bytes(f"{attempt.attempt_url}/return.pkl"))


def test_rewriting_the_result_record_too_after_the_end_does_not_help(
    client: Client, tmp_path: Path,
) -> None:
    """The digest ``result()`` checks is the one the control plane read when it concluded the
    attempt, kept in the store: a job that later rewrites both ``return.pkl`` and the result
    record (with the digest of its own bytes) still gets a digest mismatch, and nothing
    runs."""
    marker = tmp_path / "return-ran"
    f = client.submit(jobs.add, 2, 3)
    assert f.wait(60) is JobState.SUCCEEDED
    [attempt] = client.store.attempts(f.job_id)
    forged = pickle.dumps(_Trap(marker))
    record = json.loads(get_bytes(f"{attempt.attempt_url}/result.json"))
    record["return_digest"] = digest_of(forged)
    put_bytes(f"{attempt.attempt_url}/result.json", json.dumps(record).encode())
    put_bytes(f"{attempt.attempt_url}/return.pkl", forged)
    with pytest.raises(DigestMismatch, match="digest mismatch"):
        f.result()
    assert not marker.exists()


def test_a_return_value_without_a_recorded_digest_is_not_unpickled(
    client: Client, tmp_path: Path,
) -> None:
    """Unchecked bytes are never unpickled: an attempt concluded with no digest on record (a
    runtime that predates digests) is refused."""
    from sqlalchemy import update

    from gridbridge.scheduler.tables import AttemptRow

    marker = tmp_path / "return-ran"
    f = client.submit(jobs.add, 2, 3)
    assert f.wait(60) is JobState.SUCCEEDED
    [attempt] = client.store.attempts(f.job_id)
    with client.store._tx() as s:  # as an old control plane left the row
        s.execute(update(AttemptRow).where(AttemptRow.id == attempt.id)
                  .values(return_digest=None))
    put_bytes(f"{attempt.attempt_url}/return.pkl", pickle.dumps(_Trap(marker)))
    with pytest.raises(DigestMismatch, match="no valid recorded digest"):
        f.result()
    assert not marker.exists()


def test_pins_name_their_bytes() -> None:
    data = b"payload"
    ref = pin("s3://bucket/a#b/payload.pkl", data)
    assert unpin(ref) == ("s3://bucket/a#b/payload.pkl", digest_of(data))
    assert unpin("file:///a#b/payload.pkl") == ("file:///a#b/payload.pkl", None)
    assert check_digest(data, f"sha256:{hashlib.sha256(data).hexdigest()}", "x") is data
    with pytest.raises(DigestMismatch, match="digest mismatch: x is blake3:"):
        check_digest(b"other", digest_of(data), "x")
