"""Positions as callers give them, checked once: only integers are positions.

Python ints and numpy integers are positions, negative ones counting from the end; bools, floats,
strings and anything else are TypeError (``1.7`` is not position 1, ``'3'`` is not 3, ``True`` is
not 1); a position outside the mix is IndexError, whatever its size (``np.uint64(2**64 - 1)``
does not wrap to the last position, ``2**63`` does not overflow).

>>> check_position(-1, 10), check_positions([0, 9, -10], 10).tolist()
(9, [0, 9, 0])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["check_position", "check_positions", "is_position"]


def is_position(value: object) -> bool:
    """An int or numpy integer, and not a bool (``bool`` subclasses ``int``)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _out_of_range(value: Any, n: int) -> IndexError:
    return IndexError(f"position {value} is out of range for a mix of {n} examples")


def check_position(value: object, n: int) -> int:
    """One position in ``[-n, n)`` as an index in ``[0, n)``."""
    if not is_position(value):
        raise TypeError(f"a position is an int, not {type(value).__name__} ({value!r:.40})")
    p = int(value)  # type: ignore[call-overload]
    q: int = p + n if p < 0 else p
    if not 0 <= q < n:
        raise _out_of_range(p, n)
    return q


def check_positions(values: Sequence[Any] | np.ndarray, n: int) -> np.ndarray:
    """Many positions in ``[-n, n)`` as an int64 array of indices in ``[0, n)``, flattened."""
    if isinstance(values, np.ndarray):
        if values.dtype.kind == "O":
            return check_positions(values.reshape(-1).tolist(), n)
        if values.dtype.kind not in "iu":
            raise TypeError(f"positions are ints, not {values.dtype.name}")
        arr = values.reshape(-1)
    else:
        if not isinstance(values, Sequence):
            values = list(values)
        # Check what was given: numpy reads [1, True] as [1, 1] and [0, 2**63] as floats.
        for t in set(map(type, values)):
            if issubclass(t, (bool, np.bool_)) or not issubclass(t, (int, np.integer)):
                raise TypeError(f"positions are ints, not {t.__name__}")
        try:
            arr = np.asarray(values, dtype=np.int64)
        except OverflowError:  # past int64: out of range, compared as Python ints
            v = max(values, key=lambda v: abs(int(v)))
            raise _out_of_range(v, n) from None
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype.kind == "u":
        # Compared as unsigned: a uint64 past 2**63 must not wrap to a negative position.
        if arr.max() >= n:
            raise _out_of_range(arr[np.argmax(arr >= n)], n)
        return arr.astype(np.int64)
    pos = arr.astype(np.int64, copy=False)
    # min and max first: the common batch (no negative, none past the end) allocates nothing.
    if pos.min() < 0:
        pos = np.where(pos < 0, pos + n, pos)
    if pos.min() < 0 or pos.max() >= n:
        raise _out_of_range(arr[np.argmax((pos < 0) | (pos >= n))], n)
    return pos
