"""Shared helpers for planner tests: plan a mix from plain Python values, in memory."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mixindex.plan import PlanInputs, Planner
from mixindex.schedule import WeightSchedulePoint, WeightScheduler
from mixindex.spec import StopStrategy


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
