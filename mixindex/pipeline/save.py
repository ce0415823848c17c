"""The save stage: the pipeline's stream (tokenized, packed) as Parquet shards.

Shards are ``data-00000.parquet``, ``data-00001.parquet``, ... in ``output_dir``, each closed
once its rows reach ``max_shard_size`` bytes (Arrow's in-memory size, before compression).
Each shard is written under a temporary name and renamed when complete, and a manifest
(``.mixindex-save.json``) naming the shards is written last. A folder holding anything is refused
unless ``overwrite=True``, which removes only the shards an earlier save's manifest names (a
``data-*.parquet`` it does not name is someone else's: refused, never deleted); a mix that never
ends is refused before anything is written.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mixindex.errors import OutputError, SpecError, short
from mixindex.pipeline.stages import SaveStageConfig
from mixindex.pipeline.stream import Stream

__all__ = ["save_stream"]

SHARD = "data-{:05d}.parquet"
_OURS = re.compile(r"^data-\d{5}\.parquet$")
MANIFEST = ".mixindex-save.json"
# Rows converted to Arrow at a time, so that a shard's size is checked as it grows.
_ROWS = 256


def _plain(value: Any) -> Any:
    return value.tolist() if isinstance(value, np.ndarray) else value


def _prepare(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise OutputError(f"save output_dir {short(str(out))} is a file; give a folder")
    if out.is_dir():
        entries = list(out.iterdir())
        if entries and not overwrite:
            raise OutputError(
                f"save output_dir {short(str(out))} is not empty; give a new folder, or "
                "SaveStageConfig(overwrite=True) to replace the data-*.parquet shards in it"
            )
        manifest = out / MANIFEST
        listed: set[str] = set()
        if manifest.is_file():
            try:
                listed = {str(n) for n in json.loads(manifest.read_text())["shards"]}
            except (ValueError, KeyError, TypeError):
                listed = set()
        for e in entries:
            if _OURS.match(e.name) and e.name not in listed:
                raise OutputError(
                    f"save output_dir {short(str(out))} holds {e.name}, which no earlier save "
                    "wrote there; move it away or give a new folder"
                )
        for name in listed:
            if _OURS.match(name):
                (out / name).unlink(missing_ok=True)
        manifest.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def save_stream(stream: Stream, config: SaveStageConfig, output_dir: str | Path) -> list[Path]:
    """Write every item of ``stream`` to Parquet shards; the shards' paths."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if stream.endless:
        raise SpecError(
            "save() would never end: the mix restarts forever; set MixStageConfig(num_examples=N)"
            " or use stop_strategy='first_exhausted' / 'all_exhausted'"
        )
    if config.num_shards is not None:
        raise SpecError(
            f"save.num_shards = {config.num_shards} is not supported: shards are cut by size; "
            "leave num_shards out and set max_shard_size"
        )
    out = Path(output_dir)
    _prepare(out, config.overwrite)
    limit = config.max_bytes
    paths: list[Path] = []
    writer: Any = None
    written = 0
    tmp = out / ".data-writing.parquet"

    def close() -> None:
        nonlocal writer, written
        if writer is None:
            return
        writer.close()
        final = out / SHARD.format(len(paths))
        os.replace(tmp, final)
        paths.append(final)
        writer, written = None, 0

    rows: list[dict[str, Any]] = []
    target = 32  # grows or shrinks once a row's size is known

    def flush(chunk: Sequence[dict[str, Any]]) -> None:
        nonlocal writer, written, target
        table = pa.Table.from_pylist([{k: _plain(v) for k, v in r.items()} for r in chunk])
        # Rows per chunk: as many as fit in what is left of the shard, so shards stay near it.
        per_row = max(1, table.nbytes // max(1, len(chunk)))
        if writer is not None and not table.schema.equals(writer.schema):
            close()
        if writer is None:
            writer = pq.ParquetWriter(tmp, table.schema, compression=config.compression or "zstd")
        writer.write_table(table)
        written += table.nbytes
        if written >= limit:
            close()
        target = max(1, min(_ROWS, (limit - written) // per_row))

    try:
        for item, _ in stream.iterate(None):
            rows.append(item)
            if len(rows) >= target:
                flush(rows)
                rows = []
        if rows:
            flush(rows)
        close()
        (out / MANIFEST).write_text(json.dumps({"shards": [p.name for p in paths]}))
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
    return paths
