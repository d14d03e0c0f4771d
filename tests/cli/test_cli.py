"""The command line as a person uses it: real subprocesses, a real store, real jobs."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from gridbridge.client import Client
from gridbridge.config import load_config
from gridbridge.reports import money
from gridbridge.states import AttemptState, JobState
from tests.support.serving import cheap_and_steady_config


def gb(*args: str, config: Path | None = None, home: Path | None = None,
       timeout: float = 120, columns: int = 200) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS=str(columns))
    if home is not None:
        env["GRIDBRIDGE_HOME"] = str(home)
    pre = ["--config", str(config)] if config else []
    return subprocess.run([sys.executable, "-m", "gridbridge.cli", *pre, *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return cheap_and_steady_config(
        tmp_path, on_demand={"per_core_hour": 0.04}, preemption_rate_per_hour=0.2,
        options={"grace_s": 2, "reclaim_after_preemption_s": 5})


def test_config_schema_is_generated_json_schema() -> None:
    out = gb("config", "schema")
    assert out.returncode == 0, out.stderr
    schema = json.loads(out.stdout)
    assert "sites" in schema["properties"] and "SiteConfig" in schema["$defs"]


@pytest.mark.slow
def test_submit_wait_status_logs_and_cost_report(config: Path) -> None:
    out = gb("submit", "--wait", "--name", "hello", "--", sys.executable, "-c",
             "print('hello from the job')", config=config)
    assert out.returncode == 0, out.stderr
    job_id = out.stdout.split()[0]
    assert "SUCCEEDED" in out.stdout

    story = json.loads(gb("status", job_id, "--format", "json", config=config).stdout)
    states = [e["to"] for e in story if e["what"] == "job"]
    # A job this short may end between two polls, so RUNNING may or may not be seen.
    assert states in (["PENDING", "SCHEDULED", "SUCCEEDED"],
                      ["PENDING", "SCHEDULED", "RUNNING", "SUCCEEDED"])
    listing = gb("status", "--format", "csv", config=config)
    rows = list(csv.DictReader(io.StringIO(listing.stdout)))
    assert [(r["job"], r["state"], r["site"]) for r in rows] == [(job_id, "SUCCEEDED", "cheap")]
    assert "hello from the job" in gb("logs", job_id, config=config).stdout

    report = list(csv.DictReader(io.StringIO(
        gb("report", "costs", "--by", "site", "--format", "csv", config=config).stdout)))
    assert [r["site"] for r in report] == ["cheap", "TOTAL"]
    # the ledger charged the cheap site's price, and a quarter of its on-demand price ...
    with Client(config, start=False) as client:
        [entry] = client.store.ledger_records()
    assert entry["cost"] > 0 and entry["on_demand_cost"] == pytest.approx(4 * entry["cost"])
    # ... and the report shows exactly those amounts, rounded once to a millionth
    assert Decimal(report[0]["cost"]) == money(entry["cost"])
    assert Decimal(report[0]["on_demand_cost"]) == money(entry["on_demand_cost"])
    as_json = json.loads(gb("report", "costs", "--by", "team", "--format", "json",
                            config=config).stdout)
    assert as_json[0]["team"] == "default" and as_json[0]["attempts"] == 1


def test_sites_list_shows_live_offers(config: Path) -> None:
    sites = json.loads(gb("sites", "list", "--format", "json", config=config).stdout)
    assert {s["site"]: s["free_cpus"] for s in sites} == {"cheap": 2, "steady": 2}
    assert {s["site"]: s["preemptible"] for s in sites} == {"cheap": True, "steady": False}


def test_unknown_job_is_a_clean_error(config: Path) -> None:
    out = gb("cancel", "j-nope", config=config)
    assert out.returncode == 2
    assert "no job 'j-nope'" in out.stderr and "Traceback" not in out.stderr


def test_debug_preempt_requeues_through_a_running_serve(config: Path, tmp_path: Path) -> None:
    waits = ("import gridbridge, os, sys, time\n"
             "ctx = gridbridge.context()\n"
             "if ctx.attempt > 1: sys.exit(0)\n"
             "while not ctx.should_stop(): time.sleep(0.05)\n"
             "sys.exit(75)\n")
    with (tmp_path / "serve.log").open("w") as log:
        serve = subprocess.Popen([sys.executable, "-m", "gridbridge.cli", "--config",
                                  str(config), "serve"], stdout=log, stderr=subprocess.STDOUT)
    try:
        submitted = gb("submit", "--", sys.executable, "-c", waits, config=config)
        assert submitted.returncode == 0, submitted.stderr
        job_id = submitted.stdout.split()[0]
        client = Client(config, start=False)
        deadline = time.monotonic() + 60
        while client.store.job(job_id).state is not JobState.RUNNING:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        out = gb("debug", "preempt", f"{job_id}.1", config=config)
        assert out.returncode == 0, out.stderr
        future = client.job(job_id)
        assert future.wait(60) is JobState.SUCCEEDED
        first, second = client.store.attempts(job_id)
        assert (first.state, first.site) == (AttemptState.PREEMPTED, "cheap")
        assert (second.state, second.site) == (AttemptState.SUCCEEDED, "steady")
        client.close()
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=30)


@pytest.mark.slow
def test_demo_preempts_resumes_and_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    out = gb("demo", "--steps", "1500", "--keep", home=tmp_path, columns=80)  # a small terminal
    assert out.returncode == 0, out.stdout + out.stderr
    kept = re.search(r"kept the demo's state in (\S+): look at it with ", out.stdout)
    assert kept is not None, out.stdout
    status = gb("status", "--format", "json", home=Path(kept[1]))
    shutil.rmtree(kept[1])
    assert [j["state"] for j in json.loads(status.stdout)] == ["SUCCEEDED"], status.stderr
    assert "preempting" in out.stdout
    assert "spot-local -> ondemand-local" in out.stdout
    assert "bit-identical to an uninterrupted run: yes" in out.stdout
    # every table keeps its ids and site names whole on one line
    lines = out.stdout.splitlines()
    attempts = set(re.findall(r"\bj[0-9a-f]{6,16}\.\d\b", out.stdout))
    assert len(attempts) == 2, out.stdout
    for word in (*attempts, "spot-local", "ondemand-local", "SUCCEEDED", "PREEMPTED"):
        assert any(word in line for line in lines), (word, out.stdout)
    costs = lines[next(i for i, line in enumerate(lines) if line.startswith("costs")):]
    assert any("│ spot-local " in line for line in costs), out.stdout
    assert max(len(line) for line in lines if line[:1] in "┏┃┡│└") <= 80  # the tables


def test_checkpoints_commands_find_the_configured_root(config: Path) -> None:
    saves = ("import gridbridge, numpy as np\n"
             "store = gridbridge.context().checkpoint\n"
             "for step in (10, 20, 30):\n"
             "    store.save(step, {'w': np.full(100, step, dtype=np.float32)})\n")
    out = gb("submit", "--wait", "--", sys.executable, "-c", saves, config=config)
    assert out.returncode == 0, out.stdout + out.stderr
    job_id = out.stdout.split()[0]
    listing = json.loads(gb("checkpoints", "list", job_id, "--format", "json",
                            config=config).stdout)
    assert [row["step"] for row in listing] == [10, 20, 30]
    verify = gb("checkpoints", "verify", job_id, config=config)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    hostile = gb("checkpoints", "list", "../../etc", config=config)
    assert hostile.returncode != 0 and "Traceback" not in hostile.stderr


def test_config_check_finds_storage_that_cannot_be_used(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({
        "state_url": "sqlite:///state.db", "checkpoint_root": str(blocker / "ckpt"),
        "workdir": "run",
        "sites": [
            {"name": "here", "adapter": "local", "capacity": {"cpus": 1}},
            {"name": "faraway", "adapter": "local", "capacity": {"cpus": 1},
             "runtime": {"shared_filesystem": False, "prologue": ["echo 'unclosed"]}},
        ],
    }))
    bad = gb("config", "check", config=path)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "NotADirectoryError" in bad.stdout
    assert "faraway" in bad.stdout and "cannot reach the checkpoint root" in bad.stdout
    assert "site faraway prologue" in bad.stdout and "unexpected EOF" in bad.stdout
    good = gb("config", "check", config=write_good_config(tmp_path))
    assert good.returncode == 0, good.stdout + good.stderr
    assert "ok: 2 sites" in good.stdout


def write_good_config(tmp_path: Path) -> Path:
    path = tmp_path / "good.yaml"
    path.write_text(yaml.safe_dump({
        "state_url": "sqlite:///good.db", "checkpoint_root": "ckpt", "workdir": "run",
        "sites": [
            {"name": "here", "adapter": "local", "capacity": {"cpus": 1}},
            {"name": "also-here", "adapter": "local", "capacity": {"cpus": 1}},
        ],
    }))
    return path


def test_submit_takes_a_policy_and_who_pays(config: Path) -> None:
    bad = gb("submit", "--policy", "cheapestt", "--", "true", config=config)
    assert bad.returncode == 2
    assert "'cheapest', 'fastest', 'balanced' or 'deadline'" in bad.stderr
    done = gb("submit", "--policy", "fastest", "--team", "lab", "--project", "vision",
              "--wait", "--", sys.executable, "-c", "pass", config=config)
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.split()[0]
    with Client(load_config(config)) as client:
        job = client.store.job(job_id)
        [attempt] = client.store.attempts(job_id)
    assert job.spec.policy is not None and job.spec.policy.name == "fastest"
    assert (job.spec.owner.team, job.spec.owner.project) == ("lab", "vision")
    assert attempt.site == "steady", "the fastest: the preemptible site's expected run is longer"
