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

    lease ---> submitting --> cancelling --> polling -----> sweeping ---> placing ----> health
    acquire    SUBMITTING     the native     one batched    now and       offers ->     written
    or renew   attempts ->    jobs of jobs   poll a site:   then:         plan() ->     when it
    (or skip   their sites    the user       RUNNING,       owned() ->    new attempts  changes
    the tick)     |           cancelled      ended, LOST,   adopt or      -> submitting
                  |                          requeued ----------------->  stay or move
                  |                             |                             |
                  +-------------------------> ending <------------------------+
                                 the attempt's end, its job's next state and its
                                 ledger row (duration x price), in one transaction

The modules, one phase each: ``_lease`` (the lease), ``_submitting``, ``_cancelling``,
``_polling``, ``_ending``, ``_sweeping``, ``_placing`` (with ``_explaining`` and ``_progress``,
its parts), ``_health``; ``_tick`` holds what they share (``World``, ``TickReport``) and
``_loop`` the :class:`Reconciler` that composes them.

A new phase (the coming ``migration``) plugs in the same way: a module ``_migrating.py`` with
a class that takes the ``World`` (and the phases it hands work to, e.g. ``Cancelling``,
``Ending``), owns its own caches, and has a ``run(report, ...)``; ``Reconciler.__init__``
builds it and ``Reconciler.tick`` calls it between two ``renew()`` calls (after polling, whose
view of the attempts it needs; before placing, which places what it frees), and the diagram
above gains its box.
"""

from __future__ import annotations

from ._lease import LEASE, LeaseLost
from ._loop import Reconciler
from ._tick import TickReport

__all__ = ["LEASE", "LeaseLost", "Reconciler", "TickReport"]
