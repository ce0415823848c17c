"""What the model will see, in numbers: ``mixindex report``, ``where`` and ``diff``.

- :func:`report`: per source the target and realised share, the largest cumulative deviation
  from the target with write-offs (``max dev``, S2), epochs, coverage (distinct rows served /
  rows), the most times one row is served, first and last position; per window of positions the
  realised vs. target weights.
- :func:`where`: the positions (and global batches) at which one row of one source is served.
- :func:`diff`: whether two indexes serve the same examples, where they first part, and how each
  source's realised share moved (for a spec changed mid-project).

Shares and windows come from the small per-block ``counts`` table; what needs every position
(coverage, repeats, first and last) is one DuckDB aggregation over the ``mix`` view, and
``where``/``diff`` scan the memory-mapped chunks with numpy, one chunk at a time.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from mixindex.audit.summary import block_targets, summarize
from mixindex.errors import QueryError, SourceError
from mixindex.plan.apportion import WrittenOffTargets
from mixindex.store.chunks import ChunkedArray
from mixindex.store.index import StoredIndex

__all__ = [
    "diff",
    "format_diff",
    "format_report",
    "format_where",
    "report",
    "where",
    "window_table",
]

DEFAULT_WINDOWS = 10

_PER_SOURCE_SQL = """
SELECT source_id, count(*) AS distinct_rows, max(n) AS max_repeats,
       min(first) AS first_position, max(last) AS last_position
FROM (SELECT source_id, row, count(*) AS n, min(position) AS first, max(position) AS last
      FROM mix GROUP BY source_id, row)
