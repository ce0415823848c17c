"""Serving a built index: ``mixindex.open(path)`` -> a dataset of examples by position.

Each example is a new dict: the columns of the source's row plus ``"__source__"``. Lookups are
O(1) memory-mapped reads; batched reads group positions by source so that each source does one
grouped take. Opening checks every source against the fingerprint recorded at build time (S7).

>>> # ds = mixindex.open("mix.mixindex"); ds[0]["__source__"]
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mixindex.errors import SourceChangedError, SourceError
from mixindex.sources import Source, reopen_source
from mixindex.store import StoredIndex

SOURCE_FIELD = "__source__"


def _describe_change(name: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    if old["num_rows"] != new["num_rows"]:
        what = f"its row count changed from {old['num_rows']} to {new['num_rows']}"
    elif [Path(f).name for f in old["data_files"]] != [Path(f).name for f in new["data_files"]]:
        what = "its files changed"
    else:
        what = "its files' sizes, schema or metadata changed"
    return (
        f"source {name!r} changed since the index was built: {what} (fingerprint "
        f"{old['fingerprint']} -> {new['fingerprint']}); rebuild the index, or open it with "
        "verify=False (--no-verify) to read it anyway"
    )


class MixedDataset:
    """A planned mixture, read by position. Use :func:`open` to get one."""

    def __init__(
        self,
        path: str | Path,
        *,
        data_files: Mapping[str, Sequence[str]] | None = None,
        datasets: Mapping[str, Any] | None = None,
        columns: Sequence[str] | None = None,
        verify: bool = True,
    ) -> None:
        self.index = StoredIndex(path)
        self.columns = list(columns) if columns is not None else None
        data_files = dict(data_files or {})
        datasets = dict(datasets or {})
        self.names: list[str] = [rec["name"] for rec in self.index.sources]
        unknown = [n for n in (*data_files, *datasets) if n not in self.names]
        if unknown:
            raise SourceChangedError(
                f"no source named {unknown[0]!r} in this index (sources: {', '.join(self.names)})"
            )
        self.sources: list[Source] = []
        for rec in self.index.sources:
            name = rec["name"]
            override = datasets.get(name, data_files.get(name))
            try:
                src = reopen_source(rec, override)
            except SourceError as exc:
                if not verify or override is not None:
                    raise
                # A recorded file that is gone or no longer readable is a changed source (S7).
                raise SourceChangedError(
                    f"source {name!r} changed since the index was built: {exc}"
                ) from None
            if verify:
                now = src.describe()
                if now["fingerprint"] != rec["fingerprint"] or now["num_rows"] != rec["num_rows"]:
                    raise SourceChangedError(_describe_change(name, rec, now))
            self.sources.append(src)

    # ---- facts ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.index.num_examples

    @property
    def digest(self) -> str:
        """The index's content digest."""
        return self.index.digest

    def __repr__(self) -> str:
        return (
            f"MixedDataset({str(self.index.path)!r}, {len(self):,} examples, sources={self.names})"
        )

    # ---- reading -------------------------------------------------------------------------------

    def _positions(self, positions: Sequence[int] | np.ndarray) -> np.ndarray:
        pos = np.asarray(positions, dtype=np.int64).reshape(-1)
        n = len(self)
        if pos.size:
            pos = np.where(pos < 0, pos + n, pos)
            bad = (pos < 0) | (pos >= n)
            if bad.any():
                raise IndexError(
                    f"position {np.asarray(positions).reshape(-1)[np.argmax(bad)]} is out of "
                    f"range for a mix of {n} examples"
                )
        return pos

    def lookup(
        self, positions: Sequence[int] | np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(source_id, row, epoch)`` arrays for the given positions."""
        return self.index.lookup(self._positions(positions))

    def __getitems__(self, positions: Sequence[int] | np.ndarray) -> list[dict[str, Any]]:
        """Examples at many positions, in order; one grouped read per source."""
        pos = self._positions(positions)
        source, row, _ = self.index.lookup(pos)
        out: list[dict[str, Any]] = [{}] * len(pos)
        for s in np.unique(source):
            where = np.flatnonzero(source == s)
            table = self.sources[int(s)].take(row[where].astype(np.int64), self.columns)
            name = self.names[int(s)]
            for i, ex in zip(where.tolist(), table.to_pylist(), strict=True):
                ex[SOURCE_FIELD] = name
                out[i] = ex
        return out

    def __getitem__(self, key: int | slice) -> Any:
        if isinstance(key, slice):
            return self.__getitems__(np.arange(len(self))[key])
        if isinstance(key, (int, np.integer)):
            return self.__getitems__([int(key)])[0]
        raise TypeError(f"index with an int or a slice, not {type(key).__name__}")

    def iter(self, start: int = 0, batch_size: int = 1024) -> Iterator[dict[str, Any]]:
        """Examples from position ``start`` to the end, read in batches."""
        n = len(self)
        for lo in range(start, n, batch_size):
            yield from self.__getitems__(np.arange(lo, min(lo + batch_size, n)))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self.iter(0)

    def close(self) -> None:
        for src in self.sources:
            src.close()
        self.index.close()


def open(
    path: str | Path,
    *,
    data_files: Mapping[str, Sequence[str]] | None = None,
    datasets: Mapping[str, Any] | None = None,
    columns: Sequence[str] | None = None,
    verify: bool = True,
) -> MixedDataset:
    """Open a built index for reading.

    ``data_files`` / ``datasets`` replace where a source's data lives (for moved files, or for a
    ``datasets.Dataset`` that was built from memory); ``verify=False`` skips the fingerprint check.
    """
    return MixedDataset(
        path, data_files=data_files, datasets=datasets, columns=columns, verify=verify
    )
