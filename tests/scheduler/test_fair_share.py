"""Fair share in placement: the order among pending jobs of one priority, the per-user cap and
the budget pool of teams without a budget of their own (pure ``plan``, no store)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from gridbridge.adapter import Offer, Pricing
from gridbridge.scheduler.placement import OTHER_TEAMS, PendingJob, Shares, plan
from gridbridge.spec import JobSpec, Owner, Resources, Tier

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def offer(cpus: int) -> Offer:
    return Offer(site="s", tier=Tier.CLOUD, cpus=cpus, memory_gb=1024.0,
                 price=Pricing(per_hour=1.0), on_demand=Pricing(per_hour=1.0))


def job(job_id: str, at_s: float, user: str = "u", team: str = "t", priority: int = 0
        ) -> PendingJob:
    spec = JobSpec(name="job", command=("true",), priority=priority,
                   resources=Resources(cpus=1, walltime_s=3600.0),
                   owner=Owner(user=user, team=team))
    return PendingJob(job_id=job_id, spec=spec, submitted_at=NOW + timedelta(seconds=at_s))


def started(jobs: list[PendingJob], capacity: int, shares: Shares | None = None,
            budgets: dict[str, float] | None = None) -> list[PendingJob]:
    p = plan(jobs, [offer(capacity)], NOW + timedelta(days=1), budgets=budgets,
             shares=shares or Shares())
    return [jobs[i] for i in p.order if p.choice[i] >= 0]


def test_a_later_user_with_two_jobs_starts_beside_one_with_fifty_queued() -> None:
    jobs = [job(f"a{i:02}", i, user="alice") for i in range(50)]
    jobs += [job(f"b{i}", 100 + i, user="bob") for i in range(2)]
    first = started(jobs, capacity=4)
    assert {j.job_id for j in first} == {"a00", "a01", "b0", "b1"}


def test_priority_still_comes_before_fair_share() -> None:
    jobs = [job(f"a{i}", i, user="alice", priority=5) for i in range(4)]
    jobs += [job("b0", 100, user="bob")]
    assert [j.job_id for j in started(jobs, capacity=4)] == ["a0", "a1", "a2", "a3"]


def test_max_running_per_user_holds_across_rounds_and_explains_itself() -> None:
    alice = [job(f"a{i}", i, user="alice") for i in range(10)]
    running: Counter[str] = Counter()
    for _ in range(3):  # each round: capacity to spare, nothing has finished
        pending = [j for j in alice if j.job_id not in running]
        shares = Shares(running_users={"alice": len(running)}, max_running_per_user=2)
        for j in started(pending, capacity=64, shares=shares):
            running[j.job_id] += 1
        assert len(running) == 2
    pending = [j for j in alice if j.job_id not in running]
    p = plan(pending, [offer(64)], NOW + timedelta(days=1),
             shares=Shares(running_users={"alice": 2}, max_running_per_user=2))
    decision = p.decision(0)
    assert decision.site is None
    assert "limits.max_running_per_user (2)" in decision.reason
    assert "alice already runs 2" in decision.reason


def test_the_cap_counts_what_the_round_itself_starts_and_leaves_room_to_others() -> None:
    jobs = [job(f"a{i}", i, user="alice") for i in range(5)]
    jobs += [job(f"b{i}", 10 + i, user="bob") for i in range(5)]
    first = started(jobs, capacity=64, shares=Shares(max_running_per_user=3))
    assert Counter(j.spec.owner.user for j in first) == {"alice": 3, "bob": 3}


def test_a_team_of_weight_three_gets_three_times_the_starts() -> None:
    vision = [job(f"v{i:03}", i, user=f"v{i % 3}", team="vision") for i in range(200)]
    nlp = [job(f"n{i:03}", i + 0.5, user=f"n{i % 3}", team="nlp") for i in range(200)]
    pending, running = vision + nlp, Counter[str]()
    starts: Counter[str] = Counter()
    for _ in range(10):  # 10 rounds of 8 free cores, all the while both teams have backlog
        shares = Shares(running_teams=dict(running), weights={"vision": 3})
        now = started(pending, capacity=8, shares=shares)
        for j in now:
            starts[j.spec.owner.team] += 1
            running[j.spec.owner.team] += 1
        gone = {j.job_id for j in now}
        pending = [j for j in pending if j.job_id not in gone]
    assert starts["vision"] + starts["nlp"] == 80
    assert 2.7 <= starts["vision"] / starts["nlp"] <= 3.3


def test_teams_without_a_budget_share_one_pool() -> None:
    # each job costs an hour of 1/h; the pool (budgets.default) holds 3
    jobs = [job(f"x{i}", i, team="made-up-1") for i in range(3)]
    jobs += [job(f"y{i}", 10 + i, team="made-up-2") for i in range(3)]
    first = started(jobs, capacity=64, budgets={"team:lab": 100.0, OTHER_TEAMS: 3.0})
    assert len(first) == 3
    p = plan(jobs, [offer(64)], NOW + timedelta(days=1),
             budgets={"team:lab": 100.0, OTHER_TEAMS: 3.0})
    waiting = next(i for i in range(len(jobs)) if p.choice[i] < 0)
    reason = p.decision(waiting).reason
    assert "has left of its budget ($0.00): budgets.default, one budget shared" in reason
