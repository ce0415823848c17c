"""The :class:`Source` protocol and the helpers every format shares.

A source is a list of files (or an in-memory ``datasets.Dataset``) read by random access: its
length and fingerprint come from metadata, and :meth:`Source.take` reads a batch of rows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pyarrow as pa

from mixindex.errors import SourceError, one_line

__all__ = [
    "Source",
    "SourceError",
    "canonical_schema",
    "check_columns",
    "check_rows",
    "digest",
    "files_text",
    "hash_file",
    "one_line",
    "row_groups",
    "schema_difference",
    "take_grouped",
    "take_grouped_parts",
]

_READ_SIZE = 1 << 20
# A piece hit by at most this many runs of rows is sliced rather than taken (see take_grouped).
_SLICE_RUNS = 8


@runtime_checkable
class Source(Protocol):
    """Random access to the rows of one dataset of the mix.

    ``data_files`` are absolute paths in read order (empty for an in-memory dataset).
    """

    name: str
    type: str
    data_files: list[str]

    def __len__(self) -> int: ...

    @property
    def schema(self) -> pa.Schema: ...

    def fingerprint(self, deep: bool = False) -> str:
        """``"sha256:<hex>"`` over file names, sizes, row counts and schema; ``deep`` adds bytes."""
        ...

    def describe(self) -> dict[str, Any]:
        """``{"name", "type", "data_files", "num_rows", "fingerprint"}``, as stored in an index."""
        ...

    def take(self, rows: np.ndarray, columns: list[str] | None = None) -> pa.Table:
        """These rows (any order, duplicates allowed) in this order; IndexError if out of range."""
        ...

    def take_parts(
        self, rows: np.ndarray, columns: list[str] | None = None
    ) -> tuple[list[pa.RecordBatch], np.ndarray | None]:
        """The rows grouped by record batch / row group, with the permutation that says where
        each came from: ``(parts, order)``, parts' rows end to end being ``rows[order]``
        (``order`` None: ``rows`` as given). The reader's batched path."""
        ...

    def close(self) -> None: ...


def files_text(files: Sequence[str], limit: int = 3) -> str:
    """Up to ``limit`` paths for a message, then how many more (messages stay one short line)."""
    shown = ", ".join(files[:limit])
    return shown if len(files) <= limit else f"{shown} and {len(files) - limit} more"


def canonical_schema(schema: pa.Schema) -> list[str]:
    # Field names and types as text, not serialised flatbuffers or metadata: the bytes pyarrow
    # writes may change between versions, and that must not invalidate every stored index.
    return [f"{f.name}:{f.type}:{'null' if f.nullable else 'notnull'}" for f in schema]


def schema_difference(first: pa.Schema, other: pa.Schema) -> str:
    """How ``other`` differs from ``first``, in a few words for an error message."""
    only_first = [n for n in first.names if n not in other.names]
    only_other = [n for n in other.names if n not in first.names]
    if only_first or only_other:
        return f"columns only in the first file: {only_first}, only in this one: {only_other}"
    for f, g in zip(first, other, strict=False):
        if f.name != g.name:
            return f"the same columns in another order ({', '.join(other.names)})"
        if f.type != g.type or f.nullable != g.nullable:
            return f"column {f.name!r} is {_field(g)} here but {_field(f)} in the first file"
    return "a difference in type details"


def _field(f: pa.Field) -> str:
    return f"{f.type}" if f.nullable else f"{f.type} not null"


def digest(payload: object) -> str:
    """``"sha256:<hex>"`` of a JSON-able value, keys sorted so that the text is canonical."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def hash_file(path: str) -> str:
    """sha256 hex digest of every byte of a file, read in 1 MiB pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_READ_SIZE):
            h.update(chunk)
    return h.hexdigest()


def check_rows(rows: object, num_rows: int, name: str) -> np.ndarray:
    """Rows as a 1-D int64 array; IndexError naming the first row outside ``[0, num_rows)``."""
    arr = np.asarray(rows)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"dataset {name!r}: rows must be integers, got dtype {arr.dtype}")
    # Compare before the cast so that a uint64 above 2**63 is reported rather than wrapped.
    bad = (arr >= num_rows) if arr.dtype.kind == "u" else ((arr < 0) | (arr >= num_rows))
    if bad.any():
        first = arr[np.argmax(bad)]
        raise IndexError(f"dataset {name!r}: row {int(first)} is out of range [0, {num_rows})")
    return arr.astype(np.int64, copy=False)


