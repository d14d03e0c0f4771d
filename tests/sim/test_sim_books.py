"""A simulator's what-if written into a store (``simulate --store``) reads like real books:
the finance reports run on it and agree with the simulator's own totals."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from tests.support.paths import DATA as _DATA

DATA = _DATA
TRACE = DATA / "swf" / "KTH-SP2-1996-2.1-cln-first300.swf"
SPOT = DATA / "ec2" / "spot-prices-us-east-1-2021-03.csv"
ADVISOR = DATA / "ec2" / "spot-advisor-us-east-1-2021-02.json"
ONDEMAND = DATA / "ec2" / "ondemand-prices-us-east-1-2019-04.csv"


def gb(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, GRIDBRIDGE_HOME=str(home), COLUMNS="200")
    env.pop("GRIDBRIDGE_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "gridbridge.cli", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def simulate(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    sites = tmp_path / "sites.yaml"
    # a small cheap cluster, a cheaper edge pool that flaps, and the market: jobs spread over
    # the three tiers, and the flaps throw work away
    sites.write_text("hpc:\n  cores: 32\n  per_core_hour: 0.004\n"
                     "cloud:\n  types: [c5.large, c5.xlarge, m5.large]\n"
                     "edge:\n  - name: lab\n    cores: 16\n    per_core_hour: 0.001\n"
                     "    interruptions_per_hour: 0.5\n")
    return gb("simulate", "--trace", str(TRACE), "--spot-prices", str(SPOT), "--spot-advisor",
              str(ADVISOR), "--ondemand", str(ONDEMAND), "--sites", str(sites), "--limit",
              "150", "--format", "json", *extra, home=tmp_path)


@pytest.fixture(scope="module")
def whatif(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict[str, object]]:
    tmp = tmp_path_factory.mktemp("whatif")
    url = f"sqlite:///{tmp / 'whatif.db'}"
    out = simulate(tmp, "--policy", "cheapest", "--store", url, "--plots", str(tmp / "plots"))
    assert out.returncode == 0, out.stderr
    [row] = [r for r in json.loads(out.stdout) if r["policy"] == "cheapest"]
    assert "wrote" in out.stderr and url in out.stderr
    page = (tmp / "plots" / "report.html").read_text()
    assert page.count("<svg") == 2 and "<td>cheapest</td>" in page
    return tmp, url, row


def rows_of(out: subprocess.CompletedProcess[str]) -> list[dict[str, str]]:
    assert out.returncode == 0, out.stderr
    return list(csv.DictReader(io.StringIO(out.stdout)))


def test_the_reports_read_a_what_if_and_agree_with_the_simulator(
        whatif: tuple[Path, str, dict[str, object]]) -> None:
    home, url, sim = whatif
    span = ("--since", "2000-01-01", "--until", "2100-01-01")
    tiers = rows_of(gb("report", "costs", "--store", url, "--by", "tier", *span,
                       "--format", "csv", home=home))
    total = tiers[-1]
    assert total["tier"] == "TOTAL"
    # the simulator rounds its total to cents
    assert float(total["cost"]) == pytest.approx(float(str(sim["total_cost"])), abs=0.005)
    by = {r["tier"]: r for r in tiers[:-1]}
    assert set(by) == {"hpc", "cloud", "edge"}
    assert int(by["edge"]["preempted"]) > 0 and Decimal(by["edge"]["lost_cost"]) > 0
    assert Decimal(by["hpc"]["lost_cost"]) == 0  # no interruptions on the cluster
    assert int(total["attempts"]) >= 150  # every job ran at least once
    assert Decimal(total["savings"]) == Decimal(total["on_demand_cost"]) - Decimal(total["cost"])
    jobs = rows_of(gb("report", "costs", "--store", url, "--by", "job", *span, "--format",
                      "csv", home=home))
    assert all(r["name"].startswith("swf-") and r["state"] == "SUCCEEDED" for r in jobs[:-1])
    teams = rows_of(gb("report", "costs", "--store", url, "--by", "team", *span, "--format",
                       "csv", home=home))
    assert all(r["team"].startswith("group-") for r in teams[:-1])  # the trace's groups
    placed = rows_of(gb("report", "placements", "--store", url, *span, "--format", "csv",
                        home=home))
    assert len(placed) - 1 == int(total["attempts"])  # every attempt was placed by place()
    assert all(r["site"] and r["expected_cost"] for r in placed[:-1])
    assert any(r["runner_up"] for r in placed[:-1])
    page = home / "whatif.html"
    out = gb("report", "html", "--store", url, *span, "-o", str(page), home=home)
    assert out.returncode == 0, out.stderr
    assert page.read_text().count("<svg") == 6


def test_a_what_if_store_takes_one_policy_and_never_mixes_with_other_books(
        whatif: tuple[Path, str, dict[str, object]], tmp_path: Path) -> None:
    _, url, _ = whatif
    again = simulate(tmp_path, "--policy", "cheapest", "--store", url)
    assert again.returncode == 2 and "already holds jobs" in again.stderr
    every = simulate(tmp_path, "--store", f"sqlite:///{tmp_path / 'all.db'}")
    assert every.returncode == 2 and "one policy" in every.stderr
    typo = gb("report", "costs", "--store", f"sqlite:///{tmp_path / 'whatfi.db'}",
              home=tmp_path)
    assert typo.returncode == 2 and "no such state store" in typo.stderr
    assert not (tmp_path / "whatfi.db").exists()  # a report never makes a store
