"""The cost model: what a job is expected to take, and to cost, on one offer.

Invariant: every function here is pure arithmetic on its arguments -- no I/O, no clock, no
globals -- so the live reconciler, the simulator and the reports all get the same numbers.

Preemption model (exact under its assumptions, not a first-order approximation)::

    work W, checkpoint every tau of useful work  ->  segments of tau, then the remainder
    preemptions: Poisson, rate lam, striking at any wall-clock moment the job holds the site
    preempted  ->  work since the last checkpoint is lost, restart costs R (itself preemptible)

A segment of length t is done once the job gets an uninterrupted stretch of t (first try) or of
R + t (after any preemption). Summing the geometric series of failed tries gives::

    E[segment] = e^(lam*R) * (e^(lam*t) - 1) / lam
    E[runtime] = sum over segments          (= W when lam = 0)
    E[interruptions] = lam * E[runtime]     (Wald's identity for a Poisson process)

To first order in lam this is ``W * (1 + lam * (tau/2 + R))``: each interruption costs half a
checkpoint interval plus the restart, as DESIGN.md states. Without checkpoints (tau = W) each
interruption costs about half the work done so far, and the expectation grows like e^(lam*W).
The expectation is finite for every finite input; ``math.inf`` means it is beyond a float.
"""

from __future__ import annotations

import math

from gridbridge.adapter import Offer, Pricing
from gridbridge.frozen import Frozen
from gridbridge.spec import JobSpec, Resources

__all__ = [
    "ADVISOR_MONTHLY",
    "CostEstimate",
    "advisor_rate",
    "attempt_cost",
    "checkpoint_interval_s",
    "estimate",
    "expected_runtime_s",
]

_HOUR_S = 3600.0
_HOURS_PER_MONTH = 730.0
ADVISOR_MONTHLY = (0.025, 0.075, 0.125, 0.175, 0.25)
"""The chance that a spot instance is reclaimed within a month, per AWS Spot Advisor bucket
(<5%, 5-10%, 10-15%, 15-20%, >20%): the bucket's middle, and 25% for the open last one. AWS
publishes only the buckets, so this mapping is gridbridge's."""


def advisor_rate(bucket: int) -> float:
    """Interruptions per instance-hour for a Spot Advisor bucket: ``-ln(1 - p) / 730`` with
    ``p`` from :data:`ADVISOR_MONTHLY` (a Poisson process over a month of 730 hours)."""
    p = ADVISOR_MONTHLY[min(max(bucket, 0), len(ADVISOR_MONTHLY) - 1)]
    return -math.log1p(-p) / _HOURS_PER_MONTH


def _check_non_negative(name: str, value: float) -> None:
    if math.isnan(value) or value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")


def _segment_s(lam: float, restart_s: float, length_s: float) -> float:
    """Expected wall time to finish one checkpointed segment: ``e^(lam*R) * expm1(lam*t) / lam``."""
    return math.exp(lam * restart_s) * math.expm1(lam * length_s) / lam


def expected_runtime_s(
    runtime_s: float,
    preemption_rate_per_hour: float,
    checkpoint_interval_s: float | None,
    restart_overhead_s: float,
) -> float:
    """Expected wall-clock seconds to finish ``runtime_s`` of work under Poisson preemptions.

    With ``lam = rate / 3600`` per second, ``tau`` the checkpoint interval (None: no
    checkpoints, so ``tau = runtime_s``), ``R`` the restart overhead, and the work ``W`` split into
    ``n = floor(W/tau)`` full segments plus a remainder ``r = W - n*tau``::

        E = e^(lam*R) * (n * (e^(lam*tau) - 1) + (e^(lam*r) - 1)) / lam

    Equals ``runtime_s`` when the rate is 0; about ``W * (1 + lam*(tau/2 + R))`` when
    ``lam*(tau + R)`` is small. Returns ``math.inf`` when the job would practically never finish
    (the expectation overflows a float). Raises ValueError on negative or NaN inputs.
    """
    _check_non_negative("runtime_s", runtime_s)
    _check_non_negative("preemption_rate_per_hour", preemption_rate_per_hour)
    _check_non_negative("restart_overhead_s", restart_overhead_s)
    if checkpoint_interval_s is not None and not checkpoint_interval_s > 0:
        raise ValueError(
            f"checkpoint_interval_s must be > 0 or None, got {checkpoint_interval_s!r}"
        )
    if math.isinf(runtime_s):
        return math.inf
    lam = preemption_rate_per_hour / _HOUR_S
    if lam == 0 or runtime_s == 0:
        return runtime_s
    tau = runtime_s if checkpoint_interval_s is None else min(checkpoint_interval_s, runtime_s)
    full = math.floor(runtime_s / tau)
    rest = max(runtime_s - full * tau, 0.0)
    try:
        total = full * _segment_s(lam, restart_overhead_s, tau)
        if rest > 0:
            total += _segment_s(lam, restart_overhead_s, rest)
    except OverflowError:
        return math.inf
    return total if math.isfinite(total) else math.inf


