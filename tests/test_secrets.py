"""No secret is passed on or printed: a job never sees the control plane's environment, records
and logs are their owner's alone, and no error, log line, event or record shows a canary
secret (a job's ``env`` value, the control plane's credentials, a store URL's password)."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest
import yaml
from sqlalchemy.exc import OperationalError

from gridbridge.adapter import SubmitRequest
from gridbridge.adapters._run import Completed
from gridbridge.adapters.slurm import SlurmAdapter
from gridbridge.config import Capacity, RuntimeSettings, SiteConfig
from gridbridge.scheduler._db import StoreUnavailable, unavailable_as_error
from gridbridge.spec import JobSpec
from gridbridge.wire import put_bytes
from tests.support.serving import start_serve, wait_until

CANARY_AWS = f"canary-aws-{uuid.uuid4().hex}"
"""What the control plane's environment holds and no job may see."""
CANARY_JOB = f"canary-job-{uuid.uuid4().hex}"
"""A job's own secret: its environment has it, no error, log line or event shows it."""


def gb(*args: str, env: Mapping[str, str] | None = None,
       timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gridbridge.cli", *args],
                          env={**os.environ, "COLUMNS": "200", **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def private(path: Path) -> bool:
    """Whether only the owner may read ``path``."""
    return stat.S_IMODE(path.stat().st_mode) & 0o077 == 0


# a job started by `gridbridge serve` ----------------------------------------------------------

@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Path]]:
    """A one-site local federation (its ``runtime.env_names``: ``GB_SITE_HINT``) and its serve,
    started with the canary in its environment; yields (config, serve's log)."""
    config = tmp_path / "gridbridge.yaml"
    config.write_text(yaml.safe_dump({
        "state_url": "sqlite:///state.db", "checkpoint_root": "ckpt", "workdir": "run",
        "limits": {"tick_interval_s": 0.1},
        "sites": [{"name": "here", "adapter": "local", "capacity": {"cpus": 2},
                   "runtime": {"env_names": ["GB_SITE_HINT"]}}],
    }))
    log = tmp_path / "serve.log"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CANARY_AWS)
    monkeypatch.setenv("GB_SITE_HINT", "passed-on")
    serve = start_serve(config, log)
    try:
        yield config, log
    finally:
        serve.terminate()
        serve.wait(timeout=30)


def test_a_job_started_by_serve_sees_neither_its_secrets_nor_shows_its_own(
    served: tuple[Path, Path], tmp_path: Path,
) -> None:
    config, log = served
    out = tmp_path / "env.json"
    dump = f"import json, os; json.dump(dict(os.environ), open({str(out)!r}, 'w'))"
    done = gb("--config", str(config), "submit", "--env", f"TOKEN={CANARY_JOB}", "--",
              sys.executable, "-c", dump)
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.split()[0]
    wait_until(lambda: "SUCCEEDED" in gb("--config", str(config), "status", job_id).stdout,
               60, "the job to succeed")
    env = json.loads(out.read_text())
    assert CANARY_AWS not in json.dumps(env), "the control plane's secret reached the job"
    assert env["TOKEN"] == CANARY_JOB and env["GRIDBRIDGE_JOB_ID"] == job_id
    assert env["GB_SITE_HINT"] == "passed-on"  # the site's runtime.env_names
    assert "PATH" in env and "HOME" in env
    # neither canary in serve's log, the job's story, or any table but the job's own spec
    shown = log.read_text() + gb("--config", str(config), "status", job_id).stdout
    assert CANARY_AWS not in shown and CANARY_JOB not in shown
    with sqlite3.connect(tmp_path / "state.db") as db:
        tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in set(tables) - {"jobs"}:
            rows = json.dumps(db.execute(f'SELECT * FROM "{table}"').fetchall(), default=str)
            assert CANARY_JOB not in rows and CANARY_AWS not in rows, table
    # launch.json holds the job's env, the logs and results what it printed: the owner's only
    [attempt_dir] = [d for d in (tmp_path / "run" / "local" / "here").iterdir() if d.is_dir()]
    records = [*tmp_path.rglob("launch.json"), *tmp_path.rglob("result.json"),
               *tmp_path.rglob("*.log")]
    assert {p.name for p in records} >= {"launch.json", "result.json", "output.log",
                                          "attempt.log"}
    assert private(attempt_dir), oct(attempt_dir.stat().st_mode)
    assert [p for p in records if not private(p) and p.name != "serve.log"] == []


