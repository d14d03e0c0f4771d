"""Explanations: a round's outcome (:class:`Plan`), and each decision with every offer as a
candidate, the numbers and why it won, lost or could not run the job.

Invariant: an explanation is built only when asked for (``Plan.decision(i)``), by scoring
job ``i``'s class anew against the capacity, slots and budgets as they stood at its turn
(replayed from the round's placements), so it always agrees with the choice the walk made:
the winner is the offer taken, the losers are ranked as the walk ranked them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from gridbridge.adapter import Offer
from gridbridge.spec import Policy
from gridbridge.units import fmt_duration, fmt_money

from ._classes import JobClass, budget_keys
from ._fair import Shares, user_cap_reason
from ._models import Candidate, Decision, PendingJob
from ._offers import Offers, Static
from ._problems import budget_problems, capacity_problems, site_problems, walltime_problem
from ._ranking import COST_DIGITS, rank
from ._score import Rows, score_rows


@dataclass
class Plan:
    """The outcome of one placement round: where each job goes, with its explanation built
    on demand (``decision(i)``). ``order`` is the placement order (indices into the jobs
    given); ``choice[i]`` the offer index job ``i`` took, or -1."""

    jobs: Sequence[PendingJob]
    offers: Sequence[Offer]
    now: datetime
    policy: Policy
    budgets: Mapping[str, float]
    order: list[int]
    choice: list[int]
    site_slots: Mapping[str, int]
    classes: int
    """How many classes of jobs that score alike the round found."""
    _classes: list[JobClass] = field(repr=False)
    _class_of: list[int] = field(repr=False)
    _arrays: Offers = field(repr=False)
    _events: list[tuple[int, int, float]] = field(repr=False)
    """(position in ``order``, offer index, expected cost) of each placement, in order."""
    _static: Static = field(repr=False)
    _position: dict[int, int] | None = field(default=None, repr=False)
    shares: Shares = field(default_factory=Shares)
    """What fair share knew: running attempts per user and team, weights, the user cap."""

    def decisions(self) -> list[Decision]:
        """Every job's decision, in placement order."""
        return [self.decision(i) for i in self.order]

    def decision(self, i: int) -> Decision:
        """Job ``i``'s decision, with every offer as a candidate as it stood at its turn."""
        job, k = self.jobs[i], self._classes[self._class_of[i]]
        o = self._arrays
        rows = score_rows([k], o, self.now, self._static)
        free, taken, left, started = self._at_turn(i)
        scored = [self._score(job, k, rows, j, free[j], taken, left)
                  for j in range(len(self.offers))]
        chosen = self.choice[i]
        standing = {j: n for n, j in enumerate(rank(k, o, rows, 0, None).tolist())}
        feasible = [s for s in scored if not s.problems]
        feasible.sort(key=lambda s: standing.get(s.index, len(standing)))
        infeasible = sorted((s for s in scored if s.problems),
                            key=lambda s: (s.offer.site, s.offer.key, s.index))
        cands = [_candidate(s, "; ".join(s.problems)) for s in infeasible]
        name = k.policy.name
        cap, user = self.shares.max_running_per_user, job.spec.owner.user
        running = self.shares.running_users.get(user, 0) + started
        if chosen < 0 and cap is not None and running >= cap:
            reason = user_cap_reason(user, running, cap)
            held = [_candidate(s, f"feasible, but {reason}") for s in feasible]
            return Decision(job_id=job.job_id, site=None, candidates=(*held, *cands),
                            reason=reason, policy=name)
        if chosen < 0 or not feasible:
            summary = " | ".join(f"{c.site}: {c.reason}" for c in cands) or "no offers"
            return Decision(job_id=job.job_id, site=None, candidates=tuple(cands),
                            reason=f"no feasible site: {summary}", policy=name)
        best = scored[chosen]
        assert not best.problems, f"placed on an offer its explanation rules out: {best}"
        rest = [s for s in feasible if s.index != chosen]
        ranked = [_candidate(best, _winner_reason(best, rest, name))]
        ranked += [_candidate(s, _loser_reason(s, best, name)) for s in rest]
        return Decision(
            job_id=job.job_id, site=best.offer.site, candidates=(*ranked, *cands),
            reason=ranked[0].reason, offer_key=best.offer.key,
            checkpoint_interval_s=float(rows.interval[0, chosen]), policy=name,
        )

    def _at_turn(self, i: int) -> tuple[list[list[float]], list[int], dict[str, float], int]:
        """What was left when job ``i``'s turn came: each offer's free cpus, memory and gpus,
        the attempts each site had started, what each budget had left and how many attempts
        the round had started for the job's user."""
        if self._position is None:
            self._position = {j: p for p, j in enumerate(self.order)}
        turn = self._position[i]
        free = [[float(x.cpus), x.memory_gb, float(x.gpus)] for x in self.offers]
        taken = [0] * len(self._arrays.sites)
        left = dict(self.budgets)
        user, started = self.jobs[i].spec.owner.user, 0
        for pos, index, cost in self._events:
            if pos >= turn:
                break
            j = self.jobs[self.order[pos]]
            res = j.spec.resources
            free[index][0] -= res.cpus
            free[index][1] -= res.memory_gb
            free[index][2] -= res.gpus
            taken[self._arrays.site_of[index]] += 1
            for key in budget_keys(j.spec, left):
                left[key] -= cost
            started += j.spec.owner.user == user
        return free, taken, left, started

    def _score(self, job: PendingJob, k: JobClass, rows: Rows, j: int, free: list[float],
               taken: list[int], left: Mapping[str, float]) -> _Scored:
        offer = self.offers[j]
        finite = bool(np.isfinite(rows.finish[0, j]))
        finish = _finish(self.now, float(rows.finish[0, j])) if finite else None
        problems = [*site_problems(k.spec, offer), *capacity_problems(k.spec, free)]
        avoided = job.avoid.get(offer.site) or job.avoid.get(f"{offer.site}/{offer.key}")
        if avoided:
            problems.insert(0, avoided)
        if problems and offer.note:
            problems.append(offer.note)
        wall = walltime_problem(k, offer)
        if wall:
            problems.append(wall)
        cost = float(rows.cost[0, j])
        if finish is None:
            problems.append("preemption too frequent to finish")
        else:
            deadline = k.spec.constraints.deadline
            if deadline is not None and finish > deadline:
                late = (finish - deadline).total_seconds()
                problems.append(f"deadline missed by {fmt_duration(late)}")
            elif (deadline is not None and k.policy.name == "deadline"
                  and rows.chance[0, j] < k.policy.target):
                problems.append(f"chance of meeting the deadline {rows.chance[0, j]:.0%} < "
                                f"target {k.policy.target:.0%}")
            if k.spec.max_cost is not None and cost > k.spec.max_cost:
                problems.append(f"expected cost {fmt_money(cost, readable=True)} > max_cost "
                                f"{fmt_money(k.spec.max_cost, readable=True)}")
            problems += budget_problems(job.spec, cost, left)  # the class may mix owners
        if offer.site in self.site_slots:
            slots = self.site_slots[offer.site] - taken[self._arrays.sites.index(offer.site)]
            if slots <= 0:
                problems.append(f"site {offer.site} runs as many attempts as it may "
                                "(site_slots)")
        return _Scored(j, offer, rows, finish, tuple(problems))


