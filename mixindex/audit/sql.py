"""SQL over a built index: DuckDB views that read the memory-mapped arrays through Arrow.

``connect(path)`` returns an in-memory DuckDB connection with four views:

- ``mix(position BIGINT, block BIGINT, source VARCHAR, source_id INTEGER, row BIGINT,
  epoch INTEGER)``: one row per position;
- ``sources(source_id, name, type, data_files, num_rows, fingerprint)``;
- ``blocks(block, source, count, target_weight)``: one row per block and source;
- ``schedule(step, source, weight)``: the spec's (normalised) schedule points.

Why it stays small whatever the index's length: ``mix`` and ``blocks`` are Arrow C streams that
start over on every scan and yield one stored chunk at a time, each array a zero-copy wrap of the
chunk file's memory map (``source`` is a dictionary array over the ``source_id`` bytes). A chunk's
pages are unmapped once DuckDB has consumed it, so a full scan holds a few chunks, not the index.
Only ``position`` is computed (8 bytes a row, per chunk); ``block`` is ``position // block_size``
in SQL.

The connection is a :class:`mixindex.audit.sandbox.Sandbox`: limited memory and spill space in a
private temporary folder, no file of the user's reachable (external access off, statements that
write refused, configuration locked), and queries that a timeout or Ctrl-C stops.

>>> with connect("mix.mixindex") as con:
...     con.sql("SELECT source, count(*) FROM mix GROUP BY 1 ORDER BY 1").fetchall()
[('code', 40), ('text', 60)]
"""

from __future__ import annotations

import contextlib
import datetime
import decimal
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa

from mixindex.audit.sandbox import DEFAULT_MEMORY_LIMIT, DEFAULT_TEMP_LIMIT, Sandbox
from mixindex.errors import QueryError
from mixindex.store.index import StoredIndex
from mixindex.store.layout import POSITION_ARRAYS

__all__ = ["FORMATS", "VIEWS", "connect", "format_table", "query", "write_result"]

VIEWS = ("mix", "sources", "blocks", "schedule")
FORMATS = ("table", "csv", "json", "parquet")
BATCH_ROWS = 1 << 17

# What a refused statement's error adds: what audit SQL can do instead.
_REFUSED = (
    "; audit queries can only read the views mix, sources, blocks, schedule "
    "(write results with --format csv|json|parquet -o FILE)"
)


class _Rescannable:
    """An Arrow C stream that starts over on every scan, so that a DuckDB view of it can be
    queried any number of times (a plain RecordBatchReader is used up by its first scan)."""

    def __init__(self, schema: pa.Schema, batches: Callable[[], Iterator[pa.RecordBatch]]) -> None:
        self.schema = schema
        self._batches = batches

    def __arrow_c_stream__(self, requested_schema: object = None) -> object:
        reader = pa.RecordBatchReader.from_batches(self.schema, self._batches())
        return reader.__arrow_c_stream__(requested_schema)


def _names(index: StoredIndex) -> pa.Array:
    return pa.array(index.meta.names, pa.string())


def _mix_stream(index: StoredIndex) -> _Rescannable:
    arrays = [index.arrays[name] for name in POSITION_ARRAYS]
    names = _names(index)
    types = [pa.from_numpy_dtype(a.dtype) for a in arrays]
    schema = pa.schema(
        [
            ("position", pa.int64()),
            ("source", pa.dictionary(types[0], pa.string())),
            ("source_id", types[0]),
            ("row", types[1]),
            ("epoch", types[2]),
        ]
    )
    size = arrays[0].chunks[0]

    def batches() -> Iterator[pa.RecordBatch]:
        for c in range(arrays[0].num_chunks):
            ids = arrays[0].load(c)
            start = c * size
            positions = np.arange(start, start + len(ids), dtype=np.int64)
            # A damaged byte must not send DuckDB out of range: name its position and file.
            index.check_source_ids(ids, positions)
            source = pa.array(ids)
            row, epoch = (pa.array(a.load(c)) for a in arrays[1:])
            position = pa.array(positions)
            label = pa.DictionaryArray.from_arrays(source, names, safe=True)
            yield pa.record_batch([position, label, source, row, epoch], schema=schema)

    return _Rescannable(schema, batches)


