"""How far a mix can run: the block by which each source's cumulative target passes a count.

The planner sizes its arrays by an upper bound on the length of a ``first_exhausted`` or
``all_exhausted`` mix, so that bound must never be short. A source is surely exhausted once its
cumulative target ``Q_s = sum over blocks j of B * w_s(j B)`` passes its row count by more than
the apportionment's gap (below one example, S2) plus what write-offs can move it.

The sum is taken one schedule segment at a time, in closed form: constant weights between points
(``step``, and before the first / after the last point), an arithmetic series for ``linear``, and
the sum of cosines over an arithmetic progression for ``cosine``. So the cost follows the number
of schedule points, not how far away the last one is (a point at step 10^12 with blocks of 1 is
no slower than one at step 100). Short segments are summed block by block, exactly as planned.
Every closed-form sum is rounded toward safety by a relative margin far above float error.

:func:`targets_before` gives the planner's usual bound its targets up to the last schedule point
(block by block, bit for bit as before, up to a few million cells; in closed form past that).
:func:`length_bound` is the tight bound: the block where the targets pass, however early; the
planner uses it where the usual bound, which counts every block up to the last point, is too
large to accept.
"""

from __future__ import annotations

import math

import numpy as np

from mixindex.spec.schedule import WeightScheduler

# Segments of at most this many blocks are summed block by block.
DIRECT_BLOCKS = 4096
# Up to this many (blocks x sources), targets_before() sums block by block (about 0.1 s).
EXACT_CELLS = 1 << 22
# Float error of a segment's sum is below ~1e-14 of (blocks x the larger end weight); this margin
# is far larger, and moves a bound by a negligible fraction.
MARGIN = 1e-9


