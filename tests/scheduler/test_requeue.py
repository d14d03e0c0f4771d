"""The requeue decision on its own: leave an attempt its site requeued in that queue, or move
it, by the same cost model placement uses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gridbridge.adapter import Offer, Pricing
from gridbridge.scheduler.records import Attempt, Job
from gridbridge.scheduler.requeue import UNKNOWN_WAIT_S, decide_requeued
from gridbridge.spec import JobSpec, Policy, Tier
from gridbridge.states import AttemptState, JobState

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def job(**spec: object) -> Job:
    s = JobSpec.model_validate({"name": "train", "command": ["true"],
                                "resources": {"cpus": 1, "expected_runtime_s": 600},
                                "checkpoint": {"resumable": True}, **spec})
    return Job(id="j1", name="train", spec=s, state=JobState.RUNNING, priority=0,
               created_at=0.0, updated_at=0.0, attempts=1, cancel_requested=False,
               checkpoint_url="memory://j1", error=None)


def attempt() -> Attempt:
    return Attempt(id="j1.1", job_id="j1", number=1, token=1, site="cluster",
                   state=AttemptState.RUNNING, native_id="77", native_state="PENDING",
                   created_at=0.0, started_at=1.0, ended_at=None, exit_code=None, reason="",
                   last_step=100, attempt_url="memory://a", submit_tries=1,
                   offer_key="scavenger", price_json=None)


def offer(key: str, rate: float, cpus: int, wait: float = 0.0, site: str = "cluster") -> Offer:
    return Offer(site=site, key=key, tier=Tier.HPC, cpus=cpus, memory_gb=64,
                 price=Pricing(per_core_hour=rate), on_demand=Pricing(per_core_hour=rate),
                 queue_wait_s=wait, restart_overhead_s=30)


def test_staying_in_the_cheaper_queue_wins_without_a_deadline() -> None:
    # The requeued partition has no free CPU (the preemptor holds them): staying needs none.
    offers = [offer("scavenger", 0.01, 0, wait=300), offer("normal", 0.05, 8)]
    got = decide_requeued(job(), attempt(), offers, NOW, Policy(), 500.0, 300.0)
    assert got.stay, got
    assert "left requeued on cluster (scavenger) (expected wait 300s)" in got.why


def test_a_deadline_the_queue_would_miss_moves_it() -> None:
    offers = [offer("scavenger", 0.01, 0), offer("normal", 0.05, 8)]
    late = job(constraints={"deadline": (NOW + timedelta(seconds=900)).isoformat()})
    got = decide_requeued(late, attempt(), offers, NOW, Policy(), 500.0, 1800.0)
    assert not got.stay, got
    assert "moved from the queue of cluster (scavenger)" in got.why
    assert "to cluster (normal)" in got.why


def test_a_short_wait_keeps_it_even_with_a_deadline() -> None:
    offers = [offer("scavenger", 0.01, 0), offer("normal", 0.05, 8)]
    soon = job(constraints={"deadline": (NOW + timedelta(seconds=900)).isoformat()})
    assert decide_requeued(soon, attempt(), offers, NOW, Policy(), 500.0, 60.0).stay


def test_a_cheaper_site_elsewhere_with_room_wins_over_waiting() -> None:
    offers = [offer("scavenger", 0.05, 0), offer("spare", 0.001, 8, site="other")]
    got = decide_requeued(job(), attempt(), offers, NOW, Policy(), 500.0, 60.0)
    assert not got.stay and "to other (spare)" in got.why, got


def test_an_unknown_wait_is_taken_as_long() -> None:
    offers = [offer("scavenger", 0.01, 0), offer("normal", 0.05, 8)]
    late = job(constraints={"deadline": (NOW + timedelta(seconds=1200)).isoformat()})
    got = decide_requeued(late, attempt(), offers, NOW, Policy(), 500.0, None)
    assert not got.stay
    assert f"expected wait {UNKNOWN_WAIT_S:.0f}s, a guess" in got.why


def test_without_its_own_offer_it_stays() -> None:
    got = decide_requeued(job(), attempt(), [offer("normal", 0.05, 8)], NOW, Policy(), None, None)
    assert got.stay and "offer is unknown" in got.why
