"""The command line's manners, through the installed ``gridbridge`` console script: unknown ids
are errors, one time format, numbers as numbers, one line per error, help without artefacts."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import typer
import yaml

from gridbridge.cli import app
from gridbridge.client import Client
from tests.support.paths import REPO as _REPO
from tests.support.serving import cheap_and_steady_config

GRIDBRIDGE = str(Path(sys.executable).with_name("gridbridge"))
ROOT = _REPO
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def gb(*args: str, columns: int = 200, timeout: float = 120,
       **extra: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS=str(columns), **extra)
    env.pop("GRIDBRIDGE_CONFIG", None)
    return subprocess.run([GRIDBRIDGE, *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def one_error_line(out: subprocess.CompletedProcess[str]) -> str:
    """The run failed as a usage error: exit 2 and exactly one line, ``error: ...``."""
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    return lines[0]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return cheap_and_steady_config(
        tmp_path, options={"grace_s": 1, "reclaim_after_preemption_s": 30})


def queue(config: Path, *jobs: tuple[str, dict[str, str]]) -> list[str]:
    """Jobs in the store (none runs: no reconciler), oldest first."""
    with Client(config, start=False) as client:
        return [client.submit_command(["true"], name=name, owner=owner).job_id
                for name, owner in jobs]


# unknown ids ---------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["status", "j-nope"], ["logs", "j-nope"], ["cancel", "j-nope"], ["explain", "j-nope"],
    ["checkpoints", "list", "j-nope"], ["checkpoints", "show", "j-nope"],
    ["checkpoints", "verify", "j-nope"], ["debug", "preempt", "j-nope.1"],
])
def test_an_unknown_id_is_one_error_line_and_exit_2(config: Path, argv: list[str]) -> None:
    assert "j-nope" in one_error_line(gb("--config", str(config), *argv))


# status ----------------------------------------------------------------------------------------

def test_status_says_how_many_jobs_are_hidden_and_filters(config: Path) -> None:
    ids = queue(config, ("train", {"team": "lab", "user": "ana"}),
                ("train", {"team": "vision", "user": "ben"}),
                ("eval", {"team": "lab", "user": "ben"}))
    out = gb("--config", str(config), "status", "--limit", "2", "--format", "json")
    assert out.returncode == 0, out.stderr
    assert [r["job"] for r in json.loads(out.stdout)] == [ids[2], ids[1]]
    assert "showing the newest 2 of 3 jobs; 1 hidden" in out.stderr

    def listed(*filters: str) -> list[str]:
        out = gb("--config", str(config), "status", "--format", "json", *filters)
        assert out.returncode == 0, out.stderr
        assert "hidden" not in out.stderr
        return sorted(r["job"] for r in json.loads(out.stdout))

    assert listed("--team", "lab") == sorted([ids[0], ids[2]])
    assert listed("--user", "ben") == sorted([ids[1], ids[2]])
    assert listed("--name", "train", "--team", "vision") == [ids[1]]
    assert listed("--state", "pending") == sorted(ids)
    assert listed("--state", "SUCCEEDED", "--state", "FAILED") == []


@pytest.mark.parametrize("limit", ["-1", "0"])
def test_status_refuses_a_limit_below_one(config: Path, limit: str) -> None:
    assert "--limit" in one_error_line(gb("--config", str(config), "status", "--limit", limit))


# --config anywhere, --version, one style of usage error ----------------------------------------

def test_config_works_after_the_subcommand_too(config: Path) -> None:
    [job] = queue(config, ("here", {}))
    for argv in (["status", "-c", str(config), "-f", "json"],
                 ["status", "--config", str(config), "-f", "json"],
                 ["--config", str(config), "status", "-f", "json"]):
        out = gb(*argv)
        assert out.returncode == 0, (argv, out.stderr)
        assert [r["job"] for r in json.loads(out.stdout)] == [job]
    nested = gb("sites", "list", "-f", "json", "-c", str(config))
    assert {s["site"] for s in json.loads(nested.stdout)} == {"cheap", "steady"}


def test_version() -> None:
    from importlib.metadata import version

    out = gb("--version")
    assert (out.returncode, out.stdout.strip()) == (0, f"gridbridge {version('gridbridge')}")


@pytest.mark.parametrize("argv", [
    ["status", "--bogus"], ["submit", "--env", "NOEQUALS", "--", "true"],
    ["submit", "--policy", "cheapestt", "--", "true"], ["sites", "check", "nowhere"],
])
def test_usage_errors_are_one_line(config: Path, argv: list[str]) -> None:
    one_error_line(gb("--config", str(config), *argv))


# debug preempt ---------------------------------------------------------------------------------

def test_debug_preempt_refuses_an_attempt_that_has_ended(config: Path) -> None:
    done = gb("--config", str(config), "submit", "--wait", "--site", "cheap", "--",
              sys.executable, "-c", "pass")
    assert done.returncode == 0, done.stderr
    job = done.stdout.split()[0]
    line = one_error_line(gb("--config", str(config), "debug", "preempt", f"{job}.1"))
    assert "SUCCEEDED" in line and "running" in line
    sites = json.loads(gb("--config", str(config), "sites", "list", "-f", "json").stdout)
    assert {s["site"]: s["free_cpus"] for s in sites} == {"cheap": 2, "steady": 2}, \
        "a refused preemption reclaims nothing"


# submit ----------------------------------------------------------------------------------------

def test_submit_reaches_every_api_option(config: Path, tmp_path: Path) -> None:
    ckpt = (tmp_path / "elsewhere").as_uri()
    out = gb("--config", str(config), "submit", "--name", "full", "--cpus", "2",
             "--memory-gb", "1.5", "--gpus", "0", "--walltime-s", "600", "--site", "cheap",
             "--site", "steady", "--deny-site", "steady", "--tier", "cloud", "--tier", "HPC",
             "--max-attempts", "3", "--priority", "7", "--max-cost", "2.5", "--env", "A=1",
             "--env", "B=x=y", "--checkpoint-url", ckpt, "--checkpoint-interval-s", "30",
             "--user", "ana", "--team", "lab", "--project", "vision", "--", "true")
    assert out.returncode == 0, out.stderr
    with Client(config, start=False) as client:
        spec = client.store.job(out.stdout.split()[0]).spec
    assert (spec.resources.cpus, spec.resources.memory_gb, spec.resources.walltime_s) == (
        2, 1.5, 600)
    assert spec.constraints.allowed_sites == {"cheap", "steady"}
    assert spec.constraints.denied_sites == {"steady"}
    assert spec.constraints.tiers == {"cloud", "hpc"}
    assert (spec.max_attempts, spec.priority, spec.max_cost) == (3, 7, 2.5)
    assert spec.env == {"A": "1", "B": "x=y"}
    assert (spec.checkpoint.url, spec.checkpoint.interval_s) == (ckpt, 30)
    assert (spec.owner.user, spec.owner.team, spec.owner.project) == ("ana", "lab", "vision")


def test_a_cli_job_is_charged_to_its_team(config: Path) -> None:
    done = gb("--config", str(config), "submit", "--wait", "--team", "lab", "--",
              sys.executable, "-c", "pass")
    assert done.returncode == 0, done.stderr
    rows = json.loads(gb("--config", str(config), "report", "costs", "--by", "team",
                         "--format", "json").stdout)
    assert [r["team"] for r in rows if r["team"] != "TOTAL"] == ["lab"]


def test_every_option_and_argument_has_help_text() -> None:
    def walk(command: typer.main.TyperGroup | object, path: str) -> list[str]:
        missing = [f"{path} {p.name}" for p in getattr(command, "params", [])
                   if not getattr(p, "help", None)]
        for name, sub in getattr(command, "commands", {}).items():
            missing += walk(sub, f"{path} {name}")
        return missing

    assert walk(typer.main.get_command(app), "gridbridge") == []


# the API ---------------------------------------------------------------------------------------

def test_a_misspelt_api_option_names_the_valid_ones(config: Path) -> None:
    with Client(config, start=False) as client:
        with pytest.raises(ValueError, match=r"unknown job option 'cpu'; valid options: ") as bad:
            client.submit_command(["true"], cpu=2)
        assert "cpus" in str(bad.value) and "max_attempts" in str(bad.value)
        assert "pydantic" not in str(bad.value) and "http" not in str(bad.value)
        with pytest.raises(ValueError, match=r"constraints\.tierz: unknown field 'tierz'; "
                                             r"valid fields: .*tiers") as nested:
            client.submit_command(["true"], constraints={"tierz": ["hpc"]})
        assert "http" not in str(nested.value)


# the state database ----------------------------------------------------------------------------

def state_config(tmp_path: Path, state_url: str) -> Path:
    path = tmp_path / "state.yaml"
    path.write_text(yaml.safe_dump({
        "state_url": state_url, "checkpoint_root": "ckpt", "workdir": "run",
        "sites": [{"name": "here", "adapter": "local", "capacity": {"cpus": 1}}],
    }))
    return path


def test_a_state_database_under_a_file_names_state_url(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    config = state_config(tmp_path, f"sqlite:///{tmp_path / 'a-file' / 'state.db'}")
    line = one_error_line(gb("--config", str(config), "status"))
    assert "state_url" in line and "is a file, not a folder" in line


def test_postgres_without_its_driver_names_state_url_and_the_extra(tmp_path: Path) -> None:
    # the driver is installed here (the store tests run on PostgreSQL): this run cannot
    # import it, as on a machine without the extra
    gone = tmp_path / "no-driver" / "psycopg"
    gone.mkdir(parents=True)
    (gone / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'psycopg'\", name='psycopg')\n")
    config = state_config(tmp_path, "postgresql://gb:s3cret@localhost/gridbridge")
    line = one_error_line(gb("--config", str(config), "status",
                             PYTHONPATH=str(gone.parent)))
    assert "state_url" in line and "gridbridge[postgres]" in line
    assert "s3cret" not in line


def test_the_postgres_extra_is_declared_and_set_up_for_the_tests() -> None:
    """The store and chaos tests run on a real PostgreSQL too, so `make setup` installs its
    driver; a user's `pip install gridbridge` does not need it."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert any(d.startswith("psycopg[binary]") for d in extras["postgres"])
    setup = [line for line in (ROOT / "Makefile").read_text().splitlines() if "pip install" in line
             and "-e " in line]
    assert setup and all("postgres" in line for line in setup)


