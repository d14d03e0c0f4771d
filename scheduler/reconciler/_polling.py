"""Polling: one batched ``poll`` per site moves live attempts to RUNNING or ends them.

Invariant: a state is taken from a site only for the native ids we asked about, and an ended
attempt is judged with its result record read on the site's worker (within its deadline).
LOST means gone: the site stops what is left of it and its checkpoint fence is raised past it
before its job may be placed again. A result record that storage cannot give back (an I/O
error) leaves the attempt unconcluded: it is judged again on later ticks, with backoff, and
after a bounded time it is LOST, saying storage could not be read (:meth:`Ending.judge`, the
one home of that rule). The last poll that saw each attempt running, and the last that saw it
waiting, are kept (in memory): the ledger bills a lost attempt at least until the first, and
one never seen running from the second (its queue wait before it is not charged).

    poll(site) ─┬─ RUNNING ──────────────> one write per site (mark_running_many)
                ├─ requeued by the site ──> queued: handed to placing; running: a story line
                ├─ ended, record unread ──> judged again later (backoff), LOST after a while
                ├─ LOST ──────────────────> fence + cancel on the site, then ended
                └─ PREEMPTED/FAILED/... ──> ended (Ending)
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import functools
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from gridbridge.adapter import Adapter, AttemptStatus
from gridbridge.states import AttemptState

from ..endings import Verdict
from ..records import Attempt
from ._ending import Ending
from ._tick import FenceRefused, TickReport, World, one_attempt

__all__ = ["Polling"]

log = logging.getLogger("gridbridge.reconciler")
_FENCES_AT_ONCE = 16
"""Fences of lost attempts raised side by side on one site's worker."""

_Seen = tuple[Attempt, AttemptStatus, Verdict | None]
SEEN_EVERY_S = 5.0
"""How often the polls' sightings of running attempts are written to the store (``seen_at``),
so that a reconciler that takes over bills a lost attempt at least that far (the one that saw
it keeps the sightings in memory)."""

