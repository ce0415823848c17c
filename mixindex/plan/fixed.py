"""Fixed-point targets (S2, S6): each block's share of each source as an integer.

The apportionment compares what a source is owed with its count, at the bound
``beta = 1 - 1/(2K-2)``. In floating point the outcome of such a comparison could depend on
how a compiler orders or fuses the arithmetic (a fused multiply-add on one machine, not on
another). So one example is ``unit = (2K - 2) * 2**shift`` integer units, which makes
``beta * unit = (2K - 3) * 2**shift`` exact, and each block's increments are integers that sum to
exactly ``length * unit``. Everything after :func:`increments` is integer arithmetic.

:func:`increments` is the only place where a float turns into an integer: one IEEE multiply and
a floor per weight (numpy performs them one operation at a time, without contraction), so its
result is the same on every machine. A positive weight gets at least one unit (so "active" is
"has increments"); the few units the floors leave over (or take too many) go to the block's
largest weight, the lowest source id among equals. Planning runs its compiled twin,
:func:`mixindex.plan.kernels.increments_between`, which makes the same operations.
"""

from __future__ import annotations

import numpy as np

from mixindex.errors import PlanError

# Units of one block's increments stay below 2**UNIT_BITS, so that what a source is owed plus an
# increment, and the sums that look for deadlines, stay far inside int64.
UNIT_BITS = 60


def scale(num_sources: int, block_size: int) -> tuple[int, int]:
    """``(unit, beta_units)``: integer units per example and the bound in those units."""
    u = max(2 * num_sources - 2, 1)
    shift = UNIT_BITS - int(block_size).bit_length() - u.bit_length()
    # The units the floors leave over must be few against the largest share of a block.
    if shift < 2 + num_sources.bit_length():
        raise PlanError(
            f"{num_sources} sources with block_size {block_size} leave too little precision for "
            "exact apportionment; use fewer sources or a smaller block_size"
        )
    unit = u << shift
    beta = (u - 1) << shift if num_sources > 1 else 0
    return unit, beta


def increments(weights: np.ndarray, lengths: np.ndarray | int, unit: int) -> np.ndarray:
    """Integer increments ``(blocks, K)`` of the cumulative targets, in units.

    ``weights`` is ``(blocks, K)`` (each row normalised), ``lengths`` each block's length (or one
    for all). Each row sums to exactly ``length * unit``; zero weights give zero, positive
    weights at least one unit.
    """
    w = np.asarray(weights, dtype=np.float64)
    nb = w.shape[0]
    total = np.broadcast_to(np.asarray(lengths, dtype=np.int64), (nb,)) * np.int64(unit)
    out = np.floor(w * total.astype(np.float64)[:, None]).astype(np.int64)
    on = w > 0
    np.maximum(out, on.astype(np.int64), out=out)
    if nb:
        top = np.argmax(w, axis=1)
        rows = np.arange(nb)
        out[rows, top] += total - out.sum(axis=1)
    return out


def drops(on: np.ndarray, before: np.ndarray) -> np.ndarray:
    """For each row of ``on`` (blocks x K, a positive weight), whether a source that was on in
    the row before (``before`` for the first row) is off in it: where owed fractions are settled.
    """
    prev = np.vstack([np.asarray(before, dtype=bool)[None, :], on[:-1]])
    return np.asarray((prev & ~on).any(axis=1))
