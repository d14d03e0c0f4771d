"""``gridbridge report ...`` through the real console script, on a store filled by real runs of
the embedded default: jobs of two teams, one of them preempted for real and resumed on the
dearer site, so the ledger holds savings, lost work and placements with a runner-up."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from gridbridge.client import Client
from gridbridge.reports import money
from tests.support.paths import REPO as _REPO

WAIT_FOR_STOP = ("import gridbridge, sys, time\n"
                 "ctx = gridbridge.context()\n"
                 "if ctx.attempt > 1: sys.exit(0)\n"
                 "while not ctx.should_stop(): time.sleep(0.05)\n"
                 "sys.exit(75)\n")


@dataclass
class Books:
    home: Path
    since: str
    """The day the runs began (UTC), for --since."""
    first_batch_end: str
    """An instant after the first batch ended, for a window regenerated later."""
    budgets: Path
    """A config over the same store, with budgets and an allocation."""
    preempted_job: str
    jobs: dict[str, str]
    """Job id to name."""


def gb(books: Books, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, GRIDBRIDGE_HOME=str(books.home), COLUMNS="200")
    env.pop("GRIDBRIDGE_CONFIG", None)
    pre = ["--config", str(config)] if config else []
    return subprocess.run([sys.executable, "-m", "gridbridge.cli", *pre, *args], env=env,
                          capture_output=True, text=True, timeout=120)


def ok(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 0, out.stderr
    return out.stdout


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def books(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Books]:
    home = tmp_path_factory.mktemp("books")
    old = os.environ.get("GRIDBRIDGE_HOME")
    os.environ["GRIDBRIDGE_HOME"] = str(home)
    began = time.time()
    try:
        with Client(start=True) as client:
            # first, so that it takes the cheap spot site before the others fill it
            long = client.submit_command([sys.executable, "-c", WAIT_FOR_STOP],
                                         name="long", owner={"team": "nlp", "project": "orbit"})
            deadline = time.monotonic() + 60
            while long.status() != "RUNNING":
                assert time.monotonic() < deadline, "the long job never started"
                time.sleep(0.1)
            quick = [client.submit_command([sys.executable, "-c", "print('ok')"],
                                           name=f"quick-{team}", owner={"team": team,
                                                                       "project": "atlas"})
                     for team in ("vision", "nlp", "vision")]
            time.sleep(1.0)  # some work to lose
            client.preempt(long.job_id)
            for f in [*quick, long]:
                f.result(timeout=120)
            assert len(client.store.attempts(long.job_id)) == 2
            jobs = {f.job_id: n for f, n in zip([*quick, long],
                                                ["quick-vision", "quick-nlp", "quick-vision",
                                                 "long"], strict=True)}
            state_url, root = client.config.state_url, client.config.checkpoint_root
    finally:
        if old is None:
            os.environ.pop("GRIDBRIDGE_HOME", None)
        else:
            os.environ["GRIDBRIDGE_HOME"] = old
    first_end = time.time() + 0.5
    time.sleep(1.0)
    budgets = home / "with-budgets.yaml"
    budgets.write_text(yaml.safe_dump({
        "state_url": state_url, "checkpoint_root": root, "workdir": str(home / "run"),
        "budgets": {"teams": {"vision": 5.0, "nlp": 0.000001}, "projects": {"atlas": 1.0},
                    "currency": "EUR"},
        "sites": [{"name": "ondemand-local", "adapter": "local", "capacity": {"cpus": 2},
                   "allocation": {"core_hours": 2.0}}],
    }))
    yield Books(home=home, since=datetime.fromtimestamp(began, UTC).strftime("%Y-%m-%d"),
                first_batch_end=_iso(first_end), budgets=budgets,
                preempted_job=long.job_id, jobs=jobs)


def ledger(books: Books) -> list[dict[str, object]]:
    from gridbridge.scheduler.store import StateStore

    store = StateStore(f"sqlite:///{books.home / 'state.db'}")
    try:
        return store.ledger_records()
    finally:
        store.engine.dispose()


MONEY = re.compile(r"^-?\d+\.\d{6}$")


def test_costs_by_team_add_up_exactly_to_the_ledger(books: Books) -> None:
    rows = rows_of(ok(gb(books, "report", "costs", "--by", "team", "--since", books.since,
                         "--format", "csv")))
    assert [r["team"] for r in rows[:-1]] and rows[-1]["team"] == "TOTAL"
    assert {r["team"] for r in rows[:-1]} == {"vision", "nlp"}
    for r in rows:
        for col in ("cost", "on_demand_cost", "savings", "lost_cost"):
            assert MONEY.match(r[col]), (col, r[col])  # decimal text, no float artefacts
        assert Decimal(r["savings"]) == Decimal(r["on_demand_cost"]) - Decimal(r["cost"])
        assert r["currency"] == "USD"
    for col in ("cost", "on_demand_cost", "lost_cost"):
        assert sum(Decimal(r[col]) for r in rows[:-1]) == Decimal(rows[-1][col]), col
    entries = ledger(books)
    assert len(entries) == 5  # three quick jobs, the long one preempted once
    assert Decimal(rows[-1]["cost"]) == sum((money(e["cost"]) for e in entries), money(0))
    by = {r["team"]: r for r in rows}
    assert int(by["nlp"]["preempted"]) == 1 and Decimal(by["nlp"]["lost_cost"]) > 0
    assert int(by["vision"]["attempts"]) == 2 and int(by["vision"]["preempted"]) == 0
    assert Decimal(rows[-1]["savings"]) > 0  # spot-local is a quarter of on-demand


def test_job_rows_carry_names_and_states_and_json_numbers_are_numbers(books: Books) -> None:
    rows = json.loads(ok(gb(books, "report", "costs", "--by", "job", "--since", books.since,
                            "--format", "json")))
    jobs = {r["job_id"]: r for r in rows if r["job_id"] != "TOTAL"}
    assert {j: r["name"] for j, r in jobs.items()} == books.jobs
    assert {r["state"] for r in jobs.values()} == {"SUCCEEDED"}
    assert jobs[books.preempted_job]["attempts"] == 2
    for r in rows:
        assert isinstance(r["cost"], float) and isinstance(r["attempts"], int)
    daily = rows_of(ok(gb(books, "report", "costs", "--by", "tier", "--every", "day",
                          "--since", books.since, "--format", "csv")))
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", r["period"]) for r in daily[:-1])
    assert Decimal(daily[-1]["cost"]) == Decimal(str(rows[-1]["cost"]))


def test_budgets_allocation_and_currency_come_from_the_config(books: Books) -> None:
    rows = rows_of(ok(gb(books, "report", "costs", "--by", "team", "--since", books.since,
                         "--format", "csv", config=books.budgets)))
    by = {r["team"]: r for r in rows}
    assert by["vision"]["currency"] == "EUR"
    # budgets are monthly: the window touches one month (or two, across a month's end)
    months = Decimal(by["vision"]["budget"]) / Decimal(5)
    assert months in (1, 2)
    assert Decimal(by["vision"]["budget_left"]) == Decimal(by["vision"]["budget"]) - Decimal(
        by["vision"]["cost"])
    assert by["TOTAL"]["budget"] == ""
    sites = rows_of(ok(gb(books, "report", "costs", "--by", "site", "--since", books.since,
                          "--format", "csv", config=books.budgets)))
    od = next(r for r in sites if r["site"] == "ondemand-local")
    assert Decimal(od["allocation_used"]) > 0
    assert Decimal(od["allocation_left"]) == Decimal(od["allocation_core_hours"]) - Decimal(
        od["allocation_used"])
    spot = next(r for r in sites if r["site"] == "spot-local")
    assert spot["allocation_core_hours"] == ""  # no allocation there


def test_forecast_names_each_budget_and_when_it_runs_out(books: Books) -> None:
    rows = json.loads(ok(gb(books, "report", "forecast", "--format", "json",
                            config=books.budgets)))
    by = {r["budget_of"]: r for r in rows}
    assert {"team:vision", "team:nlp", "project:atlas", "project:orbit"} <= set(by)
    assert by["team:nlp"]["runs_out"] == "exhausted"  # a budget of a millionth, spent
    assert by["project:orbit"]["budget"] is None
    assert by["team:vision"]["budget"] == 5.0
    month = rows_of(ok(gb(books, "report", "costs", "--by", "team", "--format", "csv",
                          config=books.budgets)))  # default period: this month
    vision = next(r for r in month if r["team"] == "vision")
    assert Decimal(str(by["team:vision"]["spent_to_date"])) == Decimal(vision["cost"])
    assert by["team:vision"]["forecast_month_end"] >= by["team:vision"]["spent_to_date"]


def test_placements_show_the_runner_up_and_the_totals(books: Books) -> None:
    rows = rows_of(ok(gb(books, "report", "placements", "--since", books.since,
                         "--format", "csv")))
    placed, total = rows[:-1], rows[-1]
    assert len(placed) == 5  # one placement per attempt
    long = [r for r in placed if r["job_id"] == books.preempted_job]
    assert [r["attempt"] for r in long] == ["1", "2"]
    assert long[0]["site"] == "spot-local" and long[0]["runner_up"] == "ondemand-local"
    assert Decimal(long[0]["vs_runner_up"]) > 0  # spot was the cheaper choice
    assert long[1]["site"] == "ondemand-local"  # spot-local was reclaimed after the preemption
    for col, total_col in (("vs_runner_up", "vs_runner_up"), ("vs_on_demand", "vs_on_demand"),
                           ("expected_cost", "expected_cost"), ("actual_cost", "actual_cost")):
        assert sum(Decimal(r[col] or 0) for r in placed) == Decimal(total[total_col]), col
    table = ok(gb(books, "report", "placements", "--since", books.since))
    assert "placement saved" in table and "over always the runner-up" in table


def test_a_past_window_is_the_same_after_new_attempts_end(books: Books) -> None:
    args = ("report", "costs", "--by", "job", "--since", books.since, "--until",
            books.first_batch_end, "--format", "csv")
    before = ok(gb(books, *args))
    placed_before = ok(gb(books, "report", "placements", "--since", books.since, "--until",
                          books.first_batch_end, "--format", "csv"))
    done = ok(gb(books, "submit", "--wait", "--name", "later", "--", sys.executable, "-c",
                 "pass"))
    assert "SUCCEEDED" in done
    assert len(ledger(books)) == 6
    assert ok(gb(books, *args)) == before
    assert ok(gb(books, "report", "placements", "--since", books.since, "--until",
                 books.first_batch_end, "--format", "csv")) == placed_before


def test_by_job_id_is_the_same_as_by_job(books: Books) -> None:
    by_job = ok(gb(books, "report", "costs", "--by", "job", "--since", books.since,
                   "--format", "csv"))
    assert ok(gb(books, "report", "costs", "--by", "job_id", "--since", books.since,
                 "--format", "csv")) == by_job


def test_an_empty_report_is_its_title_and_one_sentence(books: Books) -> None:
    out = ok(gb(books, "report", "costs", "--period", "2020-11"))
    assert out.splitlines() == [
        "costs by site, 2020-11 (USD; charged when an attempt ends)",
        "no attempts ended in 2020-11"]


def test_a_named_store_is_reported_whole_without_a_period(books: Books,
                                                          tmp_path: Path) -> None:
    """A what-if store (``simulate --store``) is dated when its trace was: with no period a
    report of it covers all of it, not this month."""
    import shutil

    copy = tmp_path / "whatif.db"
    shutil.copy(books.home / "state.db", copy)
    from gridbridge.scheduler.store import StateStore

    store = StateStore(f"sqlite:///{copy}")
    try:  # the same books, as if they had run in 2021
        with store.engine.begin() as c:
            c.exec_driver_sql("UPDATE ledger SET start = start - 1.6e8, \"end\" = \"end\" - 1.6e8")
    finally:
        store.engine.dispose()
    whole = rows_of(ok(gb(books, "report", "costs", "--by", "team", "--store",
                          f"sqlite:///{copy}", "--format", "csv")))
    assert {r["team"] for r in whole} >= {"vision", "nlp"}
    this_month = rows_of(ok(gb(books, "report", "costs", "--by", "team", "--store",
                               f"sqlite:///{copy}", "--period", books.since[:7],
                               "--format", "csv")))
    assert not [r for r in this_month if r["team"] != "TOTAL"]


def test_bad_periods_are_one_line_errors(books: Books) -> None:
    for args, says in ((("--period", "2026-13"), "month 13"),
                       (("--period", "soon"), "is not a year"),
                       (("--since", "yesterday"), "--since"),
                       (("--period", "2026-11", "--since", "2026-11-02"), "not both")):
        out = gb(books, "report", "costs", *args)
        assert out.returncode == 2, (args, out.stdout)
        assert says in out.stderr and "Traceback" not in out.stderr, out.stderr


# -- the HTML report in a real browser -----------------------------------------------------------

REPO = _REPO
CHARTS = ("spend-by-team", "spend-by-tier", "savings", "budget-burn-down", "lost-work",
          "top-jobs")


def _table(page: object, ident: str) -> list[dict[str, str]]:
    from selenium.webdriver.common.by import By

    rows = []
    for tr in page.find_elements(By.CSS_SELECTOR, f"#{ident} tbody tr"):  # type: ignore[attr-defined]
        cells = tr.find_elements(By.CSS_SELECTOR, "td[data-col]")
        rows.append({c.get_attribute("data-col"): c.text for c in cells})
    return rows


def shown_as(text: str, exact: str) -> bool:
    """``text`` (what the HTML page shows) is the CSV's ``exact`` amount rounded to the places
    it shows: finance reads cents where a column's amounts allow, the CSV keeps every digit."""
    if not exact:  # nothing, e.g. no allocation on that site
        return text == ""
    places = len(text.split(".")[1]) if "." in text else 0
    return Decimal(text.replace(",", "")) == Decimal(exact).quantize(Decimal(1).scaleb(-places))


