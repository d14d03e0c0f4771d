"""Smaller snags of issue 26 (item 11), as a user meets them: money in JSON and CSV as plain
decimals (never ``2e-06``), ``sites list`` before any reconciler ran, and ``--resumable``."""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from rich.console import Console

from gridbridge.client import Client
from gridbridge.config import GridConfig, default_config
from gridbridge.views import Format, csv_text, decimal_text, emit, json_text
from tests.cli.test_cli_ux import gb

EXPONENT = re.compile(r"\d[eE][-+]?\d")
PLAIN = re.compile(r"^-?\d+\.\d+$")


def test_json_and_csv_write_tiny_amounts_as_plain_decimals() -> None:
    rows = [{"cost": Decimal("2E-6"), "price": 2e-06, "n": 3, "team": "vision"}]
    text = json_text(["cost", "price", "n", "team"], rows)
    assert not EXPONENT.search(text) and '"cost": 0.000002' in text
    assert json.loads(text) == [{"cost": 0.000002, "price": 0.000002, "n": 3, "team": "vision"}]
    assert csv_text(["cost", "price"], rows) == "cost,price\n0.000002,0.000002\n"
    assert decimal_text(Decimal("1.50")) == "1.50" and decimal_text(1e16) == "10000000000000000"
    out = io.StringIO()
    emit(Console(file=out), "t", ["cost", "price"], rows, Format.JSON)
    assert not EXPONENT.search(out.getvalue())
    assert json.loads(out.getvalue())[0]["cost"] == 0.000002


def test_report_json_and_csv_of_a_tiny_job_have_no_exponents(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with Client(_default(home)) as client:
        # a second on a cheap core: a few millionths of a dollar, 3e-06 as a float
        sleep = [sys.executable, "-c", "import time; time.sleep(1)"]
        assert client.submit_command(sleep).result(timeout=60) == 0
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    report = ["report", "costs", "--by", "job", "--since", day, "--format"]
    out = gb(*report, "json", GRIDBRIDGE_HOME=str(home))
    assert out.returncode == 0, out.stderr
    written: list[str] = []  # each number with a fraction, as the report wrote it
    json.loads(out.stdout, parse_float=lambda text: written.append(text) or 0.0)
    assert written and all(PLAIN.match(text) for text in written), written
    out = gb(*report, "csv", GRIDBRIDGE_HOME=str(home))
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert 0 < Decimal(rows[-1]["cost"]) < Decimal("0.01")  # a tiny amount, written plainly
    for col in ("cost", "on_demand_cost", "savings", "lost_cost", "core_hours"):
        assert all(PLAIN.match(r[col]) for r in rows), (col, [r[col] for r in rows])


def _default(home: Path) -> GridConfig:
    return default_config(home)


def test_sites_list_before_any_reconciler_says_not_checked(tmp_path: Path) -> None:
    out = gb("sites", "list", columns=80, GRIDBRIDGE_HOME=str(tmp_path / "home"))
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if "spot-local" in line]
    assert lines and "not checked" in lines[0] and "unknown" not in out.stdout
    assert max(len(line) for line in out.stdout.splitlines()) <= 80


def test_submit_resumable_reaches_the_spec(tmp_path: Path) -> None:
    home = tmp_path / "home"
    out = gb("submit", "--resumable", "--", "true", GRIDBRIDGE_HOME=str(home))
    assert out.returncode == 0, out.stderr
    plain = gb("submit", "--", "true", GRIDBRIDGE_HOME=str(home))
    with Client(_default(home), start=False) as client:
        assert client.store.job(out.stdout.split()[0]).spec.checkpoint.resumable
        assert not client.store.job(plain.stdout.split()[0]).spec.checkpoint.resumable