def attempt_cost(pricing: Pricing, resources: Resources, duration_s: float) -> float:
    """Cost of holding ``resources`` for ``duration_s``: ``pricing.hourly(resources) * hours``.

    A zero hourly price (a prepaid allocation) costs 0 for any duration, even an infinite one.
    """
    _check_non_negative("duration_s", duration_s)
    hourly = pricing.hourly(resources)
    if hourly == 0:
        return 0.0
    return hourly * duration_s / _HOUR_S


class CostEstimate(Frozen):
    """What one job is expected to take and cost on one offer.

    ``expected_cost`` is the offer's price over the expected run time (preemptions included);
    ``on_demand_cost`` is the on-demand price of the same work run once without interruption,
    the baseline the savings report compares against. Queue wait is not billed.
    """

    expected_runtime_s: float
    expected_cost: float
    on_demand_cost: float
    hourly_price: float
    expected_interruptions: float

    @property
    def finishes(self) -> bool:
        """False when preemption is too frequent for the job to be expected to finish."""
        return math.isfinite(self.expected_runtime_s)


def checkpoint_interval_s(spec: JobSpec, offer: Offer) -> float:
    """How often the job should checkpoint on ``offer``: its own interval, or Young's optimum
    ``sqrt(2 * C / lam)`` when that is shorter, with the offer's restart overhead standing in
    for the checkpoint cost ``C`` (the two are of one order: both move the job's state)."""
    own = spec.checkpoint.interval_s
    lam = offer.preemption_rate_per_hour / _HOUR_S
    if lam == 0 or offer.restart_overhead_s == 0:
        return own
    return min(own, math.sqrt(2 * offer.restart_overhead_s / lam))


def estimate(
    spec: JobSpec, offer: Offer, *, work_s: float | None = None,
    interval_s: float | None = None,
) -> CostEstimate:
    """Estimate ``spec`` on ``offer``.

    Work is ``work_s`` (the remaining work of a resumed job) or else
    ``spec.resources.runtime_estimate_s``; checkpoints every ``interval_s`` (default
    ``spec.checkpoint.interval_s``); rate and restart overhead come from the offer. See
    :func:`expected_runtime_s` for the formula. A resumable job longer than the offer's
    ``max_walltime_s`` runs in several attempts: each walltime end adds one restart overhead.
    ``expected_interruptions = rate_per_second * expected_runtime_s``.
    """
    resources = spec.resources
    work = resources.runtime_estimate_s if work_s is None else work_s
    runtime = expected_runtime_s(
        work,
        offer.preemption_rate_per_hour,
        interval_s or spec.checkpoint.interval_s,
        offer.restart_overhead_s,
    )
    limit = offer.max_walltime_s
    if limit is not None and work > limit and math.isfinite(runtime):
        runtime += (math.ceil(work / limit) - 1) * offer.restart_overhead_s
    rate_per_s = offer.preemption_rate_per_hour / _HOUR_S
    interruptions = 0.0 if rate_per_s == 0 else rate_per_s * runtime
    return CostEstimate(
        expected_runtime_s=runtime,
        expected_cost=attempt_cost(offer.price, resources, runtime),
        on_demand_cost=attempt_cost(offer.on_demand, resources, work),
        hourly_price=offer.price.hourly(resources),
        expected_interruptions=interruptions,
    )
