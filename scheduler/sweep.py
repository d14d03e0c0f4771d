"""The orphan sweep: what a site holds against what the store knows.

::

    owned() on a site ──> for each native job carrying an attempt id:
        store: that attempt, SUBMITTING on this site         ──> adopt its native id
        store: that attempt, active here with this native id ──> fine
        store: that attempt ended under ENDING_GRACE_S ago,
               with this same native id                     ──> let it exit (a later sweep
                                                                 cancels it if it lingers)
        anything else (unknown id, ended attempt, another
        site's attempt, a second native job for one attempt) ──> cancel it, with an orphan event

Run after a crash or an uncertain submission, so nothing runs (or is paid for) that gridbridge
does not track, and nothing it does track is submitted twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from gridbridge.adapter import OwnedJob
from gridbridge.states import AttemptState

from .records import Attempt
from .store import StateStore, StoreUnavailable

__all__ = ["ENDING_GRACE_S", "SweepResult", "reconcile_owned"]

ENDING_GRACE_S = 60.0
"""How long a native job may outlive its attempt's end before it is an orphan: a runtime
writes its result, and the attempt is concluded, moments before its process exits, and a
sweep that saw it then would record a finished job's own process as an orphan."""

log = logging.getLogger("gridbridge.reconciler")


@dataclass
class SweepResult:
    adopted: list[str] = field(default_factory=list)
    """Attempt ids whose native id was learned from the site."""
    orphans: list[str] = field(default_factory=list)
    """Native ids to cancel."""


def reconcile_owned(
    store: StateStore, site: str, owned: Sequence[OwnedJob], actor: str,
    now: float | None = None,
) -> SweepResult:
    """Adopt what the store is waiting for; list the rest for cancellation (events written)."""
    out = SweepResult()
    known = {a.id: a for a in store.attempts_by_ids([o.attempt_id for o in owned])}
    now = time.time() if now is None else now
    for job in owned:
        try:
            _sweep_one(store, site, job, known, out, actor, now)
        except StoreUnavailable:
            raise
        except Exception:  # one odd entry must not keep the others from being swept
            log.exception("could not sweep native job %s on %s", job.native_id, site)
    return out


def _sweep_one(store: StateStore, site: str, job: OwnedJob, known: dict[str, Attempt],
               out: SweepResult, actor: str, now: float) -> None:
    attempt = known.get(job.attempt_id)
    why = _orphan_reason(attempt, site, job)
    if why is not None and attempt is not None and _exiting(attempt, job, now):
        return
    if why == "adopt":
        assert attempt is not None
        if store.set_native_id(attempt.id, job.native_id, actor):
            out.adopted.append(attempt.id)
            store.add_site_event(site, "adopted", f"native job {job.native_id} adopted by "
                                 "attempt id after an uncertain submission", actor, attempt.id)
            known[attempt.id] = store.attempt(attempt.id)  # a second native job is now a twin
            return
        attempt = store.attempt(attempt.id)
        why = _orphan_reason(attempt, site, job)
    if why is None:
        return
    out.orphans.append(job.native_id)
    store.add_site_event(site, "orphan", f"native job {job.native_id} cancelled: {why}",
                         actor, job.attempt_id)


def _exiting(attempt: Attempt, job: OwnedJob, now: float) -> bool:
    """The attempt's own native job, its attempt ended moments ago: it is on its way out."""
    return (attempt.state.terminal and attempt.native_id == job.native_id
            and attempt.ended_at is not None and now - attempt.ended_at < ENDING_GRACE_S)


def _orphan_reason(attempt: Attempt | None, site: str, job: OwnedJob) -> str | None:
    if attempt is None:
        return "its attempt id is unknown to this store"
    if attempt.site != site:
        return f"attempt {attempt.id} belongs to site {attempt.site}"
    if attempt.state is AttemptState.SUBMITTING:
        return "adopt"
    if attempt.state.terminal:
        return f"attempt {attempt.id} already ended {attempt.state}"
    if attempt.native_id != job.native_id:
        return f"attempt {attempt.id} runs as native job {attempt.native_id}"
    return None
