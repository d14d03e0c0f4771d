"""``sites drain`` and ``undrain`` through a real ``serve --listen``: an operator empties a
site over ``--url`` (new jobs go elsewhere), a researcher is refused (exit 4) and changes
nothing, an unknown site is named with the valid ones, and the audit lists each try."""

from __future__ import annotations

import json

import pytest

from gridbridge.client import Client
from tests.service.conftest import Federation

pytestmark = pytest.mark.slow


def test_an_operator_drains_a_site_over_the_api_and_a_researcher_cannot(
        federation: Federation) -> None:
    fed = federation
    refused = fed.cli("alice", "sites", "drain", "a", "--reason", "mine now")
    assert refused.returncode == 4, (refused.stdout, refused.stderr)
    assert "only operators manage tokens, sites and the audit" in refused.stderr
    unknown = fed.cli("ops", "sites", "drain", "nowhere")
    assert unknown.returncode == 2, (unknown.stdout, unknown.stderr)
    assert "no site 'nowhere'; valid choices: a, b" in unknown.stderr

    drained = fed.cli("ops", "sites", "drain", "a", "--reason", "disk swap")
    assert (drained.returncode, drained.stdout.strip()) == (0, "site a drained"), drained.stderr
    again = fed.cli("ops", "sites", "drain", "a")
    assert again.stdout.strip() == "site a drained already"
    # a is the cheaper site: with it drained, alice's job runs on b; reopened, on a again
    alice = Client(url=fed.url, token=fed.tokens["alice"])
    try:
        future = alice.submit(pow, 2, 3)
        assert future.result(timeout=60) == 8
        assert [a.site for a in alice.store.attempts(future.job_id)] == ["b"]
        reopened = fed.cli("ops", "sites", "undrain", "a")
        assert reopened.stdout.strip() == "site a open", reopened.stderr
        future = alice.submit(pow, 2, 4)
        assert future.result(timeout=60) == 16
        assert [a.site for a in alice.store.attempts(future.job_id)] == ["a"]
    finally:
        alice.close()

    rows = json.loads(fed.cli("ops", "admin", "audit", "--format", "json").stdout)
    rows = rows if isinstance(rows, list) else next(iter(rows.values()))
    seen = [(r["user"], r["verb"], r["target"], r["outcome"]) for r in rows
            if r["verb"] == "site drain"]
    assert ("alice", "site drain", "site a", "refused") in seen
    assert ("ops", "site drain", "site a", "ok") in seen
    assert any(r["verb"] == "site drain" and r["detail"] == "drain: disk swap" for r in rows)