# times, numbers, tables, help ------------------------------------------------------------------

def test_times_are_iso_utc_in_tables_csv_and_json(config: Path) -> None:
    [job] = queue(config, ("when", {}))
    as_json = json.loads(gb("--config", str(config), "status", "-f", "json").stdout)
    as_csv = list(csv.DictReader(io.StringIO(gb("--config", str(config), "status", "-f",
                                                "csv").stdout)))
    stamp = as_json[0]["submitted"]
    assert ISO.match(stamp) and as_csv[0]["submitted"] == stamp
    assert stamp in gb("--config", str(config), "status").stdout
    story = json.loads(gb("--config", str(config), "status", job, "-f", "json").stdout)
    assert story and all(ISO.match(e["time"]) for e in story)


def test_json_and_csv_carry_numbers_not_display_strings(config: Path) -> None:
    sites = json.loads(gb("--config", str(config), "sites", "list", "-f", "json").stdout)
    assert {s["site"]: s["price_core_h"] for s in sites} == {"cheap": 0.01, "steady": 0.03}
    rows = list(csv.DictReader(io.StringIO(
        gb("--config", str(config), "sites", "list", "-f", "csv").stdout)))
    assert {r["site"]: float(r["price_core_h"]) for r in rows} == {"cheap": 0.01,
                                                                  "steady": 0.03}


