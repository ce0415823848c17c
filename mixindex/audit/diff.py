"""``mixindex diff``: whether two indexes serve the same examples, where they first part, and
how each source's realised share moved (for a spec changed mid-project). The arrays are compared
chunk by chunk through their memory maps.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from mixindex.audit.summary import summarize
from mixindex.audit.text import grid as _grid
from mixindex.store.chunks import ChunkedArray
from mixindex.store.index import StoredIndex

__all__ = ["diff", "format_diff"]


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
    # Ids in the union: a's names first, then b's new ones (a dict: there may be thousands).
    union = dict.fromkeys(names_a + names_b)
    ids = {name: i for i, name in enumerate(union)}
    lut_a = np.array([ids[n] for n in names_a], dtype=np.int64)
    lut_b = np.array([ids[n] for n in names_b], dtype=np.int64)
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
