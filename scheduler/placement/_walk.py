"""The walk: jobs in placement order, each to the first offer down its class's ranking that
still has the room, its site a slot and its team and project the money.

Invariant: capacity, slots and budgets only ever shrink within a round, so an offer that once
failed a walk's job fails every later one: each walk's pointer into its ranking only moves
on, and no object is made per (job, offer) pair. What the jobs take comes off the walk's own
counts of capacity, slots and users' room (``limits.max_running_per_user``) and off the
budgets it is handed (the round's copy). A job whose user has no room left is passed over
without moving its walk: the offers are as good for the next job of the walk.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

from ._classes import Groups
from ._offers import Offers, Static
from ._ranking import Rankings

_WINDOW = 256
"""Jobs whose next offers are looked up together."""
_AHEAD = 16
"""How far down its class's ranking each job of a window looks first."""
_KEEP = 16
_GROW = 4
"""How many of the offers that fit when its window starts a job keeps to try in turn."""


class Walker:
    """Jobs in order, each to the first offer down its class's ranking that still has the
    cpus/memory/gpus, its site a slot and its team and project the money it needs.

    Capacity, slots and budgets only shrink, so an offer that cannot take a walk's job now
    never takes one later: each walk keeps a pointer into its ranking that only moves on.
    The jobs go in windows::

        window ──> numpy: the next _AHEAD offers of each job's walk from its pointer and which
                   of them fit now; the first _KEEP that fit are the job's candidates; the
                   walk's pointer moves to the first that fits
               ──> each job in turn: the first of its candidates that still fits (jobs before
                   it in the window may have taken some); none: a numpy search down the rest
                   of its ranking (ranked deeper if need be); what it takes comes off
    """

    def __init__(self, o: Offers, g: Groups, rk: Rankings, left: dict[str, float],
                 site_slots: Mapping[str, int], user_room: list[float] | None = None) -> None:
        self.o, self.g, self.rk, self.left = o, g, rk, left
        self.user_room = user_room
        """Per user (``g.users``), attempts it may still start (None: no limit)."""
        self.free = (o.cpus.tolist(), o.memory.tolist(), o.gpus.tolist())
        self.arrays = tuple(np.append(a, -np.inf) for a in (o.cpus, o.memory, o.gpus))
        self.dirty: list[int] = []
        self.slots = [float(site_slots.get(s, math.inf)) for s in o.sites]
        self.limited = any(s in site_slots for s in o.sites)
        self.slots_np = np.append(np.asarray(self.slots, dtype=np.float64), 0.0)
        self.site_np = np.append(o.site_idx, len(o.sites))
        res = [g.classes[k].spec.resources for k in g.walk_class]
        self.need = ([float(r.cpus) for r in res], [r.memory_gb for r in res],
                     [float(r.gpus) for r in res])
        self.need_np = tuple(np.asarray(x, dtype=np.float64) for x in self.need)
        self.gpus = any(self.need[2])
        self.walk_class = np.asarray(g.walk_class, dtype=np.intp)
        self.ptr = np.zeros(len(g.walk_class), dtype=np.intp)
        self.dead = [False] * len(g.walk_class)
        sets = sorted(set(g.walk_keys))
        self.keysets = sets if any(sets) else []
        number = {keys: i for i, keys in enumerate(sets)}
        self.keyset = np.asarray([number[keys] for keys in g.walk_keys], dtype=np.intp)

    def run(self, now: datetime, static: Static
            ) -> tuple[list[int], list[tuple[int, int, float]]]:
        """Each job's offer (-1: none) and the placements in order: (position in the order,
        offer, expected cost)."""
        self.now, self.static = now, static
        order, walk_of = self.g.order, self.g.walk_of
        walks = [walk_of[i] for i in order]
        walks_np = np.asarray(walks, dtype=np.intp)
        self.choice = [-1] * len(order)
        self.events: list[tuple[int, int, float]] = []
        for s in range(0, len(order), _WINDOW):
            e = s + _WINDOW
            self._place(s, order[s:e], walks[s:e], self._look(walks_np[s:e]))
        return self.choice, self.events

    def _sync(self) -> None:
        """Bring the arrays up to date with what the jobs took since the last time."""
        if self.dirty:
            d = self.dirty
            for free, arr in zip(self.free, self.arrays, strict=True):
                arr[d] = [free[x] for x in d]
            d.clear()
            if self.limited:
                self.slots_np[:-1] = self.slots

    def _fits(self, walks: NDArray[np.intp], flat: NDArray[np.intp]) -> NDArray[np.bool_]:
        """Which of the ranked offers at ``flat`` (one row per walk) fit its jobs now."""
        (cpus, mem, gpus), (c, m, g) = self.arrays, self.need_np
        cand = self.rk.offer[flat]
        fit = (cpus[cand] >= c[walks, None]) & (mem[cand] >= m[walks, None])
        if self.gpus:
            fit &= gpus[cand] >= g[walks, None]
        if self.limited:
            fit &= self.slots_np[self.site_np[cand]] > 0
        if self.keysets:
            caps = np.asarray([min((self.left[b] for b in keys), default=math.inf)
                               for keys in self.keysets])
            fit &= self.rk.cost[flat] <= caps[self.keyset[walks], None]
        return fit

    def _look(self, walks: NDArray[np.intp]) -> tuple[list[int], list[float], list[int],
                                                       list[int]]:
        """The window's candidates: offers and costs of all its jobs end to end, where each
        job's begin, and where down its ranking a job's search goes on if none is left.

        Each job looks ``_AHEAD`` offers down from its walk's pointer; one that finds none
        there (other walks filled them since) looks four times as far on from there, and so
        on to the end of its ranking."""
        self._sync()
        rows = np.arange(len(walks))
        start, length = self.ptr[walks], self.rk.length[self.walk_class[walks]]
        resume = start.copy()
        count = np.zeros(len(walks), dtype=np.intp)
        found_rows, found_at = [], []
        width = _AHEAD
        while rows.size:
            r, at, resume[rows] = self._scan(walks[rows], resume[rows], width)
            found_rows.append(rows[r])
            found_at.append(at)
            count[rows] = np.bincount(r, minlength=rows.size)
            rows = rows[(count[rows] == 0) & (resume[rows] < length[rows])]
            width *= _GROW
        at = np.concatenate(found_at)
        if len(found_at) > 1:
            at = at[np.argsort(np.concatenate(found_rows), kind="stable")]
        bounds = np.zeros(len(walks) + 1, dtype=np.intp)
        np.cumsum(count, out=bounds[1:])
        return (self.rk.offer[at].tolist(), self.rk.cost[at].tolist(), bounds.tolist(),
                resume.tolist())

    def _scan(self, walks: NDArray[np.intp], p0: NDArray[np.intp], width: int
              ) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp]]:
        """Positions ``p0`` to ``p0 + width`` of each walk's ranking: the first ``_KEEP``
        that fit now (as row numbers and places in the flat ranking, row by row), and where
        a search goes on past them. The walks' pointers move to the first that fits."""
        k = self.walk_class[walks]
        length = self.rk.length[k]
        at = p0[:, None] + np.arange(width)
        end = np.minimum(p0 + width, length)
        flat = np.where(at < length[:, None], self.rk.start[k][:, None] + at, 0)
        fit = self._fits(walks, flat)
        first = np.argmax(fit, axis=1)
        self.ptr[walks] = np.where(fit[np.arange(len(walks)), first], p0 + first, end)
        if width > _KEEP:
            seen = np.cumsum(fit, axis=1)
            over = seen[:, -1] > _KEEP
            end = np.where(over, p0 + np.argmax(seen > _KEEP, axis=1), end)
            fit &= seen <= _KEEP
        r, c = np.nonzero(fit)
        return r, flat[r, c], end

    def _place(self, s: int, jobs: list[int], walks: list[int],
               look: tuple[list[int], list[float], list[int], list[int]]) -> None:
        cands, costs, bounds, resume = look
        (free_c, free_m, free_g), (need_c, need_m, need_g) = self.free, self.need
        slots, site_of, left, keysets = self.slots, self.o.site_of, self.left, self.g.walk_keys
        dead, dirty, choice, events = self.dead, self.dirty, self.choice, self.events
        room, user_of = self.user_room, self.g.user_of
        for t, i in enumerate(jobs):
            w = walks[t]
            if dead[w] or (room is not None and room[user_of[i]] <= 0):
                continue
            c, m, g, keys = need_c[w], need_m[w], need_g[w], keysets[w]
            x, price = -1, 0.0
            for u in range(bounds[t], bounds[t + 1]):
                j = cands[u]
                if (free_c[j] >= c and free_m[j] >= m and free_g[j] >= g
                        and slots[site_of[j]] > 0):
                    price = costs[u]
                    for b in keys:
                        if price > left[b]:
                            break
                    else:
                        x = j
                        break
            if x < 0:
                x, price = self._search(w, resume[t])
                if x < 0:
                    continue
            free_c[x] -= c
            free_m[x] -= m
            free_g[x] -= g
            dirty.append(x)
            slots[site_of[x]] -= 1
            for b in keys:
                left[b] -= price
            if room is not None:
                room[user_of[i]] -= 1
            choice[i] = x
            events.append((s + t, x, price))

    def _search(self, w: int, s: int) -> tuple[int, float]:
        """The first offer from position ``s`` of walk ``w``'s ranking that fits now, and
        its cost: (-1, 0) when none does (and none will: the walk is done)."""
        self._sync()
        rk, k = self.rk, int(self.walk_class[w])
        walk = np.full(1, w, dtype=np.intp)
        s = max(s, int(self.ptr[w]))
        while True:
            a, n = int(rk.start[k]), int(rk.length[k])
            if s < n:
                fit = self._fits(walk, np.arange(a + s, a + n)[None, :])[0]
                q = int(np.argmax(fit))
                if fit[q]:
                    self.ptr[w] = s + q
                    return int(rk.offer[a + s + q]), float(rk.cost[a + s + q])
                s = n
            if rk.complete[k]:
                self.dead[w] = True
                return -1, 0.0
            rk.deepen(k, self.g.classes[k], self.o, self.now, self.static)