def test_a_narrow_table_keeps_numbers_and_times_whole(config: Path) -> None:
    queue(config, ("narrow", {"team": "a-team-with-a-rather-long-name"}))
    stamp = json.loads(gb("--config", str(config), "status", "-f", "json").stdout)[0][
        "submitted"]
    table = gb("--config", str(config), "status", columns=80).stdout
    assert stamp in table, table
    assert max(len(line) for line in table.splitlines()) <= 80


HELP_ARTEFACTS = re.compile(r"\{\w+\}|``|<(bool|int|float|str|Path|list\[)")


@pytest.mark.slow
def test_help_has_no_typer_artefacts_and_cuts_nothing_at_80_columns() -> None:
    paths = [[]]
    root = typer.main.get_command(app)
    for name, sub in getattr(root, "commands", {}).items():
        paths.append([name])
        paths += [[name, leaf] for leaf in getattr(sub, "commands", {})]
    for path in paths:
        for columns in (80, 100):
            out = gb(*path, "--help", columns=columns)
            assert out.returncode == 0, (path, out.stderr)
            found = HELP_ARTEFACTS.findall(out.stdout)
            assert not found, (path, found, out.stdout)
            cut = [line for line in out.stdout.splitlines() if "…" in line]
            assert not cut, (path, columns, cut)  # no option name or default cut short
    assert "--config" in gb("status", "--help").stdout


