"""Arrow IPC files behind URLs, read record batch by record batch.

Opening an IPC *file* reads its footer (the record batches' places) and the few hundred bytes of
metadata before each batch (its row count), all objects' at once. An IPC *stream* (no footer)
is scanned message by message, objects in parallel. A read fetches the record batches its rows
touch, the missing ones at once, into the block cache (:mod:`mixindex.sources.blocks`) as
decoded batches over the fetched bytes: a warm read is a take on memory, as from a local file.

For example, over the objects :func:`~mixindex.sources.remote.list_files` found::

    src = RemoteArrowSource("notes", files)
    src.take(np.array([5, 0]))  # a 2-row table
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from mixindex.errors import SourceError, short
from mixindex.sources.base import (
    PieceSource,
    canonical_schema,
    digest,
    files_text,
    one_line,
    schema_difference,
)
from mixindex.sources.blocks import block_cache
from mixindex.sources.remote import RemoteFile, fetch_coalesced, fetch_ranges, filesystem
from mixindex.sources.remote_parquet import hash_url

__all__ = ["RemoteArrowSource"]

_MAGIC = b"ARROW1"
_TAIL = 64 << 10
_HEAD = 4096
# Message header types (Arrow's Schema.fbs): the ones a reader meets.
_SCHEMA, _DICTIONARY, _RECORD_BATCH = 1, 2, 3


@dataclass
class _Layout:
    """Where one object's record batches are: ``(offset, metadata length, body length)``."""

    schema: pa.Schema
    blocks: list[tuple[int, int, int]]
    rows: list[int]
    # Schema and dictionary messages that must precede a batch for it to decode (None: none).
    prefix: bytes | None


# ---- a few fields of Arrow's flatbuffers, read in place ---------------------------------------


def _field(buf: bytes, table: int, i: int) -> int | None:
    vtable = table - struct.unpack_from("<i", buf, table)[0]
    size = struct.unpack_from("<H", buf, vtable)[0]
    if 4 + 2 * i >= size:
        return None
    off = struct.unpack_from("<H", buf, vtable + 4 + 2 * i)[0]
    return table + off if off else None


def _deref(buf: bytes, pos: int) -> int:
    return pos + int(struct.unpack_from("<I", buf, pos)[0])


def _message(fb: bytes) -> tuple[int, int, int]:
    """``(header type, row count or 0, body length)`` of a message's flatbuffer."""
    root = _deref(fb, 0)
    p = _field(fb, root, 1)
    kind = fb[p] if p is not None else 0
    p = _field(fb, root, 3)
    body = struct.unpack_from("<q", fb, p)[0] if p is not None else 0
    rows = 0
    p = _field(fb, root, 2)
    if p is not None and kind in (_RECORD_BATCH, _DICTIONARY):
        header = _deref(fb, p)
        if kind == _DICTIONARY:
            q = _field(fb, header, 1)
            header = _deref(fb, q) if q is not None else header
        q = _field(fb, header, 0)
        rows = struct.unpack_from("<q", fb, q)[0] if q is not None else 0
    return kind, rows, body


def _prefix_size(head: bytes) -> tuple[int, int]:
    """``(bytes before the flatbuffer, flatbuffer length)`` of an encapsulated message."""
    first = struct.unpack_from("<i", head, 0)[0]
    if first == -1:  # the continuation marker of format >= 0.15
        return 8, struct.unpack_from("<i", head, 4)[0]
    return 4, first


# ---- opening ---------------------------------------------------------------------------------


def _bad(name: str, url: str, why: str) -> SourceError:
    return SourceError(
        f"dataset {short(name)}: {short(url)} is not a readable Arrow IPC file or stream "
        f'({why}); check the object, or set type = "parquet" if it is Parquet'
    )


def _file_layout(
    name: str, fs: Any, f: RemoteFile, tail: bytes
) -> tuple[pa.Schema, list[Any], list[Any]]:
    """Schema, record batch blocks and dictionary blocks from an IPC file's footer."""
    length = struct.unpack_from("<i", tail, len(tail) - 10)[0]
    if length <= 0 or length + 10 + 8 > f.size:
        raise _bad(name, f.url, f"footer length {length}")
    if length + 10 > len(tail):
        tail = fetch_ranges(name, fs, [(f.url, f.size - 10 - length, f.size)])[0]
    footer = tail[len(tail) - 10 - length : len(tail) - 10]
    try:
        # The footer alone, between the magics, opens as a file: enough for its schema.
        fake = _MAGIC + b"\0\0" + footer + struct.pack("<i", length) + _MAGIC
        schema = pa.ipc.open_file(pa.py_buffer(fake)).schema
        root = _deref(footer, 0)

        def blocks(i: int) -> list[tuple[int, int, int]]:
            p = _field(footer, root, i)
            if p is None:
                return []
            vec = _deref(footer, p)
            n = struct.unpack_from("<I", footer, vec)[0]
            return [struct.unpack_from("<qi4xq", footer, vec + 4 + 24 * k) for k in range(n)]

        return schema, blocks(3), blocks(2)
    except (pa.ArrowException, struct.error, IndexError) as exc:
        raise _bad(name, f.url, one_line(exc)) from None


