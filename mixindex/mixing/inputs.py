"""What an in-memory mix can read: each input as passes over a stream, opened at an offset.

- a ``datasets.Dataset`` (map-style): known length, rows read by number;
- a ``datasets.IterableDataset``: a stream, with ``set_epoch(k)`` for pass ``k``, so that each
  pass is what the stream gives at that epoch (a shuffled stream reshuffles; ``datasets``
  also reorders the shards of a stream of several), and its own ``state_dict`` to resume
  without replaying;
- a :class:`~mixindex.mixing.sharded.ShardedDataSource`: its shards end to end, seeking with
  ``open_shard_at_row``;
- any other iterable: a function returning an iterator (called once per pass), a re-iterable
  (a list), or a one-shot iterator (a generator object: one pass only).

This module imports ``datasets`` nowhere: objects are recognised by class name.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Mapping, Sized
from itertools import islice
from typing import Any

from mixindex.errors import SourceError
from mixindex.sources.base import Source
from mixindex.sources.hf import is_hf_dataset

__all__ = ["Input", "as_input", "is_iterable_dataset"]

# Rows read per take when a map-style dataset is read as a stream.
READ_BATCH = 1024


def is_iterable_dataset(obj: object) -> bool:
    """True for a ``datasets.IterableDataset`` (by class, so ``datasets`` stays unimported)."""
    return any(
        c.__name__ == "IterableDataset" and c.__module__.startswith("datasets")
        for c in type(obj).__mro__
    )


def _skip(it: Iterator[Any], n: int) -> int:
    """Drop up to ``n`` items; how many were dropped."""
    return sum(1 for _ in islice(it, n))


def _copy_chain(ex_iterable: Any) -> Any:
    """A shallow copy of each examples iterable of a chain (as ``datasets`` does for epochs)."""
    out = copy.copy(ex_iterable)
    if hasattr(out, "ex_iterable"):
        out.ex_iterable = _copy_chain(out.ex_iterable)
    if hasattr(out, "ex_iterables"):
        out.ex_iterables = [_copy_chain(e) for e in out.ex_iterables]
    return out


class Input:
    """One dataset of a mix. ``open(pass_, offset, state)`` starts a pass at an element."""

    name: str
    # Whether the input has a state of its own that resumes without replaying.
    stateful = False

    def known_length(self) -> int | None:
        """The rows of one pass, when known without reading."""
        return None

    def random_access(self) -> Source | None:
        """A :class:`~mixindex.sources.Source` reading rows by number, if the input has one."""
        return None

    def open(self, pass_: int, offset: int, state: Any = None) -> Iterator[Mapping[str, Any]]:
        raise NotImplementedError

    def live_state(self) -> Any:
        """The live state of the latest opened pass (stateful inputs only)."""
        return None

    def snapshot(self) -> Any:
        """A copy of :meth:`live_state`."""
        return copy.deepcopy(self.live_state())


class DatasetInput(Input):
    """A ``datasets.Dataset``: rows by number, through mixindex's Arrow reading."""

    def __init__(self, name: str, ds: Any) -> None:
        self.name = name
        self.ds = ds
        self._source: Source | None = None

    def known_length(self) -> int:
        return len(self.ds)

    def random_access(self) -> Source:
        if self._source is None:
            from mixindex.sources.hf import open_hf_dataset

            self._source = open_hf_dataset(self.name, self.ds)
        return self._source

    def open(self, pass_: int, offset: int, state: Any = None) -> Iterator[Mapping[str, Any]]:
        import numpy as np

        src = self.random_access()
        n = len(src)
        for lo in range(offset, n, READ_BATCH):
            yield from src.take(np.arange(lo, min(lo + READ_BATCH, n))).to_pylist()