def check_columns(columns: Sequence[str] | None, schema: pa.Schema, name: str) -> list[str] | None:
    """The projection as a list, or SourceError naming a column the dataset does not have."""
    if columns is None:
        return None
    if isinstance(columns, str):
        columns = [columns]
    names = schema.names
    for c in columns:
        if c not in names:
            raise SourceError(
                f"dataset {name!r} has no column {c!r} (columns: {', '.join(names)}); "
                "check the column name"
            )
    return list(columns)


def take_grouped(
    rows: np.ndarray,
    offsets: np.ndarray,
    get_piece: Callable[[int], pa.RecordBatch],
    *,
    zero_copy: bool,
) -> pa.Table:
    """Read ``rows`` from pieces (record batches, decoded row groups) starting at ``offsets``,
    in the requested order: :func:`take_grouped_parts`, concatenated and put back in order."""
    parts, order = take_grouped_parts(rows, offsets, get_piece, zero_copy=zero_copy)
    out = parts[0] if len(parts) == 1 else pa.concat_batches(parts)
    if order is not None:
        # Parts hold rows[order]; output row order[i] is part row i.
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order), dtype=order.dtype)
        out = out.take(pa.array(inverse))
    return pa.Table.from_batches([out])


def take_grouped_parts(
    rows: np.ndarray,
    offsets: np.ndarray,
    get_piece: Callable[[int], pa.RecordBatch],
    *,
    zero_copy: bool,
) -> tuple[list[pa.RecordBatch], np.ndarray | None]:
    """Read ``rows`` from pieces (record batches, decoded row groups) starting at ``offsets``,
    grouped by piece: ``(parts, order)``, where the parts' rows, end to end, are
    ``rows[order]`` (``order`` is None when that is ``rows`` itself).

    A caller that scatters the rows itself (the reader turning them into dicts) skips both the
    concatenation and the reordering take: each copies every string once more.

    ``offsets`` has one entry per piece plus the total. Rows are grouped by piece with numpy, so
    each piece is fetched once; ``zero_copy`` says the pieces are views of memory that outlives
    the call (memory maps), so short runs of rows may be sliced rather than taken.

    Why this shape (measured with pyarrow 26 on 2 CPUs: 3 Arrow files of 200-500 char strings,
    1024 random rows; numbers are medians and noisy by ~30%):

    - ``Table.take`` on the whole multi-chunk table copies every chunk first
      (apache/arrow#39565): 3 ms over 60k rows, 27 ms over 600k rows in 600 batches.
    - One ``RecordBatch.take`` per touched batch costs ~14 us of dispatch each: 2.6 ms when the
      rows touch 30 batches, 12-20 ms when they touch ~490 (1000-row batches, as ``datasets``
      writes them).
    - Zero-copy slices of runs (~2 us each) plus one concatenation: 2.7 ms in both cases, and
      0.15 ms for 1024 contiguous rows. So a piece hit by at most ``_SLICE_RUNS`` runs is
      sliced, a busier one taken.
    - Putting the grouped parts back in requested order: ``concat_batches`` + one
      ``RecordBatch.take`` 0.12-0.5 ms; ``concat_tables`` + ``combine_chunks`` + take, or a take
      on the multi-chunk concatenation, 0.15-1.5 ms; per-column ``concat_arrays`` 0.6-5 ms.
    """
    n = len(rows)
    if n == 0:
        return [], None
    piece = np.searchsorted(offsets, rows, side="right") - 1
    local = rows - offsets[piece]
    order: np.ndarray | None = None
    if n > 1 and np.any(piece[1:] < piece[:-1]):
        # Stable, so that rows keep their requested order inside each piece.
        order = np.argsort(piece, kind="stable")
        piece, local = piece[order], local[order]
    new_piece = piece[1:] != piece[:-1]
    bounds = np.flatnonzero(new_piece) + 1
    starts = [0, *bounds.tolist()]
    ends = [*starts[1:], n]
    pieces = piece[starts].tolist()
    parts: list[pa.RecordBatch] = []
    if not zero_copy:
        for p, s, e in zip(pieces, starts, ends, strict=True):
            parts.append(get_piece(p).take(pa.array(local[s:e])))
        return parts, order
    # A run is a stretch of consecutive rows of one piece, in requested order. Everything per
    # run is computed with numpy first: a Python loop doing numpy work per piece costs ~20 us
    # per piece, as much as the take it is meant to save.
    run_start = np.empty(n, dtype=bool)
    run_start[0] = True
    np.logical_or(new_piece, local[1:] - local[:-1] != 1, out=run_start[1:])
    heads = np.flatnonzero(run_start)
    first_run = [*np.searchsorted(heads, starts).tolist(), len(heads)]
    few = [first_run[k + 1] - first_run[k] <= _SLICE_RUNS for k in range(len(starts))]
    if any(few):
        run_len = np.diff(np.append(heads, n)).tolist()
        run_local = local[heads].tolist()
    for k, (p, s, e) in enumerate(zip(pieces, starts, ends, strict=True)):
        batch = get_piece(p)
        if few[k]:
            parts.extend(
                batch.slice(run_local[r], run_len[r]) for r in range(first_run[k], first_run[k + 1])
            )
        else:
            parts.append(batch.take(pa.array(local[s:e])))
    return parts, order


