"""Placement: a pure function from (pending jobs, offers, now, policy, budgets) to decisions.

Invariant: placement is pure. ``place`` and ``plan`` read only their arguments -- no I/O, no
clock, no randomness, no globals -- and never mutate them: time (``now``) and prices (the
offers) come in as arguments, so the same inputs always give the same decisions. That is what
lets the simulator and the live reconciler share them.

A placement round::

    offers ──> _offers: one numpy column per number (cpus, prices, preemption rate, ...)
    jobs ──> _classes: classes of jobs that score alike (resources, work, checkpoints,
             constraints, policy); walks, a class's jobs drawing on the same budgets
             (teams without a budget of their own share one, ``OTHER_TEAMS``)
             ──> _fair: the order: priority desc, fair share (the team, then the user, that
             would run least per unit of weight), submitted_at, job_id
    class x offer ──> _score: expected run time and cost (gridbridge.costs' exact model),
             expected finish, the chance of meeting a deadline, what rules an offer out
             ──> _ranking: each class's feasible offers, ranked by its policy, in one flat
             array (a few first, deeper on demand)
    jobs in order ──> _walk: each takes the best ranked offer that still has the
             cpus/memory/gpus, the site a slot (``site_slots``), its user room under
             ``Shares.max_running_per_user`` and its team and project the money
             (``budgets``) it needs; what it takes comes off for later jobs
             ──> Plan (_explain): ``choice`` per job; ``Plan.decision(i)`` scores job i's
             class again as things stood at its turn and says why each offer won, lost or
             could not run it (_problems); ``place`` asks for every decision

Capacity, slots and budgets only ever shrink within a call, so an offer that once failed a
job stays failed for every later job of its class, team and project (a *walk*): each walk
moves down its class's ranking and never back. No object is made per (job, offer) pair;
candidates are built only for the decisions asked for.
"""

from __future__ import annotations

from gridbridge.spec import Policy

from ._classes import OTHER_TEAMS
from ._explain import Plan
from ._fair import Shares
from ._models import Candidate, Decision, PendingJob
from ._round import place, plan

__all__ = ["OTHER_TEAMS", "Candidate", "Decision", "PendingJob", "Plan", "Policy", "Shares",
           "place", "plan"]
