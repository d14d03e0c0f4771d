"""How an attempt's end is judged: its result record, its job's next state, its ledger row.

Pure rules plus two reads of storage (the result record, the last checkpoint commit); the
reconciler calls them when a site reports an attempt ended. A result record in storage wins
over the site's word "lost" (the work finished just before its node went away). A record that
is there but malformed ends the attempt FAILED with the reason; one that storage could not
give back (an I/O error) is the storage's fault, not the job's: the verdict says so
(``Verdict.unreadable``) and the caller judges again later, never ending a tick.

The books trust only what the control plane saw. An attempt is billed from the poll that first
saw it running (one never seen running: from the last poll that saw it waiting, else its
submission) to the poll that saw it end; the times a job writes into its own records can
neither move that window nor shorten it::

    submitted ── first poll RUNNING ── ... last poll RUNNING ── poll: ended ── concluded
                 |<──────────────────── billed (start, end) ───────────────>|
    never seen running: submitted ── poll: waiting ── poll: ended
                                                |<── billed ──>|  (one poll interval too much,
                                                                   at most)
    a LOST attempt without a result: end = its last heartbeat, clamped into
                                     [last poll RUNNING, poll: ended]

Only the site's own accounting overrides it: its runs (a Slurm requeue) and what it billed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from gridbridge.adapter import AttemptStatus, Pricing
from gridbridge.config import SiteConfig
from gridbridge.costs import attempt_cost
from gridbridge.states import AttemptState, JobState
from gridbridge.wire import Result, read_heartbeat, read_result

from .records import Attempt, Job
from .tables import LedgerRow

__all__ = ["History", "Verdict", "billed_window", "history", "judge", "ledger_row",
           "next_job_state"]

log = logging.getLogger("gridbridge.reconciler")

_FROM_RESULT = {
    "succeeded": AttemptState.SUCCEEDED,
    "failed": AttemptState.FAILED,
    "preempted": AttemptState.PREEMPTED,
}


@dataclass(frozen=True)
class Verdict:
    """The status an attempt ends with, after its result record was consulted, and the job's
    last committed step when it ended (from the record, else from the checkpoint store)."""

    status: AttemptStatus
    result: Result | None
    last_step: int | None = None
    last_seen: float | None = None
    """The runtime's last heartbeat, for an attempt that left no result record."""
    alive_at: float | None = None
    """The last poll that saw the attempt running: it was alive at least until then, whatever
    its heartbeat says."""
    waiting_at: float | None = None
    """The last poll that saw the attempt waiting (queued, starting): it ran at most since
    then, so one never seen running is billed from there, not from its submission."""
    unreadable: str = ""
    """Why its result record could not be read for now (a storage error, not a malformed
    record); ``status`` is then the site's word alone, and the caller may judge again later."""


def judge(attempt: Attempt, status: AttemptStatus, checkpoint_url: str) -> Verdict:
    """Read the attempt's result record and settle its final status."""
    try:
        result = read_result(attempt.attempt_url)
    except (ValueError, TypeError) as exc:  # there, but malformed: the job's own doing
        reason = f"unreadable result record: {type(exc).__name__}: {exc}"[:1000]
        failed = AttemptStatus(state=AttemptState.FAILED, native_state=status.native_state,
                               exit_code=status.exit_code, reason=reason)
        return Verdict(failed, None, _latest(checkpoint_url))
    except Exception as exc:  # storage did not answer (a 503, a timeout): not the job's doing
        why = f"{type(exc).__name__}: {exc}"[:500]
        return Verdict(status, None, _latest(checkpoint_url), _last_seen(attempt),
                       unreadable=why)
    if result is None:
        return Verdict(status, None, _latest(checkpoint_url), _last_seen(attempt))
    last_step = result.last_step if result.last_step is not None else _latest(checkpoint_url)
    if status.state is AttemptState.LOST or (
        status.state is AttemptState.PREEMPTED and result.reason == "succeeded"
    ):
        state = _FROM_RESULT.get(result.reason, AttemptState.FAILED)
        status = status.model_copy(update={  # what the site billed and ran stays the site's
            "state": state, "exit_code": result.exit_code,
            "reason": f"the site lost it, but its result record says {result.reason}"})
    return Verdict(status, result, last_step)


