"""File sources, one shard per file: Parquet, JSON / JSON Lines, Arrow IPC, CSV and text.

``data_files`` is a path, a glob, or a list of them; a URL (``s3://``, ``gs://``, ...) is read
through ``fsspec`` with ``storage_options``. Parquet and Arrow files know their row counts from
metadata, so they have a ``len()`` and seek to a row without reading what comes before it.

    >>> src = ParquetShardedSource("data/code/*.parquet", columns=["text"])
    >>> len(src), [next(src.open_shard(shard)) for shard in src.shard_names]
    (40, [{'text': 'def f0(): pass'}])
"""

from __future__ import annotations

import glob
import io
import json
import os
from collections.abc import Iterator, Sequence
from itertools import islice
from typing import Any

from mixindex.errors import SourceError, one_line
from mixindex.mixing.sharded import ShardedDataSource, ShardInfo

__all__ = [
    "ArrowShardedSource",
    "CsvShardedSource",
    "FileShardedSource",
    "JsonShardedSource",
    "ParquetShardedSource",
    "TextShardedSource",
]

# Rows decoded per Arrow batch while a shard is read.
_BATCH_ROWS = 1024


def _is_url(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def _resolve(data_files: Any, storage_options: dict[str, Any] | None) -> list[str]:
    entries = [data_files] if isinstance(data_files, (str, os.PathLike)) else data_files
    if not isinstance(entries, (list, tuple)) or not entries:
        raise SourceError(f"data_files = {data_files!r} must be a path, a glob, or a list of them")
    files: list[str] = []
    for entry in entries:
        text = os.fspath(entry)
        if _is_url(text):
            import fsspec

            fs, _, paths = fsspec.get_fs_token_paths(text, storage_options=storage_options or {})
            matches = sorted(fs.unstrip_protocol(p) for p in paths)
        else:
            path = os.path.abspath(os.path.expanduser(text.removeprefix("file://")))
            matches = [path] if os.path.isfile(path) else sorted(glob.glob(path, recursive=True))
            matches = [m for m in matches if os.path.isfile(m)]
        if not matches:
            raise SourceError(f"data_files {text!r} matched no file; check the path or glob")
        files.extend(matches)
    if len(set(files)) != len(files):
        twice = next(f for f in files if files.count(f) > 1)
        raise SourceError(f"file {twice!r} is listed twice in data_files; list each file once")
    return files


class FileShardedSource(ShardedDataSource):
    """Files as shards (the shard names are the file paths, in order)."""

    def __init__(self, data_files: Any, storage_options: dict[str, Any] | None = None) -> None:
        self.storage_options = dict(storage_options or {})
        self.files = _resolve(data_files, self.storage_options)

    @property
    def shard_names(self) -> Sequence[str]:
        return list(self.files)

    def _check(self, shard_name: str) -> str:
        if shard_name not in self.files:
            raise KeyError(f"no shard {shard_name!r}; the shards are the files in shard_names")
        return shard_name

    def _open(self, path: str, mode: str = "rb") -> Any:
        if _is_url(path):
            import fsspec

            return fsspec.open(path, mode, **self.storage_options).open()
        return open(path, mode) if "b" in mode else open(path, mode, encoding="utf-8")

    def open_shard(self, shard_name: str) -> Iterator[dict[str, Any]]:
        return self._rows(self._check(shard_name), 0)

    def open_shard_at_row(self, shard_name: str, row: int) -> Iterator[dict[str, Any]]:
        if isinstance(row, bool) or not isinstance(row, int) or row < 0:
            raise ValueError(f"row = {row!r} must be a whole number >= 0")
        return self._rows(self._check(shard_name), row)

    def _rows(self, path: str, start: int) -> Iterator[dict[str, Any]]:
        raise NotImplementedError

    def __len__(self) -> int:
        counts = [self._shard_rows(f) for f in self.files]
        if any(n is None for n in counts):
            return super().__len__()
        return sum(n for n in counts if n is not None)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self.files)} files)"


def _batch_rows(batches: Any, start: int) -> Iterator[dict[str, Any]]:
    """Rows of Arrow batches from row ``start`` on."""
    for batch in batches:
        n = batch.num_rows
        if start >= n:
            start -= n
            continue
        yield from batch.slice(start).to_pylist()
        start = 0


class ParquetShardedSource(FileShardedSource):
    """Parquet files, one shard each, read by row group; ``columns`` keeps only these."""

    def __init__(
        self,
        data_files: Any,
        storage_options: dict[str, Any] | None = None,
        columns: Sequence[str] | None = None,
    ) -> None:
        super().__init__(data_files, storage_options)
        self.columns = list(columns) if columns is not None else None
        self._groups: dict[str, list[int]] = {}

    def _file(self, path: str) -> Any:
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(self._open(path) if _is_url(path) else path)
        except Exception as exc:
            raise SourceError(f"{path!r} is not a readable Parquet file: {one_line(exc)}") from None

    def _group_rows(self, path: str) -> list[int]:
        if path not in self._groups:
            with self._file(path) as pf:
                md = pf.metadata
                self._groups[path] = [md.row_group(i).num_rows for i in range(md.num_row_groups)]
        return self._groups[path]

    def get_shard_info(self, shard_name: str) -> ShardInfo:
        path = self._check(shard_name)
        return ShardInfo(self.files.index(path), path, sum(self._group_rows(path)))

    def _rows(self, path: str, start: int) -> Iterator[dict[str, Any]]:
        groups = self._group_rows(path)
        first = 0
        while first < len(groups) and start >= groups[first]:
            start -= groups[first]
            first += 1
        if first == len(groups):
            return
        with self._file(path) as pf:
            batches = pf.iter_batches(
                batch_size=_BATCH_ROWS, row_groups=range(first, len(groups)), columns=self.columns
            )
            yield from _batch_rows(batches, start)

    def _random_access(self, name: str) -> Any:
        """mixindex's random-access Parquet reader, for local files read whole."""
        if self.columns is not None or any(_is_url(f) for f in self.files):
            return None
        from mixindex.sources.parquet import ParquetSource

        try:
            return ParquetSource(name, self.files)
        except SourceError:
            return None


