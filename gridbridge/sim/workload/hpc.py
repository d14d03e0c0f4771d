"""A simulated HPC cluster: N cores, one FCFS queue with EASY backfilling on the users' estimates.

Invariant: a job in the queue starts only when :meth:`EasyCluster.schedule` says so, and
backfilling never delays the queue head past the reservation it holds (its *shadow time*,
computed from the running jobs' estimated ends)::

    schedule(now):
      start queue heads while they fit
      head blocked -> shadow = earliest estimated end at which enough cores are free,
                      extra  = cores free at shadow beyond what the head needs
      each later job that fits now starts if it ends (by estimate) before shadow,
      or if it uses no more than ``extra`` cores (which it then takes from ``extra``)

:meth:`EasyCluster.predicted_start` answers what an offer's ``queue_wait_s`` needs: when a new
job of a given size would start if everything ran to its estimate and the queue were served in
order (no backfilling), as ``squeue --start`` estimates it -- an upper bound on EASY's start.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

__all__ = ["EasyCluster", "QueueItem"]


@dataclass(eq=False)
class QueueItem:
    """A job in the cluster: its width and estimated wall time; ``key`` is the caller's."""

    key: object
    cores: int
    estimate_s: float
    start_s: float | None = field(default=None)

    def estimated_end(self, now: float) -> float:
        """When it is expected to end; a job past its estimate is expected to end now."""
        assert self.start_s is not None
        return max(self.start_s + self.estimate_s, now)


class EasyCluster:
    """``cores`` cores, an FCFS queue and EASY backfilling (see the module docstring)."""

    def __init__(self, cores: int) -> None:
        if cores < 1:
            raise ValueError(f"a cluster needs at least one core, got {cores}")
        self.cores = cores
        self.free = cores
        self.queue: list[QueueItem] = []
        self.running: dict[int, QueueItem] = {}

    def submit(self, item: QueueItem) -> None:
        """Append a job to the queue (it starts at a later :meth:`schedule`)."""
        if item.cores > self.cores:
            raise ValueError(f"a job of {item.cores} cores never fits a {self.cores}-core cluster")
        self.queue.append(item)

    def finish(self, item: QueueItem) -> None:
        """A running job ended (done, or taken off): its cores are free again."""
        del self.running[id(item)]
        self.free += item.cores

    def schedule(self, now: float) -> list[QueueItem]:
        """Start what EASY starts at ``now``; returns the started jobs in start order."""
        started: list[QueueItem] = []
        while self.queue and self.queue[0].cores <= self.free:
            started.append(self._start(self.queue.pop(0), now))
        if not self.queue or self.free == 0:
            return started
        shadow, extra = self._reservation(self.queue[0], now)
        kept = [self.queue[0]]
        for item in self.queue[1:]:
            if item.cores <= self.free and (now + item.estimate_s <= shadow
                                            or item.cores <= extra):
                if now + item.estimate_s > shadow:
                    extra -= item.cores
                started.append(self._start(item, now))
            else:
                kept.append(item)
        self.queue = kept
        return started

    def reservation(self, now: float) -> float | None:
        """The queue head's shadow time (None: nothing is waiting)."""
        return self._reservation(self.queue[0], now)[0] if self.queue else None

    def _reservation(self, head: QueueItem, now: float) -> tuple[float, int]:
        avail = self.free
        for end, cores in sorted((r.estimated_end(now), r.cores) for r in self.running.values()):
            avail += cores
            if avail >= head.cores:
                return end, avail - head.cores
        raise AssertionError("the head fits the cluster, so some end frees enough cores")

    def _start(self, item: QueueItem, now: float) -> QueueItem:
        item.start_s = now
        self.free -= item.cores
        self.running[id(item)] = item
        return item

    def predicted_start(self, cores: int, estimate_s: float, now: float) -> float:
        """When a job of ``cores`` submitted now would start, serving the queue in order with
        every job running to its estimate (``math.inf`` never: it must fit the cluster)."""
        if cores > self.cores:
            raise ValueError(f"a job of {cores} cores never fits a {self.cores}-core cluster")
        if not self.queue and cores <= self.free:
            return now
        ends = [(r.estimated_end(now), r.cores) for r in self.running.values()]
        heapq.heapify(ends)
        free, t = self.free, now
        for need, est in [*((q.cores, q.estimate_s) for q in self.queue), (cores, estimate_s)]:
            while free < need:
                end, released = heapq.heappop(ends)
                t, free = max(t, end), free + released
            heapq.heappush(ends, (t + est, need))
            free -= need
        return t
