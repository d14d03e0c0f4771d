"""Ranking: each class's feasible offers, best first by its policy, in one flat array.

Invariant: a ranking depends only on the class's scores (:mod:`._score`), so it is made once
per class and round. Ties are broken the same way everywhere: by the policy's own measure,
then finish or cost, then site and offer key; costs equal to a billionth of a dollar are
equal. A long list of offers is ranked a little at first and deeper on demand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._classes import JobClass
from ._offers import Array, Offers, Static
from ._score import Rows, score_rows

COST_DIGITS = 9
"""Costs equal to a billionth of a dollar count as the same cost (float noise is not a reason)."""
_CENT = 0.01
_MINUTE_S = 60.0
_TOP = 96
"""How many ranked offers a class keeps at first; it ranks them all again if it runs out."""
_RANKED = 1 << 22
"""How many (class, offer) pairs are ranked at first; beyond, each class ranks its first few
(at least ``_TOP``) and ranks deeper when one of its jobs gets that far."""
_CHUNK = 256
"""Classes scored together in one set of array operations."""


def _primary(k: JobClass, rows: Rows, r: int) -> Array:
    """What the class's policy minimises first, per offer (inf where infeasible)."""
    ok = rows.ok[r]
    if k.policy.name == "fastest":
        score = np.round(rows.finish[r], 6)
    elif k.policy.name == "balanced" and ok.any():
        score = np.round(_balanced(rows.cost[r], rows.finish[r], ok, k.policy.weight), 12)
    else:
        score = np.round(rows.cost[r], COST_DIGITS)
    return np.where(ok, score, np.inf)


def rank(k: JobClass, o: Offers, rows: Rows, r: int, top: int | None) -> NDArray[np.intp]:
    """The class's feasible offers (before capacity), best first by its policy: the first
    ``top`` (with every offer tied with the last of them), or all."""
    primary = _primary(k, rows, r)
    if top is not None and primary.size > top:
        kth = np.partition(primary, top - 1)[top - 1]
        idx = np.flatnonzero((primary <= kth) & rows.ok[r])
    else:
        idx = np.flatnonzero(rows.ok[r])
    if idx.size == 0:
        return idx
    cost = np.round(rows.cost[r][idx], COST_DIGITS)
    finish = np.round(rows.finish[r][idx], 6)
    name = o.order[idx]
    if k.policy.name == "fastest":
        keys: tuple[Any, ...] = (name, cost, finish)
    elif k.policy.name == "balanced":
        keys = (name, finish, cost, primary[idx])
    else:
        keys = (name, finish, cost)
    ranked: NDArray[np.intp] = idx[np.lexsort(keys)]
    return ranked


def _rank_rows(ks: Sequence[JobClass], o: Offers, rows: Rows, depth: int
               ) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.bool_]]:
    """The first ``depth`` offers of each class's ranking (as :func:`rank` orders them), one
    row per class, with how many of them are feasible and whether that is all there are.

    One sort by each policy's own measure (a partial one when ``depth`` is short of the
    offers); only rows where that ties on a feasible offer are sorted again by the
    tie-breaks (finish or cost, then site and key)."""
    cost = np.round(rows.cost, COST_DIGITS)
    finish = np.round(rows.finish, 6)
    first, second, third = cost.copy(), finish.copy(), cost.copy()
    for r, k in enumerate(ks):
        if k.policy.name == "fastest":
            first[r], second[r] = finish[r], cost[r]
        elif k.policy.name == "balanced":
            first[r] = _primary(k, rows, r)
            second[r], third[r] = cost[r], finish[r]
    first = np.where(rows.ok, first, np.inf)
    n = first.shape[1]
    cut = 0 < depth < n
    if cut:
        idx = np.argpartition(first, depth - 1, axis=1)[:, :depth]
        idx = np.take_along_axis(idx, np.argsort(np.take_along_axis(first, idx, 1), 1), 1)
    else:
        idx = np.argsort(first, axis=1)
    head = np.take_along_axis(first, idx, axis=1)
    tied = ((head[:, 1:] == head[:, :-1]) & (head[:, 1:] < np.inf)).any(axis=1)
    if cut:  # the last one kept ties with one left out
        last = head[:, -1:]
        tied |= (last[:, 0] < np.inf) & ((first == last).sum(axis=1) > 1)
    if tied.any():
        name = np.broadcast_to(o.order, (int(tied.sum()), n))
        idx[tied] = np.lexsort((name, third[tied], second[tied], first[tied]),
                               axis=-1)[:, :idx.shape[1]]
    feasible = rows.ok.sum(axis=1)
    return idx, np.minimum(feasible, idx.shape[1]), feasible <= idx.shape[1]


def _balanced(cost: Array, finish: Array, ok: NDArray[np.bool_], weight: float) -> Array:
    best_cost, best_time = float(cost[ok].min()), float(finish[ok].min())
    out: Array = (weight * (cost + _CENT) / (best_cost + _CENT)
                  + (1 - weight) * (finish + _MINUTE_S) / (best_time + _MINUTE_S))
    return out


@dataclass
class Rankings:
    """Every class's feasible offers best first, in one flat array: class ``k``'s are
    ``offer[start[k]:start[k] + length[k]]``, the first ``length[k]`` of its ranking (all of
    them once ``complete[k]``), and ``cost`` holds its expected cost on each. Slot 0 holds the
    sentinel offer (index ``len(offers)``), which never fits."""

    offer: NDArray[np.intp]
    cost: Array
    start: NDArray[np.intp]
    length: NDArray[np.intp]
    complete: list[bool]
    size: int

    @classmethod
    def of(cls, classes: Sequence[JobClass], o: Offers, now: datetime, static: Static
           ) -> Rankings:
        n = len(o.items)
        depth = n
        if len(classes) * n > _RANKED:  # the first few of each now, deeper if a job gets there
            depth = min(n, max(_TOP, _RANKED // len(classes)))
        offer, cost = [np.array([n], dtype=np.intp)], [np.array([np.inf])]
        lengths, complete = [np.zeros(0, dtype=np.intp)], []
        for start in range(0, len(classes), _CHUNK):
            chunk = classes[start:start + _CHUNK]
            rows = score_rows(chunk, o, now, static)
            idx, count, whole = _rank_rows(chunk, o, rows, depth)
            keep = np.arange(idx.shape[1]) < count[:, None]
            offer.append(idx[keep])
            cost.append(np.take_along_axis(rows.cost, idx, axis=1)[keep])
            lengths.append(count)
            complete += whole.tolist()
        length = np.concatenate(lengths)
        flat = np.concatenate(offer)
        return cls(flat, np.concatenate(cost), 1 + np.cumsum(length) - length, length,
                   complete, flat.size)

    def deepen(self, k: int, klass: JobClass, o: Offers, now: datetime, static: Static
               ) -> None:
        """Rank class ``k`` deeper (its first offers as before) and keep it at the end."""
        rows = score_rows([klass], o, now, static)
        depth = min(len(o.items), 4 * max(int(self.length[k]), _TOP))
        ranked = rank(klass, o, rows, 0, depth)[:depth]
        end = self.size + ranked.size
        if end > self.offer.size:
            grow = max(end, 2 * self.offer.size) - self.offer.size
            self.offer = np.concatenate([self.offer, np.zeros(grow, dtype=np.intp)])
            self.cost = np.concatenate([self.cost, np.zeros(grow)])
        self.offer[self.size:end] = ranked
        self.cost[self.size:end] = rows.cost[0][ranked]
        self.start[k], self.length[k], self.size = self.size, ranked.size, end
        self.complete[k] = int(rows.ok[0].sum()) <= ranked.size
