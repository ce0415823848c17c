"""Sharded data sources: a dataset as named shards, each an iterator of example dicts.

This is the ``ShardedDataSource`` shape of EasyDeL (and Levanter) that users subclass: give
``shard_names`` and ``open_shard`` (and ``num_shards()`` if counting the names is not enough);
``open_shard_at_row``, ``iter_shards``, ``__len__`` and the lazy wrappers come with the base::

    class Squares(ShardedDataSource):
        shard_names = ["a", "b"]

        def open_shard(self, shard_name):
            base = 0 if shard_name == "a" else 100
            return ({"x": (base + i) ** 2} for i in range(10))

    src = Squares().filter(lambda ex: ex["x"] % 2 == 0).shuffle(buffer_size=8, seed=1)

Sources that know their shards' row counts say so in :meth:`ShardedDataSource.get_shard_info`;
seeking past whole shards then costs nothing.
"""

from __future__ import annotations

import logging
import secrets
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

from mixindex.errors import SpecError
from mixindex.plan.rng import derive_key

__all__ = [
    "FilteredShardedSource",
    "LimitedShardedSource",
    "MappedShardedSource",
    "ShardInfo",
    "ShardedDataSource",
    "ShuffledShardedSource",
    "iter_from",
    "shard_rows",
]

logger = logging.getLogger("mixindex")

# Salt of the buffer shuffle's choices (see ShuffledShardedSource).
_SALT_BUFFER = 0x6D69786964780010


@dataclass(frozen=True)
class ShardInfo:
    """What is known about one shard without reading it."""

    shard_id: int
    shard_name: str
    num_rows: int | None = None


def _row(value: object, what: str = "row") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} = {value!r} must be a whole number >= 0")
    return value


def draw_seed(what: str) -> int:
    """A fresh seed for ``seed=None``, logged so that the run can be repeated."""
    seed = secrets.randbits(63)
    logger.warning(
        "%s: seed=None, drew seed %d; pass seed=%d to repeat this order", what, seed, seed
    )
    return seed


class ShardedDataSource(ABC):
    """A dataset as named shards; subclass it by giving ``shard_names`` and ``open_shard``."""

    @property
    @abstractmethod
    def shard_names(self) -> Sequence[str]:
        """The shards' names, in read order."""

    @abstractmethod
    def open_shard(self, shard_name: str) -> Iterator[dict[str, Any]]:
        """The examples of one shard, in order."""

    def num_shards(self) -> int:
        return len(self.shard_names)

    def get_shard_info(self, shard_name: str) -> ShardInfo | None:
        """Facts about a shard known without reading it (its row count); None if nothing is."""
        return None

    def _shard_rows(self, shard_name: str) -> int | None:
        return shard_rows(self, shard_name)

    def open_shard_at_row(self, shard_name: str, row: int) -> Iterator[dict[str, Any]]:
        """The examples of a shard from ``row`` on (the default reads and drops the first rows)."""
        row = _row(row)
        it = iter(self.open_shard(shard_name))
        if row:
            # Consume exactly ``row`` items; islice stops early if the shard is shorter.
            for _ in islice(it, row):
                pass
        return it

    def iter_shards(
        self,
        shard_indices: Sequence[int] | None = None,
        start_shard: int = 0,
        start_row: int = 0,
    ) -> Iterator[dict[str, Any]]:
        """The shards' examples end to end; ``start_shard`` counts in ``shard_indices``."""
        names = self.shard_names
        indices = list(shard_indices) if shard_indices is not None else range(len(names))
        for i, index in enumerate(indices):
            if i < start_shard:
                continue
            name = names[index]
            if i == start_shard and start_row:
                yield from self.open_shard_at_row(name, start_row)
            else:
                yield from self.open_shard(name)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self.iter_shards()

    def __len__(self) -> int:
        raise TypeError(
            f"{type(self).__name__} has no len(): its number of examples is not known without "
            "reading it"
        )

    def map(self, fn: Callable[[Any], Any]) -> MappedShardedSource:
        """Apply ``fn`` to every example, lazily."""
        return MappedShardedSource(self, fn)

    def filter(self, predicate: Callable[[Any], bool]) -> FilteredShardedSource:
        """Keep the examples for which ``predicate`` is true, lazily."""
        return FilteredShardedSource(self, predicate)

    def shuffle(self, buffer_size: int, seed: int | None = None) -> ShuffledShardedSource:
        """A seeded buffer shuffle of all shards (one shard, ``"shuffled_shard_0"``)."""
        return ShuffledShardedSource(self, buffer_size, seed)