class ArrowShardedSource(FileShardedSource):
    """Arrow IPC files (file or stream format, as ``datasets`` writes them), one shard each."""

    def _reader(self, path: str) -> Any:
        import pyarrow as pa

        source = self._open(path) if _is_url(path) else pa.memory_map(path)
        try:
            return pa.ipc.open_file(source)
        except pa.ArrowInvalid:
            source.seek(0)
            try:
                return pa.ipc.open_stream(source)
            except pa.ArrowInvalid as exc:
                raise SourceError(
                    f"{path!r} is not an Arrow IPC file or stream: {one_line(exc)}"
                ) from None

    def _batches(self, path: str) -> Iterator[Any]:
        reader = self._reader(path)
        if hasattr(reader, "num_record_batches"):
            for i in range(reader.num_record_batches):
                yield reader.get_batch(i)
        else:
            yield from reader

    def get_shard_info(self, shard_name: str) -> ShardInfo:
        path = self._check(shard_name)
        return ShardInfo(self.files.index(path), path, sum(b.num_rows for b in self._batches(path)))

    def _rows(self, path: str, start: int) -> Iterator[dict[str, Any]]:
        yield from _batch_rows(self._batches(path), start)

    def _random_access(self, name: str) -> Any:
        if any(_is_url(f) for f in self.files):
            return None
        from mixindex.sources.arrow import ArrowSource

        try:
            return ArrowSource(name, self.files)
        except SourceError:
            return None


class JsonShardedSource(FileShardedSource):
    """JSON Lines files (``jsonl=True``: one object per line) or JSON files holding a list of
    objects (``jsonl=False``), one shard each."""

    def __init__(
        self, data_files: Any, storage_options: dict[str, Any] | None = None, jsonl: bool = True
    ) -> None:
        super().__init__(data_files, storage_options)
        self.jsonl = bool(jsonl)

    def _rows(self, path: str, start: int) -> Iterator[dict[str, Any]]:
        with self._open(path, "rt") as f:
            if self.jsonl:
                lines = (line for line in f if line.strip())
                for number, line in enumerate(islice(lines, start, None), start + 1):
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise SourceError(
                            f"{path!r}: record {number} is not valid JSON ({exc}); use "
                            "jsonl=False for a file holding one JSON list"
                        ) from None
                    if not isinstance(record, dict):
                        raise SourceError(
                            f"{path!r}: record {number} is a {type(record).__name__}, not an "
                            "object; use jsonl=False for a file holding one JSON list"
                        )
                    yield record
                return
            try:
                records = json.load(f)
            except json.JSONDecodeError as exc:
                raise SourceError(
                    f"{path!r} is not valid JSON ({exc}); use jsonl=True for JSON Lines"
                ) from None
        if not isinstance(records, list):
            raise SourceError(f"{path!r} holds a {type(records).__name__}, not a list of records")
        yield from records[start:]


class CsvShardedSource(FileShardedSource):
    """CSV files (types inferred by pyarrow), one shard each."""

    def __init__(
        self, data_files: Any, storage_options: dict[str, Any] | None = None, delimiter: str = ","
    ) -> None:
        super().__init__(data_files, storage_options)
        if not isinstance(delimiter, str) or len(delimiter) != 1:
            raise SourceError(f"delimiter = {delimiter!r} must be one character")
        self.delimiter = delimiter

    def _rows(self, path: str, start: int) -> Iterator[dict[str, Any]]:
        import pyarrow as pa
        import pyarrow.csv as pcsv

        with self._open(path) as f:
            data = io.BytesIO(f.read()) if _is_url(path) else f
            try:
                reader = pcsv.open_csv(
                    data, parse_options=pcsv.ParseOptions(delimiter=self.delimiter)
                )
                yield from _batch_rows(reader, start)
            except pa.ArrowInvalid as exc:
                raise SourceError(f"{path!r} is not readable CSV: {one_line(exc)}") from None


class TextShardedSource(FileShardedSource):
    """Text files, one example per line as ``{text_field: line}`` (no newline), one shard each."""

    def __init__(
        self,
        data_files: Any,
        storage_options: dict[str, Any] | None = None,
        text_field: str = "text",
    ) -> None:
        super().__init__(data_files, storage_options)
        self.text_field = text_field

    def _rows(self, path: str, start: int) -> Iterator[dict[str, Any]]:
        with self._open(path, "rt") as f:
            for line in islice(f, start, None):
                yield {self.text_field: line.rstrip("\r\n")}
