"""The reconciler: one tick moves every job one step closer to done.

::

    tick:  submit   SUBMITTING attempts (new, or left by a crashed reconciler: re-submitted
                    with the same attempt id, which adapters treat as idempotent)
           cancel   attempts of jobs the user cancelled
           poll     one batched call per site -> RUNNING / ended
                    PREEMPTED or LOST -> job PENDING again (attempt + 1), FAILED/SUCCEEDED end it
                    every ended attempt -> one ledger row (duration x price)
           place    offers from every site -> placement.place(...) -> new attempts

Only the holder of the store's ``reconciler`` lease ticks, so an embedded client and
``gridbridge serve`` never both drive one store.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from gridbridge.adapter import Adapter, AttemptStatus, Offer, SubmitRequest
from gridbridge.config import GridConfig
from gridbridge.costs import attempt_cost
from gridbridge.runtime import Result, proc_start_time, read_result
from gridbridge.states import AttemptState, JobState

from .placement import Decision, PendingJob, place
from .store import Attempt, AttemptEnding, Job, StateStore
from .tables import DecisionRow, LedgerRow

__all__ = ["LEASE", "Reconciler", "TickReport"]

log = logging.getLogger("gridbridge.reconciler")
LEASE = "reconciler"


@dataclass
class TickReport:
    """What one tick did, for logs and tests."""

    submitted: list[str] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    ended: dict[str, AttemptState] = field(default_factory=dict)
    placed: dict[str, str] = field(default_factory=dict)
    unplaced: dict[str, str] = field(default_factory=dict)


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
        self._sites = {s.name: s for s in config.sites}
        self._last_decision: dict[str, str] = {}

    # the loop -----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Tick until ``stop`` is set, while holding the lease; release it on the way out."""
        limits = self.config.limits
        try:
            while not stop.is_set():
                if self.acquire():
                    try:
                        self.tick()
                    except Exception:
                        log.exception("reconciler tick failed; retrying next tick")
                stop.wait(limits.tick_interval_s)
        finally:
            self.store.release_lease(LEASE, self.holder)

    def acquire(self) -> bool:
        """Take or renew the lease; take over at once from a dead holder on this host."""
        ttl = self.config.limits.lease_s
        if self.store.acquire_lease(LEASE, self.holder, ttl):
            return True
        current = self.store.lease_holder(LEASE)
        if current is not None and _dead_local_holder(current[0]):
            log.warning("taking over the lease of %s, whose process is gone", current[0])
            self.store.release_lease(LEASE, current[0])
            return self.store.acquire_lease(LEASE, self.holder, ttl)
        return False

    def tick(self) -> TickReport:
        report = TickReport()
        submitting = [a for a in self.store.active_attempts() if a.state is AttemptState.SUBMITTING]
        self._submit(submitting, report)
        active = self.store.active_attempts()
        self._cancel(active)
        self._poll(active, report)
        self._place(report)
        return report

    # phases -------------------------------------------------------------------------------

    def _submit(self, attempts: Sequence[Attempt], report: TickReport) -> None:
        for attempt in attempts[: self.config.limits.max_submissions_per_tick]:
            job = self.store.job(attempt.job_id)
            adapter = self.adapters.get(attempt.site)
            try:
                if adapter is None:
                    raise LookupError(f"site {attempt.site!r} is no longer configured")
                native_id = adapter.submit(self._request(job, attempt))
            except Exception as exc:
                log.warning("submission of %s to %s failed: %s", attempt.id, attempt.site, exc)
                status = AttemptStatus(state=AttemptState.FAILED, native_state="submit-error",
                                       reason=f"submission failed: {exc}")
                self._end(attempt, job, status, retry=True)
                continue
            if self.store.set_native_id(attempt.id, native_id, self.holder):
                report.submitted.append(attempt.id)

    def _request(self, job: Job, attempt: Attempt) -> SubmitRequest:
        return SubmitRequest(
            attempt_id=attempt.id,
            job_id=job.id,
            attempt=attempt.number,
            token=attempt.token,
            spec=job.spec,
            checkpoint_url=job.checkpoint_url,
            attempt_url=attempt.attempt_url,
        )

    def _cancel(self, active: Sequence[Attempt]) -> None:
        cancelled = self.store.cancel_requested({a.job_id for a in active})
        by_site: dict[str, list[str]] = defaultdict(list)
        for attempt in active:
            if attempt.native_id and attempt.job_id in cancelled:
                by_site[attempt.site].append(attempt.native_id)
        for site, ids in by_site.items():
            adapter = self.adapters.get(site)
            if adapter is not None:
                adapter.cancel(ids)

    def _poll(self, active: Sequence[Attempt], report: TickReport) -> None:
        by_site: dict[str, list[Attempt]] = defaultdict(list)
        for attempt in active:
            if attempt.native_id is not None:
                by_site[attempt.site].append(attempt)
        for site, attempts in by_site.items():
            adapter = self.adapters.get(site)
            if adapter is None:
                continue
            try:
                statuses = adapter.poll([a.native_id for a in attempts if a.native_id])
            except Exception:
                log.exception("polling %s failed", site)
                continue
            for attempt in attempts:
                assert attempt.native_id is not None
                status = statuses.get(attempt.native_id)
                if status is not None:
                    self._apply(attempt, status, report)

    def _apply(self, attempt: Attempt, status: AttemptStatus, report: TickReport) -> None:
        if status.state is attempt.state:
            return
        if status.state is AttemptState.RUNNING:
            if self.store.mark_running(attempt, status.native_state, self.holder):
                report.started.append(attempt.id)
        elif status.state.terminal:
            job = self.store.job(attempt.job_id)
            if self._end(attempt, job, status, retry=False):
                report.ended[attempt.id] = status.state

    def _end(self, attempt: Attempt, job: Job, status: AttemptStatus, *, retry: bool) -> bool:
        """Conclude an attempt: next job state, ledger row, all in one transaction."""
        result = read_result(attempt.attempt_url)
        last_step = result.last_step if result is not None else None
        job_state, job_reason = self._next_job_state(job, status, last_step, retry)
        ending = AttemptEnding(
            state=status.state,
            native_state=status.native_state,
            reason=status.reason,
            job_state=job_state,
            job_reason=job_reason,
            exit_code=status.exit_code,
            last_step=last_step,
            job_error=status.reason if job_state is JobState.FAILED else None,
            ledger=self._ledger_row(job, attempt, status.state, result),
        )
        return self.store.conclude(attempt, ending, self.holder)

    def _next_job_state(
        self, job: Job, status: AttemptStatus, last_step: int | None, retry: bool
    ) -> tuple[JobState, str]:
        state = status.state
        n = job.attempts
        if job.cancel_requested and state is not AttemptState.SUCCEEDED:
            return JobState.CANCELLED, "cancelled by user"
        if state is AttemptState.SUCCEEDED:
            return JobState.SUCCEEDED, f"attempt {n} succeeded"
        if state is AttemptState.CANCELLED:
            return JobState.CANCELLED, f"attempt {n} cancelled by the site"
        resumable = state in {AttemptState.PREEMPTED, AttemptState.LOST} or retry
        if not resumable:
            return JobState.FAILED, f"attempt {n} failed: {status.reason or status.native_state}"
        if n >= job.spec.max_attempts:
            return JobState.FAILED, f"attempt {n} {state.lower()}; no attempts left"
        where = f"step {last_step}" if last_step is not None else "the start"
        return JobState.PENDING, f"attempt {n} {state.lower()}; will resume from {where}"

    def _ledger_row(
        self, job: Job, attempt: Attempt, outcome: AttemptState, result: Result | None
    ) -> LedgerRow:
        site = self._sites.get(attempt.site)
        start = attempt.started_at or attempt.created_at
        end = self.clock()
        if result is not None:
            start, end = result.started_at, result.ended_at
        hours = max(0.0, end - start) / 3600
        res = job.spec.resources
        cost = attempt_cost(site.price, res, hours * 3600) if site else 0.0
        on_demand = attempt_cost(site.on_demand_price, res, hours * 3600) if site else 0.0
        lost = 0.0
        if outcome in {AttemptState.PREEMPTED, AttemptState.LOST} and site is not None:
            lost_s = self._lost_seconds(job, start, end)
            lost = attempt_cost(site.price, res, lost_s)
        return LedgerRow(
            attempt_id=attempt.id, job_id=job.id, user=job.spec.owner.user,
            team=job.spec.owner.team, project=job.spec.owner.project, site=attempt.site,
            tier=site.tier.value if site else "unknown", outcome=outcome.value, start=start,
            end=end, core_hours=hours * res.cpus, gpu_hours=hours * res.gpus, cost=cost,
            on_demand_cost=on_demand, lost_cost=lost,
        )

    def _lost_seconds(self, job: Job, start: float, end: float) -> float:
        """Work since the last checkpoint committed during this attempt is lost."""
        committed: float | None = None
        try:
            from gridbridge import checkpoint

            store = checkpoint.open(job.checkpoint_url)
            step = store.latest()
            if step is not None:
                stamp = store.commit_record(step)["time"]
                committed = datetime.fromisoformat(stamp).timestamp()
        except Exception:  # an unreadable store: count the whole attempt as lost
            log.warning("cannot read the last commit of %s", job.id, exc_info=True)
        since = max(start, committed) if committed is not None else start
        return max(0.0, end - since)

    def _place(self, report: TickReport) -> None:
        pending = [j for j in self.store.jobs([JobState.PENDING]) if not j.cancel_requested]
        if not pending:
            return
        offers: list[Offer] = []
        for site, adapter in self.adapters.items():
            try:
                offers.extend(adapter.offers())
            except Exception:
                log.exception("offers from %s failed; leaving it out this tick", site)
        now = self.clock()
        jobs = [
            PendingJob(job_id=j.id, spec=j.spec, attempt=j.attempts + 1,
                       submitted_at=datetime.fromtimestamp(j.created_at, UTC))
            for j in pending
        ]
        by_id = {j.id: j for j in pending}
        for decision in place(jobs, offers, datetime.fromtimestamp(now, UTC)):
            self._record(decision, by_id[decision.job_id], now)
            if decision.site is None:
                report.unplaced[decision.job_id] = decision.reason
                continue
            root = f"{self.config.checkpoint_root}/{decision.job_id}"
            attempt = self.store.new_attempt(decision.job_id, decision.site, root, self.holder)
            if attempt is not None:
                report.placed[decision.job_id] = decision.site
                self._submit([attempt], report)

    def _record(self, decision: Decision, job: Job, now: float) -> None:
        """Keep every candidate of a decision; repeat an unplaceable one only when it changes."""
        key = f"{decision.site}|{decision.reason}"
        if decision.site is None and self._last_decision.get(job.id) == key:
            return
        self._last_decision[job.id] = key
        rows = [
            DecisionRow(
                at=now, job_id=job.id, attempt=job.attempts + 1, site=c.site,
                chosen=c.site == decision.site, feasible=c.feasible,
                expected_cost=c.expected_cost, on_demand_cost=c.on_demand_cost,
                expected_runtime_s=c.expected_runtime_s,
                expected_finish=c.expected_finish.timestamp() if c.expected_finish else None,
                reason=c.reason,
            )
            for c in decision.candidates
        ]
        self.store.record_decisions(rows)


def _dead_local_holder(holder: str) -> bool:
    host, _, rest = holder.partition(":")
    pid_s = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_s.isdigit():
        return False
    return proc_start_time(int(pid_s)) is None
