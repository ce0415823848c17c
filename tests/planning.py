"""Shared helpers for planner tests: plan a mix from plain Python values, in memory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mixindex.plan.planner import PlanInputs, Planner
from mixindex.spec.config import StopStrategy
from mixindex.spec.schedule import WeightSchedulePoint, WeightScheduler


@dataclass
class Planned:
    source: np.ndarray
    row: np.ndarray
    epoch: np.ndarray
    counts: np.ndarray
    cursors: np.ndarray
    planner: Planner


def plan(
    lengths: list[int],
    weights: list[float] | list[tuple[int, list[float]]],
    *,
    block_size: int = 10,
    seed: int = 0,
    stop: str = "restart",
    num_examples: int | None = None,
    row_order: str = "sequential",
    interpolation: str = "step",
    chunk_blocks: int | None = None,
) -> Planned:
    """Plan in memory. ``weights`` is one weight list, or ``[(step, weights), ...]``."""
    names = tuple(f"s{i}" for i in range(len(lengths)))
    if weights and isinstance(weights[0], tuple):
        points = [WeightSchedulePoint(s, dict(zip(names, w, strict=True))) for s, w in weights]
    else:
        points = [WeightSchedulePoint(0, dict(zip(names, weights, strict=True)))]
    inputs = PlanInputs(
        names=names,
        lengths=tuple(lengths),
        scheduler=WeightScheduler(points, interpolation, names),
        block_size=block_size,
        seed=seed,
        stop=StopStrategy(stop),
        num_examples=num_examples,
        row_order=row_order,
    )
    planner = Planner(inputs, chunk_blocks)
    chunks = list(planner.chunks())

    def cat(field: str) -> np.ndarray:
        return np.concatenate([getattr(c, field) for c in chunks])

    return Planned(cat("source"), cat("row"), cat("epoch"), cat("counts"), cat("cursors"), planner)


def written_off_owed(weights: np.ndarray, counts: np.ndarray, lengths: list[int]) -> np.ndarray:
    """``Q' - A`` after each block: what each source is still owed when the fraction a source
    was owed as its weight drops to 0 is written off, handed to the active sources in proportion
    to their weights (S2). A plain-Python restatement of the rule, independent of mixindex, for
    checking the planner and ``max dev`` against."""
    k = weights.shape[1]
    owed = [0.0] * k
    was_active = [False] * k
    out = []
    for w, c, n in zip(weights.tolist(), counts.tolist(), lengths, strict=True):
        active = [v > 0 for v in w]
        gone = [was_active[s] and not active[s] for s in range(k)]
        dropped = sum(owed[s] for s in range(k) if gone[s])
        total = sum(w)
        for s in range(k):
            start = 0.0 if gone[s] else owed[s]
            owed[s] = start + n * w[s] + dropped * w[s] / total - c[s]
        was_active = active
        out.append(list(owed))
    return np.array(out, dtype=np.float64).reshape(len(out), k)


# Two step schedules for the default test data (code, notes, docs) with blocks of 10, where
# measuring against the schedule alone drifts past one example: code drops to 0 three times, or
# toggles every block. Each point's weights are written as they would be in a spec.
ZERO_WEIGHT_NAMES = ("code", "notes", "docs")


def drops_three_times(block: int = 10) -> list[dict[str, Any]]:
    return [
        {
            "step": 3 * i * block,
            "weights": {"code": 0.0 if i % 2 else 0.29, "notes": 0.41, "docs": 0.3},
        }
        for i in range(7)
    ]


def toggles_every_block(blocks: int, block: int = 10) -> list[dict[str, Any]]:
    return [
        {
            "step": j * block,
            "weights": {"code": 0.0 if j % 2 else 0.37, "notes": 0.41, "docs": 0.22},
        }
        for j in range(blocks)
    ]


def step_weights(schedule: list[dict[str, Any]], block: int, blocks: int) -> np.ndarray:
    """The normalised weights at each block's first position under a step schedule, read off
    the points by hand (the last point at or before the position)."""
    out = []
    for j in range(blocks):
        point = [p for p in schedule if p["step"] <= j * block][-1]["weights"]
        w = [float(point[n]) for n in ZERO_WEIGHT_NAMES]
        out.append([v / sum(w) for v in w])
    return np.array(out)
