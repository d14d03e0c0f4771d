"""Views are text: what a user typed prints as the characters typed, never as rich markup, a
terminal escape sequence or a spreadsheet formula; a job's output is shown with its control
characters escaped unless ``logs --raw`` asks for it as written."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from gridbridge.client import Client
from gridbridge.views import Format, emit, render
from tests.support.serving import cheap_and_steady_config

MARKUP = "[link=https://evil.example]click[/link][bold]me"
TITLE = "\x1b]0;pwned\x07"
"""An OSC escape: a terminal that receives it takes ``pwned`` as its window title."""
HOSTILE_TEAM = MARKUP + TITLE
FORMULA = "=cmd|' /C calc'!A0"


def gb(*args: str, config: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="400")
    env.pop("GRIDBRIDGE_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "gridbridge.cli", "--config", str(config),
                           *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return cheap_and_steady_config(tmp_path, options={"grace_s": 1})


def queue(config: Path, *teams: str) -> None:
    """One pending job per team (no reconciler runs)."""
    with Client(config, start=False) as client:
        for team in teams:
            client.submit_command(["true"], name="hostile", owner={"team": team})


# status ----------------------------------------------------------------------------------------

def test_a_markup_team_name_prints_literally_in_every_status_format(config: Path) -> None:
    queue(config, HOSTILE_TEAM)
    outs = {fmt: gb("status", "--format", fmt, config=config) for fmt in Format}
    for fmt, out in outs.items():
        assert out.returncode == 0, (fmt, out.stderr)
        assert "\x1b" not in out.stdout and "\x07" not in out.stdout, fmt
    assert MARKUP in outs[Format.TABLE].stdout  # the brackets, as typed
    [row] = csv.DictReader(io.StringIO(outs[Format.CSV].stdout))
    assert row["team"] == MARKUP
    [obj] = json.loads(outs[Format.JSON].stdout)
    assert obj["team"] == MARKUP


def test_a_formula_in_status_csv_stays_text(config: Path) -> None:
    queue(config, FORMULA, "-2+3", "plain")
    out = gb("status", "--format", "csv", config=config)
    assert out.returncode == 0, out.stderr
    teams = sorted(r["team"] for r in csv.DictReader(io.StringIO(out.stdout)))
    assert teams == sorted(["'" + FORMULA, "'-2+3", "plain"])


def test_emit_guards_every_csv_and_leaves_numbers_alone() -> None:
    from gridbridge.views import csv_text

    buf = io.StringIO()
    emit(Console(file=buf), "t", ["name", "n", "why"],
         [{"name": FORMULA, "n": -1.5, "why": "@SUM(A1)" + TITLE}], Format.CSV)
    assert buf.getvalue().splitlines()[1] == f"'{FORMULA},-1.5,'@SUM(A1)"
    assert buf.getvalue() == csv_text(["name", "n", "why"],  # one writer for every CSV
                                      [{"name": FORMULA, "n": -1.5, "why": "@SUM(A1)"}])


def test_a_table_on_a_terminal_makes_no_link_and_sends_no_title() -> None:
    """On a real terminal rich would turn ``[link=...]`` into an OSC 8 hyperlink; a cell is
    text, so only the table's own styling (CSI colours) reaches it."""
    buf = io.StringIO()
    term = Console(file=buf, force_terminal=True, color_system="standard", width=300)
    term.print(render(HOSTILE_TEAM, ["team"], [{"team": HOSTILE_TEAM}]))
    out = buf.getvalue()
    assert "\x1b]" not in out and "\x07" not in out
    assert out.count(MARKUP) == 2  # the title and the cell


@pytest.mark.parametrize(("typed", "shown"), [
    ("ok", "ok"),
    ("a\x1b[31mred\x1b[0m", "ared"),
    ("\x1b]8;;https://x\x1b\\link\x1b]8;;\x1b\\", "link"),
    ("back\x08\x08\x08\x08over\rline", "backoverline"),
    ("abc\u202edef", "abcdef"),  # a bidirectional override would show "abcfed"
    ("\x9b2Jcleared", "cleared"),
    ("\x1b]0;no end", "0;no end"),  # no terminator: only the introducer goes, no text
    ("two\nlines\tand a tab", "two\nlines\tand a tab"),
])
def test_plain_removes_control_characters_and_escape_sequences(typed: str, shown: str) -> None:
    from gridbridge.views import plain

    assert plain(typed) == shown


# logs ------------------------------------------------------------------------------------------

def test_logs_shows_a_jobs_escape_sequences_escaped_unless_raw(config: Path) -> None:
    done = gb("submit", "--wait", "--site", "cheap", "--", sys.executable, "-c",
              r"import sys; sys.stdout.write('before\x1b]0;x\x07after\n')", config=config)
    assert done.returncode == 0, done.stderr
    job = done.stdout.split()[0]
    shown = gb("logs", job, config=config)
    assert shown.returncode == 0, shown.stderr
    assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout
    assert r"before\x1b]0;x\x07after" in shown.stdout
    raw = gb("logs", "--raw", job, config=config)
    assert raw.returncode == 0, raw.stderr
    assert "before\x1b]0;x\x07after" in raw.stdout


def test_escape_controls_keeps_lines_and_shows_the_rest() -> None:
    from gridbridge.views import escape_controls

    assert escape_controls("a\x1b[2Jb\r\nc\rd\te\u202ef\n") == "a\\x1b[2Jb\nc\\rd\te\\u202ef\n"


# priority --------------------------------------------------------------------------------------

def test_submit_refuses_a_priority_outside_its_range(config: Path) -> None:
    out = gb("submit", "--priority", str(10**18), "--", "true", config=config)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "priority must be within -1000..1000" in out.stderr
    with Client(config, start=False) as client:
        assert client.store.jobs(None, 10) == []
