"""Why an offer cannot take a job, in words: the rules that ``_offers``, ``_score`` and
``_walk`` apply as arrays, one offer at a time.

Invariant: each function here says no exactly where its vector twin rules the offer out, so
an explanation never contradicts the decision it explains; money and durations read as
:func:`gridbridge.units.fmt_money` (readable) and :func:`gridbridge.units.fmt_duration` write
them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gridbridge.adapter import Offer
from gridbridge.spec import JobSpec
from gridbridge.units import fmt_duration, fmt_money

from ._classes import OTHER_TEAMS, JobClass, budget_keys


def site_problems(spec: JobSpec, offer: Offer) -> list[str]:
    """The job's site, tier, preemption, label and latency rules the offer breaks."""
    c = spec.constraints
    problems: list[str] = []
    if offer.site in c.denied_sites:
        problems.append("denied by constraints")
    if c.allowed_sites is not None and offer.site not in c.allowed_sites:
        problems.append(f"not in allowed sites ({', '.join(sorted(c.allowed_sites)) or 'none'})")
    if offer.tier not in c.tiers:
        allowed = ", ".join(sorted(t.value for t in c.tiers)) or "none"
        problems.append(f"tier {offer.tier.value} not allowed (allowed: {allowed})")
    if offer.preemptible and not c.preemptible_ok:
        problems.append("site is preemptible and the job does not allow preemption")
    missing = {k: v for k, v in c.labels.items() if offer.labels.get(k) != v}
    if missing:
        want = ", ".join(f"{k}={v}" for k, v in sorted(missing.items()))
        has = ", ".join(f"{k}={v}" for k, v in sorted(offer.labels.items())) or "none"
        problems.append(f"lacks label {want} (has {has})")
    if c.max_latency_ms is not None:
        if offer.latency_ms is None:
            problems.append(f"latency unknown (the job needs at most {c.max_latency_ms:g} ms)")
        elif offer.latency_ms > c.max_latency_ms:
            problems.append(f"latency {offer.latency_ms:.1f} ms > max {c.max_latency_ms:g} ms")
    return problems


def capacity_problems(spec: JobSpec, free: Sequence[float]) -> list[str]:
    """What the job needs beyond what is ``free`` (cpus, memory, gpus) on the offer."""
    r = spec.resources
    problems: list[str] = []
    if r.cpus > free[0]:
        problems.append(f"needs {r.cpus} cpus, {max(int(free[0]), 0)} free")
    if r.memory_gb > free[1]:
        problems.append(f"needs {r.memory_gb:g} GB memory, {max(free[1], 0.0):g} GB free")
    if r.gpus > free[2]:
        problems.append(f"needs {r.gpus} gpus, {max(int(free[2]), 0)} free")
    return problems


def walltime_problem(k: JobClass, offer: Offer) -> str | None:
    """The offer's walltime limit, where the job needs more and cannot resume past it."""
    limit = offer.max_walltime_s
    if limit is not None and k.spec.resources.walltime_s > limit and not k.resumable:
        return (f"walltime {fmt_duration(k.spec.resources.walltime_s)} exceeds site limit "
                f"{fmt_duration(limit)} and the job does not resume from checkpoints")
    return None


def budget_problems(spec: JobSpec, cost: float, left: Mapping[str, float]) -> list[str]:
    """What the job's team and project have left (``left``) short of ``cost``."""
    problems = []
    expected = fmt_money(cost, readable=True)
    team = spec.owner.team
    for key in budget_keys(spec, left):
        if key.startswith("project:"):
            continue
        if cost > left[key]:
            has = fmt_money(max(left[key], 0.0), readable=True)
            shared = ("" if key != OTHER_TEAMS else
                      ": budgets.default, one budget shared by every team without its own")
            problems.append(f"expected cost {expected} > what team {team} has left of its "
                            f"budget ({has}){shared}")
            break
    project = spec.owner.project
    key = f"project:{project}"
    if key in left and cost > left[key]:
        has = fmt_money(max(left[key], 0.0), readable=True)
        problems.append(f"expected cost {expected} > what project {project} has left of "
                        f"its budget ({has})")
    return problems
