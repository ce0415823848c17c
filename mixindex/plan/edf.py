"""The per-block apportionment loop: earliest deadline first over integer targets (S2).

Written once, in plain Python over numpy arrays: :func:`compiled` gives it compiled by numba
(nogil, cached on disk after the first build), and the plain function is the reference the
compiled one is tested against (and what a small mix runs, without loading numba). All arithmetic is
on int64 (see :mod:`mixindex.plan.fixed`), so both give the same counts on every machine.

For source ``s`` at block ``j``: ``e_s`` is what it is owed (target minus count, in units),
``x_s = e_s + u_s`` with this block's increment. The count ``c_s`` must keep
``|x_s - c_s * unit| <= beta``: ``M_s`` slots are forced, one more (``R_s = M_s + 1``) is
allowed. The block's remaining slots go to the allowed ones whose deadline comes first: the first
later block by whose end the source would fall more than ``beta`` behind without that slot. This
is Tijdeman's rule for the chairman assignment problem, at block granularity, with exact
deadlines: since a slot-by-slot schedule within the bound exists for any weights (Tijdeman,
1980), and earliest deadline first is optimal for unit jobs, every block boundary stays within
``beta = 1 - 1/(2K-2)``. Ties go to the source owed most, then to the lowest id.

When a source's weight falls to 0, every source's owed fraction is settled (``e = 0``): the
targets restart from the counts, which is Tijdeman's starting point again. (Handing one source's
fraction to the others instead can push a single source past one example.) A deadline is
therefore never later than the next such block; one more than ``CAP`` blocks after the job first
competed counts as none.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import numpy as np

INF = 1 << 62
# The deadline of a source that is not a candidate in a block: after every real one.
NONE = INF + 1
# A deadline further than this many blocks from where its slot first competed counts as none.
CAP = 1 << 20
# Ranges a selection counts values into at a time.
BUCKETS = 256
MAX64 = (1 << 63) - 1


def edf_blocks(
    u: np.ndarray,
    reset: np.ndarray,
    base: int,
    j0: int,
    j1: int,
    length: int,
    unit: int,
    beta: int,
    skip_reset: int,
    state: np.ndarray,
    out: np.ndarray,
    want: np.ndarray,
) -> int:
    """Apportion blocks ``j0 .. j1-1``; returns the block it stopped at (``j1`` when done).

    ``u`` (W x K) holds the increments of blocks ``base .. base+W-1``, ``reset`` whether each of
    them starts by settling every owed fraction (not for block ``skip_reset``: already done).
    ``state`` (6 x K, int64) is updated in place: owed ``e``, ``served`` since the last
    settlement, the cached deadline ``dl`` of job ``dljob``, and ``since``, the block where job
    ``candjob`` first competed. ``out`` row ``j - j0`` receives block ``j``'s counts.

    A deadline past the window is left to the caller: the loop stops before changing anything
    for that block, with ``want`` (3 x K) holding, for each such source, the slack still to
    cover from block ``base + W`` on, the job, and its ``since`` (others -1; ``want[0]`` is all
    -1 on entry). The caller fills in ``dl``/``dljob``, sets ``want`` back to -1 and calls again
    from the returned block with ``skip_reset`` set to it.
    """
    k = u.shape[1]
    width = u.shape[0]
    e = state[0]
    served = state[1]
    dl = state[2]
    dljob = state[3]
    since = state[4]
    candjob = state[5]
    inverse = 1.0 / unit
    must = np.empty(k, dtype=np.int64)
    x = np.empty(k, dtype=np.int64)
    cand = np.empty(k, dtype=np.int64)
    due = np.empty(k, dtype=np.int64)
    scratch = np.empty(k, dtype=np.int64)
    hist = np.empty(BUCKETS, dtype=np.int64)
    for j in range(j0, j1):
        i = j - base
        if reset[i] and j != skip_reset:
            for s in range(k):
                e[s] = 0
                served[s] = 0
                dljob[s] = -1
                candjob[s] = -1
        need = length
        ncand = 0
        # Most deadlines are the next block or cached: found here, for every candidate, whether
        # this block needs them or not (a deadline depends only on the job: one found early is
        # right later). The rest are listed in scratch, for _deadlines to walk the window.
        nxt = i + 1
        row = min(nxt, width - 1)
        open_ = nxt < width and not reset[row]
        at = base + nxt
        longer = 0
        for s in range(k):
            xs = e[s] + u[i, s]
            x[s] = xs
            m = 0
            if xs > beta:
                m = _ceil_div(xs - beta, unit, inverse)
            must[s] = m
            need -= m
            due[s] = NONE
            if xs + beta >= (m + 1) * unit:
                cand[ncand] = s
                ncand += 1
                job = served[s] + m + 1
                if candjob[s] != job:
                    candjob[s] = job
                    since[s] = j
                cached = dljob[s] == job
                hit = open_ & (at <= since[s] + CAP) & (u[row, s] > beta - (xs - m * unit))
                fresh = hit & (not cached)
                d = dl[s] if cached else (at if hit else -1)
                due[s] = d
                dl[s] = at if fresh else dl[s]
                dljob[s] = job if fresh else dljob[s]
                scratch[longer] = s
                longer += d < 0
        if 0 < need < ncand:
            unresolved = _deadlines(u, reset, base, i, unit, beta, scratch[:longer], x, must,
                                    state, due, want)  # fmt: skip
            if unresolved:
                # A deadline kept from an earlier block may lie past the window, later than an
                # unresolved one: the unresolved are looked up unless enough are due inside.
                inside = 0
                for c in range(ncand):
                    inside += due[cand[c]] < base + width
                if inside < need:
                    return j
                want[0, :] = -1  # not looked up after all
            _take_earliest(due, x, need, must, scratch, hist)
        elif need == ncand and need > 0:
            for c in range(ncand):
                must[cand[c]] += 1
        elif need != 0:
            _repair(must, x, u[i], unit, need)
        for s in range(k):
            c = must[s]
            out[j - j0, s] = c
            e[s] = x[s] - c * unit
            served[s] += c
    return j1


def _deadlines(
    u: np.ndarray,
    reset: np.ndarray,
    base: int,
    i: int,
    unit: int,
    beta: int,
    longer: np.ndarray,
    x: np.ndarray,
    must: np.ndarray,
    state: np.ndarray,
    due: np.ndarray,
    want: np.ndarray,
) -> int:
    """The deadlines of the sources ``longer`` lists into ``due`` (and the cache in ``state``),
    walking window rows ``i + 1`` on; the number left unresolved, named in ``want``."""
    width = u.shape[0]
    served = state[1]
    dl = state[2]
    dljob = state[3]
    since = state[4]
    unresolved = 0
    for q in range(longer.shape[0]):
        s = longer[q]
        job = served[s] + must[s] + 1
        slack = beta - (x[s] - must[s] * unit)
        acc = 0
        d = -1
        t = i + 1
        while t < width:
            if reset[t] or base + t > since[s] + CAP:
                d = INF
                break
            acc += u[t, s]
            if acc > slack:
                d = base + t
                break
            t += 1
        if d < 0:
            want[0, s] = slack - acc
            want[1, s] = job
            want[2, s] = since[s]
            unresolved += 1
            due[s] = INF
        else:
            dl[s] = d
            dljob[s] = job
            due[s] = d
    return unresolved


def _ceil_div(a: int, b: int, inverse: float) -> int:
    """``ceil(a / b)`` for ``0 < a`` and ``0 < b``, exactly, without an integer division (slow
    next to the rest of the loop): a float estimate, then corrected in integers."""
    q = int(a * inverse)
    while q * b < a:
        q += 1
    while q > 0 and (q - 1) * b >= a:
        q -= 1
    return q


def _take_earliest(
    due: np.ndarray,
    x: np.ndarray,
    need: int,
    count: np.ndarray,
    scratch: np.ndarray,
    hist: np.ndarray,
) -> None:
    """Give one slot each to the ``need`` sources first in the order (deadline, most owed,
    lowest id); ``due`` holds each source's deadline, ``NONE`` for those not competing (at least
    ``need`` do). ``scratch`` holds at least ``len(due)`` values, ``hist`` at least ``BUCKETS``.

    Only the set matters, so two selections (linear time) replace a sort: the need-th deadline,
    then, among the sources due at it, the owed amount that fills the rest. Each threshold is a
    value, the same whatever the selection algorithm, so the set is too. Its passes over the
    sources have no branches that depend on the values.
    """
    k = due.shape[0]
    last = _deadline_rank(due, need - 1, scratch, hist)
    earlier = 0
    tied = 0
    for s in range(k):
        d = due[s]
        earlier += d < last
        scratch[tied] = x[s]
        tied += d == last
    # Among the tied, the rank-th smallest owed amount is the least that gets a slot: all
    # above it do, and of those equal to it the first ``equal`` by id.
    rank = tied - (need - earlier)
    cut, below, equal = _select(scratch[:tied], rank, hist)
    equal = below + equal - rank
    for s in range(k):
        d = due[s]
        xs = x[s]
        tie = d == last
        first_equal = tie & (xs == cut) & (equal > 0)
        count[s] += (d < last) | (tie & (xs > cut)) | first_equal
        equal -= first_equal


def _deadline_rank(due: np.ndarray, rank: int, scratch: np.ndarray, hist: np.ndarray) -> int:
    """The ``rank``-th smallest deadline (from 0). Most deadlines lie within a few blocks of
    the earliest: a count per block finds it, unless it lies ``BUCKETS - 1`` or more blocks
    past the earliest, among the few selected then."""
    n = due.shape[0]
    first = due[0]
    for c in range(n):
        first = min(first, due[c])
    top = BUCKETS - 1
    hist[:BUCKETS] = 0
    for c in range(n):
        hist[min(due[c] - first, top)] += 1
    d = 0
    while d < top and rank >= hist[d]:
        rank -= hist[d]
        d += 1
    if d < top:
        return int(first + d)
    far = 0
    for c in range(n):
        if due[c] - first >= top:
            scratch[far] = due[c]
            far += 1
    return _select(scratch[:far], rank, hist)[0]


def _select(values: np.ndarray, rank: int, hist: np.ndarray) -> tuple[int, int, int]:
    """The ``rank``-th smallest (from 0) of ``values``, which it reorders, how many values are
    smaller and how many equal it.

    The values are counted into ``BUCKETS`` ranges of equal width, and the range holding the
    rank is kept and divided again until it holds one value: few branches a processor could
    mispredict, unlike the comparisons of a quickselect.
    """
    n = values.shape[0]
    wanted = rank
    lo = values[0]
    hi = values[0]
    for c in range(n):
        lo = min(lo, values[c])
        hi = max(hi, values[c])
    while lo < hi:
        if lo < 0 and hi > MAX64 + lo:
            # The span does not fit in 64 bits (never owed amounts or deadlines).
            v = _quickselect(values[:n], rank)
            below = wanted - rank + np.sum(values[:n] < v)
            return v, int(below), int(np.sum(values[:n] == v))
        # Buckets of 2^shift values each cover lo .. hi.
        span = hi - lo
        shift = 0
        while (span >> shift) >= BUCKETS:
            shift += 1
        hist[:BUCKETS] = 0
        for c in range(n):
            hist[(values[c] - lo) >> shift] += 1
        d = 0
        while rank >= hist[d]:
            rank -= hist[d]
            d += 1
        kept = 0
        for c in range(n):
            v = values[c]
            values[kept] = v
            kept += (v - lo) >> shift == d
        n = kept
        lo = values[0]
        hi = values[0]
        for c in range(n):
            lo = min(lo, values[c])
            hi = max(hi, values[c])
    # The values left all equal lo; the ranks passed over are the smaller ones.
    return int(lo), wanted - rank, n


def _quickselect(values: np.ndarray, rank: int) -> int:
    """The ``rank``-th smallest (from 0) of ``values``, which it reorders, by comparisons."""
    lo, hi = 0, values.shape[0] - 1
    while lo < hi:
        pivot = values[(lo + hi) // 2]
        i, j = lo, hi
        while i <= j:
            while values[i] < pivot:
                i += 1
            while values[j] > pivot:
                j -= 1
            if i <= j:
                values[i], values[j] = values[j], values[i]
                i += 1
                j -= 1
        if rank <= j:
            hi = j
        elif rank >= i:
            lo = i
        else:
            break
    return int(values[rank])


def _repair(count: np.ndarray, x: np.ndarray, inc: np.ndarray, unit: int, need: int) -> None:
    """Make a block's counts sum right when its forced slots do not fit: add slots where the
    most is owed (remove where the least), among sources with increments, lowest id first.

    Never reached while the bound holds; it keeps the counts valid whatever happens.
    """
    k = count.shape[0]
    while need != 0:
        best = -1
        for s in range(k):
            if inc[s] <= 0 or (need < 0 and count[s] == 0):
                continue
            if best < 0:
                best = s
                continue
            gap = x[s] - count[s] * unit
            top = x[best] - count[best] * unit
            if (need > 0 and gap > top) or (need < 0 and gap < top):
                best = s
        if best < 0:
            return
        if need > 0:
            count[best] += 1
            need -= 1
        else:
            count[best] -= 1
            need += 1


_COMPILED: dict[str, Callable[..., Any]] = {}


def compiled(name: str = "edf_blocks") -> Callable[..., Any]:
    """:func:`edf_blocks` (or one of its helpers, by name) compiled by numba, calling the
    compiled helpers."""
    if not _COMPILED:
        import numba

        jit: Any = numba.njit(nogil=True, cache=True)
        # The same code, whose calls to the helpers resolve to their compiled versions (each
        # function is compiled at its first call, when every name below is in the scope).
        scope = dict(globals())
        for f in (
            _quickselect,
            _select,
            _deadlines,
            _deadline_rank,
            _take_earliest,
            _repair,
            _ceil_div,
            edf_blocks,
        ):
            clone = types.FunctionType(f.__code__, scope, f.__name__)
            clone.__qualname__ = f.__qualname__
            _COMPILED[f.__name__] = scope[f.__name__] = jit(clone)
    return _COMPILED[name]
