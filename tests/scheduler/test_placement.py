"""Placement v1: cheapest feasible site, every reason spelt out, pure and deterministic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from gridbridge.adapter import Offer, Pricing
from gridbridge.scheduler.placement import Decision, PendingJob, Policy, place
from gridbridge.spec import CheckpointPolicy, Constraints, JobSpec, Resources, Tier

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
HOUR = 3600.0


def make_spec(
    cpus: int = 1,
    memory_gb: float = 1.0,
    gpus: int = 0,
    walltime_s: float = HOUR,
    **kw: Any,
) -> JobSpec:
    res = Resources(cpus=cpus, memory_gb=memory_gb, gpus=gpus, walltime_s=walltime_s)
    return JobSpec(name="job", command=("true",), resources=res, **kw)


def make_offer(site: str, per_hour: float = 1.0, **kw: Any) -> Offer:
    fields: dict[str, Any] = {
        "tier": Tier.CLOUD,
        "cpus": 16,
        "memory_gb": 64.0,
        "price": Pricing(per_hour=per_hour),
        "on_demand": Pricing(per_hour=2.0),
    }
    fields.update(kw)
    return Offer(site=site, **fields)


def pending(job_id: str, spec: JobSpec | None = None, minutes_ago: int = 0) -> PendingJob:
    return PendingJob(
        job_id=job_id,
        spec=spec or make_spec(),
        submitted_at=NOW - timedelta(minutes=minutes_ago),
    )


def only(decisions: list[Decision]) -> Decision:
    assert len(decisions) == 1
    return decisions[0]


def reason_for(decision: Decision, site: str) -> str:
    return next(c.reason for c in decision.candidates if c.site == site)


def test_cheapest_feasible_wins_and_losers_say_why() -> None:
    d = only(place([pending("j1")], [make_offer("dear", 2.0), make_offer("cheap", 1.0)], NOW))
    assert d.site == "cheap"
    assert d.reason == "cheapest feasible: $1.00 vs next $2.00 on dear"
    assert [c.site for c in d.candidates] == ["cheap", "dear"]
    assert reason_for(d, "dear") == "dearer by $1.00 than cheap"
    chosen = d.chosen
    assert chosen is not None and chosen.site == "cheap" and chosen.feasible
    assert chosen.expected_cost == pytest.approx(1.0)
    assert chosen.on_demand_cost == pytest.approx(2.0)
    assert chosen.expected_runtime_s == HOUR
    assert chosen.expected_finish == NOW + timedelta(hours=1)


def test_small_costs_are_readable() -> None:
    spec = make_spec(walltime_s=60.0)  # one minute: $0.72/h -> $0.012, $2.88/h -> $0.048
    offers = [make_offer("spot-a", 0.72), make_offer("ondemand-local", 2.88)]
    d = only(place([pending("j", spec)], offers, NOW))
    assert d.reason == "cheapest feasible: $0.012 vs next $0.048 on ondemand-local"
    assert reason_for(d, "ondemand-local") == "dearer by $0.036 than spot-a"


def test_single_feasible_site() -> None:
    d = only(place([pending("j")], [make_offer("a", 0.5)], NOW))
    assert d.site == "a"
    assert d.reason == "only feasible site: $0.50"


def test_capacity_is_consumed_within_one_call() -> None:
    offers = [make_offer("cheap", 1.0, cpus=8), make_offer("dear", 3.0, cpus=8)]
    jobs = [pending(f"j{i}", make_spec(cpus=4), minutes_ago=10 - i) for i in range(3)]
    decisions = place(jobs, offers, NOW)
    assert [(d.job_id, d.site) for d in decisions] == [
        ("j0", "cheap"),
        ("j1", "cheap"),
        ("j2", "dear"),
    ]
    third = decisions[2]
    assert reason_for(third, "cheap") == "needs 4 cpus, 0 free"
    assert not next(c for c in third.candidates if c.site == "cheap").feasible
    assert offers[0].cpus == 8  # the input offer is untouched


def test_memory_and_gpu_shortage_reasons() -> None:
    spec = make_spec(memory_gb=16.0, gpus=2)
    d = only(place([pending("j", spec)], [make_offer("small", memory_gb=4.0, gpus=0)], NOW))
    assert d.site is None
    assert reason_for(d, "small") == "needs 16 GB memory, 4 GB free; needs 2 gpus, 0 free"


def test_site_and_tier_constraints() -> None:
    constraints = Constraints(
        allowed_sites=frozenset({"hpc1", "edge1", "banned"}),
        denied_sites=frozenset({"banned"}),
        tiers=frozenset({Tier.CLOUD, Tier.HPC}),
    )
    offers = [
        make_offer("hpc1", 5.0, tier=Tier.HPC),
        make_offer("edge1", 0.1, tier=Tier.EDGE),
        make_offer("banned", 0.1),
        make_offer("elsewhere", 0.1),
    ]
    d = only(place([pending("j", make_spec(constraints=constraints))], offers, NOW))
    assert d.site == "hpc1"
    assert reason_for(d, "edge1") == "tier edge not allowed (allowed: cloud, hpc)"
    assert reason_for(d, "banned") == "denied by constraints"
    assert reason_for(d, "elsewhere") == "not in allowed sites (banned, edge1, hpc1)"
    assert [c.site for c in d.candidates] == ["hpc1", "banned", "edge1", "elsewhere"]


def test_preemptible_site_refused_when_job_forbids_it() -> None:
    spec = make_spec(constraints=Constraints(preemptible_ok=False))
    offers = [make_offer("spot", 0.1, preemptible=True), make_offer("ondemand", 1.0)]
    d = only(place([pending("j", spec)], offers, NOW))
    assert d.site == "ondemand"
    assert reason_for(d, "spot") == "site is preemptible and the job does not allow preemption"


def test_walltime_over_site_limit_needs_a_resumable_job() -> None:
    once = make_spec(walltime_s=2 * HOUR)  # not resumable by default
    d = only(place([pending("j", once)], [make_offer("short", max_walltime_s=HOUR)], NOW))
    assert d.site is None
    assert reason_for(d, "short") == (
        "walltime 2h00m exceeds site limit 1h00m and the job does not resume from checkpoints")
    resumed = PendingJob(job_id="j", spec=once, submitted_at=NOW, remaining_work_s=HOUR)
    d = only(place([resumed], [make_offer("short", max_walltime_s=HOUR)], NOW))
    assert d.site == "short", "a job that has committed a checkpoint does resume"


def test_a_resumable_job_longer_than_the_walltime_pays_for_its_restarts() -> None:
    spec = make_spec(walltime_s=5 * HOUR, checkpoint=CheckpointPolicy(resumable=True))
    short = make_offer("short", max_walltime_s=2 * HOUR, restart_overhead_s=600.0)
    d = only(place([pending("j", spec)], [short], NOW))
    assert d.site == "short"
    [c] = d.candidates
    # 5h of work in 2h attempts: 3 attempts, 2 restarts of 10 minutes each
    assert c.expected_runtime_s == pytest.approx(5 * HOUR + 2 * 600.0)
    assert c.expected_cost == pytest.approx((5 * HOUR + 1200.0) / HOUR * 1.0)


def test_offers_of_one_site_are_told_apart_by_key() -> None:
    offers = [make_offer("cloud", 2.0, key="m5.large/a", shape={"zone": "a"}),
              make_offer("cloud", 1.5, key="m5.large/b", shape={"zone": "b"})]
    d = only(place([pending("j")], offers, NOW))
    assert (d.site, d.offer_key) == ("cloud", "m5.large/b")
    assert d.chosen is not None and d.chosen.offer_key == "m5.large/b"
    assert [(c.offer_key, c.feasible) for c in d.candidates] == [
        ("m5.large/b", True), ("m5.large/a", True)]


def test_budgets_bound_what_a_team_may_be_placed_for() -> None:
    from gridbridge.spec import Owner

    spec = make_spec(owner=Owner(team="lab"))
    jobs = [pending("a", spec, minutes_ago=2), pending("b", spec, minutes_ago=1)]
    decisions = place(jobs, [make_offer("x", 1.0)], NOW, budgets={"lab": 1.5})
    assert [d.site for d in decisions] == ["x", None]  # the first used $1.00 of $1.50
    assert "team lab has left of its budget ($0.50)" in reason_for(decisions[1], "x")
    assert place(jobs, [make_offer("x", 1.0)], NOW, budgets={"other": 0.0})[1].site == "x"


def test_remaining_work_of_a_resumed_job_is_what_is_estimated() -> None:
    fresh = only(place([pending("j")], [make_offer("x", 1.0)], NOW))
    resumed = PendingJob(job_id="j", spec=make_spec(), submitted_at=NOW,
                         remaining_work_s=HOUR / 4)
    half = only(place([resumed], [make_offer("x", 1.0)], NOW))
    assert fresh.candidates[0].expected_cost == pytest.approx(1.0)
    assert half.candidates[0].expected_cost == pytest.approx(0.25)


def test_the_decision_carries_a_checkpoint_interval_for_the_site() -> None:
    spec = make_spec(checkpoint=CheckpointPolicy(interval_s=1800))
    steady = only(place([pending("j", spec)], [make_offer("steady")], NOW))
    assert steady.checkpoint_interval_s == 1800
    spot = make_offer("spot", preemptible=True, preemption_rate_per_hour=2.0,
                      restart_overhead_s=60.0)
    d = only(place([pending("j", spec)], [spot], NOW))
    # Young: sqrt(2 * 60 s / (2 / 3600 s)) = sqrt(216000) ~ 464.8 s, shorter than 1800 s
    assert d.checkpoint_interval_s == pytest.approx((2 * 60 / (2 / 3600)) ** 0.5)


def test_deadline_counts_queue_wait_and_runtime() -> None:
    spec = make_spec(constraints=Constraints(deadline=NOW + timedelta(hours=1, minutes=30)))
    offers = [make_offer("queued", 0.5, queue_wait_s=3720.0), make_offer("ready", 2.0)]
    d = only(place([pending("j", spec)], offers, NOW))
    assert d.site == "ready"
    # finish = now + 1h02m wait + 1h run = deadline + 32m
    assert reason_for(d, "queued") == "deadline missed by 32m00s"
    late = make_spec(constraints=Constraints(deadline=NOW + timedelta(hours=1)))
    d2 = only(place([pending("j", late)], offers[:1], NOW))
    assert reason_for(d2, "queued") == "deadline missed by 1h02m"


def test_max_cost() -> None:
    spec = make_spec(max_cost=2.0)
    d = only(place([pending("j", spec)], [make_offer("dear", 3.10)], NOW))
    assert d.site is None
    assert reason_for(d, "dear") == "expected cost $3.10 > max_cost $2.00"
    assert d.candidates[0].expected_cost == pytest.approx(3.10)


def test_preemption_too_frequent_to_finish() -> None:
    offers = [make_offer("stormy", 0.01, preemptible=True, preemption_rate_per_hour=1e5)]
    d = only(place([pending("j")], offers, NOW))
    assert d.site is None
    cand = d.candidates[0]
    assert cand.reason == "preemption too frequent to finish"
    assert cand.expected_cost is None and cand.expected_finish is None


def test_no_feasible_site_summarises_every_reason() -> None:
    offers = [make_offer("a", cpus=2, tier=Tier.HPC), make_offer("b", cpus=4, tier=Tier.EDGE)]
    spec = make_spec(cpus=8, constraints=Constraints(tiers=frozenset({Tier.HPC})))
    d = only(place([pending("j", spec)], offers, NOW))
    assert d.site is None and d.chosen is None
    assert d.reason == (
        "no feasible site: a: needs 8 cpus, 2 free"
        " | b: tier edge not allowed (allowed: hpc); needs 8 cpus, 4 free"
    )
    empty = only(place([pending("j")], [], NOW))
    assert empty.site is None and empty.reason == "no feasible site: no offers"


def test_priority_then_submission_time_then_id() -> None:
    offers = [make_offer("one-slot", cpus=1)]
    jobs = [
        pending("old-low", make_spec(priority=0), minutes_ago=60),
        pending("b-new-high", make_spec(priority=5), minutes_ago=1),
        pending("a-new-high", make_spec(priority=5), minutes_ago=1),
        pending("older-high", make_spec(priority=5), minutes_ago=30),
    ]
    decisions = place(jobs, offers, NOW)
    assert [d.job_id for d in decisions] == ["older-high", "a-new-high", "b-new-high", "old-low"]
    assert [d.site for d in decisions] == ["one-slot", None, None, None]


def test_equal_cost_ties_break_on_finish_then_name() -> None:
    offers = [make_offer("b", queue_wait_s=0.0), make_offer("c", queue_wait_s=0.0)]
    offers.append(make_offer("a", queue_wait_s=600.0))
    d = only(place([pending("j")], offers, NOW))
    assert d.site == "b"
    assert d.reason == "cheapest feasible: $1.00 vs next $1.00 on c, tie broken by site name"
    assert reason_for(d, "c") == "same cost and finish as b; lost the tie-break on site name"
    assert reason_for(d, "a") == "same cost, later finish than b (by 10m00s)"
    d2 = only(place([pending("j")], [offers[2], offers[0]], NOW))
    assert d2.reason == "cheapest feasible: $1.00 vs next $1.00 on a, tie broken by earlier finish"


def test_unreliable_spot_loses_to_reliable_site() -> None:
    # 4h of work, the job checkpoints every 2h, 10 min restart, 1 preemption/h. On spot it is
    # told to checkpoint every sqrt(2 * 600 s * 3600 s) ~= 2078 s (Young), so its run is 6
    # segments of 2078 s and one of ~1929 s: e^(1/6) * (6 * (e^0.5774 - 1) + (e^0.5359 - 1)) h
    # ~= 6.376 h, and $0.30/h costs ~$1.91 against $0.40/h * 4h = $1.60. (Keeping its own 2h
    # interval would have cost e^(1/6) * 2 * (e^2 - 1) h * $0.30 ~= $4.53.)
    spec = make_spec(walltime_s=4 * HOUR, checkpoint=CheckpointPolicy(interval_s=2 * HOUR))
    spot = make_offer(
        "spot", 0.30, preemptible=True, preemption_rate_per_hour=1.0, restart_overhead_s=600.0
    )
    reliable = make_offer("reliable", 0.40)
    d = only(place([pending("j", spec)], [spot, reliable], NOW))
    assert d.site == "reliable"
    spot_cand = next(c for c in d.candidates if c.site == "spot")
    assert spot_cand.expected_cost == pytest.approx(1.913, abs=0.001)
    assert spot_cand.reason == "dearer by $0.31 than reliable"
    calm = spot.model_copy(update={"preemption_rate_per_hour": 0.01})
    assert only(place([pending("j", spec)], [calm, reliable], NOW)).site == "spot"


def test_pure_deterministic_and_inputs_untouched() -> None:
    offers = [make_offer("x", 1.0, cpus=4), make_offer("y", 2.0, cpus=4), make_offer("z", 1.5)]
    jobs = [pending(f"j{i}", make_spec(cpus=3, priority=i % 2), minutes_ago=i) for i in range(5)]
    before = ([j.model_dump() for j in jobs], [o.model_dump() for o in offers])
    first = place(jobs, offers, NOW)
    assert place(jobs, offers, NOW) == first
    assert place(list(reversed(jobs)), list(reversed(offers)), NOW) == first
    assert ([j.model_dump() for j in jobs], [o.model_dump() for o in offers]) == before


def test_policy_is_strict() -> None:
    assert Policy().name == "cheapest"
    with pytest.raises(ValidationError):
        Policy.model_validate({"name": "cheapest-ish"})
    with pytest.raises(ValidationError):
        Policy.model_validate({"name": "balanced", "weight": 1.5})
    with pytest.raises(ValidationError):
        Policy.model_validate({"extra_knob": 1})
    with pytest.raises(ValidationError):
        PendingJob(job_id="j", spec=make_spec(), submitted_at=NOW, attempt=0)


def test_the_sites_own_note_explains_an_infeasible_candidate() -> None:
    note = "capacity reclaimed after an interruption for 30s"
    reclaimed = Offer(site="spot", tier=Tier.CLOUD, cpus=0, memory_gb=0.0, price=Pricing(),
                      on_demand=Pricing(), preemptible=True, note=note)
    spec = JobSpec(name="j", command=("true",))
    [decision] = place([PendingJob(job_id="a", spec=spec, submitted_at=NOW)], [reclaimed], NOW)
    assert decision.site is None
    assert decision.candidates[0].reason.endswith(note)


def test_labels_and_latency_pick_the_node_near_the_sensor() -> None:
    # Three edge nodes of one site; the job must run at plant-2 within 5 ms. The cheapest
    # node is elsewhere, the next one is at plant-2 but too far away.
    offers = [
        make_offer("edge", 0.10, key="n1", tier=Tier.EDGE, labels={"location": "plant-1"},
                   latency_ms=1.0),
        make_offer("edge", 0.20, key="n2", tier=Tier.EDGE, labels={"location": "plant-2"},
                   latency_ms=12.5),
        make_offer("edge", 0.30, key="n3", tier=Tier.EDGE,
                   labels={"location": "plant-2", "gpu": "jetson"}, latency_ms=3.2),
        make_offer("cloud", 0.01),
    ]
    spec = make_spec(memory_gb=8,
                     constraints=Constraints(labels={"location": "plant-2"}, max_latency_ms=5))
    d = only(place([pending("j", spec)], offers, NOW, Policy()))
    assert (d.site, d.offer_key) == ("edge", "n3")
    why = {c.offer_key: c.reason for c in d.candidates}
    assert "lacks label location=plant-2 (has location=plant-1)" in why["n1"]
    assert "latency 12.5 ms > max 5 ms" in why["n2"]
    assert "lacks label location=plant-2 (has none)" in why["default"]


def test_an_offer_that_cannot_say_its_latency_does_not_meet_a_bound() -> None:
    spec = make_spec(constraints=Constraints(max_latency_ms=50))
    d = only(place([pending("j", spec)], [make_offer("cloud")], NOW, Policy()))
    assert d.site is None
    assert "latency unknown (the job needs at most 50 ms)" in d.candidates[0].reason


def test_the_memory_bound_rules_out_a_small_node() -> None:
    offers = [make_offer("edge", 0.1, key="small", memory_gb=2.0, labels={"location": "x"}),
              make_offer("edge", 0.5, key="big", memory_gb=32.0, labels={"location": "x"})]
    spec = make_spec(memory_gb=8, constraints=Constraints(labels={"location": "x"}))
    d = only(place([pending("j", spec)], offers, NOW, Policy()))
    assert d.offer_key == "big"


@pytest.mark.parametrize("bad", [{"loc ation": "x"}, {"location": "a;b"}, {"k": "x\ny"}])
def test_hostile_labels_are_refused(bad: dict[str, str]) -> None:
    with pytest.raises(ValidationError, match="labels"):
        Constraints(labels=bad)