def shard_rows(source: Any, shard_name: str) -> int | None:
    """A shard's row count if the source knows it without reading (duck-typed)."""
    get = getattr(source, "get_shard_info", None)
    info = get(shard_name) if get is not None else None
    n = getattr(info, "num_rows", None)
    return n if isinstance(n, int) else None


def iter_from(source: Any, offset: int) -> Iterator[dict[str, Any]]:
    """The source's examples, all shards end to end, from element ``offset`` on.

    Shards whose row count is known are skipped whole; the shard holding ``offset`` is opened
    with ``open_shard_at_row``; a shard of unknown size is read to count it.
    """
    offset = _row(offset, "offset")
    for name in source.shard_names:
        if offset == 0:
            yield from source.open_shard(name)
            continue
        n = shard_rows(source, name)
        if n is not None:
            if offset >= n:
                offset -= n
                continue
            it = source.open_shard_at_row(name, offset)
            offset = 0
            yield from it
            continue
        it = iter(source.open_shard(name))
        skipped = sum(1 for _ in islice(it, offset))
        offset -= skipped
        if offset == 0:
            yield from it


class MappedShardedSource(ShardedDataSource):
    """Another source with a function applied to every example; seeks like the source."""

    def __init__(self, source: ShardedDataSource, fn: Callable[[Any], Any]) -> None:
        if not callable(fn):
            raise TypeError(f"map needs a function, got {fn!r}")
        self.source = source
        self.fn = fn

    @property
    def shard_names(self) -> Sequence[str]:
        return self.source.shard_names

    def num_shards(self) -> int:
        return self.source.num_shards()

    def get_shard_info(self, shard_name: str) -> ShardInfo | None:
        return self.source.get_shard_info(shard_name)

    def open_shard(self, shard_name: str) -> Iterator[Any]:
        return map(self.fn, self.source.open_shard(shard_name))

    def open_shard_at_row(self, shard_name: str, row: int) -> Iterator[Any]:
        return map(self.fn, self.source.open_shard_at_row(shard_name, row))

    def __len__(self) -> int:
        return len(self.source)


class FilteredShardedSource(ShardedDataSource):
    """Another source keeping the examples a predicate accepts; its length is unknown."""

    def __init__(self, source: ShardedDataSource, predicate: Callable[[Any], bool]) -> None:
        if not callable(predicate):
            raise TypeError(f"filter needs a function, got {predicate!r}")
        self.source = source
        self.predicate = predicate

    @property
    def shard_names(self) -> Sequence[str]:
        return self.source.shard_names

    def num_shards(self) -> int:
        return self.source.num_shards()

    def open_shard(self, shard_name: str) -> Iterator[Any]:
        return filter(self.predicate, self.source.open_shard(shard_name))