GROUP BY source_id
"""


def window_table(index: StoredIndex, window_blocks: int) -> dict[str, np.ndarray]:
    """Realised and target weights per window of ``window_blocks`` whole blocks.

    Returns ``start``/``stop`` (positions, stop exclusive), ``realised`` and ``target``
    (windows x sources, each row summing to 1) and ``counts`` (examples per window and source).
    The target is what the planner owes in the window: the growth of ``Q'``, the cumulative
    target with write-offs (:class:`~mixindex.plan.apportion.WrittenOffTargets`), so a
    window where a source's weight drops to 0 hands what it was still owed to the others.
    """
    counts = index.table("counts").astype(np.int64)
    weights, lengths = block_targets(index)
    nb = len(lengths)
    edges = np.arange(0, nb, max(window_blocks, 1), dtype=np.int64)
    per = np.add.reduceat(counts, edges, axis=0) if nb else counts
    q = WrittenOffTargets(counts.shape[1]).advance(counts, weights, lengths)
    at_end = q[np.append(edges[1:], nb) - 1] if nb else q
    target = np.diff(at_end, axis=0, prepend=np.zeros((1, counts.shape[1])))
    length = np.add.reduceat(lengths, edges) if nb else lengths
    block_size = index.meta.block_size
    start = edges * block_size
    stop = np.append(start[1:], index.num_examples)
    return {
        "start": start,
        "stop": stop,
        "counts": per,
        "realised": per / length[:, None],
        "target": target / length[:, None],
    }


def _window_blocks(index: StoredIndex, window: int | None) -> int:
    block_size = index.meta.block_size
    if window is None:
        window = max(1, math.ceil(index.num_examples / DEFAULT_WINDOWS))
    if window < 1:
        raise QueryError(
            f"window = {window} is not a number of positions >= 1; give at least 1 (it is "
            "rounded up to whole blocks), or leave it out for about a tenth of the mix"
        )
    return max(1, math.ceil(window / block_size))


def report(index: StoredIndex, *, window: int | None = None, **limits: Any) -> dict[str, Any]:
    """A JSON-ready report: the summary of ``inspect`` plus coverage, repeats, first and last
    position per source, and realised vs. target weights per window of ``window`` positions
    (rounded up to whole blocks; default about a tenth of the mix). ``limits``
    (``memory_limit``, ``temp_limit``, ``timeout``) bound its DuckDB query, as in
    :func:`mixindex.audit.sql.connect`."""
    from mixindex.audit.sql import connect, query

    out = summarize(index)
    with connect(index, **limits) as con:
        rows = query(con, _PER_SOURCE_SQL).read_all().to_pylist()
    seen = {
        int(r["source_id"]): (
            r["distinct_rows"],
            r["max_repeats"],
            r["first_position"],
            r["last_position"],
        )
        for r in rows
    }
    for i, src in enumerate(out["sources"]):
        distinct, repeats, first, last = seen.get(i, (0, 0, None, None))
        src["distinct_rows"] = int(distinct)
        src["coverage"] = distinct / src["num_rows"]
        src["max_repeats"] = int(repeats)
        src["first_position"] = None if first is None else int(first)
        src["last_position"] = None if last is None else int(last)
    wb = _window_blocks(index, window)
    table = window_table(index, wb)
    names = [s["name"] for s in out["sources"]]
    error = np.abs(table["realised"] - table["target"])
    out["window"] = wb * index.meta.block_size
    out["windows"] = [
        {
            "start": int(table["start"][w]),
            "stop": int(table["stop"][w]),
            "realised": dict(zip(names, map(float, table["realised"][w]), strict=True)),
            "target": dict(zip(names, map(float, table["target"][w]), strict=True)),
            "max_error": float(error[w].max()) if len(names) else 0.0,
        }
        for w in range(len(table["start"]))
    ]
    for i, src in enumerate(out["sources"]):
        src["max_window_error"] = float(error[:, i].max()) if len(error) else 0.0
    return out


def _grid(header: tuple[str, ...], rows: Sequence[tuple[str, ...]], left: int = 1) -> list[str]:
    """Aligned rows: the first ``left`` columns to the left, the rest (numbers) to the right."""
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    lines = []
    for r in (header, *rows):
        cells = [
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("  " + "  ".join(cells).rstrip())
    return lines


def _pos(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def format_report(r: dict[str, Any]) -> str:
    """The report as text: a per-source table, then realised/target per window."""
    lines = [
        f"{r['path']}: {r['num_examples']:,} examples in {r['num_blocks']:,} blocks of "
        f"{r['block_size']:,} ({r['stop_strategy']}, rows {r['row_order']}, seed {r['seed']})",
        "",
    ]
    header = (
        "source",
        "rows",
        "target",
        "realised",
        "max dev",
        "epochs",
        "coverage",
        "max repeats",
        "first",
        "last",
    )
    rows = [
        (
            s["name"],
            f"{s['num_rows']:,}",
            f"{s['target_share']:.4f}",
            f"{s['realised_share']:.4f}",
            f"{s['max_deviation']:.3f}",
            f"{s['epochs']:.3f}",
            f"{s['coverage']:.4f}",
            f"{s['max_repeats']:,}",
            _pos(s["first_position"]),
            _pos(s["last_position"]),
        )
        for s in r["sources"]
    ]
    lines += _grid(header, rows)
    names = [s["name"] for s in r["sources"]]
    lines += ["", f"realised / target per window of {r['window']:,} positions"]
    wrows = [
        (
            f"{w['start']:,}-{w['stop'] - 1:,}",
            *(f"{w['realised'][n]:.4f}/{w['target'][n]:.4f}" for n in names),
            f"{w['max_error']:.4f}",
        )
        for w in r["windows"]
    ]
    lines += _grid(("positions", *names, "max error"), wrows)
    return "\n".join(lines)


# ---- where -----------------------------------------------------------------------------------


def _source_id(index: StoredIndex, name: str) -> int:
    names = list(index.meta.names)
    if name not in names:
        raise SourceError(
            f"no source named {name!r} in this index (sources: {', '.join(names)}); "
            "use one of those names"
        )
    return names.index(name)


def where(
    index: StoredIndex, source: str, row: int, *, global_batch_size: int | None = None
) -> dict[str, Any]:
    """The positions at which ``row`` of ``source`` is served, with its epoch each time, and
    the global batch (``position // global_batch_size``) and place in it when given."""
    sid = _source_id(index, source)
    num_rows = index.sources[sid].num_rows
    if not 0 <= row < num_rows:
        raise SourceError(
            f"row {row} is out of range for source {source!r} of {num_rows:,} rows "
            f"(use 0 to {num_rows - 1})"
        )
    if global_batch_size is not None and global_batch_size < 1:
        raise QueryError(f"global batch size {global_batch_size} must be >= 1")
    arrays = [index.arrays[n] for n in ("source", "row", "epoch")]
    size = arrays[0].chunks[0]
    hits: list[dict[str, int]] = []
    for c in range(arrays[0].num_chunks):
        src, rows = arrays[0].load(c), arrays[1].load(c)
        local = np.flatnonzero((src == sid) & (rows == row))
        if not local.size:
            continue
        epochs = arrays[2].load(c)[local]
        for p, e in zip((local + c * size).tolist(), epochs.tolist(), strict=True):
            hit = {"position": p, "epoch": e}
            if global_batch_size:
                hit["batch"], hit["in_batch"] = divmod(p, global_batch_size)
            hits.append(hit)
    return {
        "source": source,
        "row": row,
        "global_batch_size": global_batch_size,
        "count": len(hits),
        "positions": hits,
    }


def format_where(w: dict[str, Any]) -> str:
    head = f"{w['source']} row {w['row']}: served {w['count']:,} time{'s' * (w['count'] != 1)}"
    if not w["positions"]:
        return head
    keys = ["position", "epoch"] + (["batch", "in_batch"] if w["global_batch_size"] else [])
    header = tuple(k.replace("_", " ") for k in keys)
    rows = [tuple(str(h[k]) for k in keys) for h in w["positions"]]
    return "\n".join([head, *_grid(header, rows, left=0)])


# ---- diff ------------------------------------------------------------------------------------


def _span(arr: ChunkedArray, lo: int, hi: int) -> np.ndarray:
    """Positions ``[lo, hi)`` of an array whatever its chunking, without keeping chunks mapped."""
    size = arr.chunks[0]
    parts = [
        arr.load(c)[max(lo - c * size, 0) : hi - c * size]
        for c in range(lo // size, (hi - 1) // size + 1)
    ]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _source_ids(index: StoredIndex, lo: int, hi: int) -> np.ndarray:
    ids = _span(index.arrays["source"], lo, hi)
    index.check_source_ids(ids, np.arange(lo, hi, dtype=np.int64))
    return ids


def _segments(n: int, step: int) -> Iterator[tuple[int, int]]:
    for lo in range(0, n, step):
        yield lo, min(lo + step, n)


def diff(a: StoredIndex, b: StoredIndex) -> dict[str, Any]:
    """Compare two indexes position by position (sources matched by name): whether they are
    equal, the first position where they differ, how many positions differ, and per source the
    realised share in each and its change."""
    names_a = list(a.meta.names)
    names_b = list(b.meta.names)
    union = names_a + [n for n in names_b if n not in names_a]
    lut_a = np.array([union.index(n) for n in names_a], dtype=np.int64)
    lut_b = np.array([union.index(n) for n in names_b], dtype=np.int64)
    n = min(a.num_examples, b.num_examples)
    first: int | None = None
    differing = abs(a.num_examples - b.num_examples)
    step = a.arrays["source"].chunks[0]
    for lo, hi in _segments(n, step):
        src_a = lut_a[_source_ids(a, lo, hi)]
        src_b = lut_b[_source_ids(b, lo, hi)]
        bad = src_a != src_b
        bad |= _span(a.arrays["row"], lo, hi) != _span(b.arrays["row"], lo, hi)
        bad |= _span(a.arrays["epoch"], lo, hi) != _span(b.arrays["epoch"], lo, hi)
        k = int(np.count_nonzero(bad))
        if k and first is None:
            first = lo + int(np.argmax(bad))
        differing += k
    if first is None and a.num_examples != b.num_examples:
        first = n
    at = None
    if first is not None:
        at = {"position": first, "a": _example(a, first), "b": _example(b, first)}
    share_a = {s["name"]: s["realised_share"] for s in summarize(a)["sources"]}
    share_b = {s["name"]: s["realised_share"] for s in summarize(b)["sources"]}
    return {
        "a": {"path": str(a.path), "num_examples": a.num_examples, "digest": a.digest},
        "b": {"path": str(b.path), "num_examples": b.num_examples, "digest": b.digest},
        "equal": first is None,
        "first_difference": at,
        "differing_positions": differing,
        "sources": [
            {
                "name": name,
                "share_a": share_a.get(name, 0.0),
                "share_b": share_b.get(name, 0.0),
                "change": share_b.get(name, 0.0) - share_a.get(name, 0.0),
            }
            for name in union
        ],
    }


def _example(index: StoredIndex, p: int) -> dict[str, Any] | None:
    if p >= index.num_examples:
        return None
    source, row, epoch = index.lookup(np.array([p], dtype=np.int64))
    return {
        "source": index.sources[int(source[0])].name,
        "row": int(row[0]),
        "epoch": int(epoch[0]),
    }


def _describe(ex: dict[str, Any] | None) -> str:
    if ex is None:
        return "(past its end)"
    return f"{ex['source']} row {ex['row']} epoch {ex['epoch']}"


def format_diff(d: dict[str, Any]) -> str:
    lines = [
        f"A: {d['a']['path']} ({d['a']['num_examples']:,} examples, {d['a']['digest']})",
        f"B: {d['b']['path']} ({d['b']['num_examples']:,} examples, {d['b']['digest']})",
    ]
    if d["equal"]:
        lines.append("equal: every position serves the same source, row and epoch")
    else:
        at = d["first_difference"]
        total = max(d["a"]["num_examples"], d["b"]["num_examples"])
        lines.append(
            f"different: first at position {at['position']:,} (A: {_describe(at['a'])}; "
            f"B: {_describe(at['b'])}); {d['differing_positions']:,} of {total:,} positions differ"
        )
    rows = [
        (s["name"], f"{s['share_a']:.4f}", f"{s['share_b']:.4f}", f"{s['change']:+.4f}")
        for s in d["sources"]
    ]
    lines += _grid(("source", "share A", "share B", "B - A"), rows)
    return "\n".join(lines)