class Polling:
    """The poll phase; owns the requeue counts already seen, and this tick's requeued."""

    def __init__(self, world: World, ending: Ending) -> None:
        self.world = world
        self.ending = ending
        self._requeues: dict[str, int] = {}
        """Per attempt, the site's requeue count already decided on."""
        self._requeued: list[tuple[Attempt, AttemptStatus]] = []
        """Attempts this tick's poll saw requeued and queued: placing decides on them."""
        self._alive: dict[str, float] = {}
        """Per attempt, the last poll that saw it running."""
        self._waiting: dict[str, float] = {}
        """Per attempt, the last poll that saw it waiting (queued, starting)."""
        self._recorded: dict[str, float] = {}
        """Per attempt, the sighting last recorded in the store (``seen_at``)."""

    def take_requeued(self) -> list[tuple[Attempt, AttemptStatus]]:
        """What this tick's poll saw requeued, once (decisions are never made on a stale
        poll)."""
        requeued, self._requeued = self._requeued, []
        return requeued

    def run(self, active: Sequence[Attempt], report: TickReport) -> None:
        self._requeued = []
        live = {a.id for a in active}
        self._requeues = {aid: n for aid, n in self._requeues.items() if aid in live}
        self._alive = {aid: t for aid, t in self._alive.items() if aid in live}
        self._waiting = {aid: t for aid, t in self._waiting.items() if aid in live}
        self.ending.forget_unread(live)
        by_site: dict[str, list[Attempt]] = defaultdict(list)
        for attempt in active:
            if attempt.native_id is not None and attempt.site in self.world.adapters:
                by_site[attempt.site].append(attempt)
        calls = {site: functools.partial(self._poll_site, site, attempts)
                 for site, attempts in by_site.items()}
        lost: dict[str, list[tuple[Attempt, Verdict]]] = defaultdict(list)
        for site, seen in self.world.calls.run("poll", calls).items():
            starting: list[tuple[Attempt, str]] = []
            for attempt, status, verdict in seen:
                with one_attempt("apply the status of", attempt.id):
                    if verdict is None:
                        self._note_requeue(attempt, status)
                        if status.state is not attempt.state:
                            starting.append((attempt, status.native_state))
                    elif verdict.status.state is AttemptState.LOST:
                        lost[site].append((attempt, verdict))
                    elif self.ending.verdict(attempt, verdict):
                        report.ended[attempt.id] = verdict.status.state
            self._mark_running(site, starting, report)
        self._end_lost(lost, report)
        self._record_sightings(live)

    def _record_sightings(self, live: set[str]) -> None:
        """Write the sightings of running attempts not recorded for ``SEEN_EVERY_S`` (at the
        earliest of them: never more than was seen)."""
        self._recorded = {aid: t for aid, t in self._recorded.items() if aid in live}
        due = [aid for aid, t in self._alive.items()
               if t - self._recorded.get(aid, -SEEN_EVERY_S) >= SEEN_EVERY_S]
        if not due:
            return
        when = min(self._alive[aid] for aid in due)
        with one_attempt("record when the polls saw", f"{len(due)} running attempt(s)"):
            self.world.store.mark_seen(due, when)
            self._recorded.update(dict.fromkeys(due, when))

    def _poll_site(self, site: str, attempts: Sequence[Attempt]) -> list[_Seen]:
        """On the site's worker: one batched poll, and the result records of the attempts that
        ended (storage reads stay within the site's deadline too)."""
        statuses = _checked_poll(self.world.adapters[site], [a.native_id for a in attempts
                                                             if a.native_id])
        now = self.world.clock()
        seen: list[_Seen] = []
        for attempt in attempts:
            assert attempt.native_id is not None
            status = statuses.get(attempt.native_id)
            if status is None:
                continue
            if status.state is AttemptState.RUNNING:
                self._alive[attempt.id] = now  # distinct keys per site: safe across workers
            elif not status.state.terminal:
                self._waiting[attempt.id] = now
            requeued = status.requeues > self._requeues.get(attempt.id, 0)
            if status.state is attempt.state and not (requeued and not status.state.terminal):
                continue
            if status.state is AttemptState.RUNNING:
                seen.append((attempt, status, None))
            elif status.state.terminal:
                verdict = self._judge(attempt, status, now)
                if verdict is not None:
                    seen.append((attempt, status, verdict))
        return seen

    def _judge(self, attempt: Attempt, status: AttemptStatus, now: float) -> Verdict | None:
        """The verdict on an attempt its site says ended (:meth:`Ending.judge`), with what the
        polls saw of it; None to judge it again on a later tick."""
        return self.ending.judge(attempt, status, now, alive_at=self._alive.get(attempt.id),
                                 waiting_at=self._waiting.get(attempt.id))

    def _mark_running(self, site: str, starting: Sequence[tuple[Attempt, str]],
                      report: TickReport) -> None:
        """Record the attempts a site says run, in one write."""
        if not starting:
            return
        with one_attempt("record the attempts running on", site):
            moved = self.world.store.mark_running_many(starting, self.world.holder)
            for attempt, _ in starting:
                if attempt.id in moved:
                    report.started.append(attempt.id)
                    log.info("%s running on %s", attempt.id, site, extra={
                        "event": "state", "attempt": attempt.id, "site": site,
                        "state": "RUNNING"})

    def _note_requeue(self, attempt: Attempt, status: AttemptStatus) -> None:
        """A site requeued the attempt again: if it waits in the queue, decide (in the place
        phase) whether to leave it there; if it already runs again, only tell the story. The
        counts already told survive a restart in the story itself."""
        if status.requeues <= self._requeues.get(attempt.id, 0) or status.state.terminal:
            return
        store = self.world.store
        if attempt.id not in self._requeues:
            told = [e for e in store.events(attempt.job_id)
                    if e.kind == "requeued" and e.attempt_id == attempt.id]
            self._requeues[attempt.id] = len(told)
            if status.requeues <= len(told):
                return
        self._requeues[attempt.id] = status.requeues
        if status.queued:
            self._requeued.append((attempt, status))
            return
        where = attempt.site + (f" ({attempt.offer_key})" if attempt.offer_key else "")
        store.add_event(attempt.job_id, "requeued",
                        f"attempt {attempt.number} preempted on {where} and requeued there "
                        f"by the site ({status.requeues}x); already running again",
                        self.world.holder, attempt_id=attempt.id)

    def _end_lost(
        self, lost: Mapping[str, Sequence[tuple[Attempt, Verdict]]], report: TickReport
    ) -> None:
        """LOST means gone: the site stops what is left of each lost attempt, and its fence is
        raised past it, before the job may be placed again. If the site cannot stop it (a node
        that is gone), the fence still holds the zombie off its checkpoints."""
        calls = {site: functools.partial(self._stop_lost, site, [a for a, _ in items])
                 for site, items in lost.items()}
        stopped = set(self.world.calls.run("cancel", calls))
        for site, items in lost.items():
            for attempt, verdict in items:
                if site not in stopped:
                    note = f"{verdict.status.reason}; the site could not stop it"
                    verdict = dataclasses.replace(
                        verdict, status=verdict.status.model_copy(update={"reason": note}))
                with one_attempt("conclude the lost attempt", attempt.id):
                    if self.ending.verdict(attempt, verdict):
                        report.ended[attempt.id] = AttemptState.LOST

    def _stop_lost(self, site: str, attempts: Sequence[Attempt]) -> None:
        """On the site's worker: fence each lost attempt off its checkpoints, then cancel it.
        A fence that cannot be raised (a prefix that is not the job's own, storage that does
        not answer within ``checkpoint.fence_timeout_s``) is the job's trouble, not the
        site's: it is logged and the attempt is cancelled all the same. The fences are raised
        side by side (at most ``_FENCES_AT_ONCE``), so many lost attempts on slow storage take
        about one ``fence_timeout_s``, not one each."""
        w = self.world
        if attempts:
            with cf.ThreadPoolExecutor(min(_FENCES_AT_ONCE, len(attempts)),
                                       thread_name_prefix=f"gridbridge-lost-{site}") as pool:
                list(pool.map(self._fence_lost, attempts))  # each bounded by fence_timeout_s
        w.lease.fence()
        w.adapters[site].cancel([a.native_id for a in attempts if a.native_id])

    def _fence_lost(self, attempt: Attempt) -> None:
        """Fence one lost attempt off its checkpoints; a failure is logged, never raised."""
        w = self.world
        try:
            w.fences.raise_now(w.store.job(attempt.job_id), attempt.token + 1)
        except (FenceRefused, TimeoutError, OSError) as exc:
            log.warning("lost attempt %s: its checkpoint fence was not raised: %s",
                        attempt.id, exc)


def _checked_poll(adapter: Adapter, native_ids: list[str]) -> dict[str, AttemptStatus]:
    """Poll, and refuse an answer that is not a mapping of native id to AttemptStatus."""
    answer: Any = adapter.poll(native_ids)
    if not isinstance(answer, Mapping):
        raise TypeError(f"poll returned {type(answer).__name__}, not a mapping")
    bad = [k for k, v in answer.items() if not isinstance(v, AttemptStatus)]
    if bad:
        raise TypeError(f"poll returned no AttemptStatus for {', '.join(map(str, bad[:3]))}")
    return {k: v for k, v in answer.items() if k in set(native_ids)}