class IterableDatasetInput(Input):
    """A ``datasets.IterableDataset``, read through a private copy per pass (so that the
    user's object and other iterations are untouched)."""

    stateful = True

    def __init__(self, name: str, ds: Any) -> None:
        self.name = name
        self.ds = ds
        self._copy: Any = None

    def open(self, pass_: int, offset: int, state: Any = None) -> Iterator[Mapping[str, Any]]:
        # A private copy: its own attributes (copy.copy would share __dict__ through the class's
        # __getstate__), its own chain of examples iterables (they hold the iteration state),
        # and its own epoch counter (shared memory when torch is loaded).
        cls: Any = type(self.ds)
        c = cls.__new__(cls)
        c.__dict__.update(self.ds.__dict__)
        c._ex_iterable = _copy_chain(self.ds._ex_iterable)
        c._epoch = int(self.ds.epoch)
        c.set_epoch(pass_)
        if state is not None:
            c.load_state_dict(state)
        self._copy = c
        it: Iterator[Mapping[str, Any]] = iter(c)
        if state is None and offset:
            _skip(it, offset)
        return it

    def live_state(self) -> Any:
        # The dataset keeps this dict up to date in place as it yields.
        return None if self._copy is None else self._copy._state_dict

    def snapshot(self) -> Any:
        return None if self._copy is None else self._copy.state_dict()


class ShardedInput(Input):
    """A sharded source, its shards end to end."""

    def __init__(self, name: str, source: Any) -> None:
        self.name = name
        self.source = source

    def known_length(self) -> int | None:
        try:
            return len(self.source)
        except TypeError:
            return None

    def random_access(self) -> Source | None:
        get = getattr(self.source, "_random_access", None)
        return get(self.name) if get is not None else None

    def open(self, pass_: int, offset: int, state: Any = None) -> Iterator[Mapping[str, Any]]:
        from mixindex.mixing.sharded import iter_from

        return iter_from(self.source, offset)


class IterableInput(Input):
    """Any other iterable: a function giving iterators, a re-iterable, or a one-shot iterator."""

    def __init__(self, name: str, obj: Any) -> None:
        self.name = name
        self.obj = obj
        self.one_shot = isinstance(obj, Iterator)
        self._used = False

    def known_length(self) -> int | None:
        return len(self.obj) if isinstance(self.obj, Sized) and not self.one_shot else None

    def open(self, pass_: int, offset: int, state: Any = None) -> Iterator[Mapping[str, Any]]:
        if self.one_shot:
            if self._used:
                raise SourceError(
                    f"dataset {self.name!r} is a one-shot iterator (a generator object), which "
                    f"cannot be read again (pass {pass_ + 1}, or a second iteration); pass a "
                    "function that returns a new iterator, a list, or a datasets.IterableDataset"
                )
            self._used = True
            it: Iterator[Any] = self.obj
        elif callable(self.obj) and not isinstance(self.obj, Iterable):
            it = iter(self.obj())
        else:
            it = iter(self.obj)
        if offset:
            _skip(it, offset)
        return it


def as_input(name: str, obj: Any) -> Input:
    """The :class:`Input` for what a user passed as a dataset."""
    from mixindex.mixing.sharded import ShardedDataSource

    make = getattr(obj, "_mix_input", None)
    if make is not None:
        inp: Input = make(name)
        if isinstance(inp, DatasetInput) and len(inp.ds) == 0:
            raise SourceError(f"dataset {name!r} has no rows; remove it or point it at data")
        return inp
    if is_hf_dataset(obj):
        if len(obj) == 0:
            raise SourceError(f"dataset {name!r} has no rows; remove it or point it at data")
        return DatasetInput(name, obj)
    if is_iterable_dataset(obj):
        return IterableDatasetInput(name, obj)
    if isinstance(obj, ShardedDataSource) or (
        hasattr(obj, "shard_names") and hasattr(obj, "open_shard")
    ):
        return ShardedInput(name, obj)
    if isinstance(obj, (str, bytes, Mapping)):
        raise SourceError(
            f"dataset {name!r} is a {type(obj).__name__}, not a dataset; pass a datasets.Dataset "
            "or IterableDataset, a ShardedDataSource, or an iterable of dicts (for files use "
            "ParquetShardedSource and its siblings)"
        )
    if isinstance(obj, Iterable) or callable(obj):
        return IterableInput(name, obj)
    raise SourceError(
        f"dataset {name!r} is a {type(obj).__name__}, which cannot be read; pass a "
        "datasets.Dataset or IterableDataset, a ShardedDataSource, or an iterable of dicts"
    )
