"""The reconciler: one tick moves every job one step closer to done.

::

    tick:  submit   SUBMITTING attempts (new, or left by a crash or an uncertain submission:
                    re-submitted with the same attempt id, or first looked up with owned())
           cancel   attempts of jobs the user cancelled
           poll     one batched call per site -> RUNNING / ended
                    LOST -> the site stops whatever is left of it, then the job is PENDING again;
                    PREEMPTED -> PENDING again (attempt + 1); FAILED/SUCCEEDED end the job;
                    every ended attempt -> one ledger row (duration x price)
           sweep    now and then: owned() on every site -> adopt or cancel orphans
           place    offers from every site -> placement.place(...) -> new attempts -> submit

Every phase calls all sites at once, each on its own worker with one deadline
(:mod:`.sitecalls`): a site that hangs, raises or answers garbage is marked degraded and
skipped, never aborting the tick or delaying another site by more than the deadline.

Only the holder of the store's ``reconciler`` lease ticks. The lease is renewed between phases
and checked (same holder, same generation, unlapsed) immediately before every native submit and
cancel, so a reconciler that slept through its lease cannot act on a site after it wakes.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gridbridge.adapter import (
    Adapter,
    AttemptStatus,
    Capability,
    Offer,
    OwnedJob,
    SubmitRejected,
    SubmitRequest,
    WakingAdapter,
)
from gridbridge.config import GridConfig
from gridbridge.procinfo import proc_start_time
from gridbridge.states import AttemptState, JobState

from .admission import ideal_offers
from .endings import Verdict, history, judge, ledger_row, next_job_state
from .placement import Candidate, Decision, PendingJob, place, plan
from .records import Attempt, AttemptEnding, Job, Lease
from .requeue import decide_requeued
from .sitecalls import SiteCalls, describe
from .store import StateStore, StoreUnavailable
from .sweep import reconcile_owned
from .tables import DecisionRow

__all__ = ["LEASE", "LeaseLost", "Reconciler", "TickReport"]

log = logging.getLogger("gridbridge.reconciler")
LEASE = "reconciler"
_HARD_STORAGE_ERRORS = (NotADirectoryError, IsADirectoryError)
"""Storage errors that retrying cannot cure (a path under a file)."""
_PERMANENT_STORAGE_ERRORS = (*_HARD_STORAGE_ERRORS, PermissionError, FileNotFoundError)
"""Storage errors that fail the job once they persist through ``max_submit_tries`` tries (no
such bucket, no permission; a credential that expired for a moment recovers before that)."""
_MAX_BACKOFF_S = 30.0


class LeaseLost(RuntimeError):
    """This reconciler no longer holds the lease it started its tick under."""


@dataclass
class TickReport:
    """What one tick did, for logs and tests."""

    submitted: list[str] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    ended: dict[str, AttemptState] = field(default_factory=dict)
    placed: dict[str, str] = field(default_factory=dict)
    unplaced: dict[str, str] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)
    orphans: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class _Submitted:
    """What a site's worker did with one attempt of a submit batch."""

    attempt: Attempt
    kind: str
    """``native``, ``adopted``, ``ran``, ``rejected``, ``gave-up``, ``storage-failed``,
    ``uncertain`` or ``fenced``."""
    value: str = ""


