"""Tables in a narrow terminal: at 80 and 100 columns every listing keeps what names a row
(job id, site, policy, step) whole on one line, and ids, states, times and money are never
broken; columns that do not fit are left out, with a note on stderr, never squeezed to
nothing. One rule (:func:`gridbridge.views.fit`) serves every view."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from rich.console import Console

from gridbridge.client import Client
from gridbridge.views import emit, fit
from tests.support.paths import DATA

SITES = ("gpu-cluster-west-scavenger", "spot-fleet-us-east-1c-v100", "edge-lab-raspberry-pi")
WIDTHS = (80, 100)


def gb(*args: str, config: Path | None = None, columns: int,
       timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS=str(columns))
    env.pop("GRIDBRIDGE_CONFIG", None)
    head = ["--config", str(config)] if config is not None else []
    return subprocess.run([sys.executable, "-m", "gridbridge.cli", *head, *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def whole_on_a_line(text: str, word: str) -> bool:
    return any(word in line for line in text.splitlines())


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "gridbridge.yaml"
    path.write_text(yaml.safe_dump({
        "state_url": "sqlite:///state.db", "checkpoint_root": "ckpt", "workdir": "run",
        "limits": {"tick_interval_s": 0.1},
        "sites": [{"name": name, "adapter": "local", "tier": tier, "capacity": {"cpus": 2},
                   "price": {"per_core_hour": 0.01 * (i + 1)}}
                  for i, (name, tier) in enumerate(zip(SITES, ("hpc", "cloud", "edge"),
                                                       strict=True))],
    }))
    return path


# the rule ------------------------------------------------------------------------------------

ROWS = [{"job": "j62a3c1563d9f", "name": "train-resnet", "state": "RUNNING", "attempts": 2,
         "site": SITES[0], "user": "alice", "team": "vision",
         "submitted": "2026-12-07T16:35:00Z", "why": "placed on the cheapest feasible offer"}]


def test_fit_keeps_everything_that_fits_and_drops_named_columns_first() -> None:
    columns = list(ROWS[0])
    assert fit(columns, ROWS, 400) == columns
    narrow = fit(columns, ROWS, 80, drop=("team", "user", "attempts", "submitted", "name"))
    assert narrow == ["job", "state", "site", "why"]
    unnamed = fit(columns, ROWS, 80)  # from the right
    assert unnamed == ["job", "name", "state", "attempts"]  # 26 more for the site: 83
    assert narrow == [c for c in columns if c in narrow]  # the order is kept


def test_the_key_column_stays_even_when_nothing_else_fits() -> None:
    assert fit(["job", "why"], ROWS, 10) == ["job"]


@pytest.mark.parametrize("width", WIDTHS)
def test_emit_never_breaks_a_word_and_says_what_it_left_out(width: int) -> None:
    out, notes = Console(file=_Buffer(), width=width), Console(file=_Buffer(), width=width)
    emit(out, "jobs", list(ROWS[0]), ROWS, drop=("team", "user", "attempts", "name"),
         notes=notes)
    text = out.file.getvalue()
    for word in ("j62a3c1563d9f", "RUNNING", SITES[0]):
        assert whole_on_a_line(text, word), (word, text)
    assert max(len(line) for line in text.splitlines()) <= width
    assert "left out at" in notes.file.getvalue()


class _Buffer:
    """A text file that keeps what was written (rich writes with ``write``)."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def getvalue(self) -> str:
        return "".join(self.parts)


# the views -----------------------------------------------------------------------------------

@pytest.mark.parametrize("width", WIDTHS)
def test_sites_list_shows_every_site_name_whole(config: Path, width: int) -> None:
    out = gb("sites", "list", config=config, columns=width)
    assert out.returncode == 0, out.stderr
    for name in SITES:
        assert whole_on_a_line(out.stdout, name), out.stdout
    assert max(len(line) for line in out.stdout.splitlines()) <= width


@pytest.mark.parametrize("width", WIDTHS)
def test_status_shows_every_job_id_whole(config: Path, width: int) -> None:
    with Client(config, start=False) as client:
        ids = [client.submit_command(["true"], name=f"long-job-name-{i}").job_id
               for i in range(3)]
    out = gb("status", config=config, columns=width)
    assert out.returncode == 0, out.stderr
    for job_id in ids:
        assert whole_on_a_line(out.stdout, job_id), out.stdout
    assert whole_on_a_line(out.stdout, "PENDING")


@pytest.mark.parametrize("width", WIDTHS)
def test_simulate_deadline_keeps_the_policy_column(width: int) -> None:
    c1 = DATA / "spot-availability/preemption-1-node_aws-04-22-2023_us-east-1c_v100_1.json.gz"
    if not c1.exists():
        pytest.skip(f"{c1.name} is not in the shared data")
    out = gb("simulate", "deadline", "--availability", str(c1), "--job-hours", "8",
             "--deadline-hours", "10", "--restart-hours", "0.1", "--stride-hours", "4",
             columns=width)
    assert out.returncode == 0, out.stderr
    for policy in ("uniform-progress", "omniscient", "greedy", "gridbridge"):
        assert whole_on_a_line(out.stdout, policy), out.stdout
    assert "left out at" in out.stderr


@pytest.mark.parametrize("width", WIDTHS)
def test_checkpoints_list_shows_whole_times(tmp_path: Path, width: int) -> None:
    from gridbridge.checkpoint import open as open_store

    with open_store(f"file://{tmp_path}/root/job1") as store:
        store.save(7, {"w": np.arange(4.0)}, metadata={"epoch": 3, "note": "x" * 60})
    out = gb("checkpoints", "list", "--root", f"file://{tmp_path}/root", "job1",
             columns=width)
    assert out.returncode == 0, out.stderr
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", out.stdout), out.stdout


@pytest.mark.parametrize("width", WIDTHS)
def test_explain_keeps_the_reason_readable(config: Path, width: int) -> None:
    from gridbridge.views import TEXT_MIN

    with Client(config) as client:
        future = client.submit_command(["true"], name="explained")
        future.wait(timeout=60)
        reasons = [d.reason for d in client.store.decisions(future.job_id)]
    out = gb("explain", future.job_id, config=config, columns=width)
    assert out.returncode == 0, out.stderr
    for name in SITES:
        assert whole_on_a_line(out.stdout, name), out.stdout
    # the reason wraps between its words, and no word that fits the narrowest text column
    # (TEXT_MIN) is broken
    words = {w for r in reasons for w in r.split() if len(w) <= TEXT_MIN}
    assert words and all(whole_on_a_line(out.stdout, w) for w in words), out.stdout
