"""The paper's online policies: Greedy (its strawman) and Uniform Progress.

Invariant: a policy decides from the :class:`View` alone and keeps per-run state (a fresh one
per run); once idling or spot could no longer be made good by on-demand it commits to
on-demand to the end (the Safety Net).
"""

from __future__ import annotations

from ._grid import IDLE, OD
from ._replay import View

__all__ = ["Greedy", "UniformProgress"]


class Greedy:
    """The paper's strawman: any spot until preempted, idle otherwise, and on-demand to the
    end once idling (or spot) could no longer be made good by on-demand."""

    def __init__(self) -> None:
        self.committed = False

    def decide(self, v: View) -> int:
        if self.committed:
            return OD
        zone = self._zone(v)
        action = IDLE if zone is None else zone
        if not v.safe(action):
            self.committed = True
            return OD
        return action

    def _zone(self, v: View) -> int | None:
        if v.location >= 0:
            return v.location
        return next((z for z, a in enumerate(v.available) if a), None)


class UniformProgress(Greedy):
    """The paper's policy: keep progress on the line ``job x elapsed / deadline``; take any
    spot (Taking Risks, then Exploitation); when idle and behind, on-demand; once on
    on-demand, stay until two restarts ahead of the line (Hysteresis); Safety Net as greedy.

    The line here is :meth:`_line`: (work to do, by when), so a subclass can plan around a
    last tier that takes the end of the job.
    """

    def _line(self, v: View) -> tuple[float, float]:
        return v.grid.work, v.grid.ticks * v.grid.m

    def decide(self, v: View) -> int:
        if self.committed:
            return OD
        work, end = self._line(v)
        done = v.grid.work - v.remaining

        def expected(x: float) -> float:
            return 0.0 if work <= 0 or end <= 0 else work * min(x, end) / end

        zone = self._zone(v)
        if v.location >= 0:
            action = v.location
        elif v.location == OD and done < expected(v.elapsed + 2 * v.grid.r):
            action = OD
        elif zone is not None:
            action = zone
        elif done < expected(v.elapsed):
            action = OD
        else:
            action = IDLE
        if action != OD and not v.safe(action):
            self.committed = True
            return OD
        return action
