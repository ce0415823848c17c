"""Shared helpers for planner tests: plan a mix from plain Python values, in memory."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st

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
    """``Q' - A`` after each block: what each source is still owed, when every owed fraction is
    settled (set to 0) in a block where some source's weight drops to 0 (S2). A plain-Python
    restatement of the rule, independent of mixindex, for checking the planner and ``max dev``
    against."""
    k = weights.shape[1]
    owed = [0.0] * k
    was_active = [False] * k
    out = []
    for w, c, n in zip(weights.tolist(), counts.tolist(), lengths, strict=True):
        active = [v > 0 for v in w]
        if any(was_active[s] and not active[s] for s in range(k)):
            owed = [0.0] * k
        owed = [owed[s] + n * w[s] - c[s] for s in range(k)]
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


# ---- whole specs for property tests ----------------------------------------------------------

# Each drawn spec plans at most this many positions, and at most MAX_BLOCKS blocks (the
# apportionment runs Python per block), so that an example takes milliseconds.
MAX_POSITIONS = 20_000
MAX_BLOCKS = 400
STOPS = ("restart", "first_exhausted", "all_exhausted")
INTERPOLATIONS = ("step", "linear", "cosine")


@dataclass(frozen=True)
class MixSpec:
    """A whole spec in plain values, as a property test draws it."""

    lengths: tuple[int, ...]
    points: tuple[tuple[int, tuple[float, ...]], ...]
    interpolation: str
    block_size: int
    seed: int
    stop: str
    num_examples: int | None
    row_order: str

    @property
    def num_sources(self) -> int:
        return len(self.lengths)

    @property
    def max_positions(self) -> int:
        return min(MAX_POSITIONS, MAX_BLOCKS * self.block_size)

    def replace(self, **changes: Any) -> MixSpec:
        from dataclasses import replace

        return replace(self, **changes)

    def plan(self, **changes: Any) -> Planned:
        spec = self.replace(**{k: v for k, v in changes.items() if k != "chunk_blocks"})
        return plan(
            list(spec.lengths),
            [(step, list(w)) for step, w in spec.points],
            block_size=spec.block_size,
            seed=spec.seed,
            stop=spec.stop,
            num_examples=spec.num_examples,
            row_order=spec.row_order,
            interpolation=spec.interpolation,
            chunk_blocks=changes.get("chunk_blocks"),
        )


def _ends_soon(lengths: list[int], final: list[float], last_step: int, b: int, stop: str) -> bool:
    """Whether an uncapped exhausting mix surely ends within ``MAX_POSITIONS`` and
    ``MAX_BLOCKS`` blocks: after the last point each source with weight ``w`` stays within a
    couple of examples of ``w`` per position, so ``(n + 3) / w`` positions more exhaust it."""
    total = sum(final)
    more = [(n + 3) * total / w if w > 0 else math.inf for n, w in zip(lengths, final, strict=True)]
    need = (-(-last_step // b) + 1) * b + (min(more) if stop == "first_exhausted" else max(more))
    return need + b <= min(MAX_POSITIONS, MAX_BLOCKS * b)


@st.composite
def mix_specs(
    draw: st.DrawFn,
    *,
    max_sources: int = 64,
    zeros: bool = True,
    interpolations: tuple[str, ...] = INTERPOLATIONS,
    stops: tuple[str, ...] = STOPS,
) -> MixSpec:
    """Whole specs: 1 to ``max_sources`` sources (mostly a few), a schedule of 1 to 4 points
    (with weights of 0 where ``zeros``, some points on one source alone, at least one weight
    > 0 per point), any interpolation,
    block sizes 1 to 64, seeds including 0 and 2^64 - 1, any stop strategy and row order.

    ``num_examples`` is always set for ``restart``; for the other two it is a cap, or ``None``
    where the mix surely ends within the limits on its size.
    """
    k = draw(st.one_of(st.integers(1, 4), st.integers(1, max_sources)))
    b = draw(st.integers(1, 64))
    top = draw(st.sampled_from([3, 60, 2000]))
    lengths = draw(st.lists(st.integers(1, top), min_size=k, max_size=k))
    limit = min(MAX_POSITIONS, MAX_BLOCKS * b)
    first = draw(st.one_of(st.just(0), st.integers(1, 3 * b)))
    more = draw(st.lists(st.integers(1, limit), max_size=3, unique=True))
    steps = sorted({first, *(first + s for s in more)})
    weight = st.one_of(st.floats(1e-3, 1.0), st.integers(1, 20).map(float))
    if zeros:
        weight = st.one_of(st.just(0.0), weight)
    points = []
    for step in steps:
        w = draw(st.lists(weight, min_size=k, max_size=k))
        if zeros and draw(st.integers(0, 3)) == 0:
            # All the weight on one source, the others off: sources leave and come back.
            w = [0.0] * k
            w[draw(st.integers(0, k - 1))] = 1.0
        if not any(w):
            w[draw(st.integers(0, k - 1))] = draw(st.sampled_from([1.0, 0.3, 17.0]))
        points.append((step, tuple(w)))
    stop = draw(st.sampled_from(stops))
    if stop == "restart":
        n: int | None = draw(st.integers(1, limit))
    else:
        final = list(points[-1][1])
        soon = _ends_soon(lengths, final, steps[-1], b, stop)
        cap = st.one_of(st.just(limit), st.integers(1, limit))
        n = draw(st.one_of(st.none(), cap) if soon else cap)
    return MixSpec(
        lengths=tuple(lengths),
        points=tuple(points),
        interpolation=draw(st.sampled_from(interpolations)),
        block_size=b,
        seed=draw(st.one_of(st.sampled_from([0, 2**64 - 1]), st.integers(0, 2**64 - 1))),
        stop=stop,
        num_examples=n,
        row_order=draw(st.sampled_from(["sequential", "shuffled"])),
    )