def _last_seen(attempt: Attempt) -> float | None:
    try:
        beat = read_heartbeat(attempt.attempt_url)
    except Exception:  # no heartbeat to go by
        return None
    return beat.at if beat is not None else None


def _latest(checkpoint_url: str) -> int | None:
    try:
        from gridbridge import checkpoint

        return checkpoint.open(checkpoint_url).latest()
    except Exception:  # no store yet, or an unreadable one: no step to speak of
        return None


NOT_RUN = frozenset({"rejected", "gave-up", "storage-failed", "site-gone", "never-submitted",
                     "cancel-unconfirmed"})
"""Native states of attempts that never ran on a site: they count for nothing."""


@dataclass(frozen=True)
class History:
    """What a job's attempts so far (the ending one included) add up to."""

    advanced: bool
    """The ending attempt committed a step past every earlier attempt's."""
    free: int
    """Preempted attempts that advanced the committed step, and moved attempts: not counted
    against max_attempts."""
    failures: int
    """Attempts that failed in the job's own code."""
    stalls: int
    """Preempted or lost attempts in a row, ending with this one, that committed nothing new
    although the job had a checkpoint."""
    ran: int
    """Attempts that ran on a site (rejected or never-submitted ones do not count)."""


def history(earlier: Sequence[Attempt], status: AttemptStatus, last_step: int | None) -> History:
    """Sum up the job's attempts, in order, with the one ending now last."""
    rows = [(a.state, a.native_state, a.last_step) for a in earlier]
    rows.append((status.state, status.native_state, last_step))
    best, free, failures, stalls, advanced, ran = -1, 0, 0, 0, False, 0
    for state, native, step in rows:
        if native in NOT_RUN:
            continue
        ran += 1
        advanced = step is not None and step > best
        if state is AttemptState.MOVED:  # the control plane's doing: free, and never a stall
            free += 1
            best = max(best, step if step is not None else -1)
            continue
        interrupted = state in {AttemptState.PREEMPTED, AttemptState.LOST}
        free += advanced and state is AttemptState.PREEMPTED
        failures += state is AttemptState.FAILED
        stalls = stalls + 1 if interrupted and not advanced and best >= 0 else 0
        best = max(best, step if step is not None else -1)
    return History(advanced, free, failures, stalls, ran)


def next_job_state(
    job: Job, status: AttemptStatus, h: History, last_step: int | None, *, retry: bool
) -> tuple[JobState, str]:
    """Where the job goes after this attempt: done, failed, timed out, cancelled or pending.

    Preemptions that advanced the committed step do not count against ``max_attempts``, so a
    long job that checkpoints goes on through any number of preemptions and walltime ends; a
    walltime end that committed nothing new is TIMEOUT (rerunning would end the same way)."""
    state = status.state
    n = job.attempts
    spec = job.spec
    if job.cancel_requested and state is not AttemptState.SUCCEEDED:
        return JobState.CANCELLED, job.cancelled_why
    if state is AttemptState.SUCCEEDED:
        return JobState.SUCCEEDED, f"attempt {n} succeeded"
    if state is AttemptState.CANCELLED:
        return JobState.CANCELLED, f"attempt {n} cancelled by the site"
    where = f"step {last_step}" if last_step is not None else "the start"
    if state is AttemptState.MOVED:  # not a failure, not an attempt used, not a stall
        return JobState.PENDING, f"attempt {n} moved ({status.reason}); will resume from {where}"
    interrupted = state in {AttemptState.PREEMPTED, AttemptState.LOST}
    if status.walltime and interrupted and not h.advanced:
        return JobState.TIMEOUT, (f"attempt {n} reached its walltime without committing a new "
                                  "checkpoint; running it again would end the same way")
    if state is AttemptState.FAILED and not retry and h.failures >= spec.max_failures:
        return JobState.FAILED, f"attempt {n} failed: {status.reason or status.native_state}"
    if h.stalls >= spec.max_stalls:
        return JobState.FAILED, (f"no progress: {h.stalls} attempts in a row ended without "
                                 "committing a new checkpoint")
    if h.ran - h.free >= spec.max_attempts:
        return JobState.FAILED, f"attempt {n} {state.lower()}; no attempts left"
    return JobState.PENDING, f"attempt {n} {state.lower()}; will resume from {where}"


