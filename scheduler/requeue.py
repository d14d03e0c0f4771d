"""What to do with an attempt that its site preempted and queued again itself (a Slurm job
submitted ``--requeue``): leave it queued there, or cancel it there and place the rest of the
job elsewhere. The cost model decides, as it does for a new placement::

    stay  = the attempt's own offer (site, partition), queued: its expected wait, its price
    move  = every other offer with room for the job now
    place(job, [stay, *move]) picks one; staying pays no restart overhead, moving does

Pure: the reconciler calls :func:`decide_requeued` with this tick's offers and acts on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from gridbridge.adapter import Offer
from gridbridge.spec import Policy

from .placement import PendingJob, place
from .records import Attempt, Job

__all__ = ["UNKNOWN_WAIT_S", "RequeueDecision", "decide_requeued"]

UNKNOWN_WAIT_S = 3600.0
"""The wait assumed for a requeued attempt whose site cannot estimate when it will run."""


@dataclass(frozen=True)
class RequeueDecision:
    stay: bool
    why: str
    """One line for the job's story."""


def decide_requeued(job: Job, attempt: Attempt, offers: Sequence[Offer], now: datetime,
                    policy: Policy, remaining_work_s: float | None,
                    expected_wait_s: float | None = None) -> RequeueDecision:
    """Compare waiting in the site's queue with the best offer elsewhere."""
    key = (attempt.site, attempt.offer_key or "default")
    here = next((o for o in offers if (o.site, o.key) == key), None)
    where = f"{attempt.site}" + (f" ({attempt.offer_key})" if attempt.offer_key else "")
    if here is None:
        return RequeueDecision(True, f"left requeued on {where}: its offer is unknown this tick, "
                                     "so there is nothing to compare with")
    res = job.spec.resources
    wait, guessed = expected_wait_s, ""
    if wait is None:  # the site cannot say (jobs ahead without time limits): assume the worst
        wait, guessed = max(here.queue_wait_s, UNKNOWN_WAIT_S), ", a guess: the site gives none"
    # Staying needs no new capacity: the job already holds its place in the queue.
    stay = here.model_copy(update={
        "cpus": max(here.cpus, res.cpus), "memory_gb": max(here.memory_gb, res.memory_gb),
        "gpus": max(here.gpus, res.gpus), "queue_wait_s": wait, "restart_overhead_s": 0.0,
    })
    others = [o for o in offers if (o.site, o.key) != key]
    pending = PendingJob(job_id=job.id, spec=job.spec, attempt=attempt.number,
                         submitted_at=now, remaining_work_s=remaining_work_s)
    [decision] = place([pending], [stay, *others], now, policy)
    chosen = next((c for c in decision.candidates
                   if c.site == decision.site and c.offer_key == decision.offer_key), None)
    stay_c = next((c for c in decision.candidates
                   if (c.site, c.offer_key or "default") == key), None)
    if decision.site is None or (decision.site, decision.offer_key or "default") == key:
        why = stay_c.reason if stay_c is not None else decision.reason
        return RequeueDecision(True, f"left requeued on {where} (expected wait {wait:.0f}s"
                                     f"{guessed}): {why}")
    there = decision.site + (f" ({decision.offer_key})" if decision.offer_key else "")
    detail = chosen.reason if chosen is not None else decision.reason
    compare = ""
    if (chosen is not None and stay_c is not None and stay_c.expected_finish is not None
            and chosen.expected_finish is not None and stay_c.expected_cost is not None
            and chosen.expected_cost is not None):
        compare = (f"; staying would finish {stay_c.expected_finish:%H:%M:%S} for "
                   f"${stay_c.expected_cost:.4f}, {there} {chosen.expected_finish:%H:%M:%S} "
                   f"for ${chosen.expected_cost:.4f}")
    return RequeueDecision(False, f"moved from the queue of {where} (expected wait "
                                  f"{wait:.0f}s{guessed}) to {there}: {detail}{compare}")
