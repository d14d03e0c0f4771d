"""Explaining placement: every candidate of a decision is stored, and a waiting job is told why.

Invariant: a placement round's decision rows and ``waiting`` events are stored in one write
(:meth:`Explaining.flush`), before the round's submissions; an unplaceable decision is stored
again only when it changes, and a job left waiting is explained at most every
``REEXPLAIN_S`` seconds, the first ``EXPLAIN_PER_TICK`` in line first (explaining costs a pass
over every offer).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from ..admission import ideal_offers
from ..placement import Candidate, Decision, PendingJob, place
from ..records import Job
from ..tables import DecisionRow
from ._tick import World

__all__ = ["EXPLAIN_PER_TICK", "REEXPLAIN_S", "Explaining"]

EXPLAIN_PER_TICK = 200
"""Unplaced jobs whose decision is explained (and its story told) each round, first in line
first; the others are explained once they come near the front."""
REEXPLAIN_S = 5.0
"""A job left waiting has its decision explained (stored, and its ``waiting`` reason told)
again at most this often."""


class Explaining:
    """Owns what was last explained, and the rows of the round under way."""

    def __init__(self, world: World) -> None:
        self.world = world
        self._last_decision: dict[str, str] = {}
        """Per job, the ``site|reason`` of its last stored decision."""
        self._decisions: list[DecisionRow] | None = None
        """While a placement round runs: the decision rows it will store in one write..."""
        self._waiting: list[tuple[str, str]] = []
        """...with the ``waiting`` events (job id, why) it tells."""
        self._could: dict[str, set[str]] = {}
        """Per pending job, the sites that could run it on their whole capacity."""
        self._explained: dict[str, float] = {}
        """Per pending job left unplaced, when (our clock) its decision was last explained."""

    def keep(self, pending: Iterable[str]) -> None:
        """Forget the jobs that are no longer pending."""
        ids = set(pending)
        self._could = {k: v for k, v in self._could.items() if k in ids}
        self._explained = {k: v for k, v in self._explained.items() if k in ids}

    def begin(self) -> None:
        """A round begins: collect its rows until :meth:`flush`."""
        self._decisions = []

    def flush(self) -> None:
        """Store the round's decision rows and waiting events, in one write."""
        rows, self._decisions = self._decisions, None
        waiting, self._waiting = self._waiting, []
        if rows or waiting:
            self.world.store.record_decisions(rows or [], waiting=waiting,
                                              actor=self.world.holder)

    def skip(self, place_in_line: int, job_id: str, now: float) -> str | None:
        """Why the job left waiting, ``place_in_line``-th in the round, is not explained now;
        None if it is to be explained (and that is remembered)."""
        last = self._explained.get(job_id)
        if place_in_line > EXPLAIN_PER_TICK:
            return "not placed this tick"
        if last is not None and now - last < REEXPLAIN_S:
            return "waiting (explained recently)"
        self._explained[job_id] = now
        return None

    def record(self, decision: Decision, job: Job, now: float) -> None:
        """Keep every candidate of a decision; repeat an unplaceable one only when it changes."""
        w = self.world
        key = f"{decision.site}|{decision.reason}"
        if decision.site is None and self._last_decision.get(job.id) == key:
            return
        self._last_decision[job.id] = key
        if decision.site is None and decision.candidates:
            best = self._best_blocker(job, decision)
            why = f"waiting: {best.site}: {best.reason}"
            if self._decisions is not None:
                self._waiting.append((job.id, why))
            else:
                w.store.add_event(job.id, "waiting", why, w.holder)
        rows = [
            DecisionRow(
                at=now, job_id=job.id, attempt=job.attempts + 1, site=c.site,
                offer_key=c.offer_key,
                chosen=c.site == decision.site and c.offer_key == decision.offer_key,
                feasible=c.feasible,
                expected_cost=c.expected_cost, on_demand_cost=c.on_demand_cost,
                expected_runtime_s=c.expected_runtime_s,
                expected_finish=c.expected_finish.timestamp() if c.expected_finish else None,
                reason=c.reason,
            )
            for c in decision.candidates
        ]
        if self._decisions is not None:
            self._decisions.extend(rows)
        else:
            w.store.record_decisions(rows)

    def _best_blocker(self, job: Job, decision: Decision) -> Candidate:
        """The candidate that says best why a job waits: one of the sites that could run it on
        their whole capacity (so what blocks it there passes), else the first."""
        could = self._could.get(job.id)
        if could is None:  # the job and the sites' whole capacity do not change: once per job
            config = self.world.config
            now = datetime.fromtimestamp(self.world.clock(), UTC)
            pending = PendingJob(job_id=job.id, spec=job.spec, submitted_at=now)
            [ideal] = place([pending], ideal_offers(config), now, config.policy)
            could = self._could[job.id] = {c.site for c in ideal.candidates if c.feasible}
        return next((c for c in decision.candidates if c.site in could), decision.candidates[0])