def _blocks_stream(index: StoredIndex) -> _Rescannable:
    counts = index.arrays["counts"]
    names = _names(index)
    k = len(names)
    block_size = index.meta.block_size
    scheduler = index.meta.scheduler()
    id_dtype = np.min_scalar_type(max(k - 1, 0))
    ids = pa.from_numpy_dtype(id_dtype)
    schema = pa.schema(
        [
            ("block", pa.int64()),
            ("source", pa.dictionary(ids, pa.string())),
            ("count", pa.int64()),
            ("target_weight", pa.float64()),
        ]
    )
    size = counts.chunks[0]

    def batches() -> Iterator[pa.RecordBatch]:
        for c in range(counts.num_chunks):
            table = counts.load(c)
            blocks = np.arange(c * size, c * size + len(table), dtype=np.int64)
            weights = scheduler.weights_at(blocks * block_size)
            source = np.tile(np.arange(k, dtype=id_dtype), len(table))
            yield pa.record_batch(
                [
                    pa.array(np.repeat(blocks, k)),
                    pa.DictionaryArray.from_arrays(pa.array(source), names),
                    pa.array(table.reshape(-1).astype(np.int64)),
                    pa.array(weights.reshape(-1)),
                ],
                schema=schema,
            )

    return _Rescannable(schema, batches)


def _sources_table(index: StoredIndex) -> pa.Table:
    recs = index.sources
    return pa.table(
        {
            "source_id": pa.array(range(len(recs)), pa.int32()),
            "name": pa.array([r.name for r in recs], pa.string()),
            "type": pa.array([r.type for r in recs], pa.string()),
            "data_files": pa.array([list(r.data_files) for r in recs], pa.list_(pa.string())),
            "num_rows": pa.array([r.num_rows for r in recs], pa.int64()),
            "fingerprint": pa.array([r.fingerprint for r in recs], pa.string()),
        }
    )


def _schedule_table(index: StoredIndex) -> pa.Table:
    scheduler = index.meta.scheduler()
    steps, sources, weights = [], [], []
    for point in scheduler.points:
        for name in scheduler.names:
            steps.append(point.step)
            sources.append(name)
            weights.append(point.weights[name])
    return pa.table(
        {
            "step": pa.array(steps, pa.int64()),
            "source": pa.array(sources, pa.string()),
            "weight": pa.array(weights, pa.float64()),
        }
    )


def _check_chunk_files(index: StoredIndex) -> None:
    """A missing, short or over-long chunk file would fail a query half-way with a long message
    (or, missing and compressed, read as zeros): it is cheaper and clearer to refuse the index
    up front (one stat per chunk)."""
    for arr in index.arrays.values():
        for i in range(arr.num_chunks):
            arr.check_file(i)


def connect(
    index: str | Path | StoredIndex,
    *,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
    temp_limit: str = DEFAULT_TEMP_LIMIT,
    timeout: float | None = None,
) -> Sandbox:
    """A DuckDB connection (a :class:`~mixindex.audit.sandbox.Sandbox`) with the views ``mix``,
    ``sources``, ``blocks``, ``schedule`` over ``index``. It reads and writes no file of the
    user's, uses at most ``memory_limit`` of memory and ``temp_limit`` of spill space in a
    private temporary folder, and stops a :func:`query` after ``timeout`` seconds. Close it
    (or use ``with``) to remove that folder.

    >>> with connect("mix.mixindex") as con:
    ...     query(con, "SELECT count(*) AS n FROM mix").read_all().to_pylist()
    [{'n': 100}]
    """
    stored = index if isinstance(index, StoredIndex) else StoredIndex(index)
    _check_chunk_files(stored)
    block_size = stored.meta.block_size
    box = Sandbox(
        memory_limit=memory_limit, temp_limit=temp_limit, timeout=timeout, refused=_REFUSED
    )
    try:
        con = box.con
        con.register("_mixindex_mix", _mix_stream(stored))
        con.register("_mixindex_blocks", _blocks_stream(stored))
        con.register("_mixindex_sources", _sources_table(stored))
        con.register("_mixindex_schedule", _schedule_table(stored))
        con.execute(
            "CREATE VIEW mix AS SELECT position, position // "
            f"{block_size} AS block, CAST(source AS VARCHAR) AS source, "
            "CAST(source_id AS INTEGER) AS source_id, CAST(row AS BIGINT) AS row, "
            "CAST(epoch AS INTEGER) AS epoch FROM _mixindex_mix"
        )
        con.execute(
            "CREATE VIEW blocks AS SELECT block, CAST(source AS VARCHAR) AS source, count, "
            "target_weight FROM _mixindex_blocks"
        )
        con.execute("CREATE VIEW sources AS SELECT * FROM _mixindex_sources")
        con.execute("CREATE VIEW schedule AS SELECT * FROM _mixindex_schedule")
        box.lock()
    except BaseException as exc:
        box.close()
        import duckdb

        if isinstance(exc, duckdb.Error):
            # Setting up the views can hit the limits too (a memory limit of a few KB): the
            # same line as a query that hits them.
            raise box.error(exc) from None
        raise
    return box


