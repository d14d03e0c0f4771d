"""The cost model against a wall-clock Monte-Carlo simulation and hand arithmetic."""

from __future__ import annotations

import math
import random
import statistics

import pytest
from pydantic import ValidationError

from gridbridge.adapter import Offer, Pricing
from gridbridge.costs import CostEstimate, attempt_cost, estimate, expected_runtime_s
from gridbridge.spec import CheckpointPolicy, JobSpec, Resources, Tier

HOUR = 3600.0


def simulate_once(
    rng: random.Random, work_s: float, rate_per_hour: float, tau_s: float | None, restart_s: float
) -> tuple[float, int]:
    """Run one job on a wall clock with Poisson preemptions; return (elapsed, interruptions).

    Independent of the closed form: it tracks checkpointed progress, pays the restart after each
    preemption (a preemption during the restart just starts it over) and redoes lost work.
    """
    lam = rate_per_hour / HOUR
    tau = math.inf if tau_s is None else tau_s
    saved = 0.0
    elapsed = 0.0
    interruptions = 0
    restarting = False
    while True:
        overhead = restart_s if restarting else 0.0
        needed = overhead + (work_s - saved)
        gap = rng.expovariate(lam)
        if gap >= needed:
            return elapsed + needed, interruptions
        elapsed += gap
        interruptions += 1
        worked = max(0.0, gap - overhead)
        if math.isfinite(tau):
            saved += math.floor(worked / tau) * tau
        restarting = True


@pytest.mark.parametrize(
    ("work_s", "rate", "tau_s", "restart_s"),
    [
        (3 * HOUR, 1.0, 1800.0, 300.0),  # whole segments
        (100 * 60.0, 2.0, 1800.0, 120.0),  # 3 segments plus a 10-minute remainder
        (HOUR, 1.0, None, 60.0),  # no checkpoints: lose everything done so far
        (2 * HOUR, 0.5, 600.0, 1200.0),  # restart longer than the interval
    ],
)
def test_expected_runtime_matches_monte_carlo(
    work_s: float, rate: float, tau_s: float | None, restart_s: float
) -> None:
    rng = random.Random(20240611)
    runs = [simulate_once(rng, work_s, rate, tau_s, restart_s) for _ in range(20_000)]
    times = [t for t, _ in runs]
    mean = statistics.fmean(times)
    stderr = statistics.stdev(times) / math.sqrt(len(times))
    assert stderr / mean < 0.01  # the check below is tight enough to mean something

    formula = expected_runtime_s(work_s, rate, tau_s, restart_s)
    assert abs(formula - mean) < 4 * stderr
    assert formula > work_s

    mean_interruptions = statistics.fmean(n for _, n in runs)
    assert mean_interruptions == pytest.approx(rate / HOUR * formula, rel=0.03)


def test_first_order_is_half_an_interval_plus_restart_per_interruption() -> None:
    work, rate, tau, restart = 10 * HOUR, 0.01, 600.0, 60.0
    extra = expected_runtime_s(work, rate, tau, restart) - work
    first_order = work * (rate / HOUR) * (tau / 2 + restart)
    assert extra == pytest.approx(first_order, rel=0.01)


def test_no_preemption_means_no_extra_time() -> None:
    assert expected_runtime_s(5000.0, 0.0, 600.0, 300.0) == 5000.0
    assert expected_runtime_s(0.0, 3.0, 600.0, 300.0) == 0.0


def test_no_checkpoint_is_an_interval_as_long_as_the_job() -> None:
    no_ckpt = expected_runtime_s(HOUR, 1.0, None, 60.0)
    assert no_ckpt == expected_runtime_s(HOUR, 1.0, HOUR, 60.0)
    assert no_ckpt == expected_runtime_s(HOUR, 1.0, 10 * HOUR, 60.0)
    # exact closed form for one segment: e^(lam R) (e^(lam W) - 1) / lam, lam = 1/h
    assert no_ckpt == pytest.approx(math.exp(60 / HOUR) * (math.e - 1) * HOUR, rel=1e-12)


def test_runtime_grows_with_rate_restart_and_interval() -> None:
    base = expected_runtime_s(4 * HOUR, 0.5, 900.0, 120.0)
    assert expected_runtime_s(4 * HOUR, 1.0, 900.0, 120.0) > base
    assert expected_runtime_s(4 * HOUR, 0.5, 900.0, 600.0) > base
    assert expected_runtime_s(4 * HOUR, 0.5, 3600.0, 120.0) > base


def test_too_frequent_preemption_never_finishes() -> None:
    assert expected_runtime_s(10 * HOUR, 100.0, None, 0.0) == math.inf
    assert expected_runtime_s(HOUR, 7200.0, 600.0, 60.0) == math.inf
    assert expected_runtime_s(math.inf, 0.0, None, 0.0) == math.inf


@pytest.mark.parametrize(
    "args",
    [
        (-1.0, 0.0, None, 0.0),
        (1.0, -0.1, None, 0.0),
        (1.0, 0.0, 0.0, 0.0),
        (1.0, 0.0, None, -5.0),
        (math.nan, 0.0, None, 0.0),
    ],
)
def test_bad_inputs_are_refused(args: tuple[float, float, float | None, float]) -> None:
    with pytest.raises(ValueError):
        expected_runtime_s(*args)


def test_attempt_cost_is_hourly_price_times_hours() -> None:
    pricing = Pricing(per_hour=1.0, per_core_hour=0.1, per_gpu_hour=2.0)
    resources = Resources(cpus=4, gpus=1)
    # (1 + 4 * 0.1 + 1 * 2) $/h for half an hour
    assert attempt_cost(pricing, resources, 1800.0) == pytest.approx(1.7)
    assert attempt_cost(pricing, resources, 0.0) == 0.0
    assert attempt_cost(Pricing(), resources, math.inf) == 0.0  # prepaid allocation
    with pytest.raises(ValueError):
        attempt_cost(pricing, resources, -1.0)


def test_estimate_combines_offer_and_spec() -> None:
    spec = JobSpec(
        name="train",
        command=("true",),
        resources=Resources(cpus=2, walltime_s=4 * HOUR, expected_runtime_s=HOUR),
        checkpoint=CheckpointPolicy(interval_s=600.0),
    )
    offer = Offer(
        site="spot",
        tier=Tier.CLOUD,
        cpus=8,
        memory_gb=32,
        price=Pricing(per_core_hour=0.05),
        on_demand=Pricing(per_core_hour=0.20),
        preemptible=True,
        preemption_rate_per_hour=0.5,
        restart_overhead_s=120.0,
    )
    est = estimate(spec, offer)
    lam = 0.5 / HOUR
    runtime = math.exp(lam * 120) * 6 * math.expm1(lam * 600) / lam  # six 10-minute segments
    assert est.expected_runtime_s == pytest.approx(runtime, rel=1e-12)
    assert HOUR < est.expected_runtime_s < HOUR * 1.1
    assert est.hourly_price == pytest.approx(0.10)
    assert est.expected_cost == pytest.approx(0.10 * runtime / HOUR)
    assert est.on_demand_cost == pytest.approx(0.40)  # on-demand: the work once, no preemption
    assert est.expected_interruptions == pytest.approx(0.5 * runtime / HOUR)
    assert est.finishes


def test_estimate_is_frozen() -> None:
    est = CostEstimate(
        expected_runtime_s=1.0,
        expected_cost=1.0,
        on_demand_cost=1.0,
        hourly_price=1.0,
        expected_interruptions=0.0,
    )
    with pytest.raises(ValidationError):
        est.expected_cost = 2.0  # type: ignore[misc]
