"""Compiled planning kernels (numba): each block's increments, the order inside each block,
each block's cursors and the row streams.

Each kernel computes exactly what its pure-numpy reference computes (:mod:`mixindex.plan.fixed`,
:mod:`mixindex.plan.rng`, :mod:`mixindex.plan.rows`, ``ChunkTask.cursors``), so the output is the
same on every machine (S6); the tests compare them position by position. All but the increments
are integer arithmetic only; the increments make the same IEEE operations as numpy, one at a
time (numba does not let LLVM fuse a multiply and an add unless asked to). Kernels release the
GIL and are cached on disk after their first compilation. Only the planner imports this module,
and only when it plans: ``import mixindex`` and the reader never load numba.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from mixindex.plan.rng import _ROUND_MUL, _ROUND_XOR, GOLDEN, block_keys

__all__ = ["block_cursors", "increments_between", "order_blocks", "stream_rows"]

# Globals are frozen into the compiled code as uint64 constants: every operand of the uint64
# arithmetic below is uint64 (a signed operand would turn it into floating point).
_GOLD = np.uint64(GOLDEN)
_C1 = np.uint64(0xBF58476D1CE4E5B9)
_C2 = np.uint64(0x94D049BB133111EB)
_M1, _M2, _M3, _M4 = _ROUND_MUL
_X1, _X2, _X3, _X4 = _ROUND_XOR
_0 = np.uint64(0)
_1 = np.uint64(1)
_27 = np.uint64(27)
_30 = np.uint64(30)
_31 = np.uint64(31)
_32 = np.uint64(32)
_64 = np.uint64(64)
_LOW32 = np.uint64(0xFFFFFFFF)

# Row orders as the kernel knows them.
SEQUENTIAL, SHUFFLED, GROUPED = 0, 1, 2
# Positions the row kernel walks at a time (its scratch arrays stay in the core's cache).
TILE = 2048


@njit(nogil=True, cache=True)
def _mix64(x):  # type: ignore[no-untyped-def]
    z = x + _GOLD
    z = (z ^ (z >> _30)) * _C1
    z = (z ^ (z >> _27)) * _C2
    return z ^ (z >> _31)


@njit(nogil=True, cache=True)
def _below(r, m):  # type: ignore[no-untyped-def]
    # floor(r * m / 2^64) for m < 2^32: an index in [0, m) from 64 random bits.
    return ((r >> _32) * m + (((r & _LOW32) * m) >> _32)) >> _32


@njit(nogil=True, cache=True)
def _feistel(k, v, w):  # type: ignore[no-untyped-def]
    a = (w + _1) >> _1
    b = w >> _1
    down_a = _64 - a
    down_b = _64 - b
    left = v >> b
    right = v & ((_1 << b) - _1)
    f = ((((k ^ _X1) ^ right) * _M1) >> down_a) ^ left
    left, right = right, f
    f = ((((k ^ _X2) ^ right) * _M2) >> down_b) ^ left
    left, right = right, f
    f = ((((k ^ _X3) ^ right) * _M3) >> down_a) ^ left
    left, right = right, f
    f = ((((k ^ _X4) ^ right) * _M4) >> down_b) ^ left
    left, right = right, f
    return (left << b) | right


@njit(nogil=True, cache=True)
def _permute(k, v, n, w):  # type: ignore[no-untyped-def]
    v = _feistel(k, v, w)
    while v >= n:
        v = _feistel(k, v, w)
    return v


@njit(nogil=True, cache=True)
def _order_blocks(keys, counts, out):  # type: ignore[no-untyped-def]
    nblocks, size = out.shape
    for b in range(nblocks):
        row = out[b]
        p = 0
        for s in range(counts.shape[1]):
            c = counts[b, s]
            # Many sources, few slots each: a few stores without a loop to mispredict (the
            # ones past c are written over by the next sources).
            if c <= 2 and p + 2 <= size:
                row[p] = s
                row[p + 1] = s
            elif c <= 8 and p + 8 <= size:
                for q in range(8):
                    row[p + q] = s
            else:
                for q in range(c):
                    row[p + q] = s
            p += c
        key = keys[b]
        for i in range(size - 1, 0, -1):
            u = np.uint64(i)
            j = np.int64(_below(_mix64(key + u * _GOLD), u + _1))
            t = row[i]
            row[i] = row[j]
            row[j] = t


@njit(nogil=True, cache=True)
def _increments(table, left, right, t, total, out):  # type: ignore[no-untyped-def]
    for b in range(out.shape[0]):
        lo = table[left[b]]
        hi = table[right[b]]
        frac = t[b]
        whole = total[b]
        scale = np.float64(whole)
        top = 0
        high = -1.0
        given = np.int64(0)
        for s in range(out.shape[1]):
            # One IEEE operation at a time, as numpy makes them (see the module's docstring).
            step = hi[s] - lo[s]
            w = lo[s] + step * frac
            w = max(w, 0.0)
            v = np.int64(np.floor(w * scale))
            if w > 0.0 and v < 1:
                v = np.int64(1)
            out[b, s] = v
            given += v
            if w > high:
                high = w
                top = s
        out[b, top] += whole - given


@njit(nogil=True, cache=True)
def _block_cursors(counts, cursor, out):  # type: ignore[no-untyped-def]
    run = cursor.copy()
    for b in range(out.shape[0]):
        for s in range(out.shape[1]):
            out[b, s] = run[s]
            run[s] += counts[b, s]


@njit(nogil=True, cache=True)
def _plain_rows(src, cursor, lengths, row_keys, widths, shuffled, row, epoch):  # type: ignore[no-untyped-def]
    # Tile by tile: first the sources' states walk the positions (cheap, sequential), and note
    # for each position what to permute; then the permutations run with no state between
    # positions, so that the processor overlaps them, and the few values that fall outside
    # their range are walked again together rather than one unpredictable branch at a time.
    # (Grouped order walks in a loop of its own: its state in this loop made it 1.5x slower.)
    k = lengths.shape[0]
    e = np.zeros(k, dtype=np.int64)  # epoch of the next element
    i = np.zeros(k, dtype=np.int64)  # its index inside the epoch
    ekey = np.zeros(k, dtype=np.uint64)  # row key ^ mix64(epoch)
    seen = np.zeros(k, dtype=np.bool_)
    key = np.empty(TILE, dtype=np.uint64)
    val = np.empty(TILE, dtype=np.uint64)
    lim = np.empty(TILE, dtype=np.uint64)
    bits = np.empty(TILE, dtype=np.uint64)
    redo = np.empty(TILE, dtype=np.int64)
    spare = np.empty((3, TILE), dtype=np.uint64)
    for lo in range(0, src.shape[0], TILE):
        hi = min(src.shape[0], lo + TILE)
        for p in range(lo, hi):
            s = src[p]
            if not seen[s]:
                seen[s] = True
                e[s] = cursor[s] // lengths[s]
                i[s] = cursor[s] - e[s] * lengths[s]
                ekey[s] = row_keys[s] ^ _mix64(np.uint64(e[s]))
            elif i[s] == lengths[s]:
                e[s] += 1
                i[s] = 0
                ekey[s] = row_keys[s] ^ _mix64(np.uint64(e[s]))
            q = p - lo
            if shuffled:
                key[q] = ekey[s]
                lim[q] = lengths[s]
                bits[q] = widths[s]
            val[q] = i[s]
            epoch[p] = e[s]
            i[s] += 1
        m = hi - lo
        if shuffled:
            _permute_tile(key, val, lim, bits, m, redo, spare)
        for q in range(m):
            row[lo + q] = val[q]


@njit(nogil=True, cache=True)
def _grouped_rows(  # type: ignore[no-untyped-def]
    src, cursor, lengths, row_keys, first, ngroups, nbits, gsize, goffset, gbits, row, epoch
):
    # As _plain_rows, with each source's place in its epoch's group order besides. (The walk
    # is written out in both loops: through a shared compiled helper they ran ten times slower.)
    k = lengths.shape[0]
    e = np.zeros(k, dtype=np.int64)  # epoch of the next element
    i = np.zeros(k, dtype=np.int64)  # its index inside the epoch
    ekey = np.zeros(k, dtype=np.uint64)  # row key ^ mix64(epoch)
    seen = np.zeros(k, dtype=np.bool_)
    # slot j of the epoch's group order, its group g, offset t inside it, g's key
    j = np.zeros(k, dtype=np.int64)
    g = np.zeros(k, dtype=np.int64)
    t = np.zeros(k, dtype=np.int64)
    gkey = np.zeros(k, dtype=np.uint64)
    key = np.empty(TILE, dtype=np.uint64)
    val = np.empty(TILE, dtype=np.uint64)
    lim = np.empty(TILE, dtype=np.uint64)
    bits = np.empty(TILE, dtype=np.uint64)
    base = np.zeros(TILE, dtype=np.uint64)
    redo = np.empty(TILE, dtype=np.int64)
    spare = np.empty((3, TILE), dtype=np.uint64)
    for lo in range(0, src.shape[0], TILE):
        hi = min(src.shape[0], lo + TILE)
        for p in range(lo, hi):
            s = src[p]
            if not seen[s]:
                seen[s] = True
                e[s] = cursor[s] // lengths[s]
                i[s] = cursor[s] - e[s] * lengths[s]
                ekey[s] = row_keys[s] ^ _mix64(np.uint64(e[s]))
                _seek(s, i[s], ekey[s], first, ngroups, nbits, gsize, gbits, j, g, t, gkey)
            elif i[s] == lengths[s]:
                e[s] += 1
                i[s] = 0
                ekey[s] = row_keys[s] ^ _mix64(np.uint64(e[s]))
                _seek(s, 0, ekey[s], first, ngroups, nbits, gsize, gbits, j, g, t, gkey)
            elif t[s] == gsize[first[s] + g[s]]:
                _seek(s, -1, ekey[s], first, ngroups, nbits, gsize, gbits, j, g, t, gkey)
            q = p - lo
            c = first[s] + g[s]
            key[q] = gkey[s]
            val[q] = t[s]
            lim[q] = gsize[c]
            bits[q] = gbits[c]
            base[q] = goffset[c]
            t[s] += 1
            epoch[p] = e[s]
            i[s] += 1
        m = hi - lo
        _permute_tile(key, val, lim, bits, m, redo, spare)
        for q in range(m):
            row[lo + q] = base[q] + val[q]


@njit(nogil=True, cache=True)
def _permute_tile(key, val, lim, bits, m, redo, spare):  # type: ignore[no-untyped-def]
    """``val[q] = _permute(key[q], val[q], lim[q], bits[q])`` for ``q < m``."""
    for q in range(m):
        val[q] = _feistel(key[q], val[q], bits[q])
    todo = 0
    for q in range(m):
        redo[todo] = q
        todo += val[q] >= lim[q]
    # The values that fell outside their range go round again, gathered side by side first:
    # a pass over contiguous values is vectorised, one through the index list is not (and
    # costs three times as much an element).
    k, v, w = spare[0], spare[1], spare[2]
    while todo:
        for c in range(todo):
            q = redo[c]
            k[c] = key[q]
            v[c] = val[q]
            w[c] = bits[q]
        for c in range(todo):
            v[c] = _feistel(k[c], v[c], w[c])
        left = 0
        for c in range(todo):
            q = redo[c]
            val[q] = v[c]
            redo[left] = q
            left += v[c] >= lim[q]
        todo = left


@njit(nogil=True, cache=True)
def _seek(s, at, ekey, first, ngroups, nbits, gsize, gbits, j, g, t, gkey):  # type: ignore[no-untyped-def]
    """Point source s's group state at index ``at`` of the epoch keyed ``ekey`` (-1: the start
    of the next group in the epoch's order)."""
    n = np.uint64(ngroups[s])
    w = nbits[s]
    base = first[s]
    if at < 0:
        j[s] += 1
        g[s] = np.int64(_permute(ekey, np.uint64(j[s]), n, w))
        t[s] = 0
    else:
        jj = 0
        gg = np.int64(_permute(ekey, _0, n, w))
        while at >= gsize[base + gg]:
            at -= gsize[base + gg]
            jj += 1
            gg = np.int64(_permute(ekey, np.uint64(jj), n, w))
        j[s] = jj
        g[s] = gg
        t[s] = at
    gkey[s] = _mix64(ekey ^ (np.uint64(g[s]) * _GOLD))