# checkpoints -----------------------------------------------------------------------------------

def test_checkpoints_take_a_job_id_and_root_only_as_an_override(config: Path,
                                                                tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    saves = ("import gridbridge, numpy as np\n"
             "store = gridbridge.context().checkpoint\n"
             "for step in (1, 2):\n"
             "    store.save(step, {'w': np.full(4, step, dtype=np.float32)})\n")
    out = gb("--config", str(config), "submit", "--wait", "--checkpoint-url",
             (elsewhere / "mine").as_uri(), "--", sys.executable, "-c", saves)
    assert out.returncode == 0, out.stdout + out.stderr
    job = out.stdout.split()[0]
    listing = gb("--config", str(config), "checkpoints", "list", job, "-f", "json")
    assert listing.returncode == 0, listing.stderr
    steps = json.loads(listing.stdout)
    assert [r["step"] for r in steps] == [1, 2]
    assert all(ISO.match(r["time"]) for r in steps)
    override = gb("--config", str(config), "checkpoints", "list", "mine", "--root",
                  elsewhere.as_uri(), "-f", "json")
    assert [r["step"] for r in json.loads(override.stdout)] == [1, 2]
    missing = gb("--config", str(config), "checkpoints", "list", "other", "--root",
                 elsewhere.as_uri())
    assert "other" in one_error_line(missing)


# serve -----------------------------------------------------------------------------------------

def test_serve_logs_each_event_and_a_second_serve_stands_by(config: Path, tmp_path: Path) -> None:
    import signal
    import time

    from gridbridge.states import JobState

    def serve(log: Path, *extra: str) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            return subprocess.Popen([GRIDBRIDGE, "serve", "-c", str(config), *extra],
                                    stdout=out, stderr=subprocess.STDOUT)

    def wait_for(what: str, log: Path) -> None:
        deadline = time.monotonic() + 60
        while what not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)

    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = serve(first_log, "--log-format", "json")
    second = None
    try:
        wait_for('"event": "lease"', first_log)
        second = serve(second_log)
        wait_for("standing by", second_log)
        out = gb("--config", str(config), "submit", "--", sys.executable, "-c", "pass")
        assert out.returncode == 0, out.stderr
        with Client(config, start=False) as client:
            assert client.job(out.stdout.split()[0]).wait(60) is JobState.SUCCEEDED
        wait_for("SUCCEEDED", first_log)
    finally:
        for proc in (first, second):
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
    lines = [json.loads(line) for line in first_log.read_text().splitlines()]
    events = [line.get("event") for line in lines]
    for event in ("start", "lease", "placed", "submitted", "state", "shutdown"):
        assert event in events, (event, lines)
    assert all(ISO.match(line["time"]) for line in lines)
    holder = next(line["holder"] for line in lines if line.get("event") == "lease")
    standby = [line for line in second_log.read_text().splitlines() if "standing by" in line]
    assert len(standby) == 1 and holder in standby[0]