def _stream_layout(name: str, fs: Any, f: RemoteFile) -> _Layout:
    """Scan an IPC stream message by message (it has no footer to say where batches are)."""
    pos = 0
    schema = None
    blocks: list[tuple[int, int, int]] = []
    rows: list[int] = []
    prefix = b""
    has_dictionaries = False
    try:
        while pos + 4 <= f.size:
            head = fetch_ranges(name, fs, [(f.url, pos, min(f.size, pos + _HEAD))])[0]
            skip, length = _prefix_size(head)
            if length == 0:
                break
            if skip + length > len(head):
                head = fetch_ranges(name, fs, [(f.url, pos, pos + skip + length)])[0]
            meta = head[skip : skip + length]
            kind, n, body = _message(meta)
            size = skip + length + body
            if kind == _SCHEMA:
                schema = pa.ipc.read_schema(pa.py_buffer(head[: skip + length]))
                prefix += head[: skip + length]
            elif kind == _DICTIONARY:
                if blocks:
                    raise _bad(name, f.url, "a dictionary replaced between batches")
                prefix += fetch_ranges(name, fs, [(f.url, pos, pos + size)])[0]
                has_dictionaries = True
            elif kind == _RECORD_BATCH:
                blocks.append((pos, skip + length, body))
                rows.append(n)
            pos += size
    except (pa.ArrowException, struct.error, IndexError) as exc:
        raise _bad(name, f.url, one_line(exc)) from None
    if schema is None:
        raise _bad(name, f.url, "no schema message")
    return _Layout(schema, blocks, rows, prefix if has_dictionaries else None)


def read_layouts(name: str, fs: Any, files: Sequence[RemoteFile]) -> list[_Layout]:
    """Every object's schema and record batches, read by concurrent range requests."""
    tails = fetch_ranges(name, fs, [(f.url, max(0, f.size - _TAIL), f.size) for f in files])
    layouts: list[_Layout | None] = [None] * len(files)
    found: dict[int, tuple[pa.Schema, list[Any], list[Any]]] = {}
    streams = []
    for k, (f, tail) in enumerate(zip(files, tails, strict=True)):
        if f.size >= 18 and tail.endswith(_MAGIC):
            found[k] = _file_layout(name, fs, f, tail)
        else:
            streams.append(k)
    # Each batch's row count is in the metadata before its body: every one of them at once.
    metas = [(k, off, off + meta) for k, (_, bs, _) in found.items() for off, meta, _ in bs]
    got = iter(fetch_ranges(name, fs, [(files[k].url, s, e) for k, s, e in metas]))
    dict_ranges = [(k, off, off + m + b) for k, (_, _, ds) in found.items() for off, m, b in ds]
    dicts = fetch_ranges(name, fs, [(files[k].url, s, e) for k, s, e in dict_ranges])
    for k, (schema, bs, ds) in found.items():
        rows = []
        for off, _, _ in bs:
            raw = next(got)
            try:
                skip, length = _prefix_size(raw)
                rows.append(_message(raw[skip : skip + length])[1])
            except (struct.error, IndexError) as exc:
                raise _bad(name, files[k].url, f"batch at byte {off}: {exc}") from None
        prefix = None
        if ds:
            prefix = schema.serialize().to_pybytes() + b"".join(
                d for (j, _, _), d in zip(dict_ranges, dicts, strict=True) if j == k
            )
        layouts[k] = _Layout(schema, bs, rows, prefix)
    if streams:
        with ThreadPoolExecutor(min(16, len(streams))) as pool:
            for k, layout in zip(
                streams,
                pool.map(lambda k: _stream_layout(name, fs, files[k]), streams),
                strict=True,
            ):
                layouts[k] = layout
    return [x for x in layouts if x is not None]


# ---- the source ------------------------------------------------------------------------------


