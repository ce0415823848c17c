"""Parquet files behind URLs, read by range requests.

Opening reads the footers only: the last 64 KiB of every file, all requested at once (a second
round for the rare footer that is longer). A read works out the byte ranges of the column
chunks its rows need, in every row group they touch, fetches the missing ones at once through
the block cache (:mod:`mixindex.sources.blocks`), then decodes each group as a local
:class:`~mixindex.sources.parquet.ParquetSource` does, from memory.

For example, over the objects :func:`~mixindex.sources.remote.list_files` found::

    src = RemoteParquetSource("web", files, storage_options=None)
    src.take(np.array([7, 3]), columns=["text"])  # a 2-row table
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mixindex.errors import SourceError, short
from mixindex.sources.base import canonical_schema, digest, one_line
from mixindex.sources.blocks import block_cache
from mixindex.sources.parquet import ParquetSource
from mixindex.sources.remote import (
    RemoteFile,
    fetch_coalesced,
    fetch_ranges,
    filesystem,
    open_url,
)

__all__ = ["RemoteParquetSource", "read_footers"]

_TAIL = 64 << 10
# Column chunks closer than this are fetched as one range: one request instead of two.
_GAP = 1 << 20


def read_footers(
    name: str, fs: Any, files: Sequence[RemoteFile]
) -> list[tuple[pq.FileMetaData, bytes]]:
    """Every file's footer metadata and raw footer bytes, by concurrent range reads."""
    tails = fetch_ranges(name, fs, [(f.url, max(0, f.size - _TAIL), f.size) for f in files])
    footers: list[bytes | None] = []
    longer: list[tuple[int, int]] = []
    for k, (f, tail) in enumerate(zip(files, tails, strict=True)):
        if len(tail) < 12 or tail[-4:] != b"PAR1":
            raise _not_parquet(name, f.url, "no Parquet footer at its end")
        length = int.from_bytes(tail[-8:-4], "little")
        if length + 12 > f.size:
            raise _not_parquet(name, f.url, f"footer length {length} exceeds the object")
        if length + 8 <= len(tail):
            footers.append(tail[len(tail) - 8 - length :])
        else:
            footers.append(None)
            longer.append((k, length))
    more = fetch_ranges(
        name, fs, [(files[k].url, files[k].size - 8 - n, files[k].size) for k, n in longer]
    )
    for (k, _), data in zip(longer, more, strict=True):
        footers[k] = data
    out = []
    for f, footer in zip(files, footers, strict=True):
        if footer is None:
            raise RuntimeError("mixindex internal error: a footer was not fetched")
        try:
            # The footer alone parses as a file: the leading magic is all the reader checks.
            md = pq.read_metadata(pa.BufferReader(b"PAR1" + footer))
        except (pa.ArrowException, OSError) as exc:
            raise _not_parquet(name, f.url, one_line(exc)) from None
        out.append((md, footer[:-8]))
    return out


def _not_parquet(name: str, url: str, why: str) -> SourceError:
    return SourceError(
        f"dataset {short(name)}: {short(url)} is not a readable Parquet file ({why}); check "
        'the object, or set type = "arrow" if it is Arrow IPC'
    )


class _RangeFile(io.RawIOBase):
    """A read-only view of one object whose reads are served from the ranges fetched for the
    current read (``pinned``), else from the block cache (a range the plan did not foresee)."""

    def __init__(self, src: RemoteParquetSource, f: int) -> None:
        self._src = src
        self._f = f
        self._pos = 0
        self._size = src.objects[f].size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def size(self) -> int:
        return self._size

    def read(self, n: int = -1) -> Any:
        start = self._pos
        end = self._size if n is None or n < 0 else min(self._size, start + n)
        if end <= start:
            return b""
        self._pos = end
        return self._src._read_range(self._f, start, end)


