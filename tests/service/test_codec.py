"""What crosses the wire comes back as the very record the store returned."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gridbridge.scheduler.records import Attempt, Event, Job, JobNotFound
from gridbridge.scheduler.store import StateStore
from gridbridge.service import Refused
from gridbridge.service._codec import decode, encode, error_body, raise_error
from gridbridge.spec import JobSpec


def test_records_round_trip_through_json(tmp_path: Path) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    spec = JobSpec.model_validate({"name": "n", "command": ["echo", "x"],
                                   "owner": {"user": "alice", "team": "phys"}})
    job = store.create_job(spec, "ckpt/j1", job_id="j1")
    store.new_attempt("j1", "a", "ckpt/j1", "test")
    for kind, record in ((Job, store.job("j1")), (Attempt, store.attempts("j1")[0]),
                         (Event, store.events("j1")[0])):
        assert decode(kind, json.loads(json.dumps(encode(record)))) == record
    assert job.spec.owner.user == "alice"
    record, _ = store.create_token("alice", "phys", "researcher")
    from gridbridge.service import TokenRecord
    assert decode(TokenRecord, json.loads(json.dumps(encode(record)))) == record


@pytest.mark.parametrize("exc", [JobNotFound("no job 'x'"), LookupError("no attempt 'y'"),
                                 ValueError("bad"), RuntimeError("busy"),
                                 Refused("refused: no (rule: r)", 401)])
def test_errors_are_raised_again_as_the_same_class(exc: Exception) -> None:
    status, body = error_body(exc)
    with pytest.raises(type(exc)) as caught:
        raise_error(status, json.loads(json.dumps(body)))
    assert str(caught.value) == str(exc)
