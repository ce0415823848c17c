"""Sources an index could not reopen by itself, converted once into the Arrow cache.

JSON / JSON Lines, CSV and text files have no row counts and no random access; an in-memory
``datasets.Dataset`` has no files; a streaming ``datasets.IterableDataset`` has neither. At build
time each is written into ``CACHE_DIR/<name>-<fingerprint prefix>/`` as Arrow IPC files
(``part-00000.arrow``, record batches of :data:`~mixindex.sources.cache.BATCH_ROWS` rows) with a
``cache.json`` naming what it was made from, and the index records the cache files: so
``mixindex.open`` and ``mixindex show`` need no extra arguments.

The fingerprint that names the cache is taken from the content: the files' bytes, the dataset's
data (``Source.fingerprint(deep=True)``), or the rows a stream gave. A cache whose ``cache.json``
matches is reused; anything else is written to a temporary sibling and renamed into place.

- ``json``: JSON Lines (one object per line), or a file holding one JSON list of objects;
- ``csv``: comma-separated (``.tsv``: tab-separated) with a header row, types inferred;
- ``text``: one example per line, ``{"text": line}`` without the newline.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from mixindex.errors import SourceError
from mixindex.sources.arrow import ArrowSource
from mixindex.sources.base import Source, digest, hash_file, one_line

__all__ = ["CONVERTED_TYPES", "PendingSource", "convert_source", "needs_conversion"]

CONVERTED_TYPES = ("json", "csv", "text")
# Rows gathered into one Arrow table while reading text formats or a stream.
_CHUNK_ROWS = 8192


class PendingSource:
    """A source that must be converted into the Arrow cache before it can be planned or read:
    files of a text format (``kind`` json, csv or text) or a stream (``kind`` stream)."""

    def __init__(
        self,
        name: str,
        kind: str,
        files: list[str],
        stream: Any = None,
        num_rows: int | None = None,
        *,
        storage_options: Mapping[str, Any] | None = None,
        objects: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.type = kind
        self.data_files = list(files)
        self.stream = stream
        self.num_rows = num_rows
        # Files behind URLs: fsspec's options, and each object's size and version by URL.
        self.storage_options = dict(storage_options or {})
        self.objects = dict(objects or {})

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"PendingSource({self.name!r}, {self.type})"


def needs_conversion(src: Any) -> bool:
    """True for a pending source and for an in-memory dataset (a source with no files)."""
    return isinstance(src, PendingSource) or not getattr(src, "data_files", None)


def _text_rows(src: PendingSource, path: str) -> Iterator[pa.Table]:
    """Tables of rows read from one file of a text format (local, or a URL read through fsspec)."""
    import pyarrow.csv as pcsv

    kind = src.type
    remote = path in src.objects
    if remote:
        from mixindex.sources.remote import open_url
    try:
        if kind == "csv":
            delimiter = "\t" if path.lower().endswith(".tsv") else ","
            options = pcsv.ParseOptions(delimiter=delimiter)
            if not remote:
                yield from (
                    pa.Table.from_batches([b]) for b in pcsv.open_csv(path, parse_options=options)
                )
                return
            with open_url(src.name, path, src.storage_options) as binary:
                yield from (
                    pa.Table.from_batches([b]) for b in pcsv.open_csv(binary, parse_options=options)
                )
            return
        with (
            open_url(src.name, path, src.storage_options, "r")
            if remote
            else open(path, encoding="utf-8")
        ) as f:
            if kind == "text":
                yield from _tables({"text": line.rstrip("\r\n")} for line in f)
                return
            head = f.read(4096).lstrip()
            f.seek(0)
            if head.startswith("["):
                records = json.load(f)
                if not isinstance(records, list):
                    raise ValueError(f"it holds a {type(records).__name__}, not a list")
                yield from _tables(records)
            else:
                yield from _tables(json.loads(line) for line in f if line.strip())
    except SourceError:
        raise
    except Exception as exc:
        # A remote file also fails with its filesystem's own errors (a lost connection).
        raise SourceError(
            f"file {path!r} is not readable as {kind} ({one_line(exc)}); check the file or its type"
        ) from None


def _tables(records: Iterable[Any]) -> Iterator[pa.Table]:
    chunk: list[Any] = []
    for record in records:
        if not isinstance(record, dict):
            raise ValueError(f"a record is a {type(record).__name__}, not an object")
        chunk.append(record)
        if len(chunk) == _CHUNK_ROWS:
            yield pa.Table.from_pylist(chunk)
            chunk = []
    if chunk:
        yield pa.Table.from_pylist(chunk)


def _write(folder: Path, name: str, tables: Iterable[pa.Table]) -> tuple[list[str], str]:
    """Write the tables as one IPC file in ``folder``; ``(file names, sha256 of the rows)``."""
    from mixindex.sources.cache import BATCH_ROWS

    h = hashlib.sha256()
    schema = None
    writer = None
    sink = None
    try:
        for table in tables:
            if schema is None:
                schema = table.schema
                sink = pa.OSFile(str(folder / "part-00000.arrow"), "wb")
                writer = pa.ipc.new_file(sink, schema)
            elif not table.schema.equals(schema):
                try:
                    table = table.cast(schema)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
                    raise SourceError(
                        f"dataset {name!r}: its rows do not share one schema ({schema} then "
                        f"{table.schema}); give every row the same fields and types"
                    ) from None
            if writer is None:
                raise RuntimeError("mixindex internal error: writer is None")
            for batch in table.combine_chunks().to_batches(max_chunksize=BATCH_ROWS):
                h.update(batch.serialize())
                writer.write_batch(batch)
    finally:
        if writer is not None:
            writer.close()
        if sink is not None:
            sink.close()
    if schema is None:
        raise SourceError(f"dataset {name!r} has no rows; remove it or point it at data")
    return ["part-00000.arrow"], "sha256:" + h.hexdigest()


def _stream_tables(src: PendingSource) -> Iterator[pa.Table]:
    from itertools import islice

    rows: Iterable[Any] = iter(src.stream)
    if src.num_rows is not None:
        rows = islice(rows, src.num_rows)
    yield from _tables(rows)


def _dataset_tables(src: Source) -> Iterator[pa.Table]:
    import numpy as np

    n = len(src)
    for lo in range(0, n, _CHUNK_ROWS):
        yield src.take(np.arange(lo, min(lo + _CHUNK_ROWS, n)))


def _existing(folder: Path, origin: dict[str, Any]) -> tuple[ArrowSource, dict[str, Any]] | None:
    """A finished cache of ``origin`` in ``folder`` that reads back whole, or None."""
    from mixindex.sources.cache import CACHE_VERSION

    try:
        found = json.loads((folder / "cache.json").read_text(encoding="utf-8"))
        made_from = dict(found["source"])
        rows = made_from.pop("num_rows")
        if found["cache_version"] != CACHE_VERSION or made_from != origin:
            return None
        cached = ArrowSource(origin["name"], [str(folder / f) for f in found["files"]])
    except (OSError, ValueError, KeyError, TypeError, SourceError):
        return None
    return (cached, found) if len(cached) == rows else None


def convert_source(src: Any, cache_dir: Path | str) -> tuple[ArrowSource, dict[str, Any]]:
    """The Arrow cache of a source that needs one (made if missing) and its index record."""
    from mixindex.sources.cache import CACHE_VERSION, _folder_name, make_cache_dir

    cache_dir = Path(cache_dir).expanduser().absolute()
    make_cache_dir(cache_dir)
    name = src.name
    origin: dict[str, Any] = {"name": name, "type": src.type, "data_files": list(src.data_files)}
    if isinstance(src, PendingSource) and src.type in CONVERTED_TYPES:
        files = [_file_identity(src, f) for f in src.data_files]
        origin["fingerprint"] = digest({"format": src.type, "files": files})
        tables: Iterable[pa.Table] = (t for f in src.data_files for t in _text_rows(src, f))
    elif isinstance(src, PendingSource):
        # A stream: its fingerprint is that of the rows it gave, known once they are read.
        origin.update(type="stream", num_rows_cap=src.num_rows)
        tables = _stream_tables(src)
    else:
        # The dataset's own fingerprint is what a dataset passed again is checked against;
        # the cache is named by the data's.
        origin["fingerprint"] = src.fingerprint()
        origin["content"] = src.fingerprint(deep=True)
        tables = _dataset_tables(src)
    if "fingerprint" in origin:
        folder = cache_dir / _folder_name(name, origin.get("content", origin["fingerprint"]))
        found = _existing(folder, origin)
        if found is not None:
            return found[0], _record(*found, folder)
    tmp = cache_dir / f".{_folder_name(name, 'tmp')}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        written, rows_digest = _write(tmp, name, tables)
        origin.setdefault("fingerprint", rows_digest)
        folder = cache_dir / _folder_name(name, origin.get("content", origin["fingerprint"]))
        found = _existing(folder, origin)
        if found is None:
            rows = len(ArrowSource(name, [str(tmp / f) for f in written]))
            manifest = {
                "cache_version": CACHE_VERSION,
                "source": {**origin, "num_rows": rows},
                "files": written,
            }
            (tmp / "cache.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
            # Replace a stale cache of the same fingerprint prefix (damaged, or another version).
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(tmp, folder)
            found = _existing(folder, origin)
        if found is None:
            raise SourceError(
                f"dataset {name!r}: the Arrow cache written to {str(folder)!r} does not read "
                "back; remove the folder and build again"
            )
        return found[0], _record(*found, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _file_identity(src: PendingSource, path: str) -> list[Any]:
    """What names a text file's content: its bytes' hash, or an object's size and version
    (ETag, ...), which the store changes whenever the object is rewritten."""
    obj = src.objects.get(path)
    if obj is not None and obj.version is not None:
        return [os.path.basename(path), obj.size, obj.version]
    if obj is not None:
        from mixindex.sources.remote_parquet import hash_url

        return [os.path.basename(path), obj.size, hash_url(src.name, path, src.storage_options)]
    return [os.path.basename(path), os.path.getsize(path), hash_file(path)]


def _record(cached: ArrowSource, manifest: dict[str, Any], folder: Path) -> dict[str, Any]:
    record = cached.describe()
    record["cache"] = {"kind": "arrow", "folder": str(folder), "source": manifest["source"]}
    return record
