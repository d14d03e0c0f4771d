"""The dashboard of a real ``serve --listen``, driven in headless Chromium: an operator's jobs
page lists a running job, its page shows its story and its log growing, the sites page shows
a degraded site, finance's spend page matches ``report costs``, and a researcher sees only
their own jobs. The browser logs no error and fetches nothing from outside the service."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.service.conftest import Federation, served
from tests.support.serving import two_site_config, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.browser]

WRITER = ["python", "-c", "import time\nfor i in range(400):\n    print(f'tick {i}', "
          "flush=True)\n    time.sleep(0.25)\n"]
SLEEP = ["python", "-c", "import time; time.sleep(120)"]


@pytest.fixture
def fed(tmp_path: Path) -> Iterator[Federation]:
    """Sites ``a`` and ``b`` (local, heartbeat 1 s) and ``bad``: a Slurm site whose commands
    are not where its ``bin_dir`` says, so every call to it fails (degraded)."""
    config = two_site_config(tmp_path, cpus=(4, 2))
    data = yaml.safe_load(config.read_text())
    for site in data["sites"]:
        site["runtime"] = {"heartbeat_s": 1.0}
    (tmp_path / "empty-bin").mkdir()
    data["sites"].append({"name": "bad", "adapter": "slurm", "tier": "hpc",
                          "capacity": {"cpus": 8}, "price": {"per_core_hour": 0.001},
                          "uncertain_submit": "replace",
                          "options": {"bin_dir": str(tmp_path / "empty-bin")}})
    config.write_text(yaml.safe_dump(data))
    with served(config) as federation:
        yield federation


def _browser(chromium: tuple[str, str], tmp_path: Path, width: int = 1280) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", f"--window-size={width},900",
                f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(chromium[1]), options=options)


def _sign_in(page: Any, fed: Federation, who: str) -> None:
    from selenium.webdriver.common.by import By

    page.get(f"{fed.url}/ui/jobs")
    assert "/ui/login" in page.current_url  # no session yet
    page.find_element(By.NAME, "token").send_keys(fed.tokens[who])
    page.find_element(By.CSS_SELECTOR, "form.login button").click()
    wait_until(lambda: page.current_url.startswith(f"{fed.url}/ui/jobs"), 20, "signed in")


def _rows(page: Any, ident: str) -> list[dict[str, str]]:
    return page.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0] + ' tbody tr')).map(tr =>"
        " Object.fromEntries(Array.from(tr.querySelectorAll('td[data-col]')).map(td =>"
        " [td.dataset.col, td.textContent])));", f"#{ident}")


def _outside(page: Any, fed: Federation) -> list[str]:
    """Every resource the page fetched from anywhere but the service."""
    names = page.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")
    return [n for n in names if not n.startswith(fed.url + "/")]


def _errors(page: Any) -> list[Any]:
    return [e for e in page.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]


def _weight(page: Any) -> int:
    """Bytes the page and what it loaded took over the wire (decoded sizes)."""
    return int(page.execute_script(
        "const nav = performance.getEntriesByType('navigation')[0];"
        "return nav.decodedBodySize + performance.getEntriesByType('resource')"
        ".reduce((n, e) => n + e.decodedBodySize, 0);"))


def test_the_dashboard_in_chromium(fed: Federation, chromium: tuple[str, str],
                                   tmp_path: Path) -> None:
    def cli(who: str, *args: str) -> str:
        run = fed.cli(who, *args)
        assert run.returncode == 0, run.stderr
        return run.stdout.strip()

    writer = cli("alice", "submit", "--name", "writer", "--", *WRITER)
    sleeper = cli("bob", "submit", "--name", "sleeper", "--", *SLEEP)
    done = cli("alice", "submit", "--wait", "--name", "quick", "--", "true").split()[0]

    def states() -> dict[str, str]:
        return {r["job"]: r["state"] for r in json.loads(cli("ops", "status", "--format",
                                                             "json"))}

    wait_until(lambda: states()[writer] == states()[sleeper] == "RUNNING", 60, "both running")
    wait_until(lambda: "degraded" in fed.local("sites", "list", "--format", "json").stdout,
               60, "site bad degraded")

    page = _browser(chromium, tmp_path)
    try:
        _sign_in(page, fed, "ops")
        jobs = {r["job"]: r for r in _rows(page, "jobs")}
        assert jobs[writer]["state"] == "RUNNING" and jobs[writer]["user"] == "alice"
        assert {writer, sleeper, done} <= set(jobs)
        weight = _weight(page)

        page.get(f"{fed.url}/ui/jobs/{writer}")
        story = _rows(page, "story")
        assert any(r["to"] == "RUNNING" for r in story), story
        wait_until(lambda: "tick 1" in page.find_element("id", "log").text, 20, "the log")
        first = page.find_element("id", "log").text
        wait_until(lambda: len(page.find_element("id", "log").text) > len(first) + 20, 20,
                   "the log growing without a reload")
        assert page.find_element("id", "log").text.startswith(first[:40])
        page.set_window_size(1280, 1000)
        shot = tmp_path / "job-1280.png"
        assert page.save_screenshot(str(shot)) and shot.stat().st_size > 10_000

        page.get(f"{fed.url}/ui/sites")
        sites = {r["site"]: r for r in _rows(page, "sites")}
        assert sites["bad"]["health"] == "degraded" and sites["bad"]["last error"]
        assert sites["a"]["health"] == "healthy"
        outside, errors = _outside(page, fed), _errors(page)
        assert outside == [] and errors == [], (outside, errors)

        # a phone's width: nothing wider than the screen (tables scroll in their box)
        page.set_window_size(390, 844)
        page.get(f"{fed.url}/ui/jobs")
        assert page.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1")
        shot = tmp_path / "jobs-390.png"
        assert page.save_screenshot(str(shot)) and shot.stat().st_size > 5_000
    finally:
        page.quit()

    # finance: the spend page against report costs for the same month
    page = _browser(chromium, tmp_path)
    try:
        _sign_in(page, fed, "fin")
        page.get(f"{fed.url}/ui/spend")
        shown = {r["team"]: r["spent"].split()[0] for r in _rows(page, "spend")}
        month = datetime.now(UTC).strftime("%Y-%m-01")
        report = json.loads(cli("fin", "report", "costs", "--by", "team", "--since", month,
                                "--format", "json"))
        rows = report if isinstance(report, list) else next(iter(report.values()))
        books = {r["team"]: Decimal(str(r["cost"])) for r in rows if r["team"] != "TOTAL"}
        # phys: alice's quick job ended (bob's only job still runs: nothing booked yet)
        assert set(shown) == set(books) and "phys" in books, (shown, books)
        for team, amount in books.items():
            text = shown[team].lstrip("$").replace(",", "")
            places = len(text.split(".")[1]) if "." in text else 0
            assert Decimal(text) == amount.quantize(Decimal(1).scaleb(-places)), (team, text,
                                                                                  amount)
        page.get(f"{fed.url}/ui/jobs/{writer}")
        assert "finance reads no logs" in page.find_element("tag name", "main").text
        assert _errors(page) == []
    finally:
        page.quit()

    # bob, a researcher: his own jobs only; alice's job page is refused
    page = _browser(chromium, tmp_path, width=390)
    try:
        _sign_in(page, fed, "bob")
        listed = {r["job"]: r["user"] for r in _rows(page, "jobs")}
        assert listed == {sleeper: "bob"}, listed
        page.get(f"{fed.url}/ui/jobs/{writer}")
        assert "another user's" in page.find_element("tag name", "main").text
        page.get(f"{fed.url}/ui/spend")
        assert "refused" in page.find_element("tag name", "main").text
        assert _outside(page, fed) == []
    finally:
        page.quit()
    # each refusal is in the audit, as the API's are
    audit = json.loads(cli("ops", "admin", "audit", "--format", "json"))
    refused = [r for r in audit if r["user"] == "bob" and r["verb"] == "dashboard"]
    assert {r["target"] for r in refused} == {f"/ui/jobs/{writer}", "/ui/spend"}, refused
    assert all(r["outcome"] == "refused" for r in refused)
    print(f"jobs page weight {weight} bytes; screenshots in {tmp_path}")
