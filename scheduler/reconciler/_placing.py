"""Placing: pending jobs go onto this tick's offers, and requeued attempts stay or move.

Invariant: placement itself is pure (:func:`gridbridge.scheduler.placement.plan`); this phase
only gathers its inputs (offers, budgets left, site slots, each job's progress and the sites
that refused it lately), stores what it decided and submits the attempts it made. A job a site
rejects is placed again at once on what is left, each round ruling one more site out for it::

    offers from every site (fetched by the migration phase when it needed them this tick)
                            ─> requeued attempts: stay, or conclude + cancel (then PENDING)
                            ─> round: plan() ─> explain ─> new attempts (one write)
                                    ─> decisions (one write) ─> Submitting
                            ─> rejected? offers less what was placed ─> next round

Each job avoids the sites that refused it lately, every drained site (``sites drain``), and
after a move the offer it moved off for the move's reason (``Migrating.avoided``).
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from gridbridge.adapter import Adapter, AttemptStatus, Offer
from gridbridge.states import AttemptState, JobState

from ..endings import judge
from ..placement import OTHER_TEAMS, Decision, PendingJob, Shares, plan
from ..records import Attempt, Job
from ..requeue import decide_requeued
from ._cancelling import Cancelling
from ._ending import Ending
from ._explaining import Explaining
from ._migrating import Migrating
from ._progress import Progress
from ._submitting import Submitting
from ._tick import TickReport, World, one_attempt
from ._timings import observe_offers

__all__ = ["Placing"]

log = logging.getLogger("gridbridge.reconciler")
_Placed = tuple[str, str, PendingJob]
"""(site, offer key, job) of a job placed in a round."""


class Placing:
    """The place phase; owns (through its parts) what it explained and each job's progress."""

    def __init__(self, world: World, ending: Ending, cancelling: Cancelling,
                 submitting: Submitting, migrating: Migrating | None = None) -> None:
        self.world = world
        self.ending = ending
        self.cancelling = cancelling
        self.submitting = submitting
        self.migrating = migrating
        self._drained: dict[str, str] = {}
        """This run's drained sites, with why a placement avoids them."""
        self.explaining = Explaining(world)
        self.progress = Progress(world.store)

    def run(self, report: TickReport, budget: list[int],
            requeued: Sequence[tuple[Attempt, AttemptStatus]],
            offers: Sequence[Offer] | None = None) -> None:
        """Place pending jobs on this tick's offers (``offers``: fetched already this tick),
        after deciding on ``requeued``."""
        store = self.world.store
        pending = [j for j in store.jobs([JobState.PENDING]) if not j.cancel_requested]
        self.explaining.keep(j.id for j in pending)
        if not pending and not requeued:
            return
        offers = list(offers) if offers is not None else self.offers()
        self._drained = {site: "drained by an operator (gridbridge sites undrain reopens it)"
                         for site in store.drained_sites()}
        if requeued:
            self._decide_requeued(requeued, offers, report)
            pending = [j for j in store.jobs([JobState.PENDING]) if not j.cancel_requested]
        if not pending:
            return
        for _ in range(len(self.world.adapters)):
            rejected_before = set(report.rejected)
            self.explaining.begin()
            try:
                placed = self._round(pending, offers, report, budget)
            finally:
                self.explaining.flush()
            again = {a.rsplit(".", 1)[0] for a in set(report.rejected) - rejected_before}
            if not again:
                return
            offers = _consume(offers, [p for p in placed if p[2].job_id not in again])
            pending = [store.job(j) for j in again]
            pending = [j for j in pending if j.state is JobState.PENDING]

    def offers(self) -> list[Offer]:
        """Every site's offers, all sites at once (a site that fails offers none)."""
        calls = {site: functools.partial(_checked_offers, adapter, site)
                 for site, adapter in self.world.adapters.items()}
        offers: list[Offer] = []
        for site_offers in self.world.calls.run("offers", calls).values():
            offers.extend(site_offers)
        observe_offers(offers)
        return offers

    def _decide_requeued(self, requeued: Sequence[tuple[Attempt, AttemptStatus]],
                         offers: Sequence[Offer], report: TickReport) -> None:
        """An attempt its site preempted and queued again: leave it there, or cancel it there
        and let placement move the job (the story says which, and why)."""
        w = self.world
        now = w.clock()
        for seen, status in requeued:
            with one_attempt("decide on the requeued", seen.id):
                # Act only on the attempt as it stands now: still this native job, still live.
                attempt = next((a for a in w.store.attempts(seen.job_id) if a.id == seen.id),
                               None)
                if (attempt is None or attempt.state.terminal
                        or attempt.native_id != seen.native_id):
                    continue
                job = w.store.job(attempt.job_id)
                if job.state.terminal or job.cancel_requested:
                    continue
                choice = decide_requeued(job, attempt, offers, datetime.fromtimestamp(now, UTC),
                                         w.config.policy, self.progress.remaining(job),
                                         status.queue_wait_s)
                where = attempt.site + (f" ({attempt.offer_key})" if attempt.offer_key else "")
                w.store.add_event(job.id, "requeued",
                                  f"attempt {attempt.number} preempted on {where} and "
                                  f"requeued there by the site ({status.requeues}x); "
                                  f"{choice.why}", w.holder, attempt_id=attempt.id)
                if choice.stay or attempt.native_id is None:
                    continue
                # Conclude first: if the cancel below fails, the native job is an orphan the
                # sweep cancels; the other order could leave a live attempt whose site says
                # CANCELLED, which would end the user's job.
                ended = AttemptStatus(state=AttemptState.PREEMPTED, native_state="requeued",
                                      reason=f"preempted and requeued on {where}; {choice.why}",
                                      requeues=status.requeues)
                if not self.ending.verdict(attempt, judge(attempt, ended, job.checkpoint_url)):
                    continue
                report.ended[attempt.id] = AttemptState.PREEMPTED
                self.cancelling.native({attempt.site: [attempt.native_id]})

    def _round(self, pending: Sequence[Job], offers: Sequence[Offer], report: TickReport,
               budget: list[int]) -> list[_Placed]:
        """One call of ``plan`` and the submissions it leads to; returns what it placed."""
        w = self.world
        now = w.clock()
        jobs = [
            PendingJob(job_id=j.id, spec=j.spec, attempt=j.attempts + 1,
                       submitted_at=datetime.fromtimestamp(j.created_at, UTC),
                       avoid=self._avoid(j, now),
                       remaining_work_s=self.progress.remaining(j),
                       checkpoint_cost_s=self.progress.checkpoint_cost(j))
            for j in pending
        ]
        by_id = {j.id: j for j in pending}
        round_ = plan(jobs, offers, datetime.fromtimestamp(now, UTC), w.config.policy,
                      self.budgets_left(now), self._site_slots(), self.shares())
        waited = 0
        wanted: list[tuple[PendingJob, Offer, Decision]] = []
        for i in round_.order:
            job = jobs[i]
            if round_.choice[i] < 0:
                waited += 1  # its place in the line of jobs left waiting
                why = self.explaining.skip(waited, job.job_id, now)
                if why is None:
                    decision = round_.decision(i)
                    self.explaining.record(decision, by_id[job.job_id], now)
                    why = decision.reason
                report.unplaced[job.job_id] = why
                continue
            if len(wanted) >= budget[0]:
                report.unplaced[job.job_id] = "max_submissions_per_tick reached"
                continue
            decision = round_.decision(i)
            self.explaining.record(decision, by_id[decision.job_id], now)
            wanted.append((job, offers[round_.choice[i]], decision))
        return self._start(wanted, report, budget)

    def _avoid(self, job: Job, now: float) -> dict[str, str]:
        """The sites (and ``site/offer`` offers) ``job`` avoids now, with why: refusals,
        drains, its last move, offers an attempt of it was lost on."""
        moved = self.migrating.avoided(job) if self.migrating is not None else {}
        return {**moved, **self.ending.avoided(job.id, now), **self._drained,
                **self.submitting.avoided(job.id, now)}

    def _start(self, wanted: Sequence[tuple[PendingJob, Offer, Decision]], report: TickReport,
               budget: list[int]) -> list[_Placed]:
        """Record the round's attempts (one write) and its decisions (one write), then submit
        them."""
        w = self.world
        requests = [(d.job_id, d.site or offer.site, f"{w.config.checkpoint_root}/{d.job_id}",
                     (offer.key, _price_card(offer, d))) for _, offer, d in wanted]
        made = w.store.new_attempts(requests, w.holder)
        new: list[Attempt] = []
        placed: list[_Placed] = []
        for (job, offer, _), attempt in zip(wanted, made, strict=True):
            if attempt is not None:
                report.placed[job.job_id] = offer.site
                log.info("placed %s on %s (offer %s)", attempt.id, offer.site, offer.key, extra={
                    "event": "placed", "attempt": attempt.id, "job": job.job_id,
                    "site": offer.site, "offer": offer.key})
                new.append(attempt)
                placed.append((offer.site, offer.key, job))
        self.explaining.flush()  # one write for the round's decisions, before the submits
        self.submitting.run(new, report, budget)
        return placed

    def budgets_left(self, now: float, teams: Iterable[str] = ()) -> dict[str, float] | None:
        """What each team and project with a budget has left this month: the budget, less
        the ledger since the month began, less the expected cost of live attempts. The teams
        not named in ``budgets.teams`` share one pool, ``budgets.default`` (nothing, under
        ``budgets.strict``), keyed :data:`OTHER_TEAMS`: a made-up team name gains nothing.
        (``teams`` is accepted and unused: every unnamed team draws on the one pool.)"""
        b, store = self.world.config.budgets, self.world.store
        held = b.default is not None or b.strict
        if not b.teams and not b.projects and not held:
            return None
        day = datetime.fromtimestamp(now, UTC)
        month = day.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()
        spent = store.spent_since(month)
        cards = [(a.job_id, _card(a).get("expected_cost")) for a in store.active_attempts()]
        live = [(j, float(e)) for j, e in cards if isinstance(e, int | float)]
        owners = store.owners([j for j, _ in live])  # one query, not one per attempt
        for job_id, expected in live:
            team, project = owners.get(job_id, ("", ""))
            for key in (f"team:{team}", f"project:{project}"):
                spent[key] = spent.get(key, 0.0) + expected
        left = {f"team:{t}": v - spent.get(f"team:{t}", 0.0) for t, v in b.teams.items()}
        left.update({f"project:{p}": v - spent.get(f"project:{p}", 0.0)
                     for p, v in b.projects.items()})
        if held:
            others = sum(v for key, v in spent.items()
                         if key.startswith("team:") and key[5:] not in b.teams)
            left[OTHER_TEAMS] = (b.default or 0.0) - others
        return left

    def shares(self) -> Shares:
        """What fair share needs: active attempts (submitting, submitted, queued, running)
        per user and per team, the teams' weights and ``limits.max_running_per_user``."""
        config, store = self.world.config, self.world.store
        active = {a.job_id for a in store.active_attempts()}
        users: dict[str, int] = {}
        teams: dict[str, int] = {}
        if active:
            for job in store.jobs([JobState.SCHEDULED, JobState.RUNNING]):
                if job.id in active:
                    owner = job.spec.owner
                    users[owner.user] = users.get(owner.user, 0) + 1
                    teams[owner.team] = teams.get(owner.team, 0) + 1
        return Shares(running_users=users, running_teams=teams,
                      weights={t: s.weight for t, s in config.teams.items()},
                      max_running_per_user=config.limits.max_running_per_user)

    def _site_slots(self) -> dict[str, int] | None:
        """Attempts each site with ``max_running`` may still start."""
        limited = {s.name: s.max_running for s in self.world.config.sites if s.max_running}
        if not limited:
            return None
        live: dict[str, int] = {}
        for a in self.world.store.active_attempts():
            live[a.site] = live.get(a.site, 0) + 1
        return {site: n - live.get(site, 0) for site, n in limited.items() if n is not None}


