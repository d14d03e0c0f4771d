"""``GET /metrics`` of a real ``serve --listen``, scraped while jobs run and after one was
preempted and resumed, checked against the store: jobs by state, attempts by site and
outcome, and spend per team to the cent against ``report costs --by team``."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gridbridge.client import Client
from gridbridge.states import AttemptState, JobState
from tests.service.conftest import Federation, served
from tests.support.serving import two_site_config, wait_until

pytestmark = pytest.mark.slow

SLEEP = ["python", "-c", "import time; time.sleep(120)"]


@pytest.fixture
def dear(tmp_path: Path) -> Iterator[Federation]:
    """The two-site federation with prices of cents per core-second (a few seconds of work
    are worth comparing to the cent) and an on-demand price on ``a`` three times its own."""
    config = two_site_config(tmp_path, cpus=(4, 2))
    data = yaml.safe_load(config.read_text())
    a, b = data["sites"]
    a["price"], a["on_demand"] = {"per_core_hour": 36.0}, {"per_core_hour": 108.0}
    b["price"] = {"per_core_hour": 72.0}
    data["budgets"] = {"teams": {"phys": 1000.0, "chem": 2000.0}}
    config.write_text(yaml.safe_dump(data))
    with served(config) as fed:
        yield fed


def _scrape(fed: Federation, who: str | None) -> httpx.Response:
    headers = {"authorization": f"Bearer {fed.tokens[who]}"} if who else {}
    return httpx.get(f"{fed.url}/metrics", headers=headers, timeout=30)


def _samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name to its (labels, value) pairs."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def test_metrics_match_the_store_while_jobs_run_and_resume(dear: Federation) -> None:
    fed = dear
    with (Client(url=fed.url, token=fed.tokens["alice"]) as alice,
          Client(url=fed.url, token=fed.tokens["bob"]) as bob,
          Client(url=fed.url, token=fed.tokens["ops"]) as ops):
        _check(fed, alice, bob, ops)


def _check(fed: Federation, alice: Client, bob: Client, ops: Client) -> None:
    assert alice.submit(pow, 2, 10).result(timeout=60) == 1024
    assert bob.submit(pow, 3, 3).result(timeout=60) == 27
    sleeper = alice.submit_command(SLEEP, name="sleeper")
    wait_until(lambda: sleeper.status() is JobState.RUNNING, 60, "the sleeper running")
    time.sleep(4)  # cents of work, lost to the preemption (it commits no checkpoint)
    ops.preempt(sleeper.job_id, wait=True)  # its first attempt PREEMPTED, then a second runs
    wait_until(lambda: [a.state for a in ops.store.attempts(sleeper.job_id)]
               == [AttemptState.PREEMPTED, AttemptState.RUNNING], 60, "the sleeper resumed")

    scraped = _scrape(fed, "fin")
    assert scraped.status_code == 200, scraped.text
    assert scraped.headers["content-type"].startswith("text/plain; version=")
    got = _samples(scraped.text)

    # jobs by state, as the store counts them
    jobs = {labels["state"]: value for labels, value in got["gridbridge_jobs"]}
    assert set(jobs) == {s.value for s in JobState}
    for state in JobState:
        assert jobs[state.value] == ops.store.count_jobs([state]), state
    assert jobs["SUCCEEDED"] == 2 and jobs["RUNNING"] == 1

    # attempts by site and outcome (ended) or state (active), against every attempt's row
    ids = [j.id for j in ops.store.jobs(None, 100)]
    rows = [a for job_id in ids for a in ops.store.attempts(job_id)]
    ended = Counter((a.site, a.state.value.lower()) for a in rows if a.state.terminal)
    active = Counter((a.site, a.state.value) for a in rows if not a.state.terminal)
    assert {(lb["site"], lb["outcome"]): v for lb, v in got["gridbridge_attempts_ended_total"]
            } == ended
    assert {(lb["site"], lb["state"]): v for lb, v in got["gridbridge_attempts_active"]
            } == active
    assert sum(n for (_, outcome), n in ended.items() if outcome == "preempted") == 1
    # the waits: one per attempt that ran (per site), one per job whose first attempt ran
    ran = [a for a in rows if a.started_at is not None or a.state is AttemptState.SUCCEEDED]
    assert {lb["site"]: v for lb, v in got["gridbridge_queue_wait_seconds_count"]} == Counter(
        a.site for a in ran)
    [(_, first)] = got["gridbridge_time_to_first_run_seconds_count"]
    assert first == len({a.job_id for a in ran if a.number == 1}) == 3
    # a second scrape adds the jobs kept from the first (those ended) to the rest: the same
    again = _samples(_scrape(fed, "ops").text)
    for part in ("_count", "_sum", "_bucket"):
        name = f"gridbridge_time_to_first_run_seconds{part}"
        assert again[name] == got[name], name
    for name in ("gridbridge_queue_wait_seconds", "gridbridge_time_to_first_run_seconds"):
        buckets = [v for lb, v in got[f"{name}_bucket"] if lb.get("site", "a") == "a"]
        assert buckets == sorted(buckets) and buckets[-1] == dict(
            (lb.get("site", "a"), v) for lb, v in got[f"{name}_count"])["a"]
    # the service's own reconciler times its ticks and each phase
    [(_, ticks)] = got["gridbridge_tick_seconds_count"]
    assert ticks > 0
    assert {lb["phase"] for lb, _ in got["gridbridge_phase_seconds_count"]} == {
        "submitting", "cancelling", "polling", "migrating", "sweeping", "placing"}
    # the service's store transactions, reads and writes
    store = {lb["kind"]: v for lb, v in got["gridbridge_store_transaction_seconds_count"]}
    assert store["read"] > 0 and store["write"] > 0, store
    # the offers of the last placement round (the resume's), priced as the config says
    prices = {(lb["site"], lb["offer"]): v
              for lb, v in got["gridbridge_offer_price_per_core_hour"]}
    assert prices == {("a", "default"): 36.0, ("b", "default"): 72.0}
    free = {lb["site"]: v for lb, v in got["gridbridge_offer_free_cpus"]}
    assert set(free) == {"a", "b"} and 0 <= free["a"] <= 4 and 0 <= free["b"] <= 2
    tiers = {lb["site"]: lb["tier"] for lb, _ in got["gridbridge_site_up"]}
    assert tiers == {"a": "cloud", "b": "hpc"}
    assert all(v == 1 for _, v in got["gridbridge_site_up"])

    # spend, its on-demand equivalent, the preempted work and core-hours per team, to the
    # cent (to the 1/100 core-hour), as finance's own report has them
    run = fed.cli("fin", "report", "costs", "--by", "team", "--format", "json")
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    report = [r for r in (data if isinstance(data, list) else next(iter(data.values())))
              if r["team"] != "TOTAL"]
    assert {r["team"] for r in report} == {"phys", "chem"}, report
    for metric, column, scale in (("gridbridge_spent_total", "cost", 1),
                                  ("gridbridge_on_demand_equivalent_total", "on_demand_cost", 1),
                                  ("gridbridge_preempted_work_total", "lost_cost", 1),
                                  ("gridbridge_core_seconds_total", "core_hours", 3600)):
        summed: dict[str, Decimal] = {}
        for labels, value in got[metric]:
            assert labels.get("currency", "USD") == "USD"
            summed[labels["team"]] = summed.get(labels["team"], Decimal(0)) + Decimal(repr(value))
        for row in report:
            want = Decimal(str(row[column]))
            assert abs(summed[row["team"]] / scale - want) < Decimal("0.005"), (
                metric, row["team"], summed[row["team"]], want)
    # each budget less this month's spend (the report's default period is this month)
    left = {lb["team"]: Decimal(repr(v)) for lb, v in got["gridbridge_budget_left"]}
    budget = {lb["team"]: v for lb, v in got["gridbridge_budget"]}
    assert budget == {"phys": 1000.0, "chem": 2000.0}
    for row in report:
        want = Decimal(str(budget[row["team"]])) - Decimal(str(row["cost"]))
        assert abs(left[row["team"]] - want) < Decimal("0.005"), (row["team"], left, want)
    phys = next(r for r in report if r["team"] == "phys")
    assert Decimal(str(phys["lost_cost"])) >= Decimal("0.04"), phys  # the preempted attempt
    assert Decimal(str(phys["on_demand_cost"])) > Decimal(str(phys["cost"])), phys
    # no sample names a job or an attempt
    assert not any(job_id in scraped.text for job_id in ids)

    # only operators and finance scrape; no token or a researcher's: refused
    assert _scrape(fed, "ops").status_code == 200
    refused = _scrape(fed, "alice")
    assert refused.status_code == 403 and "scrape metrics" in refused.text
    assert _scrape(fed, None).status_code == 401
    sleeper.cancel()
