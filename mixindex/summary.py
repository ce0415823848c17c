"""What a built index holds, in numbers: length, blocks, and per source target vs. realised share.

The same summary closes ``mixindex build`` and answers ``mixindex inspect``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mixindex.schedule import WeightSchedulePoint, WeightScheduler
from mixindex.store import StoredIndex


def scheduler_of(meta: dict[str, Any]) -> WeightScheduler:
    """The weight schedule recorded in an index's normalised spec."""
    mix = meta["spec"]["mix"]
    names = [s["name"] for s in meta["sources"]]
    points = [WeightSchedulePoint(p["step"], p["weights"]) for p in mix["weight_schedule"]]
    return WeightScheduler(points, mix["weight_schedule_type"], names)


def block_targets(index: StoredIndex) -> tuple[np.ndarray, np.ndarray]:
    """``(weights, lengths)``: the target weights of every block and its length."""
    meta = index.meta
    b = int(meta["block_size"])
    n = index.num_examples
    blocks = np.arange(int(meta["num_blocks"]), dtype=np.int64)
    lengths = np.minimum(n - blocks * b, b)
    return scheduler_of(meta).weights_at(blocks * b), lengths


def summarize(index: StoredIndex) -> dict[str, Any]:
    """A JSON-ready summary of an index."""
    meta = index.meta
    n = index.num_examples
    counts = index.table("counts").astype(np.int64)
    realised = counts.sum(axis=0)
    weights, lengths = block_targets(index)
    target = (weights * lengths[:, None]).sum(axis=0)
    # Largest |cumulative count - cumulative target| at a block boundary (S2 in numbers). The end
    # of a partial last block is no boundary: its counts are a prefix of a permuted block.
    whole = int(np.count_nonzero(lengths == int(meta["block_size"])))
    deviation = np.abs(
        np.cumsum(counts[:whole], axis=0)
        - np.cumsum(weights[:whole] * lengths[:whole, None], axis=0)
    )
    mix = meta["spec"]["mix"]
    sources = []
    for i, rec in enumerate(meta["sources"]):
        sources.append(
            {
                "name": rec["name"],
                "type": rec["type"],
                "num_rows": rec["num_rows"],
                "target_share": float(target[i] / n) if n else 0.0,
                "realised_share": float(realised[i] / n) if n else 0.0,
                "examples": int(realised[i]),
                "epochs": float(realised[i] / rec["num_rows"]),
                "max_deviation": float(deviation[:, i].max()) if len(deviation) else 0.0,
            }
        )
    return {
        "path": str(index.path),
        "warnings": read_warnings(meta),
        "num_examples": n,
        "num_blocks": int(meta["num_blocks"]),
        "block_size": int(meta["block_size"]),
        "stop_strategy": mix["stop_strategy"],
        "row_order": mix["row_order"],
        "seed": mix["seed"],
        "digest": meta["digest"],
        "build_seconds": meta.get("build", {}).get("seconds"),
        "sources": sources,
    }


def read_warnings(meta: dict[str, Any]) -> list[str]:
    """Slow reads ahead: a Parquet source read in shuffled order with no Arrow cache."""
    if meta["spec"]["mix"]["row_order"] != "shuffled":
        return []
    return [
        f"source {rec['name']!r} is Parquet read in shuffled order with no Arrow cache: each "
        "random row decodes a whole row group (~3.5k examples/s); rebuild with "
        'cache = "arrow" on the dataset or with --cache-dir DIR'
        for rec in meta["sources"]
        if rec["type"] == "parquet"
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