def row_groups(source: Source) -> tuple[int, ...]:
    """Rows per row group (Parquet) or record batch (Arrow IPC) of ``source``, in row order,
    from its metadata; ``()`` where its rows are not stored piece by piece in row order (a
    dataset read through an indices mapping): then it is one group."""
    if not isinstance(source, PieceSource) or type(source)._map_rows is not PieceSource._map_rows:
        return ()
    return tuple(int(n) for n in np.diff(source._offsets))


class PieceSource:
    """What every source shares: rows live in consecutive pieces (record batches or row groups)
    whose first rows are ``_offsets``; a subclass says how to get a piece.

    Subclasses set ``name``, ``type``, ``data_files``, ``_schema`` and ``_offsets`` and define
    ``__len__``, ``fingerprint`` and ``_piece_getter``.
    """

    name: str
    type: str
    data_files: list[str]
    _schema: pa.Schema
    _offsets: np.ndarray
    # Whether a short run of rows may be returned as a slice of its piece (see take_grouped).
    zero_copy: bool = True

    def __len__(self) -> int:
        raise NotImplementedError

    def fingerprint(self, deep: bool = False) -> str:
        raise NotImplementedError

    def _piece_getter(self, cols: list[str] | None) -> Callable[[int], pa.RecordBatch]:
        raise NotImplementedError

    def _map_rows(self, idx: np.ndarray) -> np.ndarray:
        """Row numbers as the pieces count them (a dataset's indices mapping goes here)."""
        return idx

    def _getter_for(
        self, cols: list[str] | None, rows: np.ndarray
    ) -> Callable[[int], pa.RecordBatch]:
        """The piece getter for one read of ``rows`` (mapped): a remote source fetches every
        piece the rows touch at once here, before they are taken one by one."""
        return self._piece_getter(cols)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "data_files": list(self.data_files),
            "num_rows": len(self),
            "fingerprint": self.fingerprint(),
        }

    def take(self, rows: np.ndarray, columns: list[str] | None = None) -> pa.Table:
        """The given rows in the given order; each piece touched is read once."""
        cols = check_columns(columns, self._schema, self.name)
        idx = check_rows(rows, len(self), self.name)
        if idx.size == 0:
            empty = self._schema.empty_table()
            return empty if cols is None else empty.select(cols)
        mapped = self._map_rows(idx)
        get = self._getter_for(cols, mapped)
        return take_grouped(mapped, self._offsets, get, zero_copy=self.zero_copy)

    def take_parts(
        self, rows: np.ndarray, columns: list[str] | None = None
    ) -> tuple[list[pa.RecordBatch], np.ndarray | None]:
        """The rows grouped by piece, not put back in order: see ``take_grouped_parts``."""
        cols = check_columns(columns, self._schema, self.name)
        idx = check_rows(rows, len(self), self.name)
        if idx.size == 0:
            return [], None
        mapped = self._map_rows(idx)
        get = self._getter_for(cols, mapped)
        return take_grouped_parts(mapped, self._offsets, get, zero_copy=self.zero_copy)