@dataclass(frozen=True)
class _Scored:
    index: int
    offer: Offer
    rows: Rows
    finish: datetime | None
    problems: tuple[str, ...]

    @property
    def cost(self) -> float:
        return float(self.rows.cost[0, self.index])

    @property
    def rounded(self) -> float:
        return round(self.cost, COST_DIGITS)


def _finish(now: datetime, seconds: float) -> datetime | None:
    """``now + seconds``, or None when that is not a finite, representable time."""
    if not math.isfinite(seconds):
        return None
    try:
        return now + timedelta(seconds=seconds)
    except OverflowError:
        return None


def _candidate(s: _Scored, reason: str) -> Candidate:
    finite = s.finish is not None
    return Candidate(
        site=s.offer.site,
        offer_key=s.offer.key,
        feasible=not s.problems,
        expected_cost=s.cost if finite else None,
        on_demand_cost=float(s.rows.on_demand[0, s.index]),
        expected_runtime_s=float(s.rows.runtime[0, s.index]) if finite else None,
        expected_finish=s.finish,
        reason=reason,
        on_time_chance=float(s.rows.chance[0, s.index]) if s.rows.has_deadline else None,
    )


def _winner_reason(best: _Scored, rest: Sequence[_Scored], policy: str) -> str:
    cost = fmt_money(best.cost, readable=True)
    if not rest:
        return f"only feasible site: {cost}"
    nxt = rest[0]
    next_cost = fmt_money(nxt.cost, readable=True)
    if policy == "fastest":
        assert best.finish is not None and nxt.finish is not None
        gain = fmt_duration((nxt.finish - best.finish).total_seconds())
        return (f"fastest feasible: finishes {gain} before {nxt.offer.site} "
                f"({cost} vs {next_cost})")
    if policy == "balanced":
        return f"best balance of cost and time: {cost} vs next {next_cost} on {nxt.offer.site}"
    what = "cheapest feasible"
    if policy == "deadline":
        what = "cheapest likely to meet the deadline"
    text = f"{what}: {cost} vs next {next_cost} on {nxt.offer.site}"
    if nxt.rounded == best.rounded:
        by = ("earlier finish" if nxt.finish != best.finish
              else "site name" if nxt.offer.site != best.offer.site else "offer key")
        text += f", tie broken by {by}"
    return text


def _loser_reason(s: _Scored, best: _Scored, policy: str) -> str:
    site = best.offer.site
    assert s.finish is not None and best.finish is not None
    if policy == "fastest" and s.finish > best.finish:
        later = fmt_duration((s.finish - best.finish).total_seconds())
        return f"finishes later than {site} (by {later})"
    if policy == "balanced":
        return f"worse balance of cost and time than {site}"
    diff = s.rounded - best.rounded
    if diff > 0:
        return f"dearer by {fmt_money(diff, readable=True)} than {site}"
    if s.finish > best.finish:
        later = fmt_duration((s.finish - best.finish).total_seconds())
        return f"same cost, later finish than {site} (by {later})"
    if s.offer.site != site:
        return f"same cost and finish as {site}; lost the tie-break on site name"
    return f"same cost and finish as {site} {best.offer.key}; lost the tie-break on offer key"
