"""Exact apportionment (S2): how many slots each source gets in each block.

Every source carries what it is owed, ``e_s = Q_s - A_s`` (cumulative target minus cumulative
count). In a block of ``L`` slots a source with weight ``w_s`` is owed ``x_s = e_s + L * w_s`` and
gets ``c_s`` slots with ``|x_s - c_s| <= beta``, ``beta = 1 - 1 / (2K - 2)``: the bound of the
chairman assignment problem (Tijdeman, 1980), achievable for any sequence of weights.

The integers ``M_s = ceil(x_s - beta)`` are owed now; ``R_s = floor(x_s + beta)`` may be served
now without running ahead; ``R_s - M_s`` is 0 or 1. The ``L - sum(M)`` slots left go to the
optional slots with the earliest deadline: the first later block by whose end the source's
target will have grown past the slack, read off the exact future weights (earliest deadline
first, Tijdeman's rule, at block granularity). Deadlines past ``HORIZON`` blocks count as equal.
Ties go to the source owed most, then to the lower source id.

A source whose weight falls to zero gets nothing while it is zero, and the fraction of an example
it was still owed (or had been served ahead) is written off: it is handed to the active sources in
proportion to their weights, so the sum of what is owed stays zero. The target with these
write-offs, ``Q'``, is what the bound is kept against; :class:`WrittenOffTargets` rebuilds it from
counts already planned, for ``max dev`` and the report.
"""

from __future__ import annotations

import math

import numpy as np

# Blocks looked ahead for deadlines. Deadlines further away count as equal (then the source owed
# most goes first). 4 to 64 blocks gave the same worst deviation on every schedule we tried.
HORIZON = 8


def bound(num_sources: int) -> float:
    """The largest ``|A_s - Q_s|`` the apportionment allows at a block boundary."""
    if num_sources <= 1:
        return 0.0
    return 1.0 - 1.0 / (2 * num_sources - 2)


class Apportioner:
    """Stateful per-block apportionment; feed it blocks in order."""

    def __init__(self, num_sources: int) -> None:
        self.num_sources = num_sources
        self.beta = bound(num_sources)
        self.owed = np.zeros(num_sources, dtype=np.float64)
        self.active = np.zeros(num_sources, dtype=bool)

    def counts(self, weights: np.ndarray, length: int) -> np.ndarray:
        """Counts for the first ``len(weights) - HORIZON`` rows of ``weights``.

        ``weights`` is ``(blocks + HORIZON, K)``, the weights at each block's start; the last
        ``HORIZON`` rows are only read to set deadlines. Every block has ``length`` slots.
        Returns int64 ``(blocks, K)``; every row sums to ``length``.
        """
        rows, k = weights.shape
        nblocks = rows - HORIZON
        out = np.zeros((max(nblocks, 0), k), dtype=np.float64)
        if k == 1:
            out[:, 0] = length
            return out.astype(np.int64)
        beta = self.beta
        ids = np.arange(k)
        inc_all = length * weights
        active_all = weights > 0
        # A row differs from the one before it only where a weight turns on or off.
        changed = np.ones(rows, dtype=bool)
        changed[1:] = (active_all[1:] != active_all[:-1]).any(axis=1)
        owed = self.owed
        for j in range(nblocks):
            inc = inc_all[j]
            if changed[j]:
                active = active_all[j]
                gone = self.active & ~active
                if gone.any():
                    written_off = math.fsum(owed[gone].tolist())
                    owed[gone] = 0.0
                    if written_off != 0.0:
                        w = weights[j]
                        inc = inc + written_off * (w / math.fsum(w.tolist()))
                self.active = active
            # Inactive sources have owed 0 and increment 0, so with beta < 1 both roundings give
            # 0 for them without masking.
            x = owed + inc
            must = np.maximum(np.ceil(x - beta), 0.0)
            may = np.floor(x + beta)
            need = length - int(must.sum())
            if need > 0:
                cand = ids[may > must]
                if cand.size == need:
                    must[cand] += 1.0
                elif cand.size > need:
                    xc = x[cand]
                    due = _deadlines(inc_all, j + 1, cand, must[cand] + beta - xc)
                    must[cand[_earliest(due, -xc, need)]] += 1.0
                else:
                    must = _fill(must, x, self.active, need)
            elif need < 0:
                must = _fill(must, x, self.active, need)
            out[j] = must
            owed = x - must
        self.owed = owed
        return out.astype(np.int64)