# the files' modes -----------------------------------------------------------------------------

@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o600), (0o000, 0o600), (0o277, 0o400)],
                         ids=["umask-022", "umask-000", "umask-277"])
def test_records_are_the_owners_alone_whatever_the_umask(tmp_path: Path, umask: int,
                                                         mode: int) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    old = os.umask(umask)
    try:
        put_bytes((tmp_path / "a" / "launch.json").as_uri(), b'{"env": {"K": "v"}}')
        put_bytes(str(tmp_path / "b" / "result.json"), b"{}")
    finally:
        os.umask(old)
    for path in (tmp_path / "a" / "launch.json", tmp_path / "b" / "result.json"):
        assert stat.S_IMODE(path.stat().st_mode) == mode, oct(path.stat().st_mode)


# Slurm: --export=NONE, and the site's env_names in the script ---------------------------------

class FakeSbatch:
    """Answers the adapter's commands as a Slurm login host would, recording each argv."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def run(self, argv: Sequence[str], *, input: str | None = None, timeout: float = 30.0,
            env: Mapping[str, str] | None = None) -> Completed:
        self.calls.append(list(argv))
        if argv[0] == "realpath":
            return Completed(0, f"{argv[-1]}\n", "")
        return Completed(0, "4242\n" if argv[0].endswith("sbatch") else "", "")

    def describe(self) -> str:
        return "fake"


HOSTILE_VALUE = "a,b=c 'q' \"dq\" $(touch pwned) `id`;\nnext"


def test_sbatch_exports_none_of_this_process_and_only_the_sites_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CANARY_AWS)
    monkeypatch.setenv("GB_SITE_HINT", HOSTILE_VALUE)
    site = SiteConfig(name="cluster", adapter="slurm", capacity=Capacity(cpus=4),
                      runtime=RuntimeSettings(python=sys.executable,
                                              env_names=("GB_SITE_HINT", "GB_UNSET_HINT")),
                      options={"remote_dir": str(tmp_path / "remote")})
    runner = FakeSbatch()
    adapter = SlurmAdapter(site, tmp_path / "work", runner=runner)
    spec = JobSpec(name="j", command=("true",), env={"TOKEN": CANARY_JOB})
    request = SubmitRequest(attempt_id="jx.1", job_id="jx", attempt=1, token=1, spec=spec,
                            checkpoint_url=(tmp_path / "ckpt").as_uri(),
                            attempt_url=(tmp_path / "attempts" / "jx.1").as_uri())
    assert adapter.submit(request) == "4242"
    [sbatch] = [c for c in runner.calls if c[0].endswith("sbatch")]
    [export] = [a.removeprefix("--export=") for a in sbatch if a.startswith("--export")]
    names = export.split(",")
    assert "GB_SITE_HINT" in names and "PATH" in names  # the site's names, what a process needs
    assert "AWS_SECRET_ACCESS_KEY" not in names and "GB_UNSET_HINT" not in names
    argv = json.dumps(sbatch)
    # by name only: sbatch takes the values from its environment, none is on a command line
    assert CANARY_AWS not in argv and CANARY_JOB not in argv and HOSTILE_VALUE not in argv


# what is printed ------------------------------------------------------------------------------

def test_submit_errors_name_the_variable_never_a_value(tmp_path: Path) -> None:
    home = {"GRIDBRIDGE_HOME": str(tmp_path / "home")}
    for args in (["--env", f"TOKEN={CANARY_JOB}", "--env", "GRIDBRIDGE_Y=1"],
                 ["--env", f"TOKEN={CANARY_JOB}", "--env", "BAD-NAME=1"],
                 ["--env", f"TOKEN{CANARY_JOB}"]):
        out = gb("submit", *args, "--", "true", env=home)
        assert out.returncode == 2, out.stdout + out.stderr
        assert CANARY_JOB not in out.stdout + out.stderr, out.stderr
        assert "--env" in out.stderr and "Traceback" not in out.stderr
    assert "GRIDBRIDGE_Y" in gb("submit", "--env", "GRIDBRIDGE_Y=1", "--", "true",
                                env=home).stderr


def test_the_python_api_names_the_variable_never_a_value(tmp_path: Path) -> None:
    from gridbridge import Client
    from gridbridge.config import default_config

    with Client(default_config(tmp_path / "home", cpus=1)) as client, \
            pytest.raises(ValueError) as refused:
        client.submit_command(["true"], env={"GRIDBRIDGE_Y": "1", "TOKEN": CANARY_JOB})
    assert "GRIDBRIDGE_Y" in str(refused.value)
    assert CANARY_JOB not in str(refused.value)


DB_URL = f"postgresql://gb:{CANARY_AWS}@db.example:5432/gridbridge"


def test_serve_logs_the_store_without_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import logging
    import signal

    import typer
    from typer.testing import CliRunner

    serve_mod = importlib.import_module("gridbridge.cli.serve")

    class Store:
        url = DB_URL

        def lease_holder(self, _name: str) -> None:
            return None

    class Made:
        store = Store()
        config = type("Config", (), {"sites": ()})()
        reconciler = type("Reconciler", (), {"run": staticmethod(lambda _stop: None)})()

    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    monkeypatch.setattr(serve_mod, "client", lambda _ctx: Made())
    monkeypatch.setattr(serve_mod, "log_handler", lambda _fmt: Keep())
    monkeypatch.setattr(signal, "signal", lambda *_: None)  # leave pytest's handlers be
    app = typer.Typer()
    app.command()(serve_mod.serve)
    result = CliRunner().invoke(app, [])
    assert result.exit_code == 0, result.output
    assert any("db.example:5432/gridbridge" in line for line in lines), lines
    assert not any(CANARY_AWS in line for line in lines), lines


def test_an_unavailable_store_is_named_without_its_password() -> None:
    locked = OperationalError("BEGIN", {}, Exception(f"database is locked ({DB_URL})"))
    with pytest.raises(StoreUnavailable) as raised, unavailable_as_error(DB_URL):
        raise locked
    assert "db.example:5432/gridbridge" in str(raised.value)
    assert CANARY_AWS not in str(raised.value)


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://gb:s3cr3t@db:5432/gb", "postgresql://db:5432/gb"),
    ("postgresql://gb:p/a?s#s@db/gb", "postgresql://db/gb"),
    ("postgresql://gb:p@ss@db/gb", "postgresql://db/gb"),
    ("https://k:s3cr3t@store.example/b/x?X-Amz-Signature=s3cr3t#s3cr3t",
     "https://store.example/b/x"),
    ("sqlite:////var/lib/a@b.db", "sqlite:////var/lib/a@b.db"),
    ("s3://bucket/a@b/c", "s3://bucket/a@b/c"),
    ("/plain/path", "/plain/path"),
])
def test_redact_url_hides_every_password(url: str, shown: str) -> None:
    from gridbridge.units import redact_url, redact_urls  # its one home

    assert redact_url(url) == shown
    assert redact_urls(f"could not reach '{url}': refused") == f"could not reach '{shown}': refused"


# a corrupt store ------------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["garbage", "pages"])
def test_a_corrupt_store_is_one_line_naming_the_file(tmp_path: Path, damage: str) -> None:
    db = tmp_path / "state.db"
    config = tmp_path / "gridbridge.yaml"
    config.write_text(yaml.safe_dump({
        "state_url": f"sqlite:///{db}", "checkpoint_root": "ckpt", "workdir": "run",
        "sites": [{"name": "here", "adapter": "local", "capacity": {"cpus": 1}}]}))
    if damage == "garbage":
        db.write_bytes(os.urandom(8192))
    else:  # a real store whose pages after the header were overwritten
        assert gb("--config", str(config), "status").returncode == 0
        with sqlite3.connect(db) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        data = bytearray(db.read_bytes())
        data[100:] = b"\xff" * (len(data) - 100)
        db.write_bytes(bytes(data))
    out = gb("--config", str(config), "status")
    lines = out.stderr.strip().splitlines()
    assert out.returncode != 0 and len(lines) == 1, out.stderr
    assert lines[0].startswith("error: ") and str(db) in lines[0] and "corrupt" in lines[0]
    assert "backup" in lines[0]