def _price_card(offer: Offer, decision: Decision) -> str:
    """The JSON stored with an attempt: the offer and prices it was placed at, and why."""
    chosen = decision.chosen
    return json.dumps({"price": offer.price.model_dump(),
                       "on_demand": offer.on_demand.model_dump(),
                       "offer": offer.model_dump(mode="json"),
                       "checkpoint_interval_s": decision.checkpoint_interval_s,
                       "expected_cost": chosen.expected_cost if chosen else None})


def _card(attempt: Attempt) -> dict[str, Any]:
    """The price card placement stored with the attempt ({} if none or unreadable)."""
    try:
        card = json.loads(attempt.price_json) if attempt.price_json else {}
    except ValueError:
        return {}
    return card if isinstance(card, dict) else {}


def _consume(offers: Sequence[Offer], placed: Sequence[_Placed]) -> list[Offer]:
    """The offers less the resources of the jobs placed on them (by site and offer key: a
    job placed on one instance type or partition takes nothing from the others)."""
    left = list(offers)
    for site, key, job in placed:
        res = job.spec.resources
        for i, o in enumerate(left):
            if o.site == site and o.key == key and o.cpus >= res.cpus:
                left[i] = o.model_copy(update={"cpus": o.cpus - res.cpus,
                                               "memory_gb": max(0.0, o.memory_gb - res.memory_gb),
                                               "gpus": max(0, o.gpus - res.gpus)})
                break
    return left


def _checked_offers(adapter: Adapter, site: str) -> list[Offer]:
    """offers(), refusing an answer that is not a sequence of the site's Offers."""
    answer: Any = adapter.offers()
    if isinstance(answer, str | bytes) or not isinstance(answer, Sequence):
        raise TypeError(f"offers returned {type(answer).__name__}, not a sequence of Offer")
    for offer in answer:
        if not isinstance(offer, Offer) or offer.site != site:
            raise TypeError(f"offers returned {offer!r:.80}, not an Offer of site {site}")
    return list(answer)