class WrittenOffTargets:
    """The cumulative target ``Q'`` that the apportionment owes, write-offs included, rebuilt
    from planned counts and the schedule alone; feed it blocks in order.

    ``Q'_s`` grows by ``length * w_s`` in every block. In a block where a source's weight is 0
    and was positive in the block before, its ``Q'_s`` is set to its count so far, ``A_s``, and
    the difference ``Q'_s - A_s`` (what it was still owed, or had been served ahead) is added to
    the active sources' ``Q'`` in proportion to their weights, as :class:`Apportioner` does.
    """

    def __init__(self, num_sources: int) -> None:
        self.target = np.zeros(num_sources)
        self.served = np.zeros(num_sources)
        self.active = np.zeros(num_sources, dtype=bool)

    def advance(self, counts: np.ndarray, weights: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """``Q'`` at the end of each of these blocks, ``(blocks, K)``.

        ``counts`` and ``weights`` are ``(blocks, K)``, ``lengths`` the blocks' lengths.
        """
        nb, k = weights.shape
        if nb == 0:
            return np.zeros((0, k))
        served = self.served + np.cumsum(counts, axis=0, dtype=np.float64)
        plain = self.target + np.cumsum(weights * np.asarray(lengths)[:, None], axis=0)
        on = weights > 0
        before = np.vstack([self.active[None, :], on[:-1]])
        dropped = before & ~on
        # The write-offs shift every later Q', so only the blocks with one need a step of their
        # own: a loop over write-offs, not over blocks.
        shifts = np.zeros_like(plain)
        shift = np.zeros(k)
        for j in np.flatnonzero(dropped.any(axis=1)).tolist():
            gone = dropped[j]
            start = (plain[j - 1] if j else self.target) + shift
            owed = start[gone] - (served[j - 1] if j else self.served)[gone]
            w = weights[j]
            step = math.fsum(owed.tolist()) * (w / math.fsum(w.tolist()))
            step[gone] = -owed
            shifts[j] = step
            shift = shift + step
        out = plain + np.cumsum(shifts, axis=0)
        self.target, self.served, self.active = out[-1], served[-1], on[-1]
        return np.asarray(out)


def _deadlines(inc: np.ndarray, first: int, cand: np.ndarray, slack: np.ndarray) -> np.ndarray:
    """For each candidate source, the first block from ``first`` on (1-based) by whose end its
    increments, summed from block ``first``, exceed ``slack``; ``HORIZON + 1`` when none does
    within the horizon.

    The sums start afresh at block ``first``, so the result never depends on where a window of
    blocks began (S6).
    """
    due = np.ones(cand.size, dtype=np.int64)
    later = np.flatnonzero(inc[first, cand] <= slack)
    if later.size:
        # Rare with weights that are large against one example per block: sources that will
        # not fall due in the next block.
        sums = np.cumsum(inc[first : first + HORIZON, cand[later]], axis=0)
        over = sums > slack[later][None, :]
        due[later] = np.where(over.any(axis=0), np.argmax(over, axis=0) + 1, HORIZON + 1)
    return due


def _earliest(due: np.ndarray, key: np.ndarray, m: int) -> np.ndarray:
    """Indices of the first ``m`` items in the order (due, key, index): the earliest deadline,
    then the source owed most, then the lowest id (candidates are in ascending id order).

    Only the set matters, so partitions (linear time) replace a full sort; ties are settled by
    index explicitly, so the set is the same whatever algorithm numpy uses.
    """
    if due.min() != due.max():
        d = np.partition(due, m - 1)[m - 1]
        first = np.flatnonzero(due < d)
        tied = np.flatnonzero(due == d)
        return np.concatenate([first, tied[_smallest(key[tied], m - first.size)]])
    return _smallest(key, m)


def _smallest(key: np.ndarray, m: int) -> np.ndarray:
    """Indices of the ``m`` smallest keys, the lowest indices among equal keys."""
    if m >= key.size:
        return np.arange(key.size)
    v = np.partition(key, m - 1)[m - 1]
    below = np.flatnonzero(key < v)
    return np.concatenate([below, np.flatnonzero(key == v)[: m - below.size]])


def _fill(c: np.ndarray, x: np.ndarray, active: np.ndarray, need: int) -> np.ndarray:
    """Repair a block whose owed slots do not fit: add (or remove) slots where most (least) owed.

    Not reached when the bound holds; it keeps the counts valid (right sum, zero where the weight
    is zero, never negative) whatever happens.
    """
    c = c.copy()
    ids = np.flatnonzero(active)
    while need != 0:
        gap = x[ids] - c[ids]
        if need > 0:
            pick = ids[np.lexsort((ids, -gap))][:need]
            c[pick] += 1
            need -= pick.size
        else:
            pos = ids[c[ids] > 0]
            gap = x[pos] - c[pos]
            pick = pos[np.lexsort((pos, gap))][:-need]
            c[pick] -= 1
            need += pick.size
    return c
