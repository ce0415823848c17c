"""Parquet sources converted into a fingerprinted Arrow IPC cache, for fast random rows.

A random row from Parquet decodes a whole row group (about 1k rows/s measured); the same row from a
memory-mapped Arrow IPC file is a zero-copy slice (about 0.2M rows/s measured, batched). ``build``
converts a Parquet source when its dataset says ``cache = "arrow"``, or every Parquet source when a
``cache_dir`` (``--cache-dir``) is given.

Each source goes to ``CACHE_DIR/<name>-<fingerprint prefix>/``: one uncompressed IPC file per
Parquet file (``part-00000.arrow``: record batches of :data:`BATCH_ROWS` rows whatever the row
groups, rows in the same order, so row ``i`` is the same row) and ``cache.json``, which records the
Parquet fingerprint it was made from. A cache whose ``cache.json`` matches the source's fingerprint
and whose files hold the right rows is reused; anything else is rebuilt in a temporary sibling and
renamed into place. The index's record points at the cache files (type ``arrow``, their
fingerprint) and keeps the Parquet source under ``cache.source``.

    >>> from mixindex.sources.parquet import ParquetSource
    >>> src, rec = cached_source(ParquetSource("code", ["data/code/part-0.parquet"]), "cache")
    >>> src.type, len(src), rec["cache"]["source"]["type"]
    ('arrow', 40, 'parquet')
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from mixindex.errors import SourceError
from mixindex.sources.arrow import ArrowSource
from mixindex.sources.base import Source, one_line
from mixindex.sources.remote import is_url

if TYPE_CHECKING:
    pass

__all__ = ["BATCH_ROWS", "CACHE_VERSION", "cached_source", "default_cache_dir"]

CACHE_VERSION = 1
# Record batches of the cache: big enough that 1024 random rows touch few batches (one grouped
# take each), small enough that a slice never keeps a huge buffer alive.
BATCH_ROWS = 65536


def default_cache_dir() -> Path:
    """``$MIXINDEX_CACHE_DIR``, else ``$XDG_CACHE_HOME/mixindex``, else ``~/.cache/mixindex``."""
    explicit = os.environ.get("MIXINDEX_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(base).expanduser() / "mixindex"


def make_cache_dir(cache_dir: Path) -> None:
    """Create the cache folder, or say in one line why it cannot be."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SourceError(
            f"cannot create the cache folder {str(cache_dir)!r} ({one_line(exc)}); "
            "pass another --cache-dir"
        ) from None


def _folder_name(name: str, fingerprint: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "source"
    return f"{safe}-{fingerprint.split(':', 1)[-1][:24]}"


def _manifest(src: Source, fingerprint: str, files: list[str]) -> dict[str, Any]:
    return {
        "cache_version": CACHE_VERSION,
        "source": {
            "name": src.name,
            "type": src.type,
            "data_files": list(src.data_files),
            "num_rows": len(src),
            "fingerprint": fingerprint,
        },
        "files": files,
    }


def _reuse(folder: Path, manifest: dict[str, Any], num_rows: int) -> ArrowSource | None:
    try:
        with open(folder / "cache.json", encoding="utf-8") as f:
            found = json.load(f)
    except (OSError, ValueError):
        return None
    if found != manifest:
        return None
    try:
        cached = ArrowSource(manifest["source"]["name"], [str(folder / n) for n in found["files"]])
    except SourceError:
        return None
    return cached if len(cached) == num_rows else None


def _convert(src: Source, folder: Path) -> list[str]:
    """Write one IPC file per Parquet file of ``src`` into ``folder``; returns their names."""
    names = []
    for k, path in enumerate(src.data_files):
        name = f"part-{k:05d}.arrow"
        try:
            if is_url(path):
                # A remote Parquet source: read through fsspec, in order, once.
                from mixindex.sources.remote import open_url

                pf = pq.ParquetFile(open_url(src.name, path, getattr(src, "storage_options", None)))
            else:
                pf = pq.ParquetFile(path)
            try:
                schema = pf.schema_arrow
                with (
                    pa.OSFile(str(folder / name), "wb") as sink,
                    pa.ipc.new_file(sink, schema) as writer,
                ):
                    # Batches of BATCH_ROWS across row-group boundaries: small row groups
                    # would otherwise make small batches, and more takes per random read.
                    for batch in pf.iter_batches(batch_size=BATCH_ROWS):
                        writer.write_batch(batch)
            finally:
                pf.close()
        except (pa.ArrowException, OSError) as exc:
            raise SourceError(
                f"dataset {src.name!r}: cannot convert {path!r} into the Arrow cache {folder} "
                f"({one_line(exc)}); check the file and that the cache folder is writable"
            ) from None
        names.append(name)
    return names


def cached_source(src: Source, cache_dir: Path | str) -> tuple[ArrowSource, dict[str, Any]]:
    """The Arrow cache of Parquet source ``src`` (made if missing) and its index record."""
    if src.type != "parquet":
        raise SourceError(
            f"dataset {src.name!r} is {src.type}, not Parquet: only Parquet sources are cached"
        )
    cache_dir = Path(cache_dir).expanduser().absolute()
    fingerprint = src.fingerprint()
    folder = cache_dir / _folder_name(src.name, fingerprint)
    files = [f"part-{k:05d}.arrow" for k in range(len(src.data_files))]
    manifest = _manifest(src, fingerprint, files)
    cached = _reuse(folder, manifest, len(src))
    if cached is None:
        make_cache_dir(cache_dir)
        tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            _convert(src, tmp)
            (tmp / "cache.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
            # Replace a stale cache of the same fingerprint prefix (damaged, or another version).
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        cached = _reuse(folder, manifest, len(src))
        if cached is None:
            raise SourceError(
                f"dataset {src.name!r}: the Arrow cache written to {str(folder)!r} does not read "
                "back with the source's rows; remove the folder and build again"
            )
    record = cached.describe()
    record["cache"] = {"kind": "arrow", "folder": str(folder), "source": manifest["source"]}
    return cached, record
