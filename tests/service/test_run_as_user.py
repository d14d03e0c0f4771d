"""``run_as: user`` on a local site behind a real ``gridbridge serve --listen``: each job runs
as its owner's Unix account (two accounts the test makes), so bob's job can read none of what
alice's job left (its run folder, its launch record with her environment, her storage prefix),
though alice's account can; it sees none of the service's environment; and a link bob's job
plants in its own folders leads the control plane (root) nowhere bob could not go.

Root only: it makes accounts with ``useradd``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.service.conftest import Federation, free_port, serving
from tests.support.accounts import enterable_by_others, runtime_paths, unix_users
from tests.support.serving import kill_attempt_groups, wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: it makes Unix accounts and the "
                       "service starts jobs as them"),
]

SERVICE_SECRET = "GB_TEST_SERVICE_SECRET"
SECRET_VALUE = "service-secret-0f3a9c"
ALICE_TOKEN = "alice-own-token-77b2e1"

_PROBE = """
import os, pwd, sys
print("whoami", pwd.getpwuid(os.getuid()).pw_name, flush=True)
for p in sys.argv[1:]:
    try:
        data = ",".join(sorted(os.listdir(p))) if os.path.isdir(p) else open(p).read()
        print("READ", p, data.replace(chr(10), " ")[:200], flush=True)
    except OSError as e:
        print("DENIED", p, type(e).__name__, flush=True)
print("ENV", " ".join(sorted(os.environ)), flush=True)
"""




@pytest.fixture
def base() -> Iterator[Path]:
    """The federation's folder, which the jobs' accounts may enter (pytest's own is root's
    alone)."""
    path = Path(tempfile.mkdtemp(prefix="gbrunas-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def people(base: Path,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Federation, dict[str, str]]]:
    """alice and bob (researchers of two teams) with tokens, their accounts, and a serve whose
    environment holds a secret."""
    with unix_users(2) as logins, enterable_by_others(runtime_paths()):
        accounts = {"alice": logins[0], "bob": logins[1]}
        config = base / "gridbridge.yaml"
        config.write_text(yaml.safe_dump({
            "state_url": "sqlite:///state.db", "checkpoint_root": "checkpoints",
            "workdir": "run", "limits": {"tick_interval_s": 0.1},
            "sites": [{"name": "a", "adapter": "local", "tier": "hpc",
                       "capacity": {"cpus": 4}, "price": {"per_core_hour": 0.01},
                       "run_as": "user", "users": accounts}],
        }))
        fed = Federation(config, f"http://127.0.0.1:{free_port()}", {}, base / "serve.log")
        for name, team in (("alice", "phys"), ("bob", "chem")):
            made = fed.local("admin", "token", "create", "--user", name, "--team", team,
                             "--role", "researcher")
            assert made.returncode == 0, made.stderr
            fed.tokens[name] = made.stdout.strip()
            home = base / f"home-{name}"  # where each submits from (the job runs there)
            home.mkdir(mode=0o700)
            shutil.chown(home, accounts[name], accounts[name])
        monkeypatch.setenv(SERVICE_SECRET, SECRET_VALUE)
        try:
            with serving(config, fed.url, fed.log):
                yield fed, accounts
        finally:
            kill_attempt_groups(base / "run" / "local-jobs" / "a")


def _submit(fed: Federation, who: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDBRIDGE_")}
    env["GRIDBRIDGE_TOKEN"] = fed.tokens[who]
    run = subprocess.run([sys.executable, "-m", "gridbridge.cli", "--url", fed.url, "submit",
                          *args], env=env, capture_output=True, text=True, timeout=60,
                         cwd=fed.config.parent / f"home-{who}")
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


def _ended(fed: Federation, who: str, job: str) -> str:
    state = ""

    def done() -> bool:
        nonlocal state
        run = fed.cli(who, "status", "--format", "json")
        rows = [r for r in json.loads(run.stdout or "[]") if r["job"] == job]
        state = rows[0]["state"] if rows else ""
        return state in ("SUCCEEDED", "FAILED", "CANCELLED")

    wait_until(done, 90, f"{who}'s job {job}")
    return state


def _as(login: str, code: str, *args: str) -> str:
    """``code`` run by the interpreter under ``login``'s uid and gid, its output."""
    import pwd

    entry = pwd.getpwnam(login)
    run = subprocess.run([sys.executable, "-I", "-c", code, *args], user=entry.pw_uid,
                         group=entry.pw_gid, extra_groups=[], capture_output=True, text=True,
                         timeout=60, cwd="/")
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_jobs_run_as_their_owners_and_cannot_read_each_other(
        people: tuple[Federation, dict[str, str]]) -> None:
    fed, accounts = people
    base = fed.config.parent
    alice_job = _submit(fed, "alice", "--env", f"ALICE_TOKEN={ALICE_TOKEN}", "--",
                        sys.executable, "-c",
                        "import os, pwd; print('whoami', pwd.getpwuid(os.getuid()).pw_name);"
                        "print('printed', os.environ['ALICE_TOKEN'])")
    assert _ended(fed, "alice", alice_job) == "SUCCEEDED", fed.log.read_text()[-3000:]
    logs = fed.cli("alice", "logs", alice_job)
    assert f"whoami {accounts['alice']}" in logs.stdout, logs.stdout + logs.stderr
    assert f"printed {ALICE_TOKEN}" in logs.stdout

    scratch = base / "run" / "local-jobs" / "a" / f"{alice_job}.1"
    prefix = base / "checkpoints" / alice_job
    targets = [scratch, scratch / "attempt.log", scratch / "result.json", prefix,
               prefix / "attempts" / "1" / "launch.json"]
    for path in targets:
        assert path.exists(), path
    alice_uid = int(_as(accounts["alice"], "import os; print(os.getuid())"))
    for folder in (scratch, prefix):
        st = folder.stat()
        assert (st.st_uid, st.st_mode & 0o777) == (alice_uid, 0o700), folder
    # alice's account reads all of it: what bob meets below is the kernel's refusal
    mine = _as(accounts["alice"], _PROBE, *map(str, targets))
    assert mine.count("READ ") == len(targets), mine
    assert ALICE_TOKEN in mine  # her launch record holds her environment

    bob_job = _submit(fed, "bob", "--", sys.executable, "-c", _PROBE, *map(str, targets))
    assert _ended(fed, "bob", bob_job) == "SUCCEEDED", fed.log.read_text()[-3000:]
    out = fed.cli("bob", "logs", bob_job).stdout
    assert f"whoami {accounts['bob']}" in out, out
    for path in targets:
        assert f"DENIED {path} PermissionError" in out, out
    assert "READ " not in out and ALICE_TOKEN not in out, out
    env_line = next(line for line in out.splitlines() if line.startswith("ENV "))
    assert SERVICE_SECRET not in env_line and SECRET_VALUE not in out, env_line
    assert "HOME" in env_line.split()


