"""Migrating: running jobs that should move are asked to checkpoint and stop, and placed again.

Invariant: the decision is :func:`gridbridge.scheduler.moves.weigh` (pure, the simulators'
too); this phase only gathers its inputs (this tick's offers, drained sites, each running
attempt's work left and time since its last checkpoint) and acts on what it returns. A move is
the site's own stop request with its grace period (the fenced ``cancel``, as a preemption
request is); the attempt keeps running until it has saved and stopped, and only then ends
MOVED (:class:`Ending`) and its job is placed again, without the offer it left for the move's
reason (:meth:`Migrating.avoided`; drained sites are avoided by every placement)::

    running attempts of resumable jobs whose migrate mode is not never
      ─> columns (work left, since checkpoint, deadline, last move, allowed offers)
      ─> weigh() ─> moves ─> heartbeats of those re-read ─> weigh() again on them
      ─> story event "moving" + Ending.moves + serve log ─> fenced cancel (stop + grace)
      ... a later poll sees it stopped ─> Ending: MOVED, job PENDING ─> placing, avoiding

The work since the last checkpoint comes from the attempt's heartbeat, which carries the
job's newest committed step (its time read once from the commit record); until a heartbeat has
been read the whole attempt counts as unsaved, which only makes a move look dearer and a
deadline nearer. ``sites drain`` waits for jobs that may not move (``migrate: never``, or not
resumable) to end on their own.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from gridbridge.adapter import Offer
from gridbridge.states import AttemptState, JobState
from gridbridge.wire import read_heartbeat

from .. import moves as mv
from ..records import Attempt, Job
from ._cancelling import Cancelling
from ._ending import MOVING, Ending
from ._tick import TickReport, World, one_attempt

__all__ = ["Migrating"]

log = logging.getLogger("gridbridge.reconciler")
HEARTBEAT_EVERY_S = 30.0
"""How often an attempt's heartbeat is read for its last checkpoint (a proposed move re-reads
it at once)."""


@dataclass(frozen=True)
class _Past:
    """What a job's ended attempts add up to (read once per attempt it had)."""

    attempts: int
    done_s: float
    """Work done up to its last checkpoint, by the attempts that advanced it."""
    best: int
    """Its last committed step before the running attempt (-1: none)."""
    moved_at: float
    """When an attempt of it last ended MOVED (-inf: never)."""


