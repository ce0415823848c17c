"""Arrow IPC sources: FILE format, STREAM format and ``datasets`` ``save_to_disk`` folders.

Files are memory-mapped and kept as a list of zero-copy record batches with cumulative row
offsets, so a batch of random rows costs one ``RecordBatch.take`` per batch touched.

    >>> src = ArrowSource("text", ["data/text/data.arrow"])
    >>> src.take(np.array([5, 0, 5])).column("text").to_pylist()
    ['text 5', 'text 0', 'text 5']
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

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

__all__ = ["ArrowSource", "read_ipc_file"]

_FILE_MAGIC = b"ARROW1"


def read_ipc_file(name: str, path: str) -> tuple[pa.Schema, list[pa.RecordBatch]]:
    """Memory-map one IPC file (FILE or STREAM format) and return its schema and batches."""
    try:
        mm = pa.memory_map(path)
        try:
            if mm.read(len(_FILE_MAGIC)) == _FILE_MAGIC:
                file_reader = pa.ipc.open_file(mm)
                schema = file_reader.schema
                batches = [file_reader.get_batch(i) for i in range(file_reader.num_record_batches)]
            else:
                mm.seek(0)
                stream_reader = pa.ipc.open_stream(mm)
                schema = stream_reader.schema
                batches = list(stream_reader)
        finally:
            # The batches keep the mapping alive; closing drops only the descriptor, so that
            # thousands of shards do not hold thousands of open files.
            mm.close()
    except (pa.ArrowException, OSError) as exc:
        raise SourceError(
            f"dataset {name!r}: file {path!r} is not a readable Arrow IPC file or stream "
            f'({one_line(exc)}); check the file, or set type = "parquet" if it is Parquet'
        ) from None
    return schema, batches


class ArrowSource(PieceSource):
    """Random access over Arrow IPC files, in the order given.

    The memory maps are reopened lazily after ``close()``, after unpickling and in a child
    process after ``os.fork`` (a forked child maps the files itself).
    """

    def __init__(self, name: str, data_files: Sequence[str]) -> None:
        self.name = name
        self.type = "arrow"
        self.data_files = [os.fspath(f) for f in data_files]
        schema, per_file = self._read_all()
        self._schema = schema
        self._file_batch_rows = [[b.num_rows for b in bs] for bs in per_file]
        self._set_batches([b for bs in per_file for b in bs])
        counts = np.array([r for rows in self._file_batch_rows for r in rows], dtype=np.int64)
        self._offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        if self._offsets[-1] == 0:
            raise SourceError(
                f"dataset {name!r} has no rows (files: {files_text(self.data_files)}); "
                "remove it or point it at data"
            )

    def _read_all(self) -> tuple[pa.Schema, list[list[pa.RecordBatch]]]:
        if not self.data_files:
            raise SourceError(f"dataset {self.name!r} has no data files; point data_files at data")
        first = self.data_files[0]
        schema, batches = read_ipc_file(self.name, first)
        per_file = [batches]
        for path in self.data_files[1:]:
            file_schema, batches = read_ipc_file(self.name, path)
            if not file_schema.equals(schema, check_metadata=False):
                raise SourceError(
                    f"dataset {self.name!r}: file {path!r} does not match {first!r} "
                    f"({schema_difference(schema, file_schema)}); all files of a dataset must "
                    "share one schema"
                )
            per_file.append(batches)
        return schema, per_file

    def _set_batches(self, batches: list[pa.RecordBatch]) -> None:
        self._batches = batches
        self._pid = os.getpid()

    def _open_batches(self) -> list[pa.RecordBatch]:
        if self._batches and self._pid == os.getpid():
            return self._batches
        # Reopened in a fresh process (fork, unpickle) or after close(): the files must still
        # hold the rows this source was opened with, or row numbers would silently shift.
        _, per_file = self._read_all()
        for path, batches, expected in zip(
            self.data_files, per_file, self._file_batch_rows, strict=True
        ):
            got = [b.num_rows for b in batches]
            if got != expected:
                raise SourceError(
                    f"dataset {self.name!r}: file {path!r} changed since it was opened "
                    f"({sum(expected)} rows then, {sum(got)} now); rebuild the index or restore "
                    "the file"
                )
        batches_flat = [b for bs in per_file for b in bs]
        self._set_batches(batches_flat)
        return batches_flat

    def __len__(self) -> int:
        return int(self._offsets[-1])

    @property
    def schema(self) -> pa.Schema:
        return self._schema

    def fingerprint(self, deep: bool = False) -> str:
        """Names, sizes, rows and buffer sizes per record batch, schema; ``deep`` adds bytes."""
        batches = self._open_batches()
        files: list[dict[str, Any]] = []
        start = 0
        for path, rows in zip(self.data_files, self._file_batch_rows, strict=True):
            mine = batches[start : start + len(rows)]
            start += len(rows)
            entry: dict[str, Any] = {
                "name": os.path.basename(path),
                "size": _size(self.name, path),
                "batch_rows": rows,
                # Buffer lengths change when a string or list changes length: a cheap content
                # check that needs no data read (Arrow files have no statistics).
                "batch_bytes": [_buffer_bytes(b) for b in mine],
            }
            if deep:
                entry["sha256"] = hash_file(path)
            files.append(entry)
        payload = {"format": "arrow", "schema": canonical_schema(self._schema), "files": files}
        return digest(payload)

    def _piece_getter(self, cols: list[str] | None) -> Callable[[int], pa.RecordBatch]:
        batches = self._open_batches()
        return lambda i: batches[i] if cols is None else batches[i].select(cols)

    def close(self) -> None:
        self._batches = []

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_batches"] = []
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"ArrowSource({self.name!r}, {len(self.data_files)} files, {len(self)} rows)"


def _size(name: str, path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError as exc:
        raise SourceError(
            f"dataset {name!r}: file {path!r} cannot be read ({one_line(exc)}); check the path"
        ) from None


def _buffer_bytes(batch: pa.RecordBatch) -> int:
    return sum(buf.size for col in batch.columns for buf in col.buffers() if buf is not None)
