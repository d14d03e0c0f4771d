"""Each ended attempt is charged at the price card it was placed at, or at what the site
billed for it when the site reports that (a spot price that changed while it ran)."""

from __future__ import annotations

import json

import pytest

from gridbridge.adapter import AttemptStatus, BilledInterval, Pricing
from gridbridge.config import Capacity, SiteConfig
from gridbridge.scheduler.endings import Verdict, ledger_row
from gridbridge.scheduler.records import Attempt, Job
from gridbridge.spec import JobSpec, Resources
from gridbridge.states import AttemptState, JobState

SPEC = JobSpec(name="j", command=("true",), resources=Resources(cpus=4, gpus=1))
JOB = Job(id="j1", name="j", spec=SPEC, state=JobState.RUNNING, priority=0, created_at=0.0,
          updated_at=0.0, attempts=1, cancel_requested=False, checkpoint_url="memory://c/j1",
          error=None)
SITE = SiteConfig(name="cloud", adapter="local", capacity=Capacity(cpus=64),
                  price=Pricing(per_core_hour=9.0), on_demand=Pricing(per_core_hour=10.0))


def attempt(card: dict[str, object] | None) -> Attempt:
    return Attempt(id="j1.1", job_id="j1", number=1, token=1, site="cloud",
                   state=AttemptState.RUNNING, native_id="n", native_state="", created_at=0.0,
                   started_at=0.0, ended_at=None, exit_code=None, reason="", last_step=None,
                   attempt_url="memory://a", submit_tries=1, offer_key="m5.xlarge/a",
                   price_json=json.dumps(card) if card else None)


def done(**kw: object) -> Verdict:
    return Verdict(AttemptStatus(state=AttemptState.SUCCEEDED, native_state="done", **kw), None)


def test_the_price_card_of_the_offer_is_charged_not_todays_config() -> None:
    card = {"price": Pricing(per_hour=0.2, per_core_hour=0.05, per_gpu_hour=1.0).model_dump(),
            "on_demand": Pricing(per_hour=0.8).model_dump()}
    row = ledger_row(JOB, attempt(card), SITE, done(), now=1800.0)
    # half an hour of 1 instance + 4 cores + 1 GPU: (0.2 + 4 * 0.05 + 1.0) / 2
    assert row.cost == pytest.approx(0.7)
    assert row.on_demand_cost == pytest.approx(0.4)
    assert (row.core_hours, row.gpu_hours) == (pytest.approx(2.0), pytest.approx(0.5))


def test_attempts_placed_before_price_cards_fall_back_to_the_sites_prices() -> None:
    row = ledger_row(JOB, attempt(None), SITE, done(), now=3600.0)
    assert row.cost == pytest.approx(36.0)
    assert row.on_demand_cost == pytest.approx(40.0)


def test_billed_intervals_from_the_site_are_integrated() -> None:
    card = {"price": Pricing(per_hour=0.30).model_dump(),
            "on_demand": Pricing(per_hour=1.0).model_dump()}
    billed = (BilledInterval(start=0, end=3600, per_hour=0.25),
              BilledInterval(start=3600, end=5400, per_hour=0.40))
    row = ledger_row(JOB, attempt(card), SITE, done(billing=billed), now=5400.0)
    assert row.cost == pytest.approx(0.25 + 0.20)
    assert row.on_demand_cost == pytest.approx(1.5)


def test_a_lost_attempt_is_charged_until_its_last_heartbeat() -> None:
    lost = Verdict(AttemptStatus(state=AttemptState.LOST, native_state="gone"), None,
                   last_seen=1800.0)
    row = ledger_row(JOB, attempt(None), SITE, lost, now=7200.0)
    assert row.end == 1800.0
    assert row.cost == pytest.approx(18.0)  # half an hour of 4 cores at $9, not two hours