@pytest.mark.browser
def test_the_html_report_draws_every_chart_in_chromium(books: Books, chromium: tuple[str, str],
                                                      tmp_path: Path) -> None:
    import tempfile

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    page_file = tmp_path / "report.html"
    ok(gb(books, "report", "html", "--since", books.since, "-o", str(page_file),
          config=books.budgets))
    text = page_file.read_text()
    # self-contained: nothing to fetch when it is opened
    assert not re.search(r"<script|<link|<img|@import|url\(", text)
    assert set(re.findall(r"https?://[^\s\"'<>]+", text)) == {"http://www.w3.org/2000/svg"}

    options = webdriver.ChromeOptions()
    options.binary_location = chromium[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
                f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    page = webdriver.Chrome(service=Service(chromium[1]), options=options)
    try:
        page.get(page_file.as_uri())
        drawn = page.execute_script(
            "return Array.from(document.querySelectorAll('figure[data-chart]')).map(f => {"
            "  const svg = f.querySelector('svg'); const box = svg.getBBox();"
            "  const marks = Array.from(svg.querySelectorAll('.mark')).map(m => m.getBBox())"
            "    .filter(b => b.width > 0 && b.height > 0).length;"
            "  return [f.dataset.chart, box.width, box.height, marks]; })")
        charts = {name: (w, h, marks) for name, w, h, marks in drawn}
        assert set(charts) == set(CHARTS)
        for name, (w, h, marks) in charts.items():
            assert w > 100 and h > 100, (name, w, h)
            assert marks > 0, f"{name} drew no bars or lines"
        errors = [e for e in page.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
        assert errors == []
        height = page.execute_script("return document.body.scrollHeight")
        page.set_window_size(1400, int(height) + 80)
        shot = tmp_path / "report.png"
        assert page.save_screenshot(str(shot)) and shot.stat().st_size > 20_000
        print(f"screenshot: {shot}")

        # the tables show exactly what the CSV says for the same period
        csv_team = {r["team"]: r for r in rows_of(ok(gb(
            books, "report", "costs", "--by", "team", "--since", books.since, "--format", "csv",
            config=books.budgets)))}
        html_team = _table(page, "costs-by-team")
        assert [r["team"] for r in html_team] == list(csv_team)
        for r in html_team:
            assert r["attempts"] == csv_team[r["team"]]["attempts"]
            for col in ("cost", "on_demand_cost", "savings"):
                assert shown_as(r[col], csv_team[r["team"]][col]), (r["team"], col)
        csv_site = {r["site"]: r for r in rows_of(ok(gb(
            books, "report", "costs", "--by", "site", "--since", books.since, "--format", "csv",
            config=books.budgets)))}
        for r in _table(page, "costs-by-site"):
            for col in ("cost", "allocation_used", "allocation_left"):
                assert shown_as(r[col], csv_site[r["site"]][col]), (r["site"], col)
        tile = page.execute_script(
            "return document.querySelector('[data-tile=\"spent\"]').textContent")
        assert shown_as(tile.split()[0], csv_team["TOTAL"]["cost"]), tile
    finally:
        page.quit()
