"""Placement policies, budgets, site slots, the tuned checkpoint interval, and the vectorised
round checked against a plain one-job-at-a-time reference built on gridbridge.costs."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest

from gridbridge.adapter import Offer, Pricing
from gridbridge.costs import estimate
from gridbridge.scheduler.placement import (
    PendingJob,
    Policy,
    _classes,
    _offers,
    _ranking,
    _score,
    _walk,
    place,
    plan,
)
from gridbridge.spec import CheckpointPolicy, Constraints, JobSpec, Owner, Resources, Tier

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
HOUR = 3600.0


def spec(cpus: int = 1, hours: float = 1.0, **kw: Any) -> JobSpec:
    return JobSpec(name="job", command=("true",),
                   resources=Resources(cpus=cpus, walltime_s=hours * HOUR), **kw)


def offer(site: str, per_hour: float, **kw: Any) -> Offer:
    fields: dict[str, Any] = {"tier": Tier.CLOUD, "cpus": 64, "memory_gb": 256.0,
                              "price": Pricing(per_hour=per_hour),
                              "on_demand": Pricing(per_hour=3.0)}
    fields.update(kw)
    return Offer(site=site, **fields)


def job(job_id: str, s: JobSpec | None = None, minutes_ago: float = 0, **kw: Any) -> PendingJob:
    return PendingJob(job_id=job_id, spec=s or spec(),
                      submitted_at=NOW - timedelta(minutes=minutes_ago), **kw)


# policies ---------------------------------------------------------------------------------------


QUEUED_CHEAP = offer("hpc", 0.2, tier=Tier.HPC, queue_wait_s=3 * HOUR)
READY_DEAR = offer("cloud", 1.0)


def test_cheapest_waits_in_the_queue_and_fastest_does_not() -> None:
    [cheap] = place([job("j")], [QUEUED_CHEAP, READY_DEAR], NOW)
    [fast] = place([job("j")], [QUEUED_CHEAP, READY_DEAR], NOW, Policy(name="fastest"))
    assert (cheap.site, fast.site) == ("hpc", "cloud")
    assert fast.policy == "fastest"
    assert fast.reason == "fastest feasible: finishes 3h00m before hpc ($1.00 vs $0.20)"
    loser = next(c for c in fast.candidates if c.site == "hpc")
    assert loser.reason == "finishes later than cloud (by 3h00m)"


@pytest.mark.parametrize(("weight", "site"), [(1.0, "hpc"), (0.0, "cloud"), (0.5, "hpc"),
                                                (0.3, "cloud")])
def test_balanced_weighs_cost_against_time(weight: float, site: str) -> None:
    # cost ratio: cloud $1.00 vs hpc $0.20 (about x5); time ratio: hpc 4h vs cloud 1h (about
    # x4): at equal weights the bigger ratio, cost, wins; at 0.3 time does
    # (0.3 * 1.01/0.21 + 0.7 = 2.14 for cloud against 0.3 + 0.7 * 14460/3660 = 3.07 for hpc)
    [d] = place([job("j")], [QUEUED_CHEAP, READY_DEAR], NOW,
                Policy(name="balanced", weight=weight))
    assert d.site == site, d.reason


def test_a_jobs_own_policy_wins_over_the_federations() -> None:
    jobs = [job("a"), job("b", spec(policy=Policy(name="fastest")))]
    decisions = {d.job_id: d.site for d in place(jobs, [QUEUED_CHEAP, READY_DEAR], NOW)}
    assert decisions == {"a": "hpc", "b": "cloud"}


def test_the_deadline_policy_wants_a_good_chance_not_just_an_expected_finish() -> None:
    # 10 h of work, due in 12.5 h. Spot: cheap, one interruption every 2 h on average; its
    # expected finish (about 11.7 h) is within the deadline, but the chance of making it is
    # small: more than 4 interruptions in 12.5 h (each losing up to 35 min) is likely.
    due = spec(hours=10, checkpoint=CheckpointPolicy(interval_s=1800),
               constraints=Constraints(deadline=NOW + timedelta(hours=12.5)))
    spot = offer("spot", 0.3, preemptible=True, preemption_rate_per_hour=0.5,
                 restart_overhead_s=300)
    reliable = offer("reliable", 1.0)
    [cheap] = place([job("j", due)], [spot, reliable], NOW)
    [safe] = place([job("j", due)], [spot, reliable], NOW, Policy(name="deadline", target=0.9))
    assert cheap.site == "spot"
    assert safe.site == "reliable"
    spot_cand = next(c for c in safe.candidates if c.site == "spot")
    assert spot_cand.on_time_chance is not None and spot_cand.on_time_chance < 0.9
    assert "chance of meeting the deadline" in spot_cand.reason
    # without a deadline the policy is simply the cheapest
    [free] = place([job("j", spec(hours=10))], [spot, reliable], NOW, Policy(name="deadline"))
    assert free.site == "spot"


def test_the_on_time_chance_is_a_lower_bound_of_the_simulated_one() -> None:
    """Monte Carlo of the preemption model (Poisson interruptions, the work since the last
    checkpoint and a restart lost at each): the bound never exceeds what is simulated."""
    rng = np.random.default_rng(7)
    work, interval, restart, rate_h = 8 * HOUR, 1800.0, 300.0, 0.4
    lam = rate_h / HOUR
    for due_h in (9.0, 10.0, 12.0):
        due = spec(hours=8, checkpoint=CheckpointPolicy(interval_s=interval),
                   constraints=Constraints(deadline=NOW + timedelta(hours=due_h)))
        o = offer("spot", 0.3, preemptible=True, preemption_rate_per_hour=rate_h,
                  restart_overhead_s=restart)
        [d] = place([job("j", due)], [o], NOW)
        bound = d.candidates[0].on_time_chance
        assert bound is not None
        hits = 0
        runs = 4000
        for _ in range(runs):
            t, done = 0.0, 0.0
            while done < work:
                segment = min(interval, work - done)
                strike = rng.exponential(1 / lam)
                if strike >= segment:
                    t += segment
                    done += segment
                else:
                    t += strike + restart
            hits += t <= due_h * HOUR
        assert bound <= hits / runs + 0.02, (due_h, bound, hits / runs)


# budgets and slots --------------------------------------------------------------------------------


def test_a_project_budget_holds_a_job_with_the_reason() -> None:
    lab = spec(owner=Owner(team="lab", project="vision"))
    jobs = [job("a", lab, minutes_ago=2), job("b", lab, minutes_ago=1)]
    decisions = place(jobs, [offer("x", 1.0)], NOW, budgets={"project:vision": 1.5})
    assert [d.site for d in decisions] == ["x", None]
    assert "project vision has left of its budget ($0.50)" in decisions[1].candidates[0].reason
    other = spec(owner=Owner(team="lab", project="nlp"))
    [d] = place([job("c", other)], [offer("x", 1.0)], NOW, budgets={"project:vision": 0.0})
    assert d.site == "x"


def test_site_slots_limit_how_many_attempts_a_site_starts() -> None:
    jobs = [job(f"j{i}", minutes_ago=10 - i) for i in range(3)]
    decisions = place(jobs, [offer("cheap", 0.1), offer("dear", 1.0)], NOW,
                      site_slots={"cheap": 2})
    assert [d.site for d in decisions] == ["cheap", "cheap", "dear"]
    blocked = next(c for c in decisions[2].candidates if c.site == "cheap")
    assert "runs as many attempts as it may" in blocked.reason


# the checkpoint interval --------------------------------------------------------------------------


def test_the_interval_is_youngs_optimum_for_the_measured_checkpoint_cost() -> None:
    s = spec(hours=4, checkpoint=CheckpointPolicy(interval_s=3 * HOUR))
    spot = offer("spot", 0.3, preemptible=True, preemption_rate_per_hour=0.5,
                 restart_overhead_s=600)
    [by_restart] = place([job("j", s)], [spot], NOW)
    [measured] = place([job("j", s, checkpoint_cost_s=20.0)], [spot], NOW)
    assert by_restart.checkpoint_interval_s == pytest.approx(math.sqrt(2 * 600 / (0.5 / HOUR)))
    assert measured.checkpoint_interval_s == pytest.approx(math.sqrt(2 * 20 / (0.5 / HOUR)))
    # a cheaper checkpoint means checkpointing more often loses less: a lower expected cost
    assert measured.candidates[0].expected_cost < by_restart.candidates[0].expected_cost


# the vectorised round against a reference -------------------------------------------------


def _reference(jobs: list[PendingJob], offers: list[Offer]) -> dict[str, tuple[str, str] | None]:
    """One job at a time, one offer at a time, with gridbridge.costs.estimate: the cheapest
    feasible offer with the capacity left, ties to earlier finish, then site and key."""
    free = {i: [o.cpus, o.memory_gb, o.gpus] for i, o in enumerate(offers)}
    out: dict[str, tuple[str, str] | None] = {}
    for j in sorted(jobs, key=lambda j: (-j.spec.priority, j.submitted_at, j.job_id)):
        best: tuple[Any, ...] | None = None
        res = j.spec.resources
        for i, o in enumerate(offers):
            if (free[i][0] < res.cpus or free[i][1] < res.memory_gb or free[i][2] < res.gpus
                    or o.tier not in j.spec.constraints.tiers
                    or (o.preemptible and not j.spec.constraints.preemptible_ok)):
                continue
            lam = o.preemption_rate_per_hour / HOUR
            interval = j.spec.checkpoint.interval_s
            if lam > 0 and o.restart_overhead_s > 0:
                interval = min(interval, math.sqrt(2 * o.restart_overhead_s / lam))
            est = estimate(j.spec, o, interval_s=interval)
            if not est.finishes:
                continue
            if o.max_walltime_s is not None and res.walltime_s > o.max_walltime_s and \
                    not j.spec.checkpoint.resumable:
                continue
            finish = o.queue_wait_s + est.expected_runtime_s
            deadline = j.spec.constraints.deadline
            if deadline is not None and finish > (deadline - NOW).total_seconds():
                continue
            rank = (round(est.expected_cost, 9), round(finish, 6), o.site, o.key, i)
            if best is None or rank < best:
                best = rank
        if best is None:
            out[j.job_id] = None
            continue
        i = best[-1]
        free[i][0] -= res.cpus
        free[i][1] -= res.memory_gb
        free[i][2] -= res.gpus
        out[j.job_id] = (offers[i].site, offers[i].key)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_the_vectorised_round_agrees_with_the_reference(seed: int) -> None:
    rng = random.Random(seed)
    offers = []
    for n in range(rng.randint(3, 12)):
        preemptible = rng.random() < 0.5
        offers.append(offer(
            f"s{rng.randint(0, 3)}", round(rng.uniform(0.05, 2.0), 3), key=f"k{n}",
            tier=rng.choice(list(Tier)), cpus=rng.choice([1, 2, 4, 8, 16]),
            memory_gb=rng.choice([2.0, 8.0, 64.0]), gpus=rng.choice([0, 0, 1, 4]),
            preemptible=preemptible,
            preemption_rate_per_hour=rng.uniform(0, 2) if preemptible else 0.0,
            restart_overhead_s=rng.choice([0.0, 60.0, 600.0]),
            queue_wait_s=rng.choice([0.0, 0.0, 1800.0, 7200.0]),
            max_walltime_s=rng.choice([None, None, 2 * HOUR])))
    jobs = []
    for n in range(rng.randint(5, 40)):
        deadline = NOW + timedelta(hours=rng.uniform(1, 10)) if rng.random() < 0.3 else None
        tiers = frozenset(rng.sample(list(Tier), rng.randint(1, 3)))
        s = JobSpec(name="j", command=("true",),
                    resources=Resources(cpus=rng.choice([1, 2, 4, 8]),
                                        memory_gb=rng.choice([1.0, 4.0, 16.0]),
                                        gpus=rng.choice([0, 0, 0, 1]),
                                        walltime_s=rng.choice([0.5, 1, 3, 6]) * HOUR),
                    checkpoint=CheckpointPolicy(interval_s=rng.choice([300.0, 1800.0]),
                                                resumable=rng.random() < 0.5),
                    constraints=Constraints(tiers=tiers, deadline=deadline,
                                            preemptible_ok=rng.random() < 0.8),
                    priority=rng.randint(0, 2))
        jobs.append(job(f"j{n:02d}", s, minutes_ago=rng.randint(0, 100)))
    got = place(jobs, offers, NOW)
    want = _reference(jobs, offers)
    assert {d.job_id: (d.site, d.offer_key) if d.site else None for d in got} == want
    for d in got:  # each explanation agrees with the decision it explains
        if d.site is not None:
            assert d.chosen is not None and d.chosen.feasible
            assert d.candidates[0] == d.chosen


@pytest.mark.slow
def test_plan_explains_only_what_is_asked() -> None:
    jobs = [job(f"j{i}", spec(cpus=1 + i % 4), minutes_ago=i) for i in range(2000)]
    offers = [offer(f"s{i % 7}", 0.1 + i / 100, key=f"k{i}", cpus=8) for i in range(100)]
    p = plan(jobs, offers, NOW)
    placed = [i for i in p.order if p.choice[i] >= 0]
    assert len(placed) == sum(1 for _ in placed) and placed  # some fit, most wait
    first, last = placed[0], placed[-1]
    for i in (first, last):
        d = p.decision(i)
        assert (d.site, d.offer_key) == (offers[p.choice[i]].site, offers[p.choice[i]].key)
    cheapest = min(range(100), key=lambda i: offers[i].price.per_hour)
    assert p.choice[first] == cheapest
    # the whole set of decisions, explained, agrees with the plan
    assert [(d.site, d.offer_key) for d in place(jobs, offers, NOW)] == [
        (offers[p.choice[i]].site, offers[p.choice[i]].key) if p.choice[i] >= 0 else (None, None)
        for i in p.order]


# the windowed walk against the plain one-job-at-a-time rule --------------------------------


def _random_round(seed: int) -> tuple[list[PendingJob], list[Offer], Policy,
                                      dict[str, float] | None, dict[str, int] | None]:
    rng = random.Random(seed)
    offers = []
    for n in range(rng.randint(4, 16)):
        preemptible = rng.random() < 0.5
        offers.append(offer(
            f"s{rng.randint(0, 4)}", rng.choice([0.1, 0.5, round(rng.uniform(0.05, 2.0), 3)]),
            key=f"k{n}", tier=rng.choice(list(Tier)), cpus=rng.choice([1, 4, 8, 16]),
            memory_gb=rng.choice([4.0, 16.0, 0.3]), gpus=rng.choice([0, 0, 1, 4]),
            preemptible=preemptible,
            preemption_rate_per_hour=rng.uniform(0, 2) if preemptible else 0.0,
            restart_overhead_s=rng.choice([0.0, 60.0, 600.0]),
            queue_wait_s=rng.choice([0.0, 0.0, 1800.0]),
            max_walltime_s=rng.choice([None, 2 * HOUR]),
            labels=rng.choice([{}, {"loc": "a"}]), latency_ms=rng.choice([None, 1.0, 20.0])))
    policies = [None, None, Policy(name="fastest"), Policy(name="balanced", weight=0.3),
                Policy(name="deadline", target=0.8)]
    shapes = []  # a few kinds of job, so that walks have many jobs
    for _ in range(rng.randint(1, 5)):
        deadline = NOW + timedelta(hours=rng.uniform(1, 10)) if rng.random() < 0.3 else None
        shapes.append(JobSpec(
            name="j", command=("true",),
            resources=Resources(cpus=rng.choice([1, 2, 4]), memory_gb=rng.choice([1.0, 0.1, 4.0]),
                                gpus=rng.choice([0, 0, 0, 1]),
                                walltime_s=rng.choice([0.5, 1, 3]) * HOUR),
            checkpoint=CheckpointPolicy(interval_s=rng.choice([300.0, 1800.0]),
                                        resumable=rng.random() < 0.5),
            constraints=Constraints(
                tiers=frozenset(rng.sample(list(Tier), rng.randint(1, 3))),
                deadline=deadline, preemptible_ok=rng.random() < 0.8,
                labels=rng.choice([{}, {}, {"loc": "a"}]),
                max_latency_ms=rng.choice([None, None, 5.0]),
                denied_sites=rng.choice([frozenset(), frozenset({"s1"})])),
            max_cost=rng.choice([None, None, 2.0]), policy=rng.choice(policies)))
    jobs = []
    for _ in range(rng.randint(1, 80)):
        s = rng.choice(shapes).model_copy(update={
            "priority": rng.randint(0, 2),
            "owner": Owner(team=rng.choice("abc"), project=rng.choice("xy"))})
        jobs.append(PendingJob(job_id=f"j{rng.randint(0, 99):02d}", spec=s,
                               submitted_at=NOW - timedelta(minutes=rng.randint(0, 30)),
                               avoid=rng.choice([{}] * 6 + [{"s2": "rejected"}]),
                               remaining_work_s=rng.choice([None] * 6 + [1800.0]),
                               checkpoint_cost_s=rng.choice([None] * 6 + [10.0])))
    budgets = rng.choice([None, {"a": 5.0, "project:x": 3.0}, {"team:b": 9.0, "c": 2.5}])
    slots = rng.choice([None, {"s0": 3, "s3": 1}])
    return jobs, offers, rng.choice([Policy(), Policy(name="fastest")]), budgets, slots


def _one_at_a_time(jobs: list[PendingJob], offers: list[Offer], policy: Policy,
                   budgets: dict[str, float] | None, slots: dict[str, int] | None) -> list[int]:
    """The plain rule: jobs in order, each ranking every offer on its own and taking the first
    that still has the room, its site a slot and its owner the money."""
    o = _offers.Offers.of(offers)
    free = [[float(x.cpus), x.memory_gb, float(x.gpus)] for x in offers]
    left, taken = dict(budgets or {}), dict.fromkeys((x.site for x in offers), 0)
    choice = [-1] * len(jobs)
    for i in sorted(range(len(jobs)), key=lambda i: (-jobs[i].spec.priority,
                                                     jobs[i].submitted_at, jobs[i].job_id)):
        k = _classes.JobClass.of(jobs[i], policy)
        rows = _score.score_rows([k], o, NOW, {})
        res, owner = jobs[i].spec.resources, jobs[i].spec.owner
        keys = [b for b in (owner.team, f"team:{owner.team}", f"project:{owner.project}")
                if b in left]
        for j in _ranking.rank(k, o, rows, 0, None).tolist():
            cost, site = float(rows.cost[0, j]), offers[j].site
            if (free[j][0] >= res.cpus and free[j][1] >= res.memory_gb
                    and free[j][2] >= res.gpus and taken[site] < (slots or {}).get(site, math.inf)
                    and all(cost <= left[b] for b in keys)):
                free[j][0] -= res.cpus
                free[j][1] -= res.memory_gb
                free[j][2] -= res.gpus
                taken[site] += 1
                for b in keys:
                    left[b] -= cost
                choice[i] = j
                break
    return choice


@pytest.mark.parametrize("seed", range(10))
def test_the_windowed_walk_is_the_one_job_at_a_time_rule(
        seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """With budgets, slots, every policy and deadlines; and again with windows, looks ahead
    and first rankings so short that every path of the walk runs (candidates taken by jobs
    earlier in the window, deeper looks, searches, rankings made deeper)."""
    jobs, offers, policy, budgets, slots = _random_round(seed)
    want = _one_at_a_time(jobs, offers, policy, budgets, slots)
    usual = plan(jobs, offers, NOW, policy, budgets, slots)
    assert usual.choice == want
    for module, name, value in ((_walk, "_WINDOW", 3), (_walk, "_AHEAD", 1),
                                (_walk, "_KEEP", 1), (_walk, "_GROW", 2),
                                (_ranking, "_RANKED", 4), (_ranking, "_TOP", 1)):
        monkeypatch.setattr(module, name, value)
    assert plan(jobs, offers, NOW, policy, budgets, slots).choice == want
    for i in usual.order:  # and each explanation, which scores every offer anew, agrees
        d = usual.decision(i)
        assert (d.site, d.offer_key) == ((offers[want[i]].site, offers[want[i]].key)
                                         if want[i] >= 0 else (None, None))


def test_the_order_is_priority_then_submission_then_id_whatever_the_clocks() -> None:
    rng = random.Random(3)
    plus2 = timezone(timedelta(hours=2))
    for clock in ("utc", "naive", "mixed", "huge"):
        jobs = []
        for n in range(200):
            at = NOW - timedelta(minutes=rng.randint(0, 5), microseconds=rng.randint(0, 2))
            if clock == "naive":
                at = at.replace(tzinfo=None)
            elif clock == "mixed" and n % 2:
                at = at.astimezone(plus2)
            priority = rng.randint(0, 2) * (2**70 if clock == "huge" else 1)
            # model_copy, not validation: a store row from before the priority bound (or
            # written by another tool) may hold any integer, and the order must still hold
            jobs.append(job(f"j{rng.randint(0, 50)}",
                            spec().model_copy(update={"priority": priority})))
            jobs[-1] = jobs[-1].model_copy(update={"submitted_at": at})
        want = sorted(range(len(jobs)), key=lambda i: (-jobs[i].spec.priority,
                                                       jobs[i].submitted_at, jobs[i].job_id))
        assert plan(jobs, [], NOW).order == want, clock
