"""Compiled kernels = their numpy references, position by position (S6); grouped row order."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import mixindex
from mixindex.plan.fixed import increments, scale
from mixindex.plan.kernels import block_cursors, increments_between, order_blocks
from mixindex.plan.planner import ChunkTask
from mixindex.plan.rng import shuffle_blocks
from mixindex.plan.rows import GroupTable, mode_of, reference_rows, stream_rows
from mixindex.spec.schedule import WeightSchedulePoint, WeightScheduler

KEYS = st.integers(0, 2**64 - 1)


@st.composite
def block_counts(draw: st.DrawFn) -> tuple[np.ndarray, int]:
    k = draw(st.integers(1, 64))
    size = draw(st.integers(1, 300))
    nblocks = draw(st.integers(1, 6))
    rows = []
    for _ in range(nblocks):
        cuts = sorted(draw(st.lists(st.integers(0, size), min_size=k - 1, max_size=k - 1)))
        rows.append(np.diff([0, *cuts, size]))
    return np.array(rows, dtype=np.int64), size


@settings(max_examples=80, deadline=None)
@given(counts=block_counts(), seed=KEYS, first=st.integers(0, 2**40))
def test_block_order_kernel_is_the_reference(
    counts: tuple[np.ndarray, int], seed: int, first: int
) -> None:
    table, size = counts
    dtype = np.dtype(np.uint8)
    got = order_blocks(seed, first, table, size, dtype)
    assert got.dtype == dtype
    assert (got == shuffle_blocks(seed, first, table, size, dtype)).all()
    # Each block holds its counts, whatever the order.
    for b in range(len(table)):
        assert (np.bincount(got[b], minlength=table.shape[1]) == table[b]).all()


@st.composite
def streams(draw: st.DrawFn) -> dict:
    k = draw(st.integers(1, 64))
    lengths = draw(
        st.lists(
            st.one_of(st.integers(1, 3), st.integers(1, 500), st.integers(2**32, 2**33)),
            min_size=k,
            max_size=k,
        )
    )
    groups = []
    for n in lengths:
        if n > 10**6:
            groups.append((n // 3, 0, n - n // 3))
        else:
            cuts = sorted(draw(st.lists(st.integers(0, n), max_size=6)))
            groups.append(tuple(np.diff([0, *cuts, n]).tolist()))
    size = draw(st.integers(1, 2000))
    src = draw(st.lists(st.integers(0, k - 1), min_size=size, max_size=size))
    cursor = [draw(st.integers(0, 3 * n)) for n in lengths]
    return {
        "src": np.array(src, dtype=np.uint8),
        "cursor": np.array(cursor, dtype=np.int64),
        "lengths": np.array(lengths, dtype=np.int64),
        "row_keys": np.array(draw(st.lists(KEYS, min_size=k, max_size=k)), dtype=np.uint64),
        "groups": tuple(groups),
    }


@settings(max_examples=80, deadline=None)
@given(case=streams(), order=st.sampled_from(["sequential", "shuffled", "grouped"]))
def test_row_stream_kernel_is_the_reference(case: dict, order: str) -> None:
    names = [f"s{i}" for i in range(len(case["lengths"]))]
    table = GroupTable.of(names, case["lengths"], case["groups"])
    args = (case["src"], case["cursor"], case["lengths"], case["row_keys"], mode_of(order), table)
    row, epoch = stream_rows(*args)
    ref_row, ref_epoch = reference_rows(*args)
    assert (row == ref_row).all() and (epoch == ref_epoch).all()
    assert (row < case["lengths"][case["src"]]).all()
    # Written straight into the stored dtypes, where they hold every value.
    if case["lengths"].max() <= 2**32:
        dtypes = (np.dtype(np.uint32), np.dtype(np.uint16))
        narrow_row, narrow_epoch = stream_rows(*args, dtypes)
        assert (narrow_row.dtype, narrow_epoch.dtype) == dtypes
        assert (narrow_row == ref_row).all() and (narrow_epoch == ref_epoch).all()


@st.composite
def schedule_blocks(draw: st.DrawFn) -> tuple[WeightScheduler, np.ndarray, int]:
    """A schedule (weights with zeros, tiny and huge ratios) and the starts of some blocks."""
    k = draw(st.integers(1, 40))
    # Ties at the top (the remainder goes to the first), weights whose floor is no unit at all
    # (they get one).
    tied = st.sampled_from([0.0, 0.25, 3.0])
    weight = tied | st.floats(1e-30, 1e-3) | st.floats(0.0, 1.0) | st.floats(1.0, 1e6)
    names = [f"s{i}" for i in range(k)]
    steps = sorted(draw(st.sets(st.integers(1, 10**6), max_size=4)) | {0})
    points = []
    for step in steps:
        w = draw(st.lists(weight, min_size=k, max_size=k))
        if sum(w) == 0:
            w[draw(st.integers(0, k - 1))] = 1.0
        points.append(WeightSchedulePoint(step, dict(zip(names, w, strict=True))))
    interp = draw(st.sampled_from(["step", "linear", "cosine"]))
    length = draw(st.integers(1, 5000))
    first = draw(st.integers(0, 2 * 10**6 // length))
    starts = (first + np.arange(draw(st.integers(1, 50)), dtype=np.int64)) * length
    return WeightScheduler(points, interp, names), starts, length


@settings(max_examples=150, deadline=None)
@given(case=schedule_blocks())
def test_increments_kernel_is_the_reference(
    case: tuple[WeightScheduler, np.ndarray, int],
) -> None:
    sched, starts, length = case
    unit, _ = scale(len(sched.names), length)
    want = increments(sched.weights_at(starts), length, unit)
    got = np.empty_like(want)
    increments_between(sched.table, sched.segments_at(starts), length, unit, got)
    assert (got == want).all()
    assert (got.sum(axis=1) == length * unit).all()


def test_the_floors_remainder_goes_to_the_first_of_the_largest_weights() -> None:
    names = ["a", "b", "c", "d"]
    sched = WeightScheduler(
        [WeightSchedulePoint(0, {"a": 1, "b": 3, "c": 3, "d": 3})], "step", names
    )
    unit, _ = scale(4, 7)
    got = np.empty((1, 4), dtype=np.int64)
    increments_between(sched.table, sched.segments_at(np.array([0])), 7, unit, got)
    assert (got == increments(sched.weights_at(np.array([0])), 7, unit)).all()
    assert got.sum() == 7 * unit and got[0, 1] > got[0, 2] == got[0, 3]


@settings(max_examples=60, deadline=None)
@given(counts=block_counts(), start=st.lists(st.integers(0, 2**31), min_size=64, max_size=64))
def test_cursor_kernel_is_the_reference(counts: tuple[np.ndarray, int], start: list[int]) -> None:
    table, _ = counts
    cursor = np.array(start[: table.shape[1]], dtype=np.int64)
    task = ChunkTask(0, 0, table.sum(), table, cursor)
    got = block_cursors(table, cursor, np.dtype(np.uint32))
    assert got.dtype == np.uint32 and (got == task.cursors).all()
    assert (got[0] == cursor).all()


def one_source_epochs(n: int, groups: tuple[int, ...], epochs: int, key: int) -> np.ndarray:
    """The grouped stream of one source for ``epochs`` whole epochs (epochs x n rows)."""
    table = GroupTable.of(["a"], [n], [groups])
    src = np.zeros(n * epochs, dtype=np.uint8)
    args = (np.zeros(1), np.array([n]), np.array([key], dtype=np.uint64), mode_of("grouped"))
    row, epoch = stream_rows(src, args[0], args[1], args[2], args[3], table)
    assert (epoch == np.repeat(np.arange(epochs), n)).all()
    return row.reshape(epochs, n).astype(np.int64)


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 40), min_size=1, max_size=12).filter(lambda g: sum(g) > 2),
    key=KEYS,
)
def test_grouped_epochs_permute_rows_group_by_group(sizes: list[int], key: int) -> None:
    n = sum(sizes)
    rows = one_source_epochs(n, tuple(sizes), 4, key)
    group_of = np.repeat(np.arange(len(sizes)), sizes)
    for epoch in rows:
        assert sorted(epoch.tolist()) == list(range(n))  # each epoch: every row once
        # Each group is one run of the stream: it is entered once and left once.
        runs = group_of[epoch]
        assert np.count_nonzero(np.diff(runs)) + 1 == np.count_nonzero(sizes)
    if n >= 20:  # every epoch in a fresh order (a few rows have few orders to choose from)
        assert len({r.tobytes() for r in rows}) == 4


def test_grouped_orders_groups_and_rows_afresh() -> None:
    rows = one_source_epochs(1000, (100,) * 10, 6, 12345)
    firsts = {tuple((r[::100] // 100).tolist()) for r in rows}
    assert len(firsts) == 6  # the group order changes per epoch
    inside = rows[:, :100] % 100
    assert all(sorted(r.tolist()) == list(range(100)) for r in inside)
    assert (inside != np.arange(100)).any(axis=1).all()  # rows inside a group are shuffled


def test_planning_loads_numba_but_the_reader_does_not() -> None:
    # (A small mix runs on the references: SMALL_MIX = 0 makes this one use the kernels.)
    code = (
        "import sys, mixindex, mixindex.read.dataset, mixindex.plan.planner as p; "
        "p.SMALL_MIX = 0; "
        "from mixindex.spec.schedule import WeightSchedulePoint as W, WeightScheduler as S; "
        "a = 'numba' in sys.modules; "
        "i = p.PlanInputs(names=('a',), lengths=(5,), scheduler=S([W(0, {'a': 1.0})]), "
        "block_size=4, seed=1, stop=p.StopStrategy.RESTART, num_examples=9, row_order='grouped'); "
        "c = list(p.Planner(i).chunks()); print(a, 'numba' in sys.modules, len(c[0].row))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(mixindex.__file__).resolve().parents[1])}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.split() == ["False", "True", "9"]