class ShuffledShardedSource(ShardedDataSource):
    """A seeded buffer shuffle over all of a source's shards, as one shard.

    A buffer of ``buffer_size`` examples is filled; then each incoming example replaces the one
    sent out, chosen by a counter-based hash of ``(seed, count)`` (the same choices on every
    machine), and the buffer is drained the same way at the end. The order is a pure function of
    the seed and the source's order, so ``open_shard_at_row`` gives exactly the tail.
    """

    SHARD = "shuffled_shard_0"

    def __init__(
        self, source: ShardedDataSource, buffer_size: int, seed: int | None = None
    ) -> None:
        if isinstance(buffer_size, bool) or not isinstance(buffer_size, int) or buffer_size <= 0:
            raise SpecError(f"buffer_size = {buffer_size!r} must be a whole number > 0")
        if seed is None:
            seed = draw_seed("ShuffledShardedSource")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
            raise SpecError(f"seed = {seed!r} must be a whole number from 0 to 2**64 - 1")
        self.source = source
        self.buffer_size = buffer_size
        self.seed = seed

    @property
    def shard_names(self) -> Sequence[str]:
        return [self.SHARD]

    def _check(self, shard_name: str) -> None:
        if shard_name != self.SHARD:
            raise KeyError(f"no shard {shard_name!r}; the only shard is {self.SHARD!r}")

    def get_shard_info(self, shard_name: str) -> ShardInfo | None:
        self._check(shard_name)
        try:
            return ShardInfo(0, self.SHARD, len(self.source))
        except TypeError:
            return None

    def open_shard(self, shard_name: str) -> Iterator[Any]:
        self._check(shard_name)
        return self._shuffled()

    def _shuffled(self) -> Iterator[Any]:
        key = derive_key(self.seed, _SALT_BUFFER)
        buf: list[Any] = []
        count = 0
        for example in self.source.iter_shards():
            if len(buf) < self.buffer_size:
                buf.append(example)
                continue
            j = derive_key(key, count) % len(buf)
            count += 1
            out, buf[j] = buf[j], example
            yield out
        while buf:
            j = derive_key(key, count) % len(buf)
            count += 1
            buf[j], buf[-1] = buf[-1], buf[j]
            yield buf.pop()

    def __len__(self) -> int:
        return len(self.source)


class LimitedShardedSource(ShardedDataSource):
    """The first ``max_rows`` examples of a source, across its shards in order.

    Nothing is read up front: reading the shards in order carries the budget from one shard to
    the next. Opening a later shard on its own needs the earlier shards' sizes (from
    ``get_shard_info``, else by reading them once).
    """

    def __init__(self, source: ShardedDataSource, max_rows: int) -> None:
        if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 0:
            raise SpecError(f"max_rows = {max_rows!r} must be a whole number >= 0")
        self.source = source
        self.max_rows = max_rows
        self._sizes: dict[str, int] = {}

    @property
    def shard_names(self) -> Sequence[str]:
        return self.source.shard_names

    def num_shards(self) -> int:
        return self.source.num_shards()

    def _size(self, name: str) -> int:
        if name not in self._sizes:
            n = self.source._shard_rows(name)
            if n is None:
                n = sum(1 for _ in self.source.open_shard(name))
            self._sizes[name] = n
        return self._sizes[name]

    def _budget(self, shard_name: str) -> int:
        names = list(self.shard_names)
        if shard_name not in names:
            raise KeyError(f"no shard {shard_name!r} (shards: {', '.join(names[:5])}, ...)")
        left = self.max_rows
        for name in names[: names.index(shard_name)]:
            if left == 0:
                break
            left -= min(left, self._size(name))
        return left

    def get_shard_info(self, shard_name: str) -> ShardInfo | None:
        n = self.source._shard_rows(shard_name)
        if n is None:
            return None
        names = list(self.shard_names)
        return ShardInfo(names.index(shard_name), shard_name, min(n, self._budget(shard_name)))

    def open_shard(self, shard_name: str) -> Iterator[Any]:
        return islice(self.source.open_shard(shard_name), self._budget(shard_name))

    def open_shard_at_row(self, shard_name: str, row: int) -> Iterator[Any]:
        left = self._budget(shard_name) - _row(row)
        return islice(self.source.open_shard_at_row(shard_name, row), max(left, 0))

    def iter_shards(
        self,
        shard_indices: Sequence[int] | None = None,
        start_shard: int = 0,
        start_row: int = 0,
    ) -> Iterator[Any]:
        if shard_indices is not None or start_shard or start_row:
            yield from super().iter_shards(shard_indices, start_shard, start_row)
            return
        left = self.max_rows
        for name in self.shard_names:
            if left == 0:
                return
            for example in islice(self.source.open_shard(name), left):
                left -= 1
                yield example

    def __len__(self) -> int:
        return min(self.max_rows, len(self.source))