class CumulativeTargets:
    """Cumulative weight per source, ``F_s(m) = sum_{j < m} w_s(j B)``, piecewise in closed form.

    Regions of blocks: before the first point, between each pair of points, after the last one.
    """

    def __init__(self, scheduler: WeightScheduler, block_size: int) -> None:
        self.scheduler = scheduler
        self.b = block_size
        self.steps = [p.step for p in scheduler.points]
        self.table = np.array(
            [[p.weights[n] for n in scheduler.names] for p in scheduler.points], dtype=np.float64
        )
        # Block j is in region r when edges[r] <= j < edges[r + 1]; the last region never ends.
        self.edges = [0] + [-(-s // block_size) for s in self.steps]
        self.regions = len(self.steps) + 1

    def span(self, r: int) -> tuple[int, float]:
        """First block of region ``r`` and its number of blocks (``inf`` for the last)."""
        lo = self.edges[r]
        return lo, (self.edges[r + 1] - lo if r + 1 < self.regions else math.inf)

    def peak(self, r: int) -> np.ndarray:
        """The largest weight of each source in region ``r`` (weights are monotone in it)."""
        if r == 0 or r == self.regions - 1 or self.scheduler.interpolation == "step":
            return np.asarray(self.table[max(r - 1, 0)])
        return np.asarray(np.maximum(self.table[r - 1], self.table[r]))

    def partial(self, r: int, n: np.ndarray) -> np.ndarray:
        """``sum`` of each source's weight over the first ``n[s]`` blocks of region ``r``."""
        n = np.asarray(n, dtype=np.float64)
        if r == 0 or r == self.regions - 1 or self.scheduler.interpolation == "step":
            # Constant: the left point's weights (the first point's before it).
            return np.asarray(n * self.table[max(r - 1, 0)])
        lo, size = self.span(r)
        if size <= DIRECT_BLOCKS:
            w = self.scheduler.weights_at(np.arange(lo, lo + size, dtype=np.int64) * self.b)
            cum = np.vstack([np.zeros(w.shape[1]), np.cumsum(w, axis=0)])
            return cum[n.astype(np.int64), np.arange(w.shape[1])]
        left, right = self.steps[r - 1], self.steps[r]
        width = right - left
        a = lo * self.b - left  # exact: how far the region's first block starts past the point
        if self.scheduler.interpolation == "linear":
            tsum = (n * a + self.b * n * (n - 1) / 2) / width
        else:
            # sum_k (1 - cos(x0 + k h)) / 2, with sum_k cos(x0 + k h) in closed form; here
            # h = pi B / width <= pi / DIRECT_BLOCKS, so sin(h / 2) is far from 0.
            h = math.pi * self.b / width
            x0 = math.pi * a / width
            cos_sum = np.sin(n * h / 2) / math.sin(h / 2) * np.cos(x0 + (n - 1) * h / 2)
            tsum = n / 2 - cos_sum / 2
        w_left, w_right = self.table[r - 1], self.table[r]
        return np.asarray(n * w_left + (w_right - w_left) * tsum)


def blocks_to_reach(
    targets: CumulativeTargets, need: np.ndarray, *, first_only: bool
) -> np.ndarray:
    """Per source, a number of blocks after which ``F_s`` surely is at least ``need[s]``.

    ``inf`` where it never gets there. With ``first_only`` the search stops at the region where
    the first source gets there (the others get ``inf`` or a later count).
    """
    k = need.size
    out = np.full(k, np.inf)
    low = np.zeros(k)  # F at the start of the region, rounded down
    for r in range(targets.regions):
        lo, size = targets.span(r)
        todo = np.isinf(out)
        if math.isinf(size):
            w = targets.partial(r, np.ones(k)) * (1 - MARGIN)
            with np.errstate(divide="ignore", invalid="ignore"):
                more = np.where(w > 0, np.ceil(np.maximum(need - low, 0) / w), np.inf)
            out[todo] = lo + more[todo]
            break
        margin = MARGIN * targets.peak(r)
        end = low + targets.partial(r, np.full(k, size)) - margin * size
        hit = todo & (end >= need)
        if hit.any():
            ids = np.flatnonzero(hit)
            out[hit] = lo + _bisect(targets, r, low, need, margin, int(size), ids)
            if first_only:
                break
        low = np.where(todo, end, low)
        if not np.isinf(out).any():
            break
    return out


def _bisect(
    targets: CumulativeTargets,
    r: int,
    low: np.ndarray,
    need: np.ndarray,
    margin: np.ndarray,
    size: int,
    ids: np.ndarray,
) -> np.ndarray:
    """For the sources ``ids``, some ``n <= size`` with ``low + partial(n) - margin n >= need``.

    The lowered sum need not be monotone in ``n`` when a weight is tiny against the margin, but
    the search keeps ``hi`` where the condition holds, so what it returns is always safe.
    """
    lo_n = np.zeros(ids.size, dtype=np.int64)
    hi_n = np.full(ids.size, size, dtype=np.int64)
    # Bisect in blocks of the region; partial() takes one n per source, so pad the others.
    full = np.zeros(low.size)
    while (hi_n - lo_n > 1).any():
        mid = (lo_n + hi_n) // 2
        full[ids] = mid
        value = low[ids] + targets.partial(r, full)[ids] - margin[ids] * mid
        ok = value >= need[ids]
        hi_n = np.where(ok, mid, hi_n)
        lo_n = np.where(ok, lo_n, mid)
    return hi_n


def targets_before(
    scheduler: WeightScheduler, block_size: int, blocks: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each source's cumulative target, in examples, over the first ``blocks`` blocks: a value
    rounded down and one rounded up (the same value when summed block by block)."""
    k = len(scheduler.names)
    if blocks * k <= EXACT_CELLS:
        # Block by block, exactly as the planner reads the schedule.
        reached = np.zeros(k)
        for lo in range(0, blocks, 1 << 16):
            starts = np.arange(lo, min(blocks, lo + (1 << 16)), dtype=np.int64) * block_size
            reached += (block_size * scheduler.weights_at(starts)).sum(axis=0)
        return reached, reached
    targets = CumulativeTargets(scheduler, block_size)
    total = np.zeros(k)
    error = np.zeros(k)
    for r in range(targets.regions):
        lo, size = targets.span(r)
        n = min(size, max(blocks - lo, 0))
        if n:
            total += targets.partial(r, np.full(k, n))
            error += MARGIN * targets.peak(r) * n
    return block_size * (total - error), block_size * (total + error)


def length_bound(
    scheduler: WeightScheduler, block_size: int, lengths: np.ndarray, *, first_only: bool
) -> float:
    """An upper bound on the positions of a ``first_exhausted`` (``first_only``) or
    ``all_exhausted`` mix; ``inf`` when a source may never be exhausted.

    |A - Q| < 1 (S2), so a source is surely exhausted once its target passes n + 1; one more
    example covers rounding, and each schedule point may move a target by a write-off of the
    fractions owed to sources whose weight falls to 0 there (less than half the sources' worth).
    """
    k = len(scheduler.names)
    slack = 2.0 + (len(scheduler.points) - 1) * math.ceil(k / 2)
    need = (np.asarray(lengths, dtype=np.float64) + slack) / block_size
    blocks = blocks_to_reach(CumulativeTargets(scheduler, block_size), need, first_only=first_only)
    # One block more than needed: the mix ends inside the block where the target passes.
    return (float(blocks.min() if first_only else blocks.max()) + 1) * block_size
