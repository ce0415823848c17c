"""``datasets.Dataset`` objects as sources.

A dataset read straight from its Arrow cache files (``load_from_disk``, ``load_dataset``,
``map``) is opened as an :class:`~mixindex.sources.arrow.ArrowSource` over those files, so an
index records real paths and can reopen them. Anything else (built in memory, or with an indices
mapping from ``select``/``shuffle``/``filter``, or columns renamed, cast or added) is wrapped
as it is: its ``data_files`` is empty, and **the same dataset must be passed again when the
index is reopened**.

This module never imports ``datasets``: the object is duck-typed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from mixindex.sources.arrow import ArrowSource
from mixindex.sources.base import (
    PieceSource,
    Source,
    SourceError,
    canonical_schema,
    digest,
)

__all__ = ["DatasetSource", "is_hf_dataset", "open_hf_dataset"]


def is_hf_dataset(obj: object) -> bool:
    """True for a ``datasets.Dataset`` (checked by class, so ``datasets`` stays unimported)."""
    cls = type(obj)
    return any(c.__name__ == "Dataset" and c.__module__.startswith("datasets") for c in cls.__mro__)


def open_hf_dataset(name: str, ds: Any) -> Source:
    """An ArrowSource over the cache files if they hold exactly the dataset, else a wrapper."""
    files = _backing_files(ds)
    if files:
        try:
            src = ArrowSource(name, files)
        except SourceError:
            src = None
        if (
            src is not None
            and len(src) == len(ds)
            and src.schema.equals(ds.data.table.schema, check_metadata=False)
        ):
            return src
    return DatasetSource(name, ds)


# Replayed table operations that change only the schema's metadata.
_METADATA_ONLY = frozenset({"replace_schema_metadata"})


def _backing_files(ds: Any) -> list[str] | None:
    """The files whose concatenation is the dataset's table, or None if it is anything else.

    ``cache_files`` alone is not enough: a contiguous ``select`` slices the table without an
    indices mapping, and ``rename_column``/``cast``/``add_column`` change it, yet all keep the
    same cache files. So the table's blocks are walked: every block must be a whole file
    (a ``MemoryMappedTable`` with no replayed operation), stacked vertically.
    """
    if getattr(ds, "_indices", None) is not None or not getattr(ds, "cache_files", None):
        return None
    table = ds.data
    blocks = getattr(table, "blocks", None)
    parts = [table] if blocks is None else [b for row in blocks for b in row]
    if blocks is not None and any(len(row) != 1 for row in blocks):
        return None  # columns concatenated side by side
    files = []
    for part in parts:
        path = getattr(part, "path", None)
        replays = getattr(part, "replays", None) or []
        # A dataset of one file records the features in the schema's metadata as a replayed
        # operation; that changes no row or column. Any other operation does.
        if not isinstance(path, str) or any(r[0] not in _METADATA_ONLY for r in replays):
            return None
        files.append(os.path.abspath(path))
    return files


class DatasetSource(PieceSource):
    """A ``datasets.Dataset`` read through its Arrow table and indices mapping, as it is."""

    def __init__(self, name: str, ds: Any) -> None:
        self._setup(name, ds)

    def _setup(self, name: str, ds: Any) -> None:
        self.name = name
        self.type = "arrow"
        self.data_files: list[str] = []
        self._ds = ds
        self._num_rows = len(ds)
        self._schema: pa.Schema = ds.data.table.schema
        if self._num_rows == 0:
            raise SourceError(
                f"dataset {name!r} has no rows (a datasets.Dataset of 0 rows); remove it or "
                "point it at data"
            )
        self._load()

    def _load(self) -> None:
        table: pa.Table = self._ds.data.table
        self._batches = table.to_batches()
        counts = np.array([b.num_rows for b in self._batches], dtype=np.int64)
        self._offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        indices = self._ds._indices
        # The mapping sends row r of the dataset to row indices[r] of the table.
        self._indices: np.ndarray | None = (
            None
            if indices is None
            else indices.table.column(0).to_numpy().astype(np.int64, copy=False)
        )

    def __len__(self) -> int:
        return self._num_rows

    @property
    def schema(self) -> pa.Schema:
        return self._schema

    def fingerprint(self, deep: bool = False) -> str:
        """From the dataset's own fingerprint, rows and schema; ``deep`` hashes the data."""
        payload: dict[str, Any] = {
            "format": "datasets.Dataset",
            "dataset_fingerprint": getattr(self._ds, "_fingerprint", None),
            "num_rows": self._num_rows,
            "schema": canonical_schema(self._schema),
        }
        if deep:
            h = hashlib.sha256()
            for batch in self._batches:
                h.update(batch.serialize())
            if self._indices is not None:
                h.update(self._indices.tobytes())
            payload["sha256"] = h.hexdigest()
        return digest(payload)

    def _map_rows(self, idx: np.ndarray) -> np.ndarray:
        return idx if self._indices is None else self._indices[idx]

    def _piece_getter(self, cols: list[str] | None) -> Callable[[int], pa.RecordBatch]:
        # The dataset's table lives as long as the dataset (memory or memory map): slices are safe.
        batches = self._batches
        return lambda i: batches[i] if cols is None else batches[i].select(cols)

    def close(self) -> None:
        # Nothing to drop: the data belongs to the datasets.Dataset, which the caller holds.
        pass

    def __getstate__(self) -> dict[str, Any]:
        return {"name": self.name, "ds": self._ds}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._setup(state["name"], state["ds"])

    def __repr__(self) -> str:
        return f"DatasetSource({self.name!r}, {self._num_rows} rows)"