class RemoteArrowSource(PieceSource):
    """Random access over Arrow IPC objects, in the order given (see the module doc)."""

    def __init__(
        self,
        name: str,
        files: Sequence[RemoteFile],
        *,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.type = "arrow"
        self.objects = list(files)
        self.data_files = [f.url for f in self.objects]
        self.storage_options = dict(storage_options or {})
        if not self.objects:
            raise SourceError(f"dataset {name!r} has no data files; point data_files at data")
        self._fs_pid = -1
        self._layouts = read_layouts(name, self._filesystem(), self.objects)
        schema = self._layouts[0].schema
        for f, layout in zip(self.objects[1:], self._layouts[1:], strict=True):
            if not layout.schema.equals(schema, check_metadata=False):
                raise SourceError(
                    f"dataset {name!r}: file {f.url!r} does not match {self.data_files[0]!r} "
                    f"({schema_difference(schema, layout.schema)}); all files of a dataset must "
                    "share one schema"
                )
        self._schema = schema
        self._file_of = {url: k for k, url in enumerate(self.data_files)}
        self._pieces = [(k, b) for k, lay in enumerate(self._layouts) for b in lay.blocks]
        counts = np.array([r for lay in self._layouts for r in lay.rows], dtype=np.int64)
        self._offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        if self._offsets[-1] == 0:
            raise SourceError(
                f"dataset {name!r} has no rows (files: {files_text(self.data_files)}); "
                "remove it or point it at data"
            )

    def _filesystem(self) -> Any:
        # A filesystem made before a fork talks through its parent's event loop thread.
        if self._fs_pid != os.getpid():
            self._fs, _ = filesystem(self.data_files[0], self.storage_options)
            self._fs_pid = os.getpid()
        return self._fs

    def __len__(self) -> int:
        return int(self._offsets[-1])

    @property
    def schema(self) -> pa.Schema:
        return self._schema

    def fingerprint(self, deep: bool = False) -> str:
        """Names, sizes, versions (ETag...), rows and body sizes per batch, schema; ``deep``
        adds bytes."""
        files: list[dict[str, Any]] = []
        for f, lay in zip(self.objects, self._layouts, strict=True):
            entry: dict[str, Any] = {
                "name": os.path.basename(f.url),
                "size": f.size,
                "version": f.version,
                "batch_rows": lay.rows,
                "batch_bytes": [b for _, _, b in lay.blocks],
            }
            if deep:
                entry["sha256"] = hash_url(self.name, f.url, self.storage_options)
            files.append(entry)
        payload = {"format": "arrow", "schema": canonical_schema(self._schema), "files": files}
        return digest(payload)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["objects"] = [{"size": f.size, "version": f.version} for f in self.objects]
        return out

    def _batches(self, pieces: list[int]) -> list[pa.RecordBatch]:
        keys = []
        for p in pieces:
            k, (off, meta, body) = self._pieces[p]
            keys.append((self.data_files[k], self.objects[k].version, off, off + meta + body))

        def fetch(missing: list[Any]) -> list[tuple[Any, int]]:
            requests = [(u, s, e) for u, _, s, e in missing]
            got = fetch_coalesced(self.name, self._filesystem(), requests)
            return [
                (self._decode(u, raw), raw.size)
                for (u, _, _, _), raw in zip(missing, got, strict=True)
            ]

        return block_cache().get_many(keys, fetch)

    def _decode(self, url: str, raw: pa.Buffer) -> pa.RecordBatch:
        prefix = self._layouts[self._file_of[url]].prefix
        try:
            if prefix is None:
                # Zero-copy: the batch's buffers are views of the fetched bytes.
                message = pa.ipc.read_message(raw)
                return pa.ipc.read_record_batch(message, self._schema)
            return pa.ipc.open_stream(pa.py_buffer(prefix + raw.to_pybytes())).read_next_batch()
        except (pa.ArrowException, OSError) as exc:
            raise SourceError(
                f"dataset {self.name!r}: a record batch of {url!r} cannot be read "
                f"({one_line(exc)}); the object may have been replaced: rebuild the index"
            ) from None

    def _piece_getter(self, cols: list[str] | None) -> Callable[[int], pa.RecordBatch]:
        def get(p: int) -> pa.RecordBatch:
            batch = self._batches([p])[0]
            return batch if cols is None else batch.select(cols)

        return get

    def _getter_for(
        self, cols: list[str] | None, rows: np.ndarray
    ) -> Callable[[int], pa.RecordBatch]:
        pieces = np.unique(np.searchsorted(self._offsets, rows, side="right") - 1).tolist()
        got = dict(zip(pieces, self._batches(pieces), strict=True))
        if cols is None:
            return got.__getitem__
        return lambda p: got[p].select(cols)

    def close(self) -> None:
        pass

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_fs", None)
        state["_fs_pid"] = -1
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"RemoteArrowSource({self.name!r}, {len(self.data_files)} objects, {len(self)} rows)"
