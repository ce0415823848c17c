"""``mixindex plot``: one picture of a mix, target vs. realised weights and epochs per source.

Top panel: realised weights per window of positions, stacked (filled), with the stacked target
weights as dashed lines on top and the schedule's points as dotted verticals. Bottom panel: the
epochs each source has gone through by each position. The x axis is in positions (what the spec's
schedule calls steps); with a global batch size a second axis on top counts optimizer steps.

matplotlib is an optional extra (``pip install -e '.[plot]'`` in a checkout, or ``pip install
'matplotlib>=3.8'``), imported only here and only when a plot is drawn; the figure is drawn without
pyplot, so no GUI backend is ever touched.

>>> png = plot(StoredIndex("mix.mixindex"), "mix.png", global_batch_size=10)
>>> png.name, png.stat().st_size > 0
('mix.png', True)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from mixindex.audit.report import window_table
from mixindex.errors import MixIndexError, QueryError
from mixindex.store.index import StoredIndex

__all__ = ["plot"]

MAX_WINDOWS = 400


def _matplotlib() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise MixIndexError(
            "mixindex plot needs matplotlib, which is not installed; install the mixindex[plot] "
            "extra: pip install -e '.[plot]' in a mixindex checkout, or pip install "
            "'matplotlib>=3.8'"
        ) from None
    return matplotlib


def plot(
    index: StoredIndex,
    out: str | Path,
    *,
    global_batch_size: int | None = None,
    windows: int = MAX_WINDOWS,
) -> Path:
    """Draw the mix of ``index`` into ``out`` (PNG, SVG or PDF by suffix); returns ``out``."""
    _matplotlib()
    from matplotlib.figure import Figure
    from matplotlib.ticker import EngFormatter

    if global_batch_size is not None and global_batch_size < 1:
        raise QueryError(f"global batch size {global_batch_size} must be >= 1")
    out = Path(out)
    n = index.num_examples
    num_blocks = index.meta.num_blocks
    table = window_table(index, max(1, math.ceil(num_blocks / max(windows, 1))))
    names = list(index.meta.names)
    rows = np.array([s.num_rows for s in index.sources], dtype=np.float64)
    edges = np.append(table["start"], n)
    colors = [f"C{i % 10}" for i in range(len(names))]

    fig = Figure(figsize=(11, 7.5), dpi=110, layout="constrained")
    ax_w, ax_e = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))

    realised = np.vstack([table["realised"], table["realised"][-1:]]).cumsum(axis=1)
    target = np.vstack([table["target"], table["target"][-1:]]).cumsum(axis=1)
    lower = np.zeros(len(edges))
    for i, name in enumerate(names):
        ax_w.fill_between(
            edges, lower, realised[:, i], step="post", color=colors[i], alpha=0.75, lw=0,
            label=f"{name} (realised)",
        )  # fmt: skip
        lower = realised[:, i]
    for i in range(len(names) - 1):
        ax_w.step(
            edges, target[:, i], where="post", color="black", ls="--", lw=1.1,
            label="target (stacked)" if i == 0 else None,
        )  # fmt: skip
    sched = index.meta.scheduler()
    inside = [p.step for p in sched.points if 0 < p.step < n]
    for k, step in enumerate(inside):
        ax_w.axvline(step, color="0.3", ls=":", lw=1.2, label=None if k else "schedule point")
    ax_w.set_ylim(0, 1)
    ax_w.set_xlim(0, n)
    ax_w.set_ylabel("share of examples (stacked)")
    window = int(table["stop"][0] - table["start"][0]) if len(table["start"]) else n
    ax_w.set_title(
        f"{index.path.name}: {n:,} examples, realised share per window of {window:,} positions "
        f"vs. target ({sched.interpolation} schedule)",
        fontsize=11,
    )
    ax_w.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9, frameon=False)

    cum = np.vstack([np.zeros((1, len(names))), np.cumsum(table["counts"], axis=0)])
    for i, name in enumerate(names):
        ax_e.plot(edges, cum[:, i] / rows[i], color=colors[i], lw=1.6, label=name)
    ax_e.set_ylabel("epochs served")
    ax_e.set_xlabel("position (example index; the schedule's step)")
    ax_e.grid(True, alpha=0.3)
    ax_e.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9, frameon=False)
    ax_e.xaxis.set_major_formatter(EngFormatter(sep=" "))
    ax_e.set_ylim(bottom=0)

    if global_batch_size:
        g = float(global_batch_size)
        top = ax_w.secondary_xaxis("top", functions=(lambda p: p / g, lambda s: s * g))
        top.set_xlabel(f"optimizer step (global batch of {global_batch_size:,} examples)")
        top.xaxis.set_major_formatter(EngFormatter(sep=" "))
    fig.savefig(out)
    return out