def test_a_link_the_job_plants_leads_the_control_plane_nowhere_its_user_cannot_go(
        people: tuple[Federation, dict[str, str]]) -> None:
    """bob's first attempt swaps its host log for a link to a file only root may read, and
    puts a link to a folder only root may write where its next attempt's records go, then
    asks to be placed again (exit 75): bob's ``logs`` never show the file, nothing is written
    into the folder, and the job still ends, on a later attempt."""
    fed, _ = people
    base = fed.config.parent
    vault = base / "vault"
    vault.mkdir(mode=0o700)
    (vault / "root-only.txt").write_text("ROOT-ONLY-CONTENT")
    (vault / "root-only.txt").chmod(0o600)
    home = base / "home-bob"
    hostile = """
import os, sys, time
jobs, vault, home = sys.argv[1:4]
if os.environ["GRIDBRIDGE_ATTEMPT"] != "1":
    print("later attempt", os.environ["GRIDBRIDGE_ATTEMPT"]); sys.exit(0)
scratch = os.path.join(jobs, os.environ["GRIDBRIDGE_ATTEMPT_ID"])
os.replace(os.path.join(scratch, "attempt.log"), os.path.join(scratch, "moved.log"))
os.symlink(os.path.join(vault, "root-only.txt"), os.path.join(scratch, "attempt.log"))
prefix = os.environ["GRIDBRIDGE_CHECKPOINT"].removeprefix("file://")
os.symlink(vault, os.path.join(prefix, "attempts", "2"))
open(os.path.join(home, "swapped"), "w").close()
while not os.path.exists(os.path.join(home, "go")):
    time.sleep(0.1)
sys.exit(75)
"""
    job = _submit(fed, "bob", "--", sys.executable, "-c", hostile,
                  str(base / "run" / "local-jobs" / "a"), str(vault), str(home))
    wait_until(lambda: (home / "swapped").exists(), 60, "the swap")
    running = fed.cli("bob", "logs", job)
    (home / "go").write_text("")
    assert _ended(fed, "bob", job) == "SUCCEEDED", fed.log.read_text()[-3000:]
    after = fed.cli("bob", "logs", job)
    for seen in (running, after):
        assert "ROOT-ONLY-CONTENT" not in seen.stdout + seen.stderr
    assert "later attempt" in after.stdout, after.stdout + after.stderr
    assert sorted(os.listdir(vault)) == ["root-only.txt"]
    assert (vault / "root-only.txt").read_text() == "ROOT-ONLY-CONTENT"
    assert "ROOT-ONLY-CONTENT" not in fed.log.read_text()
