"""Iteration over a :class:`~mixindex.read.dataset.MixedDataset`: the state lives here.

A dataset is a stateless map from positions to examples (like grain's ``MapDataset``); each
``iter(ds)`` returns a new :class:`MixIterator` that owns its place in the mix (like grain's
``DatasetIterator``), so two iterators never move each other and loading a state into one
leaves every later ``iter(ds)`` starting at 0. The iterator reads ``batch_size`` positions per
grouped read, from wherever it stands: resuming costs one read, nothing is replayed.

>>> # it = iter(ds); next(it); state = it.state_dict()
>>> # again = iter(ds); again.load_state_dict(state); next(again)  # the example after
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from mixindex.read.state import load_state, make_state

if TYPE_CHECKING:
    from mixindex.read.dataset import MixedDataset

__all__ = ["ITER_BATCH", "MixIterator"]

# Positions read per grouped take while iterating: large enough that the per-batch costs
# (lookup, grouping, one take per record batch) vanish, small enough to start at once.
ITER_BATCH = 1024


class MixIterator(Iterator[dict[str, Any]]):
    """One pass over a dataset's positions (local to its shard), from ``start`` to the end.

    ``state_dict()`` is the place after the last example returned; ``load_state_dict(state)``
    moves this iterator (and nothing else) there. Use ``ds.iter(...)`` or ``iter(ds)``.
    """

    def __init__(self, ds: MixedDataset, start: int, batch_size: int) -> None:
        self._ds = ds
        self._len = len(ds)
        self._batch_size = batch_size
        self._next = start  # the local position of the next example
        self._batch: list[dict[str, Any]] = []  # examples read ahead, from position _lo
        self._lo = start

    @property
    def position(self) -> int:
        """The local position of the next example (``len(ds)`` once the pass is over)."""
        return self._next

    def __iter__(self) -> MixIterator:
        return self

    def __next__(self) -> dict[str, Any]:
        p = self._next
        k = p - self._lo
        if not 0 <= k < len(self._batch):
            if p >= self._len:
                self._batch = []
                raise StopIteration
            hi = min(p + self._batch_size, self._len)
            self._batch = self._ds.__getitems__(np.arange(p, hi, dtype=np.int64))
            self._lo, k = p, 0
        # Moved before returning: once the caller holds the example, the state is past it.
        self._next = p + 1
        return self._batch[k]

    def state_dict(self) -> dict[str, Any]:
        """A small, versioned, JSON-able state: where this iterator goes on
        (see :mod:`mixindex.read.state`)."""
        ds = self._ds
        return make_state(ds.digest, self._next, ds.num_examples, ds.sharding, ds.seed)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Go on from a state of :meth:`state_dict` (taken from any iterator of this index and
        sharding, in any process); the next example is the one after the state's.

        Raises :class:`~mixindex.errors.StateError` (printing both values) for a state of another
        index or sharding, or a dataset's state (which has no position); the iterator then
        stays where it was.
        """
        ds = self._ds
        self._next = load_state(state, ds.digest, ds.num_examples, ds.sharding)
        self._batch = []

    def __getstate__(self) -> dict[str, Any]:
        # The examples read ahead are read again where the iterator lands: pickle the place only.
        return {**self.__dict__, "_batch": []}

    def __repr__(self) -> str:
        return f"MixIterator(position {self._next:,} of {self._len:,}, {self._ds!r})"
