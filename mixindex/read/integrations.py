"""Glue for Hugging Face ``datasets``: a :class:`~mixindex.read.dataset.MixedDataset` as an
``IterableDataset`` whose ``state_dict()`` resumes in O(1).

PyTorch and Grain need no glue: the dataset is map-style (``__len__``, ``__getitem__``,
``__getitems__``, picklable, fork-safe) and a Grain ``RandomAccessDataSource`` (with batched
``_getitems`` and a ``repr`` that names the index by digest, which Grain checks on restore).

HF's own generator-backed iterables resume by replaying the examples of the current shard.
Here the examples iterable holds runs of positions and resumes at ``start + examples served``
with one grouped read, and its state carries the index digest and the sharding, which are
checked when a state is loaded. This module imports ``datasets`` (at the version the project
pins: it subclasses its examples-iterable base) and is imported only by
:meth:`MixedDataset.to_iterable_dataset`.

    >>> import mixindex
    >>> hf = mixindex.open("mix.mixindex").to_iterable_dataset()
    >>> examples = iter(hf)
    >>> next(examples)["text"], next(examples)["text"]
    ('def f0(): pass', 'def f1(): pass')
    >>> state = hf.state_dict()  # later, or in another process:
    >>> hf.load_state_dict(state)
    >>> next(iter(hf))
    {'text': 'text 0', '__source__': 'text'}
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import datasets
from datasets.iterable_dataset import _BaseExamplesIterable

from mixindex.errors import StateError

if TYPE_CHECKING:
    import numpy as np

    from mixindex.read.dataset import MixedDataset

__all__ = ["MixExamplesIterable", "to_iterable_dataset"]


def _runs(n: int, num_shards: int) -> list[tuple[int, int]]:
    if isinstance(num_shards, bool) or not isinstance(num_shards, int) or num_shards < 1:
        raise ValueError(f"num_shards = {num_shards!r} must be a whole number >= 1")
    num_shards = min(num_shards, max(n, 1))
    return [(k * n // num_shards, (k + 1) * n // num_shards) for k in range(num_shards)]


class MixExamplesIterable(_BaseExamplesIterable):  # type: ignore[misc]  # untyped base
    """Runs ``[lo, hi)`` of a dataset's positions, in order; HF's per-shard state, plus checks."""

    def __init__(self, ds: MixedDataset, runs: Sequence[tuple[int, int]]) -> None:
        super().__init__()
        self.ds = ds
        self.runs = [(int(lo), int(hi)) for lo, hi in runs]
        self._sleep_on_threads_shutdown = False

    def _identity(self) -> dict[str, Any]:
        sharding = self.ds.sharding
        return {
            "digest": self.ds.digest,
            "shard": None if sharding is None else sharding.to_dict(),
            "runs": [list(r) for r in self.runs],
        }

    def _init_state_dict(self) -> dict[str, Any]:
        self._state_dict = {
            "shard_idx": 0,
            "shard_example_idx": 0,
            "type": type(self).__name__,
            **self._identity(),
        }
        return self._state_dict

    def load_state_dict(self, state_dict: dict[str, Any]) -> dict[str, Any]:
        mine = self._identity()
        for key, what in (("digest", "index"), ("shard", "sharding"), ("runs", "num_shards")):
            if state_dict.get(key) != mine[key]:
                raise StateError(
                    f"the state was taken from another {what}: state {key} "
                    f"{state_dict.get(key)!r}, this dataset {mine[key]!r}; resume with the "
                    f"{what} the state was taken from"
                )
        loaded: dict[str, Any] = super().load_state_dict(state_dict)
        return loaded

    def __iter__(self) -> Iterator[tuple[int, dict[str, Any]]]:
        state = self._state_dict
        first = state["shard_idx"] if state else 0
        for lo, hi in self.runs[first:]:
            start = lo + (state["shard_example_idx"] if state else 0)
            for pos in range(start, hi, 1024):
                batch = self.ds.__getitems__(_arange(pos, min(pos + 1024, hi)))
                for key, example in enumerate(batch, pos):
                    if state:
                        state["shard_example_idx"] += 1
                    yield key, example
            if state:
                state["shard_idx"] += 1
                state["shard_example_idx"] = 0

    def shuffle_data_sources(self, generator: np.random.Generator) -> MixExamplesIterable:
        # The mix is shuffled when it is planned; a new epoch must not reorder it.
        return self

    def shard_data_sources(
        self, num_shards: int, index: int, contiguous: bool = True
    ) -> MixExamplesIterable:
        keep = self.split_shard_indices_by_worker(num_shards, index, contiguous=contiguous)
        return MixExamplesIterable(self.ds, [self.runs[i] for i in keep])

    def reshard_data_sources(self) -> MixExamplesIterable:
        return self

    @property
    def num_shards(self) -> int:
        return len(self.runs)


def _arange(lo: int, hi: int) -> np.ndarray:
    import numpy as np

    return np.arange(lo, hi, dtype=np.int64)


def to_iterable_dataset(ds: MixedDataset, num_shards: int = 1) -> datasets.IterableDataset:
    """``ds`` (or one rank's shard of it) as a ``datasets.IterableDataset`` of plain dicts."""
    return datasets.IterableDataset(MixExamplesIterable(ds, _runs(len(ds), num_shards)))
