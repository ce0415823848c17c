"""The local block cache of remote sources: byte ranges of objects, kept in memory up to a bound.

A block is what one read needs from one object: a Parquet row group's column chunks, an Arrow
record batch. Keys carry the object's version (ETag, version id), so a block of a replaced
object is never served for the new one. One cache per process, shared by every remote source,
least recently used blocks dropped first; its bound is ``MIXINDEX_BLOCK_CACHE_MB`` (default
512 MiB; 0 turns it off). A forked child (a DataLoader worker) starts with the parent's blocks.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from mixindex.errors import SourceError

__all__ = ["BlockCache", "block_cache"]

_DEFAULT_MB = 512


class BlockCache:
    """A thread-safe LRU of values with a byte size, bounded by their total size."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        # Counters for benchmarks and tests: blocks served from memory, blocks fetched.
        self.hits = 0
        self.misses = 0

    def get_many(
        self,
        keys: Sequence[Hashable],
        fetch: Callable[[list[Hashable]], list[tuple[Any, int]]],
    ) -> list[Any]:
        """The value of every key; the missing ones come from one ``fetch(missing)`` call
        (which returns ``(value, nbytes)`` per key), so that they are fetched at once."""
        out: dict[Hashable, Any] = {}
        with self._lock:
            for key in keys:
                item = self._items.get(key)
                if item is not None:
                    self._items.move_to_end(key)
                    out[key] = item[0]
            self.hits += len(out)
        missing = list(dict.fromkeys(k for k in keys if k not in out))
        if missing:
            fetched = fetch(missing)
            with self._lock:
                self.misses += len(missing)
                for key, (value, size) in zip(missing, fetched, strict=True):
                    out[key] = value
                    self._put(key, value, size)
        return [out[k] for k in keys]

    def _put(self, key: Hashable, value: Any, size: int) -> None:
        if size > self.capacity:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self._bytes -= old[1]
        self._items[key] = (value, size)
        self._bytes += size
        while self._bytes > self.capacity:
            self._bytes -= self._items.popitem(last=False)[1][1]

    @property
    def nbytes(self) -> int:
        return self._bytes

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0
            self.hits = self.misses = 0

    def _after_fork(self) -> None:
        # A lock held by another thread at fork time would stay held forever in the child.
        self._lock = threading.Lock()


def _capacity() -> int:
    text = os.environ.get("MIXINDEX_BLOCK_CACHE_MB", "").strip()
    if not text:
        return _DEFAULT_MB << 20
    try:
        mb = float(text)
    except ValueError:
        mb = -1.0
    if mb < 0:
        raise SourceError(
            f"MIXINDEX_BLOCK_CACHE_MB = {text!r} must be a number of MiB >= 0 (0 turns the block "
            "cache off)"
        )
    return int(mb * (1 << 20))


_cache: BlockCache | None = None
_cache_lock = threading.Lock()


def block_cache() -> BlockCache:
    """The process's block cache (made on first use, sized from the environment then)."""
    global _cache
    with _cache_lock:
        if _cache is None:
            _cache = BlockCache(_capacity())
        return _cache


def _reset_after_fork() -> None:
    global _cache_lock
    _cache_lock = threading.Lock()
    if _cache is not None:
        _cache._after_fork()


os.register_at_fork(after_in_child=_reset_after_fork)