def ledger_row(
    job: Job, attempt: Attempt, site: SiteConfig | None, verdict: Verdict, now: float,
    *, wasted: bool = False,
) -> LedgerRow:
    """One row for a finished attempt: its hours, its cost, the on-demand cost of the same
    work, and the cost of work lost since the last commit if it was preempted, lost or moved
    (a moved attempt's ``outcome`` is ``MOVED``).

    ``wasted``: nothing of the attempt's work survives (a TIMEOUT): all of it is lost, and no
    saving is booked on it (its on-demand cost is what it cost)."""
    outcome = verdict.status.state
    start, end = billed_window(attempt, verdict, now)
    hours = max(0.0, end - start) / 3600
    runs = verdict.status.runs
    if runs:  # the site ran it several times (requeues): the runs, not the waits between
        start, end = runs[0][0], runs[-1][1]
        hours = sum(max(0.0, e - s) for s, e in runs) / 3600
    res = job.spec.resources
    price, on_demand_price = _price_card(attempt, site)
    cost = attempt_cost(price, res, hours * 3600) if price else 0.0
    billing = verdict.status.billing
    if billing:  # what the site billed (a time-varying spot price) beats the card
        cost = sum(max(0.0, b.end - b.start) / 3600 * b.per_hour for b in billing)
    on_demand = attempt_cost(on_demand_price, res, hours * 3600) if on_demand_price else 0.0
    lost = 0.0
    if outcome in {AttemptState.PREEMPTED, AttemptState.LOST, AttemptState.MOVED} and hours > 0:
        lost = cost * min(1.0, _lost_seconds(job, start, end) / (hours * 3600))
    if wasted:
        on_demand, lost = cost, cost
    return LedgerRow(
        attempt_id=attempt.id, job_id=job.id, user=job.spec.owner.user,
        team=job.spec.owner.team, project=job.spec.owner.project, site=attempt.site,
        tier=site.tier.value if site else "unknown", outcome=outcome.value, start=start,
        end=end, core_hours=hours * res.cpus, gpu_hours=hours * res.gpus, cost=cost,
        on_demand_cost=on_demand, lost_cost=lost, offer_key=attempt.offer_key,
    )


def billed_window(attempt: Attempt, verdict: Verdict, now: float) -> tuple[float, float]:
    """When the attempt is billed from and to, by what the control plane observed: from the
    poll that first saw it running to ``now``, the poll that saw it end. One never seen
    running ran, if at all, after the last poll that saw it waiting: it is billed from then
    (else from its submission), which charges at most one poll interval it did not run and
    none of its queue wait.

    The times in its result record are the job's word and are not used: clamped into this
    window they could only shorten it. A LOST attempt without a result is billed until its
    last heartbeat, clamped between the last poll that saw it running (this reconciler's, or
    the one the store recorded: ``seen_at``) and ``now``."""
    start = attempt.started_at or max(attempt.created_at, verdict.waiting_at or 0.0)
    end = max(start, now)
    lost = verdict.status.state is AttemptState.LOST and verdict.result is None
    if lost and verdict.last_seen is not None:
        floor = max(start, verdict.alive_at or start, min(attempt.seen_at or start, end))
        end = min(end, max(floor, verdict.last_seen))  # last alive then, not now
    return start, end


def _price_card(attempt: Attempt, site: SiteConfig | None) -> tuple[Pricing | None, Pricing | None]:
    """The prices the attempt was placed at, else (older attempts) the site's configured ones."""
    if attempt.price_json:
        try:
            card = json.loads(attempt.price_json)
            return (Pricing.model_validate(card["price"]),
                    Pricing.model_validate(card["on_demand"]))
        except (ValueError, KeyError, TypeError):  # written by another version: use the site's
            log.warning("unreadable price card on %s; charging the site's prices", attempt.id)
    if site is None:
        return None, None
    return site.price, site.on_demand_price


def _lost_seconds(job: Job, start: float, end: float) -> float:
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
