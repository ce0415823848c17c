"""What a built index holds, in numbers: length, blocks, and per source target vs. realised share.

The same summary closes ``mixindex build`` and answers ``mixindex inspect``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mixindex.plan.apportion import WrittenOffTargets
from mixindex.store.index import StoredIndex
from mixindex.store.meta import IndexMeta


def block_targets(index: StoredIndex) -> tuple[np.ndarray, np.ndarray]:
    """``(weights, lengths)``: the target weights of every block and its length."""
    return _block_targets(index, 0, index.meta.num_blocks)


def _block_targets(index: StoredIndex, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    b = index.meta.block_size
    blocks = np.arange(lo, hi, dtype=np.int64)
    lengths = np.minimum(index.num_examples - blocks * b, b)
    return index.meta.scheduler().weights_at(blocks * b), lengths


def share_stats(index: StoredIndex) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per source: examples served, target examples (the schedule's), and ``max dev``: the
    largest ``|cumulative count - Q'|`` at a block boundary, where ``Q'`` is the cumulative
    target with the planner's write-offs (:class:`~mixindex.plan.apportion.WrittenOffTargets`; S2
    in numbers).

    Reads the count table one stored chunk at a time, so memory stays flat for any number of
    blocks and sources. The end of a partial last block is no boundary: its counts are a prefix
    of a permuted block.
    """
    counts_array = index.arrays["counts"]
    k = counts_array.shape[1]
    block_size = index.meta.block_size
    targets = WrittenOffTargets(k, block_size)
    realised = np.zeros(k, dtype=np.int64)
    target = np.zeros(k)
    worst = np.zeros(k)
    lo = 0
    for chunk in counts_array.iter_chunks():
        counts = np.asarray(chunk, dtype=np.int64)
        weights, lengths = _block_targets(index, lo, lo + len(counts))
        cum_count = realised + np.cumsum(counts, axis=0)
        q = targets.advance(counts, weights, lengths)
        whole = lengths == block_size
        if whole.any():
            worst = np.maximum(worst, np.abs(cum_count[whole] - q[whole]).max(axis=0))
        realised = cum_count[-1]
        target = target + (weights * lengths[:, None]).sum(axis=0)
        lo += len(counts)
    return realised, target, worst


def summarize(index: StoredIndex) -> dict[str, Any]:
    """A JSON-ready summary of an index."""
    meta = index.meta
    n = index.num_examples
    realised, target, deviation = share_stats(index)
    sources = []
    for i, rec in enumerate(meta.sources):
        sources.append(
            {
                "name": rec.name,
                "type": rec.type,
                "num_rows": rec.num_rows,
                "target_share": float(target[i] / n) if n else 0.0,
                "realised_share": float(realised[i] / n) if n else 0.0,
                "examples": int(realised[i]),
                "epochs": float(realised[i] / rec.num_rows),
                "max_deviation": float(deviation[i]),
            }
        )
    return {
        "path": str(index.path),
        "warnings": read_warnings(meta),
        "num_examples": n,
        "num_blocks": meta.num_blocks,
        "block_size": meta.block_size,
        "stop_strategy": meta.mix.stop_strategy.value,
        "row_order": meta.mix.row_order,
        "seed": meta.mix.seed,
        "digest": meta.digest,
        "build_seconds": meta.build.seconds if meta.build is not None else None,
        "sources": sources,
    }


def read_warnings(meta: IndexMeta) -> list[str]:
    """Slow reads ahead: a Parquet source read in shuffled order with no Arrow cache."""
    if meta.mix.row_order != "shuffled":
        return []
    return [
        f"source {rec.name!r} is Parquet read in shuffled order with no Arrow cache: each "
        "random row decodes a whole row group (about 1k rows/s); rebuild with "
        'cache = "arrow" on the dataset or with --cache-dir DIR, or use row_order = "grouped"'
        for rec in meta.sources
        if rec.type == "parquet"
    ]


def format_summary(s: dict[str, Any]) -> str:
    """The summary as an aligned text table."""
    lines = [
        f"{s['path']}: {s['num_examples']:,} examples in {s['num_blocks']:,} blocks of "
        f"{s['block_size']:,} ({s['stop_strategy']}, rows {s['row_order']}, seed {s['seed']})",
    ]
    if s.get("build_seconds") is not None:
        lines[0] += f", built in {s['build_seconds']:.2f} s"
    header = ("source", "rows", "target", "realised", "examples", "epochs", "max dev")
    rows = [
        (
            src["name"],
            f"{src['num_rows']:,}",
            f"{src['target_share']:.4f}",
            f"{src['realised_share']:.4f}",
            f"{src['examples']:,}",
            f"{src['epochs']:.3f}",
            f"{src['max_deviation']:.3f}",
        )
        for src in s["sources"]
    ]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for r in (header, *rows):
        cells = [r[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)
        ]
        lines.append("  " + "  ".join(cells))
    lines.extend(f"warning: {w}" for w in s.get("warnings", []))
    lines.append(f"digest {s['digest']}")
    return "\n".join(lines)