class RemoteParquetSource(ParquetSource):
    """Random access over Parquet objects, in the order given (see the module doc)."""

    def __init__(
        self,
        name: str,
        files: Sequence[RemoteFile],
        *,
        storage_options: Mapping[str, Any] | None = None,
        cache_size: int = 8,
    ) -> None:
        self.name = name
        self.type = "parquet"
        self.objects = list(files)
        self.data_files = [f.url for f in self.objects]
        self.storage_options = dict(storage_options or {})
        if not self.objects:
            raise SourceError(f"dataset {name!r} has no data files; point data_files at data")
        self.cache_size = cache_size
        self._fs_pid = -1
        footers = read_footers(name, self._filesystem(), self.objects)
        self._meta = [md for md, _ in footers]
        self._footer_hash = [hashlib.sha256(raw).hexdigest() for _, raw in footers]
        self._take_footers(
            (f.url, md.schema.to_arrow_schema(), md)
            for f, md in zip(self.objects, self._meta, strict=True)
        )
        self._reset()

    def _reset(self) -> None:
        super()._reset()
        self._pinned = threading.local()

    def _filesystem(self) -> Any:
        # A filesystem made before a fork talks through its parent's event loop thread, which
        # the child does not have: make a new one in each process.
        if self._fs_pid != os.getpid():
            self._fs, _ = filesystem(self.data_files[0], self.storage_options)
            self._fs_pid = os.getpid()
        return self._fs

    def fingerprint(self, deep: bool = False) -> str:
        """Names, sizes, versions (ETag...), rows, schema and footers; ``deep`` adds bytes."""
        files: list[dict[str, Any]] = []
        for f, rows, footer in zip(self.objects, self._group_rows, self._footer_hash, strict=True):
            entry: dict[str, Any] = {
                "name": os.path.basename(f.url),
                "size": f.size,
                "version": f.version,
                "row_groups": rows,
                "footer": footer,
            }
            if deep:
                entry["sha256"] = hash_url(self.name, f.url, self.storage_options)
            files.append(entry)
        payload = {"format": "parquet", "schema": canonical_schema(self._schema), "files": files}
        return digest(payload)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["objects"] = [{"size": f.size, "version": f.version} for f in self.objects]
        return out

    # ---- reading ----------------------------------------------------------------------------

    def _chunk_ranges(self, g: int, cols: list[str] | None) -> list[tuple[int, int]]:
        """Byte ranges of row group ``g``'s column chunks for ``cols``, close ones merged."""
        f, group = self._groups[g]
        rg = self._meta[f].row_group(group)
        wanted = None if cols is None else set(cols)
        spans = []
        for j in range(rg.num_columns):
            col = rg.column(j)
            if wanted is not None and col.path_in_schema.split(".", 1)[0] not in wanted:
                continue
            start = col.data_page_offset
            if col.has_dictionary_page and 0 < col.dictionary_page_offset < start:
                start = col.dictionary_page_offset
            spans.append((start, start + col.total_compressed_size))
        spans.sort()
        merged: list[tuple[int, int]] = []
        for s, e in spans:
            if merged and s - merged[-1][1] <= _GAP:
                merged[-1] = (merged[-1][0], max(merged[-1][1], e))
            else:
                merged.append((s, e))
        return merged

    def _getter_for(
        self, cols: list[str] | None, rows: np.ndarray
    ) -> Callable[[int], pa.RecordBatch]:
        get = self._piece_getter(cols)
        groups = np.unique(np.searchsorted(self._offsets, rows, side="right") - 1).tolist()
        key = None if cols is None else tuple(cols)
        todo = [g for g in groups if (g, key) not in self._cache and (g, None) not in self._cache]
        keys: list[tuple[int, int, int]] = []
        for g in todo:
            f = self._groups[g][0]
            keys.extend((f, s, e) for s, e in self._chunk_ranges(g, cols))
        pinned: dict[int, list[tuple[int, int, pa.Buffer]]] = {}
        for (f, s, e), buf in zip(keys, self._blocks(keys), strict=True):
            pinned.setdefault(f, []).append((s, e, buf))

        def pinned_get(g: int) -> pa.RecordBatch:
            # The ranges live as long as this read: this thread's decodes find them meanwhile.
            self._pinned.ranges = pinned
            try:
                return get(g)
            finally:
                self._pinned.ranges = {}

        return pinned_get

    def _blocks(self, keys: list[tuple[int, int, int]]) -> list[pa.Buffer]:
        """The bytes of ``(file, start, end)`` ranges, the missing ones fetched at once."""
        cache_keys = [(self.data_files[f], self.objects[f].version, s, e) for f, s, e in keys]

        def fetch(missing: list[Any]) -> list[tuple[Any, int]]:
            requests = [(u, s, e) for u, _, s, e in missing]
            got = fetch_coalesced(self.name, self._filesystem(), requests)
            return [(b, b.size) for b in got]

        return block_cache().get_many(cache_keys, fetch)

    def _read_range(self, f: int, start: int, end: int) -> Any:
        for s, e, buf in getattr(self._pinned, "ranges", {}).get(f, ()):
            if s <= start and end <= e:
                return buf.slice(start - s, end - start)
        return self._blocks([(f, start, end)])[0]

    def _handle(self, f: int) -> pq.ParquetFile:
        pf = self._handles.get(f)
        if pf is None:
            pf = pq.ParquetFile(_RangeFile(self, f), metadata=self._meta[f])
            self._handles[f] = pf
            while len(self._handles) > 64:
                self._handles.popitem(last=False)
        return pf

    def close(self) -> None:
        with self._lock:
            self._handles = OrderedDict()
        self._reset()

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        for key in ("_pinned", "_fs"):
            state.pop(key, None)
        state["_fs_pid"] = -1
        # FileMetaData pickles as its serialized footer.
        return state

    def __repr__(self) -> str:
        return (
            f"RemoteParquetSource({self.name!r}, {len(self.data_files)} objects, {len(self)} rows)"
        )


def hash_url(name: str, url: str, storage_options: Mapping[str, Any] | None) -> str:
    """sha256 hex digest of every byte of an object, streamed in 8 MiB pieces."""
    h = hashlib.sha256()
    with open_url(name, url, storage_options) as f:
        try:
            while chunk := f.read(8 << 20):
                h.update(chunk)
        except Exception as exc:
            raise SourceError(
                f"dataset {short(name)}: cannot read {short(url)} ({one_line(exc)}); check the "
                "connection"
            ) from None
    return h.hexdigest()
