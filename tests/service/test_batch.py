"""Many jobs in one transaction: ``StateStore.create_jobs`` writes every job and its
"submitted" event or none, and ``map()``, embedded or through the service, records a batch
that way (one transaction: one clock reading, so one ``created_at`` for the whole batch)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy.exc

from gridbridge.client import Client
from gridbridge.scheduler.store import StateStore
from gridbridge.spec import JobSpec, Owner
from tests.service.conftest import Federation


def _spec(name: str) -> JobSpec:
    return JobSpec(name=name, command=("true",), owner=Owner(user="alice", team="phys"))


def test_create_jobs_writes_all_or_none(tmp_path: Path) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    made = store.create_jobs([(_spec(f"n{i}"), f"file:///c/{i}", f"j{i:011d}")
                              for i in range(3)])
    assert [j.id for j in made] == [f"j{i:011d}" for i in range(3)]
    assert [[e.reason for e in store.events(j.id)] for j in made] == [["submitted"]] * 3
    with pytest.raises(sqlalchemy.exc.IntegrityError):  # j00000000002 exists: none is written
        store.create_jobs([(_spec("new"), "file:///c/new", "j99999999999"),
                           (_spec("dup"), "file:///c/dup", "j00000000002")])
    assert store.count_jobs() == 3
    assert store.events("j99999999999") == []


def test_embedded_map_records_its_jobs_in_one_transaction(tmp_path: Path) -> None:
    from tests.support.serving import two_site_config

    with Client(two_site_config(tmp_path), start=False) as made:
        futures = made.map(abs, range(-20, 0))
        jobs = [made.store.job(f.job_id) for f in futures]
    assert len({j.created_at for j in jobs}) == 1 and len(jobs) == 20


@pytest.mark.slow
def test_map_through_the_service_records_a_batch_in_one_transaction(
        federation: Federation) -> None:
    with Client(url=federation.url, token=federation.tokens["alice"]) as alice:
        futures = alice.map(abs, range(-30, 0))
        jobs = [alice.store.job(f.job_id) for f in futures]
        assert len({j.created_at for j in jobs}) == 1
        assert [f.result(timeout=60) for f in futures[:3]] == [30, 29, 28]
