"""The issue's "done when", end to end: a real ``gridbridge serve --listen`` on loopback, the
real CLI over ``--url`` as alice and bob (researchers of different teams) and fin (finance),
``Client(url=..., token=...)`` for the waiting, and the audit read back."""

from __future__ import annotations

import json

import pytest

from gridbridge.client import Client
from gridbridge.service import Refused
from tests.service.conftest import Federation
from tests.support.serving import wait_until

pytestmark = pytest.mark.slow

SLEEP = ["python", "-c", "import time; time.sleep(60)"]


def _refused(run: object) -> None:
    assert run.returncode == 4, (run.returncode, run.stdout, run.stderr)  # type: ignore[attr-defined]
    [line] = run.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert line.startswith("error: refused"), line


def _rows(text: str) -> list[dict[str, object]]:
    """The rows of a report's JSON (a list, or one list under a title)."""
    data = json.loads(text)
    return data if isinstance(data, list) else next(iter(data.values()))


def test_roles_owners_and_audit_through_the_service(federation: Federation) -> None:
    fed = federation
    alice = Client(url=fed.url, token=fed.tokens["alice"])
    bob = Client(url=fed.url, token=fed.tokens["bob"])
    fin = Client(url=fed.url, token=fed.tokens["fin"])
    # alice submits (CLI) and reads her job; its owner is her token's identity, not $USER
    run = fed.cli("alice", "submit", "--name", "nap", "--", *SLEEP)
    assert run.returncode == 0, run.stderr
    nap = run.stdout.strip()
    wait_until(lambda: alice.job(nap).status().value == "RUNNING", 60, "alice's job running")
    job = alice.store.job(nap)
    assert (job.spec.owner.user, job.spec.owner.team) == ("alice", "phys")
    assert fed.cli("alice", "status", nap).returncode == 0
    # a function job: the result comes back through the API, its digest checked here
    assert alice.submit(pow, 2, 5).result(timeout=60) == 32
    # bob's status, logs, cancel and preempt of alice's job: refused, and nothing changes
    story = [e.kind for e in alice.store.events(nap)]
    for args in (["status", nap], ["logs", nap], ["cancel", nap],
                 ["debug", "preempt", f"{nap}.1"]):
        _refused(fed.cli("bob", *args))
    after = alice.store.job(nap)
    assert after.state.value == "RUNNING" and not after.cancel_requested
    assert [e.kind for e in alice.store.events(nap)] == story
    with pytest.raises(Refused):
        bob.job(nap).cancel()
    assert bob.store.jobs() == []  # bob lists his own jobs only
    # bob runs a job of his own, so the books hold two teams
    assert bob.submit(pow, 3, 2).result(timeout=60) == 9
    # fin reads every team's books, but submits nothing and reads no logs
    assert {r["team"] for r in fin.store.ledger_records()} == {"phys", "chem"}
    _refused(fed.cli("fin", "submit", "--", "true"))
    with pytest.raises(Refused, match="finance reads no logs"):
        fin.logs(nap)
    _refused(fed.cli("fin", "logs", nap))
    # reports over --url: fin's costs by team show both teams; bob's only his own
    run = fed.cli("fin", "report", "costs", "--by", "team", "--format", "json")
    assert run.returncode == 0, run.stderr
    assert {r["team"] for r in _rows(run.stdout)} >= {"phys", "chem"}
    run = fed.cli("bob", "report", "costs", "--by", "user", "--format", "json")
    assert run.returncode == 0, run.stderr
    assert {r["user"] for r in _rows(run.stdout)} - {"TOTAL"} == {"bob"}  # not alice
    for report in (["forecast"], ["placements"]):
        run = fed.cli("fin", "report", *report, "--format", "json")
        assert run.returncode == 0, (report, run.stderr)
    run = fed.cli("fin", "report", "html", "-o", str(fed.config.parent / "books.html"))
    assert run.returncode == 0, run.stderr
    assert "chem" in (fed.config.parent / "books.html").read_text()
    with pytest.raises(Refused):
        fin.submit(pow, 1, 1)
    # alice cancels her own job, and the story says who did
    assert fed.cli("alice", "cancel", nap).returncode == 0
    assert any(e.kind == "cancel-requested" and e.actor == "alice"
               for e in alice.store.events(nap))
    # no token, a wrong one and a revoked one are refused
    _refused(fed.cli(None, "status"))
    _refused(fed.cli(None, "status", token="gb_0000000000.not-a-secret"))
    bob_id = fed.tokens["bob"].removeprefix("gb_").split(".")[0]
    assert fed.local("admin", "token", "revoke", bob_id).returncode == 0
    _refused(fed.cli("bob", "status"))
    # a hostile name is refused as one plain line, over the API too
    run = fed.cli("ops", "admin", "token", "create", "--user", "x\n[red]y'", "--team", "t",
                  "--role", "researcher")
    assert run.returncode == 2 and run.stdout == ""
    [line] = run.stderr.strip().splitlines()
    assert "\\n[red]y" in line
    # the audit, operators only, lists each attempt
    _refused(fed.cli("alice", "admin", "audit"))
    run = fed.cli("ops", "admin", "audit", "--format", "json", "--limit", "1000")
    assert run.returncode == 0, run.stderr
    rows = json.loads(run.stdout)
    rows = rows if isinstance(rows, list) else next(iter(rows.values()))
    seen = {(r["user"], r["verb"], r["outcome"]) for r in rows}
    assert {("alice", "submit", "ok"), ("fin", "submit", "refused"), ("alice", "cancel", "ok"),
            ("alice", "audit", "refused"),
            ("", "list jobs", "refused")} <= seen
    assert any(r["user"] == "" and f"[token {bob_id}]" in r["detail"] for r in rows)
    bobs = [r for r in rows if r["user"] == "bob" and r["outcome"] == "refused"
            and r["target"] in (f"job {nap}", f"attempt {nap}.1")]
    assert len(bobs) >= 5  # status, logs, cancel, debug preempt, Client cancel
    assert any(r["user"] == "fin" and r["outcome"] == "refused" and r["target"] == f"job {nap}"
               for r in rows)  # fin's logs
    assert any(r["verb"] == "token create" and r["source"] == "local" for r in rows)
    assert all(r["source"] in ("127.0.0.1", "local") for r in rows)
    assert not any(t in json.dumps(rows) for t in fed.tokens.values())  # never a secret
    for c in (alice, bob, fin):
        c.close()
