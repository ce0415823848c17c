"""Row streams (S4): which row, of which epoch, each position of a chunk serves.

The k-th slot of a source, in position order, takes element ``cursor + k`` of its stream. Element
``e`` is row ``e mod n`` of epoch ``e div n`` (``n`` rows), in one of three orders:

* ``sequential``: the stored order;
* ``shuffled``: a fresh stateless permutation of all ``n`` rows per epoch (a Feistel network
  keyed by the source and the epoch, :func:`mixindex.plan.rng.permute_rows`);
* ``grouped``: a fresh permutation of the source's row groups (Parquet) or record batches (Arrow
  IPC) per epoch, keyed the same way, then a fresh permutation of the rows inside each group,
  keyed by the epoch and the group, so that an epoch reads each group in one run of rows.

:func:`stream_rows` runs the compiled kernel; :func:`reference_rows` is the same function in
plain numpy, for the tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mixindex.errors import PlanError
from mixindex.plan.rng import GOLDEN, domain_bits, mix64_array, permute_rows

__all__ = ["GroupTable", "mode_of", "reference_rows", "stream_rows"]

_U = np.uint64
_MODES = {"sequential": 0, "shuffled": 1, "grouped": 2}


def mode_of(row_order: str) -> int:
    """The kernel's number for a row order."""
    return _MODES[row_order]


@dataclass(frozen=True)
class GroupTable:
    """Every source's groups, end to end: source ``s`` owns entries ``first[s]`` to
    ``first[s] + ngroups[s]`` of ``size`` (rows), ``offset`` (first row) and ``bits`` (the width
    of its Feistel domain); ``nbits[s]`` is that width for its group count. Empty groups are
    left out (no row is in them)."""

    first: np.ndarray
    ngroups: np.ndarray
    nbits: np.ndarray
    size: np.ndarray
    offset: np.ndarray
    bits: np.ndarray

    @classmethod
    def of(
        cls,
        names: Sequence[str],
        lengths: Sequence[int],
        groups: Sequence[Sequence[int]] | None,
    ) -> GroupTable:
        """The table for sources of these lengths; ``groups`` None (or an empty entry): one
        group per source. PlanError if a source's groups do not add up to its length."""
        sizes: list[np.ndarray] = []
        for s, n in enumerate(lengths):
            g = groups[s] if groups is not None and len(groups[s]) else (n,)
            arr = np.array(g, dtype=np.int64)
            if (arr < 0).any() or int(arr.sum()) != int(n):
                raise PlanError(
                    f"dataset {names[s]!r} has row groups of {int(arr.sum())} rows in all but "
                    f"{n} rows; its files changed while they were read: build again"
                )
            sizes.append(arr)
        ngroups = np.array([int((a > 0).sum()) for a in sizes], dtype=np.int64)
        offsets = [np.cumsum(a) - a for a in sizes]
        size = np.concatenate([a[a > 0] for a in sizes])
        offset = np.concatenate([o[a > 0] for o, a in zip(offsets, sizes, strict=True)])
        return cls(
            first=np.concatenate([[0], np.cumsum(ngroups)[:-1]]).astype(np.int64),
            ngroups=ngroups,
            nbits=domain_bits(ngroups),
            size=size,
            offset=offset.astype(np.uint64),
            bits=domain_bits(size),
        )

    def arrays(self) -> tuple[np.ndarray, ...]:
        return (self.first, self.ngroups, self.nbits, self.size, self.offset, self.bits)


def group_keys(epoch_keys: np.ndarray, group: np.ndarray) -> np.ndarray:
    """The key of the permutation inside each group: ``mix64(epoch key ^ group * GOLDEN)``."""
    return mix64_array(epoch_keys ^ (np.asarray(group, dtype=np.uint64) * _U(GOLDEN)))


def stream_rows(
    src: np.ndarray,
    cursor: np.ndarray,
    lengths: np.ndarray,
    row_keys: np.ndarray,
    mode: int,
    table: GroupTable,
    dtypes: tuple[np.dtype, np.dtype] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Row and epoch of each position whose source is ``src``; ``cursor``: each source's first
    stream element in the chunk. The compiled kernel, one pass; ``dtypes`` (row, epoch; default
    uint64, int64) must hold every value."""
    from mixindex.plan.kernels import stream_rows as kernel

    return kernel(
        np.ascontiguousarray(src),
        np.asarray(cursor, dtype=np.int64),
        np.asarray(lengths, dtype=np.int64),
        np.asarray(row_keys, dtype=np.uint64),
        domain_bits(np.asarray(lengths)),
        mode,
        table.arrays(),
        dtypes or (np.dtype(np.uint64), np.dtype(np.int64)),
    )


def reference_rows(
    src: np.ndarray,
    cursor: np.ndarray,
    lengths: np.ndarray,
    row_keys: np.ndarray,
    mode: int,
    table: GroupTable,
    dtypes: tuple[np.dtype, np.dtype] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """What :func:`stream_rows` computes, in numpy: positions grouped by source (a stable sort
    keeps their order), whole arrays per step, then scattered back."""
    k = len(lengths)
    lengths = np.asarray(lengths, dtype=np.int64)
    per = np.bincount(src, minlength=k)
    order = np.argsort(src, kind="stable")
    ends = np.cumsum(per)
    element = np.arange(src.size, dtype=np.int64) + np.repeat(
        np.asarray(cursor, dtype=np.int64) - (ends - per), per
    )
    n = np.repeat(lengths, per)
    epoch = element // n
    index = (element - epoch * n).astype(np.uint64)
    keys = np.repeat(np.asarray(row_keys, dtype=np.uint64), per) ^ mix64_array(
        epoch.astype(np.uint64)
    )
    if mode == 1:
        index = permute_rows(keys, index, n, np.repeat(domain_bits(lengths), per))
    elif mode == 2:
        index = _grouped(np.repeat(np.arange(k), per), epoch, index, keys, table)
    row = np.empty(src.size, dtype=np.uint64)
    out_epoch = np.empty(src.size, dtype=np.int64)
    row[order] = index
    out_epoch[order] = epoch
    if dtypes is not None:
        return row.astype(dtypes[0]), out_epoch.astype(dtypes[1])
    return row, out_epoch


def _grouped(
    source: np.ndarray, epoch: np.ndarray, index: np.ndarray, keys: np.ndarray, t: GroupTable
) -> np.ndarray:
    """Index ``index`` of epoch ``epoch``'s grouped order, for each (source-sorted) position."""
    out = np.empty_like(index)
    pairs = np.unique(np.stack([source, epoch]), axis=1)
    for s, e in pairs.T:
        sel = np.flatnonzero((source == s) & (epoch == e))
        lo, g_n = int(t.first[s]), int(t.ngroups[s])
        sizes = t.size[lo : lo + g_n]
        ekey = keys[sel[0]]
        slots = np.arange(g_n, dtype=np.uint64)
        order = permute_rows(np.full(g_n, ekey, dtype=np.uint64), slots, g_n, t.nbits[s])
        ends = np.cumsum(sizes[order])
        j = np.searchsorted(ends, index[sel].astype(np.int64), side="right")
        g = order[j].astype(np.int64)
        inner = index[sel].astype(np.int64) - (ends[j] - sizes[g])
        gk = group_keys(np.full(sel.size, ekey, dtype=np.uint64), g)
        got = permute_rows(gk, inner.astype(np.uint64), sizes[g], t.bits[lo + g])
        out[sel] = t.offset[lo + g] + got
    return out
