"""What the model will see, in numbers: ``mixindex report``.

- :func:`report`: per source the target and realised share, the largest cumulative deviation
  from the target with write-offs (``max dev``, S2), epochs, coverage (distinct rows served /
  rows), the most times one row is served, first and last position; per window of positions the
  realised vs. target weights.

Shares and windows come from the small per-block ``counts`` table; what needs every position
(coverage, repeats, first and last) is one DuckDB aggregation over the ``mix`` view.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mixindex.audit.summary import block_targets, summarize
from mixindex.audit.text import grid as _grid
from mixindex.errors import QueryError
from mixindex.plan.apportion import WrittenOffTargets
from mixindex.store.index import StoredIndex

__all__ = ["format_report", "report", "window_table"]

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
    q = WrittenOffTargets(counts.shape[1], index.meta.block_size).advance(counts, weights, lengths)
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
