"""The reconciler: one tick moves every job one step closer to done.

Invariant: only the holder of the store's ``reconciler`` lease ticks. The lease is renewed
between phases and checked (same holder, same generation, unlapsed) immediately before every
native submit and cancel, so a reconciler that slept through its lease cannot act on a site
after it wakes. Every phase calls all sites at once, each on its own worker with one deadline
(:mod:`gridbridge.scheduler.sitecalls`): a site that hangs, raises or answers garbage is marked
degraded and skipped, never aborting the tick or delaying another site by more than the
deadline. Each phase owns its own state; the phases share only ``_tick.World``.

One tick (``_loop.Reconciler.tick``). Each arrow from submitting on to placing renews the
lease; health runs after every tick, however it ended::

    lease --> submitting -> cancelling -> polling -> migrating -> sweeping -> placing -> health
    acquire   SUBMITTING    native jobs   one         running      now and     offers ->  written
    or renew  attempts ->   of jobs the   batched     attempts:    then:       plan() ->  when it
    (or skip  their sites   user          poll a      stay, or     owned() ->  new        changes
    the tick)    |          cancelled     site        stop to      adopt or    attempts;
                 |                          |         move         cancel      requeued:
                 |                          |         (weigh)                  stay/move
                 +--------------------> ending <--------+--------------------------+
                                 the attempt's end (a stopped move: MOVED), its job's next
                                 state and its ledger row (duration x price), in one transaction

The modules, one phase each: ``_lease`` (the lease), ``_submitting``, ``_cancelling``,
``_polling``, ``_ending``, ``_migrating`` (the decision is :mod:`gridbridge.scheduler.moves`,
pure), ``_sweeping``, ``_placing`` (with ``_explaining`` and ``_progress``, its parts),
``_health``; ``_timings`` keeps how long ticks and phases take (for ``/metrics``);
``_tick`` holds what they share (``World``, ``TickReport``) and ``_loop`` the
:class:`Reconciler` that composes them. Migrating fetches the tick's offers only when some
running job may move, and hands them to placing, which places what the moves free and leaves
out, per job, the offer it moved off (and every drained site).
"""

from __future__ import annotations

from ._lease import LEASE, LeaseLost
from ._loop import Reconciler
from ._tick import TickReport
from ._timings import TIMINGS

__all__ = ["LEASE", "TIMINGS", "LeaseLost", "Reconciler", "TickReport"]