class Migrating:
    """The migration phase; owns the moves it asked for, the avoidances they leave and its
    caches of each job's past and each attempt's last checkpoint."""

    def __init__(self, world: World, ending: Ending, cancelling: Cancelling) -> None:
        self.world = world
        self.ending = ending
        self.cancelling = cancelling
        self._last_move: dict[str, float] = {}
        self._avoid: dict[str, tuple[int, dict[str, str]]] = {}
        self._past: dict[str, _Past] = {}
        self._saved: dict[str, tuple[int, float, float]] = {}
        """Per attempt: (its job's newest committed step, that commit's time, read at)."""

    def run(self, report: TickReport,
            fetch: Callable[[], list[Offer]]) -> list[Offer] | None:
        """Re-send the stops of moves under way; weigh every running attempt that may move
        against this tick's offers (``fetch``ed only then), and ask those that should to stop.
        Returns the offers if it fetched them (placing uses them too)."""
        w = self.world
        active = w.store.active_attempts()
        under_way: dict[str, list[str]] = defaultdict(list)
        for a in active:
            if a.id in self.ending.moves and a.native_id:
                under_way[a.site].append(a.native_id)  # a stop is idempotent; sent again
        if under_way:
            self.cancelling.native(under_way)
        live = {a.id for a in active}
        self._saved = {k: v for k, v in self._saved.items() if k in live}
        running = [a for a in active if a.state is AttemptState.RUNNING and a.native_id
                   and a.started_at is not None and a.id not in self.ending.moves]
        if not running:
            return None
        jobs = {j.id: j for j in w.store.jobs([JobState.RUNNING])}
        self._past = {k: v for k, v in self._past.items() if k in jobs}  # the running only
        recent = w.clock() - w.config.migration.min_interval_s
        self._last_move = {k: t for k, t in self._last_move.items() if t >= recent}
        default = w.config.migration.default
        pairs = [(a, jobs[a.job_id]) for a in running if a.job_id in jobs]
        pairs = [(a, j) for a, j in pairs
                 if not j.cancel_requested and j.spec.migrate_mode(default) != "never"
                 and (j.spec.checkpoint.resumable or self._past_of(j).best >= 0
                      or self._step(a, j)[0] >= 0)]
        if not pairs:
            return None
        offers = fetch()
        drained = set(w.store.drained_sites())
        found = self._weigh(pairs, offers, drained)
        if found:
            for m in found:
                self._step(*pairs[m.row], fresh=True)  # the proposed: their last save, now
            chosen = [pairs[m.row] for m in found]
            again = self._weigh(chosen, offers, drained)
            self._act([(chosen[m.row], m) for m in again], offers, report)
        return offers

    def avoided(self, job: Job) -> dict[str, str]:
        """Sites the job's next placement avoids because of its last move, with why."""
        entry = self._avoid.get(job.id)
        if entry is None:
            return {}
        if job.attempts != entry[0]:  # placed since: the avoidance is spent
            del self._avoid[job.id]
            return {}
        return entry[1]

    # inputs -------------------------------------------------------------------------------

    def _weigh(self, pairs: Sequence[tuple[Attempt, Job]], offers: Sequence[Offer],
               drained: set[str]) -> list[mv.Move]:
        w = self.world
        now = w.clock()
        index = mv.offer_index(offers)
        n = len(pairs)
        cols = np.zeros((7, n))
        allowed = np.zeros((n, len(offers)), dtype=np.bool_)
        masks: dict[tuple[object, ...], np.ndarray] = {}
        for i, (a, j) in enumerate(pairs):
            spec, past = j.spec, self._past_of(j)
            step, saved_at = self._step(a, j)
            started = a.started_at or now
            done = past.done_s + (max(0.0, saved_at - started) if step > past.best else 0.0)
            since = now - (max(started, saved_at) if step > past.best else started)
            deadline = spec.constraints.deadline
            res = spec.resources
            cols[:, i] = (res.cpus, res.gpus, res.memory_gb,
                          max(0.0, res.runtime_estimate_s - done), max(0.0, since),
                          deadline.timestamp() - now if deadline else np.inf,
                          now - max(self._last_move.get(j.id, -np.inf), past.moved_at))
            c = spec.constraints
            key = (c.allowed_sites, c.denied_sites, c.tiers, c.preemptible_ok,
                   tuple(sorted(c.labels.items())), c.max_latency_ms)
            if key not in masks:
                masks[key] = mv.allowed(spec, offers)
            allowed[i] = masks[key]
        running = mv.Running(
            offer=np.fromiter((index.get((a.site, a.offer_key or "default"), -1)
                               for a, _ in pairs), dtype=np.int64, count=n),
            cpus=cols[0], gpus=cols[1], memory_gb=cols[2], work_left_s=cols[3],
            since_checkpoint_s=cols[4], left_s=cols[5], since_move_s=cols[6],
            interval_s=np.fromiter((j.spec.checkpoint.interval_s for _, j in pairs),
                                   dtype=np.float64, count=n),
            mode=mv.modes((j.spec for _, j in pairs), w.config.migration.default),
            allowed=allowed)
        settings = w.config.migration
        return mv.weigh(running, offers, mv.Settings(
            min_interval_s=settings.min_interval_s, factor=settings.factor,
            margin_s=settings.margin_s + w.config.limits.tick_interval_s), drained)

    def _past_of(self, job: Job) -> _Past:
        """The job's ended attempts summed up, read once per attempt it had."""
        past = self._past.get(job.id)
        if past is not None and past.attempts == job.attempts:
            return past
        done, best, moved = 0.0, -1, -np.inf
        for a in self.world.store.attempts(job.id):
            if a.state is AttemptState.MOVED and a.ended_at is not None:
                moved = max(moved, a.ended_at)
            if a.last_step is not None and a.last_step > best and a.started_at and a.ended_at:
                done += a.ended_at - a.started_at
                best = a.last_step
        self._past[job.id] = past = _Past(job.attempts, done, best, moved)
        return past

    def _step(self, attempt: Attempt, job: Job, *, fresh: bool = False) -> tuple[int, float]:
        """The job's newest committed step as the attempt's heartbeat last said, and that
        commit's time ((-1, -inf): none known); read again every ``HEARTBEAT_EVERY_S``."""
        now = self.world.clock()
        known = self._saved.get(attempt.id)
        if known is not None and not fresh and now - known[2] < HEARTBEAT_EVERY_S:
            return known[0], known[1]
        step, at = (known[0], known[1]) if known else (-1, -np.inf)
        try:
            beat = read_heartbeat(attempt.attempt_url)
        except Exception:  # no heartbeat yet, or unreadable: nothing more is known
            beat = None
        if beat is not None and beat.last_step is not None and beat.last_step != step:
            step, at = beat.last_step, _commit_time(job.checkpoint_url, beat.last_step, beat.at)
        self._saved[attempt.id] = (step, at, now)
        return step, at

    # acting -------------------------------------------------------------------------------

    def _act(self, chosen: Sequence[tuple[tuple[Attempt, Job], mv.Move]],
             offers: Sequence[Offer], report: TickReport) -> None:
        """Tell each move (story, log), remember it, and send the stops."""
        w = self.world
        index = mv.offer_index(offers)
        stops: dict[str, list[str]] = defaultdict(list)
        for (a, j), move in chosen:
            with one_attempt("move", a.id):
                here = index.get((a.site, a.offer_key or "default"))
                why = mv.why(move, offers, offers[here] if here is not None else None)
                w.store.add_event(j.id, MOVING, why, w.holder, attempt_id=a.id)
                self.ending.moves[a.id] = why
                self._last_move[j.id] = w.clock()
                self._avoid[j.id] = (j.attempts, self._avoidance(a, move, offers, why))
                report.moved[a.id] = move.trigger.value
                log.info("%s: %s", a.id, why, extra={
                    "event": "moving", "attempt": a.id, "job": j.id, "site": a.site,
                    "trigger": move.trigger.value, "saving": round(move.saving, 6),
                    "reason": why})
                assert a.native_id is not None
                stops[a.site].append(a.native_id)
        if stops:
            self.cancelling.native(stops)

    def _avoidance(self, attempt: Attempt, move: mv.Move, offers: Sequence[Offer],
                   why: str) -> dict[str, str]:
        """What the job's next placement leaves out, for the move's reason (the site it left
        says the whole of why, which ``explain`` shows)."""
        if move.trigger is mv.Trigger.DEADLINE:
            out = {s.name: "the job moved to reliable capacity for its deadline"
                   for s in self.world.config.sites if s.preemptible}
            return {**out, attempt.site: f"the job left it: {why}"}
        target = offers[move.target].site if move.target >= 0 else None
        if move.trigger is mv.Trigger.CHEAPER and target != attempt.site:
            return {attempt.site: f"the job left it: {why}"}
        return {}  # a drained site is left out of every placement


def _commit_time(checkpoint_url: str, step: int, fallback: float) -> float:
    """When ``step`` was committed, from its commit record (else ``fallback``, the heartbeat
    that first named it: it was committed by then)."""
    try:
        from gridbridge import checkpoint

        stamp = checkpoint.open(checkpoint_url).commit_record(step)["time"]
        return datetime.fromisoformat(stamp).timestamp()
    except Exception:  # unreadable: the heartbeat's time is a bound
        return fallback