def query(
    con: Sandbox, sql: str, batch_rows: int = BATCH_ROWS, *, timeout: float | None = None
) -> pa.RecordBatchReader:
    """Run ``sql`` and stream its result: QueryError with DuckDB's message on one line,
    QueryTimeout after ``timeout`` seconds (default: the connection's), and Ctrl-C stops it."""
    return con.run(sql, batch_rows, timeout=timeout)


# ---- output ----------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        text = f"{value:.6f}".rstrip("0").rstrip(".")
        return text if text not in ("0", "-0") or value == 0 else f"{value:.3g}"
    return str(value)


def format_table(reader: pa.RecordBatchReader, max_rows: int = 100) -> str:
    """The result as an aligned text table of at most ``max_rows`` rows, numbers to the right;
    later rows are only counted, so a huge result costs no memory."""
    names = reader.schema.names
    numeric = [
        pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
        for t in reader.schema.types
    ]
    rows: list[list[str]] = []
    total = 0
    for batch in reader:
        total += batch.num_rows
        need = max_rows - len(rows)
        if need > 0:
            for rec in batch.slice(0, need).to_pylist():
                rows.append([_cell(rec[n]) for n in names])
    if not names:
        return "(no result)"
    widths = [max(len(r[i]) for r in (names, *rows)) for i in range(len(names))]

    def line(cells: list[str]) -> str:
        out = [
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(cells, widths, numeric, strict=True)
        ]
        return "  ".join(out).rstrip()

    lines = [line(names), line(["-" * w for w in widths])]
    lines.extend(line(r) for r in rows)
    if total > len(rows):
        lines.append(
            f"... {total - len(rows):,} more rows ({total:,} in all); raise --max-rows or "
            "write them all with --format csv|json|parquet -o FILE"
        )
    else:
        lines.append(f"({total:,} row{'s' if total != 1 else ''})")
    return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (datetime.date, datetime.time, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def write_result(reader: pa.RecordBatchReader, fmt: str, sink: IO[bytes] | str | Path) -> int:
    """Write a query result as ``csv``, ``json`` (JSON Lines: one object per row) or
    ``parquet`` to a binary file object or a path, batch by batch; returns the row count."""
    if fmt not in FORMATS[1:]:
        raise QueryError(f"format {fmt!r} is unknown; use one of {', '.join(FORMATS[1:])}")
    total = 0
    if fmt == "parquet":
        import pyarrow.parquet as pq

        with pq.ParquetWriter(sink, reader.schema) as writer:
            for batch in reader:
                writer.write_batch(batch)
                total += batch.num_rows
        return total
    with contextlib.ExitStack() as stack:
        out: IO[bytes] = (
            stack.enter_context(open(sink, "wb")) if isinstance(sink, (str, Path)) else sink
        )
        if fmt == "csv":
            import pyarrow.csv as pcsv

            with pcsv.CSVWriter(out, reader.schema) as writer:
                for batch in reader:
                    writer.write_batch(batch)
                    total += batch.num_rows
        else:
            for batch in reader:
                text = "".join(
                    json.dumps(rec, default=_jsonable, ensure_ascii=False) + "\n"
                    for rec in batch.to_pylist()
                )
                out.write(text.encode("utf-8"))
                total += batch.num_rows
        out.flush()
    return total
