"""``mixindex where``: the positions (and global batches) at which one row of one source is
served, found by scanning the memory-mapped ``source`` and ``row`` chunks one at a time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mixindex.audit.text import grid as _grid
from mixindex.errors import QueryError, SourceError
from mixindex.store.index import StoredIndex

__all__ = ["format_where", "where"]


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
