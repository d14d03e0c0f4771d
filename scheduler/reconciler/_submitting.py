"""Submitting: SUBMITTING attempts go to their sites, each under the id it was recorded with.

Invariant: an attempt is never run twice. A submission is counted before it is made; a second
try goes to a site that adopts by attempt id, or is first looked up with ``owned()`` (and a
runtime's claim in storage), and is given up rather than repeated blindly. Every native submit
is preceded by raising the job's checkpoint fence to the attempt's token (for that job, on a
prefix the config allows it) and by a lease check. Fences are raised off the site workers
(``World.fences``), so storage that fails or never answers fails its own attempt and never
holds up, or degrades, the site.

    on the tick:               fences of all (in parallel, a short grace) -> up | refused |
                               failed (the attempt's count) | still waiting (next tick)
    per site, on its worker:   note try -> (owned? claimed?) -> lease held?
                               -> adapter.submit -> native | rejected | uncertain | ...
    back on the tick:          native ids in one write; every other outcome applied alone

An attempt that ran although its submission was never confirmed is judged by its result record
as every ended attempt is (:meth:`Ending.judge`): a record storage cannot give back leaves it
unconcluded, to be found and judged again on a later tick, with backoff, for a bounded time.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from gridbridge.adapter import Capability, Offer, SubmitRejected, SubmitRequest
from gridbridge.states import AttemptState

from ..records import Attempt, Job
from ..sitecalls import describe
from ._ending import Ending
from ._lease import LeaseLost
from ._sweeping import Sweeping, checked_owned
from ._tick import Avoidances, FenceRefused, TickReport, World, one_attempt, status

__all__ = ["Submitting"]

log = logging.getLogger("gridbridge.reconciler")
_HARD_STORAGE_ERRORS = (NotADirectoryError, IsADirectoryError, FenceRefused)
"""Fence errors that retrying cannot cure (a path under a file, a prefix not the job's); any
other fails the job once it persists through ``max_submit_tries`` tries (no such bucket, no
permission, no answer; a credential that expired for a moment recovers before that)."""


@dataclass
class _Submitted:
    """What a site's worker did with one attempt of a submit batch."""

    attempt: Attempt
    kind: str
    """``native``, ``adopted``, ``ran``, ``rejected``, ``gave-up``, ``uncertain`` or
    ``fenced``."""
    value: str = ""


class Submitting:
    """The submit phase; owns which sites refused which jobs, and until when."""

    def __init__(self, world: World, ending: Ending, sweeping: Sweeping) -> None:
        self.world = world
        self.ending = ending
        self.sweeping = sweeping
        self._avoid = Avoidances()
        """Per (job, site) that refused it: until when placement leaves that site out, why."""
        self._fence_failures: dict[str, int] = {}
        """Per attempt, the tries of its fence that failed so far."""

    def avoided(self, job_id: str, now: float) -> dict[str, str]:
        """The sites that refused the job lately, each with why (what placement avoids)."""
        return self._avoid.of(job_id, now)

    def run(self, attempts: Sequence[Attempt], report: TickReport, budget: list[int]) -> None:
        """Submit what ``budget`` (shared with placement) allows, one batch per site."""
        w = self.world
        todo: list[tuple[Attempt, Job]] = []
        for attempt in attempts:
            job = w.store.job(attempt.job_id)
            if job.cancel_requested:
                native = "never-submitted" if attempt.submit_tries == 0 else "cancel-unconfirmed"
                self.ending.conclude(attempt, job, status(AttemptState.CANCELLED, native,
                                                          "job cancelled before it was confirmed"),
                                     charge=False)
                if attempt.submit_tries:
                    self.sweeping.soon()  # should it have started after all, the sweep cancels it
                continue
            if attempt.site not in w.adapters:
                gone = status(AttemptState.FAILED, "site-gone",
                              f"site {attempt.site!r} is no longer configured")
                self.ending.conclude(attempt, job, gone, retry=True, charge=False)
                continue
            if budget[0] <= 0 or w.calls.busy(attempt.site):
                continue
            budget[0] -= 1
            todo.append((attempt, job))
        by_site: dict[str, list[tuple[Attempt, SubmitRequest]]] = defaultdict(list)
        for attempt, request in self._fenced(todo, report):
            by_site[attempt.site].append((attempt, request))
        calls = {site: functools.partial(self._batch, site, items)
                 for site, items in by_site.items()}
        fenced = False
        for site, outcomes in w.calls.run("submit", calls).items():
            self._record_native(site, [o for o in outcomes if o.kind in {"native", "adopted"}],
                                report)
            for outcome in outcomes:  # every outcome is applied before a lost lease is raised
                if outcome.kind not in {"native", "adopted"}:
                    fenced = self._apply(site, outcome, report) or fenced
        if fenced:
            raise LeaseLost(f"{w.holder} lost the lease while submitting")

    def _fenced(self, todo: Sequence[tuple[Attempt, Job]],
                report: TickReport) -> list[tuple[Attempt, SubmitRequest]]:
        """Raise each attempt's fence (all at once, off the site workers); return the requests
        of those whose fence is up, with the token it holds. One whose fence was refused, or
        failed ``max_submit_tries`` times, fails its job; one whose storage has not answered
        yet waits in SUBMITTING for the next tick; its site never waits for it."""
        w, ready = self.world, []
        answered = w.fences.settle([(a.id, job, a.token) for a, job in todo])
        for attempt, job in todo:
            if attempt.id not in answered:
                continue
            after = answered[attempt.id]
            with one_attempt("raise the checkpoint fence of", attempt.id):
                if isinstance(after, int):
                    self._fence_failures.pop(attempt.id, None)
                    if after != attempt.token:  # its prefix was fenced higher already
                        w.store.set_token(attempt.id, after)
                        attempt = dataclasses.replace(attempt, token=after)
                    ready.append((attempt, _request(job, attempt)))
                else:
                    self._fence_failed(attempt, job, after, report)
        return ready

    def _fence_failed(self, attempt: Attempt, job: Job, exc: Exception,
                      report: TickReport) -> None:
        """Count a failed fence against its attempt, never its site: storage that did not
        answer in time fails the attempt (a failure of the job, ``max_failures``); a prefix
        not the job's, or an error that cannot be cured or persists ``max_submit_tries`` tries,
        fails the job (no site can help); any other error is tried again next tick."""
        tries = self._fence_failures.get(attempt.id, 0) + 1
        self._fence_failures[attempt.id] = tries
        if isinstance(exc, FenceRefused):
            why, native = f"checkpoint prefix refused: {exc}", "storage-failed"
        elif isinstance(exc, TimeoutError):
            why, native = f"checkpoint fence failed: {exc}", "fence-failed"
        else:
            why, native = f"checkpoint storage unusable: {describe(exc)}", "storage-failed"
        if native == "storage-failed" and not isinstance(exc, _HARD_STORAGE_ERRORS) and (
            tries < self.world.config.limits.max_submit_tries
        ):
            log.warning("fence of %s failed (try %d; tried again next tick): %s",
                        attempt.id, tries, why)
            return
        del self._fence_failures[attempt.id]
        self.ending.conclude(attempt, job, status(AttemptState.FAILED, native, why), charge=False)
        report.rejected[attempt.id] = why

    def _batch(self, site: str, items: Sequence[tuple[Attempt, SubmitRequest]]) -> list[_Submitted]:
        """On the site's worker: submit each attempt, or find it with owned() when a second
        submission could run it twice. Whatever goes wrong with one attempt is that attempt's
        outcome; the others go on."""
        out: list[_Submitted] = []
        owned: dict[str, str] | None = None
        for attempt, request in items:
            try:
                outcome, owned = self._one(site, attempt, request, owned)
            except Exception as exc:  # the store, the storage or owned() failed for this one
                outcome = _Submitted(attempt, "uncertain", describe(exc))
            if outcome is not None:
                out.append(outcome)
                if outcome.kind == "fenced":
                    break
        return out

    def _one(
        self, site: str, attempt: Attempt, request: SubmitRequest, owned: dict[str, str] | None,
    ) -> tuple[_Submitted | None, dict[str, str] | None]:
        w = self.world
        adapter = w.adapters[site]
        limits = w.config.limits
        tries = w.store.note_submit_try(attempt.id)
        if tries == 0:
            return None, owned
        if (tries > 1 and Capability.ADOPT not in adapter.capabilities()) or (
            tries > limits.max_submit_tries
        ):
            if owned is None:
                owned = {o.attempt_id: o.native_id for o in checked_owned(adapter)}
            if attempt.id in owned:
                return _Submitted(attempt, "adopted", owned[attempt.id]), owned
            if _claimed(attempt):  # it started and ended between our tries: never rerun it
                return _Submitted(attempt, "ran"), owned
            if w.sites[site].uncertain_submit == "replace" or tries > limits.max_submit_tries:
                why = (f"submission unconfirmed after {tries - 1} tries and the site holds no "
                       "job for it")
                return _Submitted(attempt, "gave-up", why), owned
        if not w.lease.held():
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
        with one_attempt("record the submissions to", site):
            moved = self.world.store.set_native_ids([(o.attempt.id, o.value) for o in outcomes],
                                                    self.world.holder)
            for o in outcomes:
                if o.attempt.id in moved:
                    report.submitted.append(o.attempt.id)
                    log.info("submitted %s to %s as %s", o.attempt.id, site, o.value, extra={
                        "event": "submitted", "attempt": o.attempt.id, "site": site,
                        "native": o.value})

    def _apply(self, site: str, o: _Submitted, report: TickReport) -> bool:
        """Record one submission outcome other than an accepted one (those go in one write,
        :meth:`_record_native`); True if the lease was found lost."""
        a, w = o.attempt, self.world
        with one_attempt("record the submission of", a.id):
            if o.kind in {"rejected", "gave-up"}:
                reason = f"rejected by {site}: {o.value}" if o.kind == "rejected" else o.value
                until = w.clock() + w.config.limits.reject_backoff_s
                self._avoid.add(a.job_id, site, until, reason)
                ended = status(AttemptState.FAILED, o.kind, reason)
                self.ending.conclude(a, w.store.job(a.job_id), ended, retry=True, charge=False)
                report.rejected[a.id] = reason
            elif o.kind == "ran":
                lost = status(AttemptState.LOST, "ran-unconfirmed",
                              "it ran although its submission was never confirmed")
                verdict = self.ending.judge(a, lost, w.clock())
                if verdict is not None:  # None: its record unread yet; the next tick again
                    self.ending.verdict(a, verdict)
            elif o.kind == "uncertain":
                log.warning("submission of %s to %s uncertain (retried with the same id): %s",
                            a.id, site, o.value)
                w.calls.fail(site, "submit", o.value)
            else:
                return True
        return False


def _request(job: Job, attempt: Attempt) -> SubmitRequest:
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


def _claimed(attempt: Attempt) -> bool:
    """The runtime claimed the attempt in storage: it started, whatever the site says now."""
    from gridbridge.wire import Record, exists

    return exists(f"{attempt.attempt_url}/{Record.CLAIM}")
