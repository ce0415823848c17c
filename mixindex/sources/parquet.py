"""Parquet sources: one or more ``.parquet`` files read by row group.

Opening reads only the footers (row counts, schema). A batch of random rows decodes each row
group it touches once, only the requested columns, through a small LRU cache of decoded row
groups: random rows from Parquet are expensive (a whole row group per row), so consecutive
batches that hit the same groups should not pay twice.

    >>> src = ParquetSource("code", ["data/code/part-0.parquet"])
    >>> src.take(np.array([7, 3]), columns=["text"]).to_pylist()
    [{'text': 'def f7(): pass'}, {'text': 'def f3(): pass'}]
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mixindex.sources.base import (
    PieceSource,
    SourceError,
    canonical_schema,
    digest,
    files_text,
    hash_file,
    one_line,
    schema_difference,
)

__all__ = ["ParquetSource"]

# Open file handles are bounded too: a dataset of thousands of shards read at random must not
# exhaust the process's file descriptors.
_MAX_OPEN_FILES = 64


class ParquetSource(PieceSource):
    """Random access over Parquet files, in the order given.

    ``cache_size`` is the number of decoded row groups kept (per column projection). File
    handles and the cache are dropped by ``close()``, by pickling and in a child process after
    ``os.fork``, and reopened lazily.
    """

    def __init__(self, name: str, data_files: Sequence[str], *, cache_size: int = 8) -> None:
        self.name = name
        self.type = "parquet"
        self.data_files = [os.fspath(f) for f in data_files]
        if not self.data_files:
            raise SourceError(f"dataset {name!r} has no data files; point data_files at data")
        if cache_size < 0:
            raise SourceError(f"dataset {name!r}: cache_size = {cache_size} must be >= 0")
        self.cache_size = cache_size

        def footers() -> Iterator[tuple[str, pa.Schema, pq.FileMetaData]]:
            for path in self.data_files:
                pf = _open(name, path)
                try:
                    footer = (path, pf.schema_arrow, pf.metadata)
                finally:
                    pf.close()
                yield footer

        self._take_footers(footers())
        self._reset()

    def _take_footers(self, footers: Iterable[tuple[str, pa.Schema, pq.FileMetaData]]) -> None:
        """The schema and row groups of the files, from each one's (path or URL, schema,
        footer) in read order; SourceError if a file's schema differs from the first's, or if
        there are no rows at all."""
        schema = None
        self._group_rows: list[list[int]] = []
        for where, file_schema, md in footers:
            self._group_rows.append([md.row_group(i).num_rows for i in range(md.num_row_groups)])
            if schema is None:
                schema = file_schema
            elif not file_schema.equals(schema, check_metadata=False):
                raise SourceError(
                    f"dataset {self.name!r}: file {where!r} does not match "
                    f"{self.data_files[0]!r} ({schema_difference(schema, file_schema)}); all "
                    "files of a dataset must share one schema"
                )
        self._schema: pa.Schema = schema
        # One entry per row group of every file, in read order: (file index, group in file).
        self._groups = [(f, g) for f, rows in enumerate(self._group_rows) for g in range(len(rows))]
        counts = np.array([r for rows in self._group_rows for r in rows], dtype=np.int64)
        self._offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        if self._offsets[-1] == 0:
            raise SourceError(
                f"dataset {self.name!r} has no rows (files: {files_text(self.data_files)}); "
                "remove it or point it at data"
            )

    def _reset(self) -> None:
        self._pid = os.getpid()
        # A lock held by another thread at fork time would stay held forever in the child.
        self._lock = threading.Lock()
        self._handles: OrderedDict[int, pq.ParquetFile] = OrderedDict()
        self._cache: OrderedDict[tuple[int, tuple[str, ...] | None], pa.RecordBatch] = OrderedDict()

    def __len__(self) -> int:
        return int(self._offsets[-1])

    @property
    def schema(self) -> pa.Schema:
        return self._schema

    def fingerprint(self, deep: bool = False) -> str:
        """Names, sizes, rows, schema and footers (row groups, statistics); ``deep`` adds bytes."""
        files: list[dict[str, Any]] = []
        for path, rows in zip(self.data_files, self._group_rows, strict=True):
            size, footer = _footer(self.name, path)
            entry: dict[str, Any] = {
                "name": os.path.basename(path),
                "size": size,
                "row_groups": rows,
                # The footer holds every column chunk's sizes and min/max statistics: a cheap
                # content check that reads a few KiB per file.
                "footer": hashlib.sha256(footer).hexdigest(),
            }
            if deep:
                entry["sha256"] = hash_file(path)
            files.append(entry)
        payload = {"format": "parquet", "schema": canonical_schema(self._schema), "files": files}
        return digest(payload)

    # Always taken, never sliced: a slice would keep its whole decoded row group alive, and the
    # take (~14 us) is small next to decoding the group (~1 ms).
    zero_copy = False

    def _piece_getter(self, cols: list[str] | None) -> Callable[[int], pa.RecordBatch]:
        if self._pid != os.getpid():
            self._reset()
        return lambda g: self._decoded(g, cols)

    def _decoded(self, g: int, cols: list[str] | None) -> pa.RecordBatch:
        key = (g, None if cols is None else tuple(cols))
        # One decode at a time per source: a ParquetFile is not documented as thread-safe, and
        # two threads decoding the same group would only waste the work.
        with self._lock:
            batch = self._cache.get(key)
            if batch is None and cols is not None and (g, None) in self._cache:
                batch = self._cache[(g, None)].select(cols)
            if batch is None:
                f, group = self._groups[g]
                try:
                    table = self._handle(f).read_row_group(group, columns=cols)
                except (pa.ArrowException, OSError) as exc:
                    raise SourceError(
                        f"dataset {self.name!r}: row group {group} of {self.data_files[f]!r} "
                        f"cannot be read ({one_line(exc)}); check the file"
                    ) from None
                # One chunk per column: a take on it is a plain single-array take.
                batch = table.combine_chunks().to_batches()[0]
            if self.cache_size:
                self._cache[key] = batch
                self._cache.move_to_end(key)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
            return batch

    def _handle(self, f: int) -> pq.ParquetFile:
        pf = self._handles.get(f)
        if pf is not None:
            self._handles.move_to_end(f)
            return pf
        path = self.data_files[f]
        pf = _open(self.name, path)
        got = [pf.metadata.row_group(i).num_rows for i in range(pf.metadata.num_row_groups)]
        if got != self._group_rows[f]:
            pf.close()
            raise SourceError(
                f"dataset {self.name!r}: file {path!r} changed since it was opened "
                f"({sum(self._group_rows[f])} rows then, {sum(got)} now); rebuild the index or "
                "restore the file"
            )
        self._handles[f] = pf
        while len(self._handles) > _MAX_OPEN_FILES:
            self._handles.popitem(last=False)[1].close()
        return pf

    def close(self) -> None:
        with self._lock:
            for pf in self._handles.values():
                pf.close()
        self._reset()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in ("_lock", "_handles", "_cache"):
            del state[key]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    def __repr__(self) -> str:
        return f"ParquetSource({self.name!r}, {len(self.data_files)} files, {len(self)} rows)"


def _open(name: str, path: str) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise SourceError(
            f"dataset {name!r}: file {path!r} is not a readable Parquet file ({one_line(exc)}); "
            'check the file, or set type = "arrow" if it is Arrow IPC'
        ) from None


def _footer(name: str, path: str) -> tuple[int, bytes]:
    """The file size and the raw footer bytes (the last 8 bytes give the footer's length)."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(size - 8, 0))
            tail = f.read(8)
            length = int.from_bytes(tail[:4], "little")
            if len(tail) < 8 or length + 8 > size:
                raise OSError(f"bad footer length {length}")
            f.seek(size - 8 - length)
            return size, f.read(length)
    except OSError as exc:
        raise SourceError(
            f"dataset {name!r}: file {path!r} cannot be read ({one_line(exc)}); check the file"
        ) from None
