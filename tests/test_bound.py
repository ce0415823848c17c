"""Bounds on a mix's length: closed-form cumulative targets against block-by-block sums, and the
bound against the lengths the planner really produces."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from planning import plan

from mixindex.plan.bound import (
    DIRECT_BLOCKS,
    EXACT_CELLS,
    CumulativeTargets,
    length_bound,
    targets_before,
)
from mixindex.spec.schedule import WeightSchedulePoint, WeightScheduler


def scheduler(points: list[tuple[int, list[float]]], interpolation: str) -> WeightScheduler:
    names = [f"s{i}" for i in range(len(points[0][1]))]
    return WeightScheduler(
        [WeightSchedulePoint(s, dict(zip(names, w, strict=True))) for s, w in points],
        interpolation,
        names,
    )


def brute_force(sched: WeightScheduler, b: int, blocks: int) -> np.ndarray:
    """sum over blocks j < blocks of B * w(j B), evaluated block by block with the planner's own
    schedule (math.fsum per source, so the reference itself has no rounding drift)."""
    import math

    w = sched.weights_at(np.arange(blocks, dtype=np.int64) * b)
    return np.array([b * math.fsum(w[:, s].tolist()) for s in range(w.shape[1])])


@pytest.mark.parametrize("interpolation", ["step", "linear", "cosine"])
@pytest.mark.parametrize("b", [1, 3, 7])
def test_closed_form_segments_match_block_by_block_sums(interpolation: str, b: int) -> None:
    # Segments longer than DIRECT_BLOCKS take the closed form; steps not multiples of b make
    # the first block of a segment start past its point.
    points = [
        (5, [0.2, 0.8, 0.0]),
        (5 + 10 * DIRECT_BLOCKS + 1, [0.7, 0.1, 0.2]),
        (5 + 25 * DIRECT_BLOCKS + 2, [0.0, 0.5, 0.5]),
        (5 + 25 * DIRECT_BLOCKS + 500, [0.3, 0.3, 0.4]),
    ]
    sched = scheduler(points, interpolation)
    targets = CumulativeTargets(sched, b)
    k = 3
    for r in range(targets.regions):
        lo, size = targets.span(r)
        n = min(size, 3 * DIRECT_BLOCKS + 11)
        for m in (0, 1, n // 3, n):
            want = brute_force(sched, b, lo + m) - brute_force(sched, b, lo)
            got = b * targets.partial(r, np.full(k, m))
            assert np.allclose(got, want, rtol=1e-12, atol=1e-9), (r, m, got, want)


@pytest.mark.parametrize("interpolation", ["linear", "cosine"])
def test_targets_before_brackets_the_exact_sum(interpolation: str) -> None:
    sched = scheduler([(0, [0.9, 0.1]), (6_000_001, [0.1, 0.9])], interpolation)
    blocks = 6_000_001 // 2 + 1
    assert blocks * 2 > EXACT_CELLS  # the closed form, not the block-by-block sum
    low, high = targets_before(sched, 2, blocks)
    exact = brute_force(sched, 2, blocks)
    assert (low <= exact).all() and (exact <= high).all()
    assert np.allclose(low, exact, rtol=1e-8) and np.allclose(high, exact, rtol=1e-8)


@st.composite
def schedules(draw: st.DrawFn) -> dict:
    k = draw(st.integers(2, 4))
    weights = st.lists(st.sampled_from([0.0, 0.05, 0.3, 1.0]), min_size=k, max_size=k).filter(
        lambda w: sum(w) > 0
    )
    steps = sorted(set(draw(st.lists(st.integers(0, 400), min_size=1, max_size=4))))
    return {
        "lengths": draw(st.lists(st.integers(1, 40), min_size=k, max_size=k)),
        "weights": [(s, draw(weights)) for s in steps],
        "block_size": draw(st.integers(1, 9)),
        "seed": draw(st.integers(0, 2**32)),
        "interpolation": draw(st.sampled_from(["step", "linear", "cosine"])),
    }


@settings(max_examples=120, deadline=None)
@given(mix=schedules(), first=st.booleans())
def test_the_tight_bound_is_never_short(mix: dict, first: bool) -> None:
    points = [(s, w) for s, w in mix["weights"]]
    sched = scheduler(points, mix["interpolation"])
    bound = length_bound(sched, mix["block_size"], np.array(mix["lengths"]), first_only=first)
    if not np.isfinite(bound):
        return
    # Planned with the bound as a cap: the mix must end on its own before reaching it.
    p = plan(**mix, stop="first_exhausted" if first else "all_exhausted", num_examples=int(bound))
    served = np.bincount(p.source, minlength=len(mix["lengths"]))
    lengths = np.array(mix["lengths"])
    if first:
        assert (served == lengths).any(), "the cap cut the mix before a source was exhausted"
    else:
        assert (served >= lengths).all(), "the cap cut the mix before every source was exhausted"


def test_far_segments_are_summed_at_their_exact_positions() -> None:
    # Points past 2^53, one position apart: each block start reads its own segment.
    far = 2**60
    sched = scheduler([(0, [1, 0]), (far + 1, [0.5, 0.5]), (far + 3, [0.0, 1.0])], "linear")
    targets = CumulativeTargets(sched, 1)
    assert [targets.span(r) for r in (1, 2)] == [(0, far + 1), (far + 1, 2)]
    # Blocks at far + 1 and far + 2: weights (0.5, 0.5) and (0.25, 0.75).
    assert targets.partial(2, np.full(2, 2)).tolist() == [0.75, 1.25]
    assert targets.partial(2, np.full(2, 1)).tolist() == [0.5, 0.5]
    # Before the far points the first source holds the whole mix: it needs 10 blocks for 10.
    blocks = length_bound(sched, 1, np.array([10, 10]), first_only=True)
    assert 10 <= blocks <= 20