def order_blocks(
    seed: int, first_block: int, counts: np.ndarray, block_size: int, dtype: np.dtype
) -> np.ndarray:
    """Each block's slots in shuffled order: :func:`mixindex.plan.rng.shuffle_blocks`."""
    keys = block_keys(seed, np.arange(first_block, first_block + len(counts), dtype=np.uint64))
    out = np.empty((len(counts), block_size), dtype=dtype)
    _order_blocks(keys, np.ascontiguousarray(counts, dtype=np.int64), out)
    return out


def increments_between(
    table: np.ndarray,
    segments: tuple[np.ndarray, np.ndarray, np.ndarray],
    length: int,
    unit: int,
    out: np.ndarray,
) -> None:
    """Each block's increments (into ``out``, blocks x K, int64) from where it falls between the
    schedule points (``segments``: :meth:`~mixindex.spec.schedule.WeightScheduler.segments_at`),
    in one pass: what :func:`mixindex.plan.fixed.increments` gives for those weights and blocks
    of ``length``."""
    left, right, t = segments
    total = np.full(len(t), length * unit, dtype=np.int64)
    _increments(np.ascontiguousarray(table, dtype=np.float64), left, right, t, total, out)


def block_cursors(counts: np.ndarray, cursor: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Where each block starts in each source's stream (blocks x K), from the cursors at the
    first block: :attr:`mixindex.plan.planner.ChunkTask.cursors`, written straight in ``dtype``
    (one pass, where numpy's running sum down the columns takes several and is slow)."""
    out = np.empty(counts.shape, dtype=dtype)
    _block_cursors(counts, np.ascontiguousarray(cursor, dtype=np.int64), out)
    return out


def stream_rows(
    src: np.ndarray,
    cursor: np.ndarray,
    lengths: np.ndarray,
    row_keys: np.ndarray,
    widths: np.ndarray,
    mode: int,
    groups: tuple[np.ndarray, ...],
    dtypes: tuple[np.dtype, np.dtype],
) -> tuple[np.ndarray, np.ndarray]:
    """Row and epoch of each position (:func:`mixindex.plan.rows.stream_rows`), written
    straight into arrays of the given dtypes (which must hold every value)."""
    row = np.empty(src.size, dtype=dtypes[0])
    epoch = np.empty(src.size, dtype=dtypes[1])
    if mode == GROUPED:
        first, ngroups, nbits, size, offset, bits = groups
        _grouped_rows(
            src, cursor, lengths, row_keys, first, ngroups, nbits, size, offset, bits, row, epoch
        )
    else:
        _plain_rows(src, cursor, lengths, row_keys, widths, mode == SHUFFLED, row, epoch)
    return row, epoch