class Reconciler:
    """Drives jobs through their attempts against a set of adapters."""

    def __init__(
        self,
        config: GridConfig,
        store: StateStore,
        adapters: Mapping[str, Adapter],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = store
        self.adapters = dict(adapters)
        self.clock = clock
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease: Lease | None = None
        self.calls = SiteCalls(list(self.adapters), config.limits.site_deadline_s,
                               fatal=(LeaseLost,), keepalive=self._renew,
                               keepalive_s=min(1.0, config.limits.lease_s / 4))
        self._sites = {s.name: s for s in config.sites}
        self._last_decision: dict[str, str] = {}
        self._health: dict[str, tuple[bool, str]] = {}
        self._avoid: dict[tuple[str, str], tuple[float, str]] = {}
        self._save_cost: dict[str, tuple[int, float | None]] = {}
        """Per job: (attempts it had, its last save's duration), read once per ended attempt."""
        self._remaining_cache: dict[str, tuple[int, float | None]] = {}
        self._next_sweep = 0.0
        self._requeues: dict[str, int] = {}
        """Per attempt, the site's requeue count already decided on."""
        self._requeued: list[tuple[Attempt, AttemptStatus]] = []
        self._renewed_at = float("-inf")
        """When (our clock) the lease was last written; a renewal sooner than a quarter of
        its time only checks that it is still held (a read, not a write transaction)."""
        self._wake = threading.Event()
        self._ticked = threading.Condition()
        self._ticks = 0
        """Ticks run so far; :meth:`wait_tick` waits for the count to move."""
        for adapter in self.adapters.values():
            if isinstance(adapter, WakingAdapter):
                adapter.set_wakeup(self.wake)
        self._decisions: list[DecisionRow] | None = None
        """While a placement round runs: the decision rows it will store in one write..."""
        self._waiting: list[tuple[str, str]] = []
        """...with the ``waiting`` events (job id, why) it tells."""
        self._could: dict[str, set[str]] = {}
        """Per pending job, the sites that could run it on their whole capacity."""
        self._explained: dict[str, float] = {}
        """Per pending job left unplaced, when (our clock) its decision was last explained."""

    # the loop -----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Tick until ``stop`` is set, while holding the lease; release it on the way out.

        Nothing ends this loop but ``stop``: a store that is locked or unreachable is retried
        with backoff, and any other error is logged and the next tick tried."""
        interval = self.config.limits.tick_interval_s
        wait = interval
        try:
            while not stop.is_set():
                try:
                    self.tick()
                    wait = interval
                except LeaseLost as exc:
                    log.warning("%s; standing by", exc)
                    wait = interval
                except StoreUnavailable as exc:
                    wait = min(max(wait * 2, interval), _MAX_BACKOFF_S)
                    log.warning("state store unavailable, retrying in %.1fs: %s", wait, exc)
                except Exception:
                    log.exception("reconciler tick failed; the reconciler carries on")
                    wait = interval
                with self._ticked:
                    self._ticks += 1
                    self._ticked.notify_all()
                self._pause(stop, wait)
        finally:
            self._release()
            log.info("%s stopped; lease released", self.holder,
                     extra={"event": "shutdown", "holder": self.holder})

    def wake(self) -> None:
        """Tick now rather than at the end of the interval (a job was submitted, an attempt
        ended)."""
        self._wake.set()

    def wait_tick(self, timeout: float) -> bool:
        """Block until a tick of :meth:`run` ends, or ``timeout`` seconds pass; True if one
        ended. Lets a caller in the same process see a job's new state as soon as it is
        written instead of on its own polling schedule."""
        with self._ticked:
            seen = self._ticks
            return self._ticked.wait_for(lambda: self._ticks != seen, timeout)

    def _pause(self, stop: threading.Event, wait: float) -> None:
        """Wait ``wait`` seconds, less if woken or stopped."""
        deadline = time.monotonic() + wait
        while not stop.is_set() and not self._wake.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._wake.wait(min(left, 0.05))  # a stop request is seen within 50 ms
        self._wake.clear()

    def _release(self) -> None:
        try:
            self.store.release_lease(LEASE, self.holder)
        except Exception as exc:  # a locked store: the lease simply lapses
            log.warning("could not release the lease (it will lapse): %s", exc)
        self.lease = None

    def close(self) -> None:
        """Stop the site workers (a call that hangs is abandoned)."""
        self.calls.close()

    def acquire(self) -> bool:
        """Take or renew the lease; take over at once from a dead holder on this host."""
        ttl = self.config.limits.lease_s
        if self._fresh_lease():
            return True
        had = self.lease is not None
        self.lease = self.store.acquire_lease(LEASE, self.holder, ttl)
        if self.lease is not None:
            self._renewed_at = self.clock()
            if not had:
                log.info("%s holds the reconciler lease", self.holder,
                         extra={"event": "lease", "holder": self.holder})
            return True
        current = self.store.lease_holder(LEASE)
        if current is not None and _dead_local_holder(current[0]):
            log.warning("taking over the lease of %s, whose process is gone", current[0])
            self.store.release_lease(LEASE, current[0])
            self.lease = self.store.acquire_lease(LEASE, self.holder, ttl)
            self._renewed_at = self.clock()
        return self.lease is not None

    def _fresh_lease(self) -> bool:
        """We hold the lease, renewed less than a quarter of its time ago (checked by a read)."""
        if self.lease is None or self.clock() - self._renewed_at >= self.config.limits.lease_s / 4:
            return False
        return self.store.holds_lease(self.lease)

    def _renew(self) -> None:
        """Between phases: renew the lease, or stop the tick if it changed hands or lapsed.
        A lease renewed moments ago is only checked: a write per phase would cost more than
        the rest of a small tick."""
        held = self.lease
        if held is not None and self._fresh_lease():
            return
        self.lease = self.store.acquire_lease(LEASE, self.holder, self.config.limits.lease_s)
        if held is None or self.lease is None or self.lease.generation != held.generation:
            raise LeaseLost(f"{self.holder} lost the reconciler lease during a tick")
        self._renewed_at = self.clock()

    def _fence(self) -> None:
        """Immediately before a native submit or cancel: are we still the lease holder?"""
        if self.lease is None or not self.store.holds_lease(self.lease):
            raise LeaseLost(f"{self.holder} no longer holds the reconciler lease")

    def tick(self) -> TickReport:
        """One pass over every phase, if this reconciler can take or renew the lease."""
        report = TickReport()
        if not self.acquire():
            return report
        self.calls.begin_tick()
        self._requeued = []  # decisions are made on this tick's poll, never a stale one
        budget = [self.config.limits.max_submissions_per_tick]
        try:
            submitting = [a for a in self.store.active_attempts()
                          if a.state is AttemptState.SUBMITTING]
            self._submit(submitting, report, budget)
            self._renew()
            active = self.store.active_attempts()
            self._cancel(active)
            self._renew()
            self._poll(active, report)
            self._renew()
            self._sweep(report)
            self._renew()
            self._place(report, budget)
        finally:
            self._record_health()
        return report

    # submit -------------------------------------------------------------------------------

    def _submit(self, attempts: Sequence[Attempt], report: TickReport, budget: list[int]) -> None:
        by_site: dict[str, list[tuple[Attempt, SubmitRequest]]] = defaultdict(list)
        for attempt in attempts:
            job = self.store.job(attempt.job_id)
            if job.cancel_requested:
                native = "never-submitted" if attempt.submit_tries == 0 else "cancel-unconfirmed"
                self._conclude(attempt, job, _status(AttemptState.CANCELLED, native,
                                                     "job cancelled before it was confirmed"),
                               charge=False)
                if attempt.submit_tries:
                    self.sweep_now()  # should it have started after all, the sweep cancels it
                continue
            if attempt.site not in self.adapters:
                gone = _status(AttemptState.FAILED, "site-gone",
                               f"site {attempt.site!r} is no longer configured")
                self._conclude(attempt, job, gone, retry=True, charge=False)
                continue
            if budget[0] <= 0 or self.calls.busy(attempt.site):
                continue
            budget[0] -= 1
            by_site[attempt.site].append((attempt, self._request(job, attempt)))
        calls = {site: functools.partial(self._submit_batch, site, items)
                 for site, items in by_site.items()}
        fenced = False
        for site, outcomes in self.calls.run("submit", calls).items():
            self._record_native(site, [o for o in outcomes if o.kind in {"native", "adopted"}],
                                report)
            for outcome in outcomes:  # every outcome is applied before a lost lease is raised
                if outcome.kind not in {"native", "adopted"}:
                    fenced = self._apply_submitted(site, outcome, report) or fenced
        if fenced:
            raise LeaseLost(f"{self.holder} lost the lease while submitting")

    def _submit_batch(
        self, site: str, items: Sequence[tuple[Attempt, SubmitRequest]]
    ) -> list[_Submitted]:
        """On the site's worker: submit each attempt, or find it with owned() when a second
        submission could run it twice. Whatever goes wrong with one attempt is that attempt's
        outcome; the others go on."""
        out: list[_Submitted] = []
        owned: dict[str, str] | None = None
        for attempt, request in items:
            try:
                outcome, owned = self._submit_one(site, attempt, request, owned)
            except Exception as exc:  # the store, the storage or owned() failed for this one
                outcome = _Submitted(attempt, "uncertain", describe(exc))
            if outcome is not None:
                out.append(outcome)
                if outcome.kind == "fenced":
                    break
        return out

    def _submit_one(
        self, site: str, attempt: Attempt, request: SubmitRequest, owned: dict[str, str] | None,
    ) -> tuple[_Submitted | None, dict[str, str] | None]:
        adapter = self.adapters[site]
        limits = self.config.limits
        tries = self.store.note_submit_try(attempt.id)
        if tries == 0:
            return None, owned
        if (tries > 1 and Capability.ADOPT not in adapter.capabilities()) or (
            tries > limits.max_submit_tries
        ):
            if owned is None:
                owned = {o.attempt_id: o.native_id for o in _checked_owned(adapter)}
            if attempt.id in owned:
                return _Submitted(attempt, "adopted", owned[attempt.id]), owned
            if _claimed(attempt):  # it started and ended between our tries: never rerun it
                return _Submitted(attempt, "ran"), owned
            if self._sites[site].uncertain_submit == "replace" or tries > limits.max_submit_tries:
                why = (f"submission unconfirmed after {tries - 1} tries and the site holds no "
                       "job for it")
                return _Submitted(attempt, "gave-up", why), owned
        try:  # attempt N's token fences off every older attempt of the job
            token = raise_fence(request.checkpoint_url, request.token)
        except _PERMANENT_STORAGE_ERRORS as exc:
            if isinstance(exc, _HARD_STORAGE_ERRORS) or tries >= limits.max_submit_tries:
                why = f"checkpoint storage unusable: {describe(exc)}"
                return _Submitted(attempt, "storage-failed", why), owned
            raise
        if token > request.token:  # another job's attempts used this checkpoint prefix
            request = request.model_copy(update={"token": token + 1})
            self.store.set_token(attempt.id, token + 1)
            raise_fence(request.checkpoint_url, token + 1)
        if self.lease is None or not self.store.holds_lease(self.lease):
            return _Submitted(attempt, "fenced"), owned  # checked just before the native act
        try:
            native_id = adapter.submit(request)
        except SubmitRejected as exc:
            return _Submitted(attempt, "rejected", str(exc) or "rejected"), owned
        except Exception as exc:
            return _Submitted(attempt, "uncertain", describe(exc)), owned
        if not isinstance(native_id, str) or not native_id:
            return _Submitted(attempt, "uncertain", f"submit returned {native_id!r}"), owned
        return _Submitted(attempt, "native", native_id), owned

    def _record_native(self, site: str, outcomes: Sequence[_Submitted],
                       report: TickReport) -> None:
        """Record the native ids of a site's accepted submissions, in one write."""
        if not outcomes:
            return
        with _one_attempt("record the submissions to", site):
            moved = self.store.set_native_ids([(o.attempt.id, o.value) for o in outcomes],
                                              self.holder)
            for o in outcomes:
                if o.attempt.id in moved:
                    report.submitted.append(o.attempt.id)
                    log.info("submitted %s to %s as %s", o.attempt.id, site, o.value, extra={
                        "event": "submitted", "attempt": o.attempt.id, "site": site,
                        "native": o.value})

    def _apply_submitted(self, site: str, o: _Submitted, report: TickReport) -> bool:
        """Record one submission outcome other than an accepted one (those go in one write,
        :meth:`_record_native`); True if the lease was found lost."""
        a = o.attempt
        with _one_attempt("record the submission of", a.id):
            if o.kind in {"rejected", "gave-up"}:
                reason = f"rejected by {site}: {o.value}" if o.kind == "rejected" else o.value
                until = self.clock() + self.config.limits.reject_backoff_s
                self._avoid[(a.job_id, site)] = (until, reason)
                ended = _status(AttemptState.FAILED, o.kind, reason)
                self._conclude(a, self.store.job(a.job_id), ended, retry=True, charge=False)
                report.rejected[a.id] = reason
            elif o.kind == "storage-failed":
                ended = _status(AttemptState.FAILED, o.kind, o.value)
                self._conclude(a, self.store.job(a.job_id), ended, charge=False)
                report.rejected[a.id] = o.value
            elif o.kind == "ran":
                lost = _status(AttemptState.LOST, "ran-unconfirmed",
                               "it ran although its submission was never confirmed")
                job = self.store.job(a.job_id)
                self._conclude_verdict(a, judge(a, lost, job.checkpoint_url), job=job)
            elif o.kind == "uncertain":
                log.warning("submission of %s to %s uncertain (retried with the same id): %s",
                            a.id, site, o.value)
                self.calls.fail(site, "submit", o.value)
            else:
                return True
        return False

    def _request(self, job: Job, attempt: Attempt) -> SubmitRequest:
        """The request for an attempt, rebuilt from its record (the offer placement chose and
        the checkpoint interval travel with it, also on a retry after a restart)."""
        placed = json.loads(attempt.price_json) if attempt.price_json else {}
        offer = Offer.model_validate(placed["offer"]) if "offer" in placed else None
        return SubmitRequest(
            attempt_id=attempt.id,
            job_id=job.id,
            attempt=attempt.number,
            token=attempt.token,
            spec=job.spec,
            checkpoint_url=job.checkpoint_url,
            attempt_url=attempt.attempt_url,
            checkpoint_interval_s=placed.get("checkpoint_interval_s"),
            offer=offer,
        )

    # cancel and poll ----------------------------------------------------------------------

    def _cancel(self, active: Sequence[Attempt]) -> None:
        cancelled = self.store.cancel_requested({a.job_id for a in active})
        by_site: dict[str, list[str]] = defaultdict(list)
        for attempt in active:
            if attempt.native_id and attempt.job_id in cancelled:
                by_site[attempt.site].append(attempt.native_id)
        self._cancel_native(by_site)

    def _cancel_native(self, by_site: Mapping[str, Sequence[str]]) -> set[str]:
        """Cancel native ids per site (fenced); returns the sites whose call succeeded."""
        calls = {site: functools.partial(self._fenced_cancel, site, list(ids))
                 for site, ids in by_site.items() if ids and site in self.adapters}
        return set(self.calls.run("cancel", calls))

    def _fenced_cancel(self, site: str, native_ids: list[str]) -> None:
        self._fence()
        self.adapters[site].cancel(native_ids)

    def _poll(self, active: Sequence[Attempt], report: TickReport) -> None:
        live = {a.id for a in active}
        self._requeues = {aid: n for aid, n in self._requeues.items() if aid in live}
        by_site: dict[str, list[Attempt]] = defaultdict(list)
        for attempt in active:
            if attempt.native_id is not None and attempt.site in self.adapters:
                by_site[attempt.site].append(attempt)
        calls = {site: functools.partial(self._poll_site, site, attempts)
                 for site, attempts in by_site.items()}
        lost: dict[str, list[tuple[Attempt, Verdict]]] = defaultdict(list)
        for site, seen in self.calls.run("poll", calls).items():
            starting: list[tuple[Attempt, str]] = []
            for attempt, status, verdict in seen:
                with _one_attempt("apply the status of", attempt.id):
                    if verdict is None:
                        self._note_requeue(attempt, status)
                        if status.state is not attempt.state:
                            starting.append((attempt, status.native_state))
                    elif verdict.status.state is AttemptState.LOST:
                        lost[site].append((attempt, verdict))
                    elif self._conclude_verdict(attempt, verdict):
                        report.ended[attempt.id] = verdict.status.state
            self._mark_running(site, starting, report)
        self._end_lost(lost, report)

    def _mark_running(self, site: str, starting: Sequence[tuple[Attempt, str]],
                      report: TickReport) -> None:
        """Record the attempts a site says run, in one write."""
        if not starting:
            return
        with _one_attempt("record the attempts running on", site):
            moved = self.store.mark_running_many(starting, self.holder)
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
        if attempt.id not in self._requeues:
            told = [e for e in self.store.events(attempt.job_id)
                    if e.kind == "requeued" and e.attempt_id == attempt.id]
            self._requeues[attempt.id] = len(told)
            if status.requeues <= len(told):
                return
        self._requeues[attempt.id] = status.requeues
        if status.queued:
            self._requeued.append((attempt, status))
            return
        where = attempt.site + (f" ({attempt.offer_key})" if attempt.offer_key else "")
        self.store.add_event(attempt.job_id, "requeued",
                             f"attempt {attempt.number} preempted on {where} and requeued there "
                             f"by the site ({status.requeues}x); already running again",
                             self.holder, attempt_id=attempt.id)

    def _poll_site(
        self, site: str, attempts: Sequence[Attempt]
    ) -> list[tuple[Attempt, AttemptStatus, Verdict | None]]:
        """On the site's worker: one batched poll, and the result records of the attempts that
        ended (storage reads stay within the site's deadline too)."""
        statuses = _checked_poll(self.adapters[site], [a.native_id for a in attempts
                                                       if a.native_id])
        seen: list[tuple[Attempt, AttemptStatus, Verdict | None]] = []
        for attempt in attempts:
            assert attempt.native_id is not None
            status = statuses.get(attempt.native_id)
            if status is None:
                continue
            requeued = status.requeues > self._requeues.get(attempt.id, 0)
            if status.state is attempt.state and not (requeued and not status.state.terminal):
                continue
            if status.state is AttemptState.RUNNING:
                seen.append((attempt, status, None))
            elif status.state.terminal:
                url = self.store.job(attempt.job_id).checkpoint_url
                seen.append((attempt, status, judge(attempt, status, url)))
        return seen

    def _end_lost(
        self, lost: Mapping[str, Sequence[tuple[Attempt, Verdict]]], report: TickReport
    ) -> None:
        """LOST means gone: the site stops what is left of each lost attempt, and its fence is
        raised past it, before the job may be placed again. If the site cannot stop it (a node
        that is gone), the fence still holds the zombie off its checkpoints."""
        calls = {site: functools.partial(self._stop_lost, site, [a for a, _ in items])
                 for site, items in lost.items()}
        stopped = set(self.calls.run("cancel", calls))
        for site, items in lost.items():
            for attempt, verdict in items:
                if site not in stopped:
                    note = f"{verdict.status.reason}; the site could not stop it"
                    verdict = Verdict(verdict.status.model_copy(update={"reason": note}),
                                      verdict.result, verdict.last_step)
                with _one_attempt("conclude the lost attempt", attempt.id):
                    if self._conclude_verdict(attempt, verdict):
                        report.ended[attempt.id] = AttemptState.LOST

    def _stop_lost(self, site: str, attempts: Sequence[Attempt]) -> None:
        """On the site's worker: fence each lost attempt off its checkpoints, then cancel it."""
        for attempt in attempts:
            raise_fence(self.store.job(attempt.job_id).checkpoint_url, attempt.token + 1)
        self._fence()
        self.adapters[site].cancel([a.native_id for a in attempts if a.native_id])

    def _conclude(
        self, attempt: Attempt, job: Job, status: AttemptStatus, *, retry: bool = False,
        charge: bool = True,
    ) -> bool:
        return self._conclude_verdict(attempt, Verdict(status, None), job=job, retry=retry,
                                      charge=charge)

    def _conclude_verdict(
        self, attempt: Attempt, verdict: Verdict, *, job: Job | None = None,
        retry: bool = False, charge: bool = True,
    ) -> bool:
        """End an attempt: next job state and ledger row, in one transaction."""
        job = job or self.store.job(attempt.job_id)
        status, last_step = verdict.status, verdict.last_step
        if status.native_state in {"rejected", "gave-up"}:
            job_state, job_reason = JobState.PENDING, f"attempt {attempt.number} {status.reason}"
            in_a_row = 1
            for a in sorted(self.store.attempts(job.id), key=lambda a: -a.number):
                if a.number >= attempt.number:
                    continue
                if a.native_state not in {"rejected", "gave-up"}:
                    break
                in_a_row += 1
            if in_a_row >= self.config.limits.max_rejections:
                job_state = JobState.FAILED
                job_reason = (f"{in_a_row} submissions rejected in a row "
                              f"(limits.max_rejections); the last: {status.reason}")
            if job.cancel_requested:
                job_state, job_reason = JobState.CANCELLED, "cancelled by user"
        elif status.native_state == "storage-failed":  # no site can help: it is the job's
            job_state, job_reason = JobState.FAILED, f"attempt {attempt.number}: {status.reason}"
        else:
            earlier = [a for a in self.store.attempts(job.id) if a.number < attempt.number]
            h = history(earlier, status, last_step)
            job_state, job_reason = next_job_state(job, status, h, last_step, retry=retry)
        site = self._sites.get(attempt.site)
        ledger = None
        if charge:
            ledger = ledger_row(job, attempt, site, verdict, self.clock(),
                                wasted=job_state is JobState.TIMEOUT)
        ending = AttemptEnding(
            state=status.state,
            native_state=status.native_state,
            reason=status.reason,
            job_state=job_state,
            job_reason=job_reason,
            exit_code=status.exit_code,
            last_step=last_step,
            job_error=job_reason if job_state in {JobState.FAILED, JobState.TIMEOUT} else None,
            ledger=ledger,
        )
        concluded = self.store.conclude(attempt, ending, self.holder)
        if concluded:
            log.info("%s %s on %s; job %s %s: %s", attempt.id, status.state.value, attempt.site,
                     job.id, job_state.value, job_reason, extra={
                         "event": "state", "attempt": attempt.id, "site": attempt.site,
                         "state": status.state.value, "job": job.id,
                         "job_state": job_state.value, "reason": job_reason})
        return concluded

    # sweep --------------------------------------------------------------------------------

    def _sweep(self, report: TickReport) -> None:
        now = self.clock()
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.config.limits.sweep_interval_s
        calls = {site: functools.partial(_checked_owned, adapter)
                 for site, adapter in self.adapters.items()}
        orphans: dict[str, list[str]] = {}
        for site, owned in self.calls.run("owned", calls).items():
            result = reconcile_owned(self.store, site, owned, self.holder)
            if result.orphans:
                orphans[site] = result.orphans
                log.warning("cancelling orphans on %s: %s", site, ", ".join(result.orphans))
        self._cancel_native(orphans)
        report.orphans.update(orphans)

    def sweep_now(self) -> None:
        """Make the next tick sweep every site for orphans."""
        self._next_sweep = 0.0

    # place --------------------------------------------------------------------------------

    def _place(self, report: TickReport, budget: list[int]) -> None:
        """Place pending jobs on this tick's offers; a job a site rejects is placed again at
        once on what is left (each round rules one more site out for it)."""
        pending = [j for j in self.store.jobs([JobState.PENDING]) if not j.cancel_requested]
        ids = {j.id for j in pending}
        self._could = {k: v for k, v in self._could.items() if k in ids}
        self._explained = {k: v for k, v in self._explained.items() if k in ids}
        requeued, self._requeued = self._requeued, []
        if not pending and not requeued:
            return
        calls = {site: functools.partial(_checked_offers, adapter, site)
                 for site, adapter in self.adapters.items()}
        offers: list[Offer] = []
        for site_offers in self.calls.run("offers", calls).values():
            offers.extend(site_offers)
        if requeued:
            self._decide_requeued(requeued, offers, report)
            pending = [j for j in self.store.jobs([JobState.PENDING])
                       if not j.cancel_requested]
        if not pending:
            return
        for _ in range(len(self.adapters)):
            rejected_before = set(report.rejected)
            self._decisions = []
            try:
                placed = self._place_round(pending, offers, report, budget)
            finally:
                self._flush_decisions()
            again = {a.rsplit(".", 1)[0] for a in set(report.rejected) - rejected_before}
            if not again:
                return
            offers = _consume(offers, [p for p in placed if p[2].job_id not in again])
            pending = [self.store.job(j) for j in again]
            pending = [j for j in pending if j.state is JobState.PENDING]

    def _decide_requeued(self, requeued: Sequence[tuple[Attempt, AttemptStatus]],
                         offers: Sequence[Offer], report: TickReport) -> None:
        """An attempt its site preempted and queued again: leave it there, or cancel it there
        and let placement move the job (the story says which, and why)."""
        now = self.clock()
        for seen, status in requeued:
            with _one_attempt("decide on the requeued", seen.id):
                # Act only on the attempt as it stands now: still this native job, still live.
                attempt = next((a for a in self.store.attempts(seen.job_id) if a.id == seen.id),
                               None)
                if (attempt is None or attempt.state.terminal
                        or attempt.native_id != seen.native_id):
                    continue
                job = self.store.job(attempt.job_id)
                if job.state.terminal or job.cancel_requested:
                    continue
                choice = decide_requeued(job, attempt, offers, datetime.fromtimestamp(now, UTC),
                                         self.config.policy, self._remaining(job),
                                         status.queue_wait_s)
                where = attempt.site + (f" ({attempt.offer_key})" if attempt.offer_key else "")
                self.store.add_event(job.id, "requeued",
                                     f"attempt {attempt.number} preempted on {where} and "
                                     f"requeued there by the site ({status.requeues}x); "
                                     f"{choice.why}", self.holder, attempt_id=attempt.id)
                if choice.stay or attempt.native_id is None:
                    continue
                # Conclude first: if the cancel below fails, the native job is an orphan the
                # sweep cancels; the other order could leave a live attempt whose site says
                # CANCELLED, which would end the user's job.
                ended = AttemptStatus(state=AttemptState.PREEMPTED, native_state="requeued",
                                      reason=f"preempted and requeued on {where}; {choice.why}",
                                      requeues=status.requeues)
                if not self._conclude_verdict(attempt, judge(attempt, ended, job.checkpoint_url)):
                    continue
                report.ended[attempt.id] = AttemptState.PREEMPTED
                self._cancel_native({attempt.site: [attempt.native_id]})

    def _place_round(
        self, pending: Sequence[Job], offers: Sequence[Offer], report: TickReport,
        budget: list[int],
    ) -> list[tuple[str, str, PendingJob]]:
        """One call of ``place`` and the submissions it leads to; returns (site, offer key,
        job) placed."""
        now = self.clock()
        jobs = [
            PendingJob(job_id=j.id, spec=j.spec, attempt=j.attempts + 1,
                       submitted_at=datetime.fromtimestamp(j.created_at, UTC),
                       avoid=self._avoided(j.id, now), remaining_work_s=self._remaining(j),
                       checkpoint_cost_s=self._checkpoint_cost(j))
            for j in pending
        ]
        by_id = {j.id: j for j in pending}
        new: list[Attempt] = []
        placed: list[tuple[str, str, PendingJob]] = []
        round_ = plan(jobs, offers, datetime.fromtimestamp(now, UTC), self.config.policy,
                      self._budgets_left(now), self._site_slots())
        explained = 0
        wanted: list[tuple[PendingJob, Offer, tuple[str, str, str, tuple[str, str]]]] = []
        for i in round_.order:
            job = jobs[i]
            if round_.choice[i] < 0:
                # Explaining costs a pass over every offer: the first jobs in line get it,
                # the rest when they come near the front; and a job already explained only
                # every few seconds, as what keeps it waiting seldom changes from tick to tick.
                explained += 1  # its place in the line of jobs left waiting
                last = self._explained.get(job.job_id)
                if explained > _EXPLAIN_PER_TICK:
                    report.unplaced[job.job_id] = "not placed this tick"
                elif last is not None and now - last < _REEXPLAIN_S:
                    report.unplaced[job.job_id] = "waiting (explained recently)"
                else:
                    self._explained[job.job_id] = now
                    decision = round_.decision(i)
                    self._record(decision, by_id[job.job_id], now)
                    report.unplaced[job.job_id] = decision.reason
                continue
            if len(wanted) >= budget[0]:
                report.unplaced[job.job_id] = "max_submissions_per_tick reached"
                continue
            decision = round_.decision(i)
            self._record(decision, by_id[decision.job_id], now)
            root = f"{self.config.checkpoint_root}/{decision.job_id}"
            offer = offers[round_.choice[i]]
            chosen = decision.chosen
            card = json.dumps({"price": offer.price.model_dump(),
                               "on_demand": offer.on_demand.model_dump(),
                               "offer": offer.model_dump(mode="json"),
                               "checkpoint_interval_s": decision.checkpoint_interval_s,
                               "expected_cost": chosen.expected_cost if chosen else None})
            wanted.append((job, offer, (decision.job_id, decision.site or offer.site, root,
                                        (offer.key, card))))
        made = self.store.new_attempts([w[2] for w in wanted], self.holder)  # one write
        for (job, offer, _), attempt in zip(wanted, made, strict=True):
            if attempt is not None:
                report.placed[job.job_id] = offer.site
                log.info("placed %s on %s (offer %s)", attempt.id, offer.site, offer.key, extra={
                    "event": "placed", "attempt": attempt.id, "job": job.job_id,
                    "site": offer.site, "offer": offer.key})
                new.append(attempt)
                placed.append((offer.site, offer.key, job))
        self._flush_decisions()  # one write for the round's decisions, before the submits
        self._submit(new, report, budget)
        return placed

    def _flush_decisions(self) -> None:
        rows, self._decisions = self._decisions, None
        waiting, self._waiting = self._waiting, []
        if rows or waiting:
            self.store.record_decisions(rows or [], waiting=waiting, actor=self.holder)

    def _budgets_left(self, now: float) -> dict[str, float] | None:
        """What each team and project with a budget has left this month: the budget, less
        the ledger since the month began, less the expected cost of live attempts."""
        b = self.config.budgets
        if not b.teams and not b.projects:
            return None
        day = datetime.fromtimestamp(now, UTC)
        month = day.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()
        spent = self.store.spent_since(month)
        cards = [(a.job_id, _card(a).get("expected_cost")) for a in self.store.active_attempts()]
        live = [(j, float(e)) for j, e in cards if isinstance(e, int | float)]
        owners = self.store.owners([j for j, _ in live])  # one query, not one per attempt
        for job_id, expected in live:
            team, project = owners.get(job_id, ("", ""))
            for key in (f"team:{team}", f"project:{project}"):
                spent[key] = spent.get(key, 0.0) + expected
        left = {f"team:{t}": v - spent.get(f"team:{t}", 0.0) for t, v in b.teams.items()}
        left.update({f"project:{p}": v - spent.get(f"project:{p}", 0.0)
                     for p, v in b.projects.items()})
        return left

    def _site_slots(self) -> dict[str, int] | None:
        """Attempts each site with ``max_running`` may still start."""
        limited = {s.name: s.max_running for s in self.config.sites if s.max_running}
        if not limited:
            return None
        live: dict[str, int] = {}
        for a in self.store.active_attempts():
            live[a.site] = live.get(a.site, 0) + 1
        return {site: n - live.get(site, 0) for site, n in limited.items() if n is not None}

    def _checkpoint_cost(self, job: Job) -> float | None:
        """How long the job's last save took, as its checkpoint store recorded it; None before
        its first checkpoint. Read once per attempt that ended: only a running attempt can
        commit, so the answer holds until the job's next attempt (a pending job is not
        listed in its checkpoint store tick after tick)."""
        if job.attempts == 0:
            return None
        cached = self._save_cost.get(job.id)
        if cached is not None and cached[0] == job.attempts:
            return cached[1]
        cost: float | None = None
        try:
            from gridbridge import checkpoint

            store = checkpoint.open(job.checkpoint_url)
            step = store.latest()
            value = store.commit_record(step).get("save_s") if step is not None else None
            cost = float(value) if isinstance(value, int | float) and value >= 0 else None
        except Exception:  # no store, or an unreadable one: the offer's restart stands in
            cost = None
        self._save_cost[job.id] = (job.attempts, cost)
        return cost

    def _remaining(self, job: Job) -> float | None:
        """Work left after the job's last checkpoint: the estimate less the time of the
        attempts that advanced it (None for a job that has not checkpointed)."""
        if job.attempts == 0:
            return None
        cached = self._remaining_cache.get(job.id)
        if cached is not None and cached[0] == job.attempts and job.state is JobState.PENDING:
            return cached[1]  # a pending job's attempts have all ended: nothing changes
        done, best = 0.0, -1
        for a in self.store.attempts(job.id):
            if a.last_step is not None and a.last_step > best and a.started_at and a.ended_at:
                done += a.ended_at - a.started_at
                best = a.last_step
        left = None if best < 0 else max(0.0, job.spec.resources.runtime_estimate_s - done)
        if job.state is JobState.PENDING:
            self._remaining_cache[job.id] = (job.attempts, left)
        return left

    def _avoided(self, job_id: str, now: float) -> dict[str, str]:
        out = {}
        for (jid, site), (until, why) in list(self._avoid.items()):
            if until <= now:
                del self._avoid[(jid, site)]
            elif jid == job_id:
                out[site] = f"{why} (not retried there for {until - now:.0f}s)"
        return out

    def _record(self, decision: Decision, job: Job, now: float) -> None:
        """Keep every candidate of a decision; repeat an unplaceable one only when it changes."""
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
                self.store.add_event(job.id, "waiting", why, self.holder)
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
            self.store.record_decisions(rows)

    def _best_blocker(self, job: Job, decision: Decision) -> Candidate:
        """The candidate that says best why a job waits: one of the sites that could run it on
        their whole capacity (so what blocks it there passes), else the first."""
        could = self._could.get(job.id)
        if could is None:  # the job and the sites' whole capacity do not change: once per job
            now = datetime.fromtimestamp(self.clock(), UTC)
            pending = PendingJob(job_id=job.id, spec=job.spec, submitted_at=now)
            [ideal] = place([pending], ideal_offers(self.config), now, self.config.policy)
            could = self._could[job.id] = {c.site for c in ideal.candidates if c.feasible}
        return next((c for c in decision.candidates if c.site in could), decision.candidates[0])

    # health -------------------------------------------------------------------------------

    def _record_health(self) -> None:
        """Write a site's health when it changes: degraded on any failure this tick, healthy
        again after a tick in which its calls were answered."""
        for site, outcome in self.calls.outcomes.items():
            if outcome.ok and not outcome.called:
                continue
            key = (outcome.ok, "" if outcome.ok else f"{outcome.phase}: {outcome.error}")
            if self._health.get(site) == key:
                continue
            if not outcome.ok:
                log.warning("site %s degraded: %s", site, key[1],
                            extra={"event": "health", "site": site, "healthy": False})
            elif site in self._health:
                log.info("site %s healthy again", site,
                         extra={"event": "health", "site": site, "healthy": True})
            try:
                self.store.set_site_health(site, outcome.ok, outcome.phase, outcome.error,
                                           self.holder)
            except StoreUnavailable:
                return
            self._health[site] = key


def raise_fence(checkpoint_url: str, token: int) -> int:
    """Raise the job's checkpoint fence to ``token`` (never lowers it); returns the fence."""
    from gridbridge import checkpoint

    return checkpoint.raise_fence(checkpoint_url, token)


def _claimed(attempt: Attempt) -> bool:
    """The runtime claimed the attempt in storage: it started, whatever the site says now."""
    from gridbridge.wire import exists

    return exists(f"{attempt.attempt_url}/claim.json")


@contextlib.contextmanager
def _one_attempt(what: str, attempt_id: str) -> Iterator[None]:
    """One attempt's record that cannot be applied must not stop the others, or the tick; a
    store that is unavailable stops the tick (the loop retries it with backoff)."""
    try:
        yield
    except StoreUnavailable:
        raise
    except Exception:
        log.exception("could not %s %s", what, attempt_id)


_EXPLAIN_PER_TICK = 200
_REEXPLAIN_S = 5.0
"""A job left waiting has its decision explained (stored, and its ``waiting`` reason told)
again at most this often."""
"""Unplaced jobs whose decision is explained (and its story told) each tick, first in line
first; the others are explained once they come near the front."""


def _card(attempt: Attempt) -> dict[str, Any]:
    """The price card placement stored with the attempt ({} if none or unreadable)."""
    try:
        card = json.loads(attempt.price_json) if attempt.price_json else {}
    except ValueError:
        return {}
    return card if isinstance(card, dict) else {}


def _consume(offers: Sequence[Offer],
             placed: Sequence[tuple[str, str, PendingJob]]) -> list[Offer]:
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


def _status(state: AttemptState, native_state: str, reason: str) -> AttemptStatus:
    return AttemptStatus(state=state, native_state=native_state, reason=reason)


def _checked_poll(adapter: Adapter, native_ids: list[str]) -> dict[str, AttemptStatus]:
    """Poll, and refuse an answer that is not a mapping of native id to AttemptStatus."""
    answer: Any = adapter.poll(native_ids)
    if not isinstance(answer, Mapping):
        raise TypeError(f"poll returned {type(answer).__name__}, not a mapping")
    bad = [k for k, v in answer.items() if not isinstance(v, AttemptStatus)]
    if bad:
        raise TypeError(f"poll returned no AttemptStatus for {', '.join(map(str, bad[:3]))}")
    return {k: v for k, v in answer.items() if k in set(native_ids)}


def _checked_offers(adapter: Adapter, site: str) -> list[Offer]:
    answer: Any = adapter.offers()
    if isinstance(answer, str | bytes) or not isinstance(answer, Sequence):
        raise TypeError(f"offers returned {type(answer).__name__}, not a sequence of Offer")
    for offer in answer:
        if not isinstance(offer, Offer) or offer.site != site:
            raise TypeError(f"offers returned {offer!r:.80}, not an Offer of site {site}")
    return list(answer)


def _checked_owned(adapter: Adapter) -> list[OwnedJob]:
    answer: Any = adapter.owned()
    if isinstance(answer, str | bytes) or not isinstance(answer, Sequence):
        raise TypeError(f"owned returned {type(answer).__name__}, not a sequence of OwnedJob")
    if not all(isinstance(o, OwnedJob) for o in answer):
        raise TypeError("owned returned something that is not an OwnedJob")
    return list(answer)


def _dead_local_holder(holder: str) -> bool:
    host, _, rest = holder.partition(":")
    pid_s = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_s.isdigit():
        return False
    return proc_start_time(int(pid_s)) is None
