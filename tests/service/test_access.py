"""Tokens and rights without a server: the store keeps only hashes, a revoked token never
authenticates, hostile names are refused, each role's rights are the table's, and the API
never listens in plain HTTP off loopback."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import select

from gridbridge.scheduler.store import StateStore
from gridbridge.scheduler.tables import ApiTokenRow
from gridbridge.service import Identity, Refused, Role, Verb, parse_listen
from gridbridge.service._rights import check


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return StateStore(f"sqlite:///{tmp_path / 'state.db'}")


def test_the_store_keeps_only_the_hash_and_revoked_tokens_fail(store: StateStore) -> None:
    record, token = store.create_token("alice", "phys", "researcher", created_by="ops")
    secret = token.partition(".")[2]
    with store._read() as s:
        [row] = s.scalars(select(ApiTokenRow)).all()
    assert secret not in repr(vars(row)) and row.secret_sha256 == hashlib.sha256(
        secret.encode()).hexdigest()
    assert store.identify(token) == record and record.role is Role.RESEARCHER
    assert store.identify(token + "x") is None
    assert store.identify(token.replace("gb_", "")) is None
    store.revoke_token(record.id)
    assert store.identify(token) is None
    assert store.tokens()[0].revoked_at is not None
    with pytest.raises(LookupError):
        store.revoke_token("nope")


@pytest.mark.parametrize("name", ['a"b', "a\nb", "[red]x[/red]", "-x", "", "a b"])
def test_hostile_names_are_refused_and_shown_escaped(store: StateStore, name: str) -> None:
    with pytest.raises(ValueError) as caught:
        store.create_token(name, "phys", "researcher")
    assert "\n" not in str(caught.value)
    with pytest.raises(ValueError):
        store.create_token("alice", name, "researcher")
    with pytest.raises(ValueError):
        store.create_token("alice", "phys", "root")
    assert store.tokens() == []


ALICE = Identity("alice", "phys", Role.RESEARCHER)
FIN = Identity("fin", "books", Role.FINANCE)
OPS = Identity("ops", "infra", Role.OPERATOR)


def test_rights_by_role_and_owner() -> None:
    for verb in (Verb.READ, Verb.CANCEL, Verb.PREEMPT, Verb.LOGS, Verb.RESULT):
        check(ALICE, verb, owner="alice")
        check(OPS, verb, owner="alice")
        with pytest.raises(Refused, match="their own jobs"):
            check(ALICE, verb, owner="bob", target="job j1")
    for verb in (Verb.SUBMIT, Verb.LOGS, Verb.RESULT, Verb.CANCEL, Verb.ADMIN):
        with pytest.raises(Refused, match="rule:"):
            check(FIN, verb, owner="alice")
    check(FIN, Verb.REPORT)
    check(FIN, Verb.READ, owner="alice")
    with pytest.raises(Refused, match="only operators"):
        check(ALICE, Verb.ADMIN)


def test_plain_http_only_on_loopback(tmp_path: Path) -> None:
    assert parse_listen("127.0.0.1:8765").scheme == "http"
    assert parse_listen("[::1]:8765").host == "::1"
    with pytest.raises(ValueError, match="tls-cert"):
        parse_listen("0.0.0.0:8765")
    assert parse_listen("0.0.0.0:8765", insecure=True).host == "0.0.0.0"
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("x")
    assert parse_listen("10.0.0.1:443", cert, key).scheme == "https"
    with pytest.raises(ValueError, match="go together"):
        parse_listen("10.0.0.1:443", cert, None)
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_listen("8765")
