"""The planner: golden sequences (S3, S6), row streams (S4), stop strategies (S5), chunking."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from planning import plan

from mixindex.errors import PlanError
from mixindex.spec.config import StopStrategy
from mixindex.spec.schedule import WeightSchedulePoint, WeightScheduler

# ---- golden sequences: these pin the exact output for good (S3, S6) ----------------------------


@pytest.fixture(params=["kernels", "reference"])
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Plan with the compiled kernels, or with their numpy references in their place: the
    golden sequences below hold for both. (Small mixes run on the references by themselves:
    the kernels are forced here.)"""
    import mixindex.plan.planner as planner_module

    if request.param == "kernels":
        monkeypatch.setattr(planner_module, "SMALL_MIX", 0)
    if request.param == "reference":
        import mixindex.plan.planner as planner_module
        from mixindex.plan.rng import shuffle_blocks
        from mixindex.plan.rows import reference_rows

        def block_sources(
            self: planner_module.Planner, first: int, counts: np.ndarray
        ) -> np.ndarray:
            inp = self.inputs
            return shuffle_blocks(inp.seed, first, counts, inp.block_size, self.source_dtype)

        monkeypatch.setattr(planner_module.Planner, "block_sources", block_sources)
        monkeypatch.setattr(planner_module, "stream_rows", reference_rows)
    return str(request.param)


def test_golden_static_sequential(engine: str) -> None:
    p = plan([5, 100], [0.75, 0.25], block_size=4, num_examples=16, seed=0)
    assert p.source.tolist() == [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0]
    assert p.row.tolist() == [0, 0, 1, 2, 3, 1, 4, 0, 1, 2, 3, 2, 4, 3, 0, 1]
    assert p.epoch.tolist() == [0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 1, 0, 2, 2]


def test_golden_shuffled_three_sources(engine: str) -> None:
    p = plan(
        [3, 4, 5], [0.5, 0.3, 0.2], block_size=5, num_examples=15, seed=7, row_order="shuffled"
    )
    assert p.source.tolist() == [2, 1, 0, 0, 0, 0, 1, 2, 0, 1, 0, 2, 0, 1, 0]
    # Format 4 (source 2's 5 rows take a 3-bit network; format 3 had 3, 1, 0 at its slots);
    # also what the plain-Python row network of tests/test_rng.py gives.
    assert p.row.tolist() == [0, 3, 0, 1, 2, 1, 1, 1, 2, 0, 0, 4, 2, 2, 1]
    assert p.epoch.tolist() == [0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1, 0, 2, 0, 2]


def test_golden_first_exhausted(engine: str) -> None:
    p = plan([4, 6], [0.5, 0.5], block_size=4, seed=1, stop="first_exhausted")
    assert p.source.tolist() == [1, 0, 0, 1, 1, 1, 0, 0, 1, 1]
    assert p.row.tolist() == [0, 0, 1, 1, 2, 3, 2, 3, 4, 5]


def test_golden_all_exhausted_linear_schedule(engine: str) -> None:
    p = plan(
        [3, 8],
        [(0, [0.8, 0.2]), (8, [0.2, 0.8])],
        block_size=4,
        seed=3,
        stop="all_exhausted",
        interpolation="linear",
    )
    assert p.source.tolist() == [1, 0, 0, 0, 1, 1, 0, 0, 0, 1, 1, 1, 0, 1, 1]
    assert p.row.tolist() == [0, 0, 1, 2, 1, 2, 0, 1, 2, 3, 4, 5, 0, 6, 7]
    assert p.epoch.tolist() == [0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 2, 0, 0]


# ---- S3: block order -------------------------------------------------------------------------


def test_neighbouring_seeds_are_not_shifted_copies() -> None:
    a = plan([1000] * 4, [0.25] * 4, block_size=100, num_examples=2000, seed=42).source
    b = plan([1000] * 4, [0.25] * 4, block_size=100, num_examples=2000, seed=43).source
    blocks_a = a.reshape(20, 100)
    blocks_b = b.reshape(20, 100)
    for shift in range(-3, 4):
        same = [
            (blocks_a[i] == blocks_b[i + shift]).all() for i in range(20) if 0 <= i + shift < 20
        ]
        assert not any(same), f"seed 43 repeats seed 42's blocks shifted by {shift}"
    # Each block's order is a real permutation: not sorted, not the same in every block.
    assert len({bytes(r) for r in blocks_a.astype(np.uint8)}) == 20


def test_block_order_is_uniform_enough() -> None:
    # Over many blocks, each slot position is filled by each of two equal sources about half
    # the time (a biased permutation would favour the low source at the front).
    p = plan([10**6, 10**6], [0.5, 0.5], block_size=16, num_examples=16 * 4000, seed=5)
    share0 = (p.source.reshape(-1, 16) == 0).mean(axis=0)
    assert np.all(np.abs(share0 - 0.5) < 0.05), share0


# ---- S4: rows ----------------------------------------------------------------------------------


def _streams(p: object, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(p.epoch[p.source == s], p.row[p.source == s]) for s in range(k)]  # type: ignore[attr-defined]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lengths=st.lists(st.integers(1, 40), min_size=1, max_size=4),
    block_size=st.integers(1, 17),
    seed=st.integers(0, 2**64 - 1),
    num_examples=st.integers(1, 400),
    data=st.data(),
)
def test_sequential_rows_follow_the_stream(
    lengths: list[int], block_size: int, seed: int, num_examples: int, data: st.DataObject
) -> None:
    weights = data.draw(st.lists(st.floats(0.01, 1), min_size=len(lengths), max_size=len(lengths)))
    p = plan(lengths, weights, block_size=block_size, seed=seed, num_examples=num_examples)
    assert len(p.source) == num_examples
    for s, (epoch, row) in enumerate(_streams(p, len(lengths))):
        k = np.arange(len(row))
        assert (epoch == k // lengths[s]).all()
        assert (row == k % lengths[s]).all()


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 30), min_size=1, max_size=3),
    seed=st.integers(0, 2**64 - 1),
    epochs=st.integers(1, 4),
)
def test_shuffled_rows_are_a_fresh_permutation_each_epoch(
    lengths: list[int], seed: int, epochs: int
) -> None:
    n = sum(lengths) * epochs
    p = plan(
        lengths, [1.0] * len(lengths), block_size=7, seed=seed, num_examples=n, row_order="shuffled"
    )
    for s, (epoch, row) in enumerate(_streams(p, len(lengths))):
        k = np.arange(len(row))
        assert (epoch == k // lengths[s]).all()
        full = len(row) // lengths[s]
        for e in range(full):
            assert sorted(row[epoch == e].tolist()) == list(range(lengths[s]))


def test_shuffled_orders_differ_between_epochs_and_seeds() -> None:
    a = plan([500], [1.0], block_size=50, seed=1, num_examples=1500, row_order="shuffled")
    b = plan([500], [1.0], block_size=50, seed=2, num_examples=1500, row_order="shuffled")
    e0, e1, e2 = a.row[:500], a.row[500:1000], a.row[1000:]
    assert not (e0 == e1).all() and not (e1 == e2).all()
    assert not (a.row == b.row).all()
    assert not (e0 == np.arange(500)).all()


# ---- S5: stop strategies -----------------------------------------------------------------------


@st.composite
def mixes(draw: st.DrawFn) -> dict:
    k = draw(st.integers(1, 4))
    lengths = draw(st.lists(st.integers(1, 60), min_size=k, max_size=k))
    weights = draw(st.lists(st.floats(0.05, 1), min_size=k, max_size=k))
    return {
        "lengths": lengths,
        "weights": weights,
        "block_size": draw(st.integers(1, 20)),
        "seed": draw(st.integers(0, 2**32)),
        "row_order": draw(st.sampled_from(["sequential", "shuffled"])),
    }


@settings(max_examples=80, deadline=None)
@given(mix=mixes())
def test_first_exhausted(mix: dict) -> None:
    p = plan(**mix, stop="first_exhausted", chunk_blocks=3)
    pairs = list(zip(p.source.tolist(), p.row.tolist(), strict=True))
    assert len(set(pairs)) == len(pairs), "a row repeats"
    served = np.bincount(p.source, minlength=len(mix["lengths"]))
    full = [s for s, n in enumerate(mix["lengths"]) if served[s] == n]
    assert full, "no source was exhausted"
    # It ends just before the first repeat: the restart mix with the same seed has the same
    # prefix, and its next slot repeats a row of a source.
    longer = plan(**mix, stop="restart", num_examples=len(pairs) + 1)
    assert (longer.source[:-1] == p.source).all() and (longer.row[:-1] == p.row).all()
    nxt = int(longer.source[-1])
    assert served[nxt] == mix["lengths"][nxt]


@settings(max_examples=80, deadline=None)
@given(mix=mixes())
def test_all_exhausted(mix: dict) -> None:
    p = plan(**mix, stop="all_exhausted", chunk_blocks=2)
    n = len(p.source)
    for s, rows in enumerate(mix["lengths"]):
        assert set(p.row[p.source == s].tolist()) == set(range(rows)), f"source {s} not covered"
    # One position less and some source is short of a row: it ends at the first such position.
    last_src, last_row = int(p.source[-1]), int(p.row[-1])
    before = (p.source[: n - 1] == last_src) & (p.row[: n - 1] == last_row)
    assert not before.any()


def test_num_examples_caps_the_exhausting_strategies() -> None:
    free = plan([50, 80], [0.5, 0.5], block_size=8, seed=4, stop="all_exhausted")
    capped = plan([50, 80], [0.5, 0.5], block_size=8, seed=4, stop="all_exhausted", num_examples=37)
    assert len(capped.source) == 37 < len(free.source)
    assert (capped.source == free.source[:37]).all()
    assert capped.counts.sum() == 37


def test_restart_partial_last_block_is_a_prefix() -> None:
    long = plan([7, 9, 11], [0.2, 0.3, 0.5], block_size=10, seed=9, num_examples=100)
    short = plan([7, 9, 11], [0.2, 0.3, 0.5], block_size=10, seed=9, num_examples=55)
    assert (short.source == long.source[:55]).all() and (short.row == long.row[:55]).all()
    assert short.counts.shape == (6, 3)
    assert short.counts[:-1].sum(axis=1).tolist() == [10] * 5
    assert short.counts[-1].sum() == 5
    assert short.counts[-1].tolist() == np.bincount(short.source[50:], minlength=3).tolist()


def test_all_exhausted_that_can_never_end_is_refused() -> None:
    with pytest.raises(PlanError, match="s1"):
        plan([5, 1000], [(0, [0.5, 0.5]), (20, [1.0, 0.0])], block_size=4, stop="all_exhausted")


def test_all_exhausted_with_source_exhausted_before_its_weight_drops() -> None:
    # s1 has 3 rows and weight 0 after step 40: it is exhausted well before then.
    p = plan([50, 3], [(0, [0.5, 0.5]), (40, [1.0, 0.0])], block_size=4, stop="all_exhausted")
    assert set(p.row[p.source == 1].tolist()) == {0, 1, 2}
    assert set(p.row[p.source == 0].tolist()) == set(range(50))


def test_zero_weight_source_is_never_served() -> None:
    p = plan([10, 10, 10], [0.5, 0.0, 0.5], block_size=6, num_examples=300, seed=1)
    assert (p.source != 1).all()
    assert (p.counts[:, 1] == 0).all()


# ---- S6: chunking and determinism ------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(mix=mixes(), chunks=st.integers(1, 5), stop=st.sampled_from(["restart", "all_exhausted"]))
def test_chunk_size_does_not_change_the_plan(mix: dict, chunks: int, stop: str) -> None:
    n = 300 if stop == "restart" else None
    a = plan(**mix, stop=stop, num_examples=n, chunk_blocks=chunks)
    b = plan(**mix, stop=stop, num_examples=n, chunk_blocks=64)
    for field in ("source", "row", "epoch", "counts", "cursors"):
        assert (getattr(a, field) == getattr(b, field)).all(), field


def test_cursors_are_stream_positions_at_block_starts() -> None:
    p = plan([13, 17, 19], [0.3, 0.3, 0.4], block_size=8, seed=2, num_examples=200, chunk_blocks=3)
    expected = np.cumsum(p.counts, axis=0) - p.counts
    assert (p.cursors == expected).all()


def test_dtypes_follow_the_data() -> None:
    p = plan([300, 70000], [0.5, 0.5], block_size=10, num_examples=100)
    assert p.source.dtype == np.uint8
    assert p.row.dtype == np.uint32
    assert p.counts.dtype == np.uint8
    many = plan([5] * 300, [1.0] * 300, block_size=1000, num_examples=1000)
    assert many.source.dtype == np.uint16
    assert many.counts.dtype == np.uint16


@pytest.mark.parametrize("row_order", ["sequential", "shuffled", "grouped"])
def test_kernels_and_references_plan_the_same_mix(
    row_order: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mixindex.plan.planner as planner_module
    from mixindex.plan.rng import shuffle_blocks
    from mixindex.plan.rows import reference_rows

    args = {"block_size": 9, "seed": 11, "num_examples": 1998, "row_order": row_order}
    # A small mix runs on the references by itself; the planner planning it on its own gives
    # what the kernels give.
    small = plan([5, 17, 300, 2], [0.1, 0.3, 0.5, 0.1], **args)
    assert not small.planner.compiled
    monkeypatch.setattr(planner_module, "SMALL_MIX", 0)
    p = plan([5, 17, 300, 2], [0.1, 0.3, 0.5, 0.1], **args)
    assert p.planner.compiled
    for field in ("source", "row", "epoch", "counts", "cursors"):
        assert (getattr(small, field) == getattr(p, field)).all(), field
    blocks = shuffle_blocks(11, 0, p.counts, 9, p.planner.source_dtype).ravel()
    assert (p.source == blocks).all()
    cursor = np.zeros(4, dtype=np.int64)
    pl = p.planner
    row, epoch = reference_rows(p.source, cursor, pl.lengths, pl.row_keys, pl_mode(pl), pl.groups)
    assert (p.row == row).all() and (p.epoch == epoch).all()


def pl_mode(planner: object) -> int:
    from mixindex.plan.rows import mode_of

    return mode_of(planner.inputs.row_order)  # type: ignore[attr-defined]


def test_blocks_past_65536_slots_work() -> None:
    # Levanter packs (source << 16) + slot and so caps blocks below 65,536; we keep typed arrays.
    p = plan([50_000, 90_000], [0.3, 0.7], block_size=70_000, num_examples=140_000, seed=3)
    assert p.counts.dtype == np.uint32
    assert p.counts.tolist() == [[21_000, 49_000], [21_000, 49_000]]
    assert (p.row[p.source == 0] == np.arange(42_000) % 50_000).all()


@settings(max_examples=40, deadline=None)
@given(mix=mixes())
def test_no_row_past_a_source_end_is_ever_requested(mix: dict) -> None:
    # Levanter computes the first_exhausted cut on slots while rows in a block are shuffled, so
    # rows past a source's end can be asked for before the cut.
    for stop in ("first_exhausted", "all_exhausted"):
        p = plan(**mix, stop=stop)
        lengths = np.array(mix["lengths"])
        assert (p.row < lengths[p.source]).all()


# ---- cost follows the mix, not the schedule or the epoch span ----------------------------------


class Hung(Exception):
    pass


@contextlib.contextmanager
def alarm(seconds: int) -> Iterator[None]:
    """Fail with Hung instead of running on (planning loops run Python between numpy calls)."""

    def fire(signum: int, frame: object) -> None:
        raise Hung(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("interpolation", ["step", "linear", "cosine"])
@pytest.mark.parametrize("far", [10**12, 10**13])
def test_a_far_schedule_point_does_not_slow_a_short_mix(interpolation: str, far: int) -> None:
    # 20 sources of one row: the mix ends after 20 positions, long before the schedule's last
    # point. Reading the schedule block by block up to it took 94 s at 10^9 (a day at 10^12); a
    # point past 2^40 made the mix be refused as too long.
    points = [(0, [1.0] * 20), (far, [1.0] * 19 + [5.0])]
    with alarm(120):
        p = plan(
            [1] * 20,
            points,
            block_size=1,
            seed=3,
            stop="first_exhausted",
            interpolation=interpolation,
        )
    assert len(p.source) == 20
    assert sorted(p.source.tolist()) == list(range(20)) and (p.row == 0).all()
    longer = plan(
        [1] * 20, points, block_size=1, seed=3, num_examples=21, interpolation=interpolation
    )
    assert (longer.source[:20] == p.source).all()


def test_memory_does_not_follow_the_epoch_span() -> None:
    # A 1-row source is at epoch ~ position while large sources stay at epoch 0; a table of keys
    # from the lowest to the highest epoch took 8 bytes per epoch in the span (800 MB at 10^8).
    import tracemalloc

    from mixindex.plan import planner as plan_module

    k = 300
    names = tuple(f"s{i}" for i in range(k))
    inputs = plan_module.PlanInputs(
        names=names,
        lengths=(1,) + (10**6,) * (k - 1),
        scheduler=WeightScheduler([WeightSchedulePoint(0, dict.fromkeys(names, 1.0))]),
        block_size=1000,
        seed=5,
        stop=StopStrategy.RESTART,
        num_examples=3 * 10**10,
        row_order="shuffled",
    )
    planner = plan_module.Planner(inputs)  # planning nothing yet: _rows is called directly
    rng = np.random.default_rng(0)
    src = rng.integers(0, k, 100_000).astype(planner.source_dtype)
    cursor = np.zeros(k, dtype=np.int64)
    cursor[0] = 20_000_000  # the 1-row source is 2*10^7 passes in
    tracemalloc.start()
    try:
        row, epoch = planner._rows(src, cursor)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 40 * 2**20, f"{peak / 2**20:.0f} MiB for 100,000 positions"
    assert int(epoch[src == 0].max()) == 20_000_000 + int((src == 0).sum()) - 1
    # The same keys as hashing each position's epoch in numpy: the reference gives the same rows.
    from mixindex.plan.rows import reference_rows

    row2, epoch2 = reference_rows(src, cursor, planner.lengths, planner.row_keys, 1, planner.groups)
    assert (row == row2).all() and (epoch == epoch2).all()


# ---- planning has no side effects, and apportions nothing past the end --------------------------


def _count_apportioned(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Spy on the apportioner: the number of blocks of each call, in order. Each call's guess
    of the next call's size (for computing its window ahead) must be that size."""
    from mixindex.plan.apportion import Apportioner

    calls: list[int] = []
    guess: list[int] = []
    real = Apportioner.counts

    def counts(self: Apportioner, first: int, nblocks: int, then: int = 0) -> np.ndarray:
        if guess and calls:
            assert nblocks == guess[-1], (calls, guess, nblocks)
        out = real(self, first, nblocks, then)
        calls.append(len(out))
        guess.append(then)
        return out

    monkeypatch.setattr(Apportioner, "counts", counts)
    return calls


@pytest.mark.parametrize("chunk_blocks", [1, 2, 3, 6])
def test_a_mix_ending_on_a_chunk_edge_apportions_no_further_chunk(
    monkeypatch: pytest.MonkeyPatch, chunk_blocks: int
) -> None:
    calls = _count_apportioned(monkeypatch)
    # restart: num_examples a multiple of the chunk (6 blocks of 2).
    p = plan([5, 7], [0.4, 0.6], block_size=2, num_examples=12, chunk_blocks=chunk_blocks)
    assert len(p.source) == 12 and sum(calls) == 6
    # all_exhausted whose last row is served at the last slot of a block (then of a chunk).
    calls.clear()
    p = plan([5, 7], [0.4, 0.6], block_size=2, stop="all_exhausted", chunk_blocks=chunk_blocks)
    assert len(p.source) == 12 and sum(calls) == 6
    tasks = list(p.planner.tasks())
    assert [t.last for t in tasks] == [False] * (len(tasks) - 1) + [True]
    assert len(tasks) == 6 // chunk_blocks and tasks[-1].stop == 12


@pytest.mark.parametrize(
    "mix",
    [
        {"stop": "restart", "num_examples": 95},
        {"stop": "first_exhausted"},
        {"stop": "all_exhausted"},
    ],
)
def test_planning_changes_nothing_on_the_planner(mix: dict) -> None:
    p = plan([13, 29, 7], [0.2, 0.5, 0.3], block_size=3, chunk_blocks=2, seed=4, **mix)
    planner = p.planner
    before = dict(vars(planner))
    again = list(planner.tasks())
    assert vars(planner).keys() == before.keys()
    assert all(vars(planner)[k] is v for k, v in before.items())
    # The length is what the last task says, each time.
    chunks = list(planner.chunks())
    assert (
        [c.last for c in chunks] == [t.last for t in again] == [False] * (len(again) - 1) + [True]
    )
    assert again[-1].stop == chunks[-1].stop == len(p.source)
    assert np.concatenate([c.source for c in chunks]).tolist() == p.source.tolist()


def test_the_stop_search_returns_its_state_and_leaves_its_argument(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mixindex.plan.planner import Planner

    seen: list[tuple[np.ndarray, np.ndarray]] = []
    real = Planner._stop_in

    def stop_in(self: Planner, *args: np.ndarray) -> tuple[int, np.ndarray]:
        state = args[-1]
        kept = state.copy()
        natural, found = real(self, *args)  # type: ignore[arg-type]
        assert (state == kept).all(), "the state passed in was changed"
        seen.append((kept, found))
        return natural, found

    monkeypatch.setattr(Planner, "_stop_in", stop_in)
    p = plan([13, 29, 7], [0.2, 0.5, 0.3], block_size=3, chunk_blocks=2, stop="all_exhausted")
    # Sources are found exhausted one by one across chunks, each found once and kept.
    first, last = seen[0][0], seen[-1][1]
    assert (first == -1).all() and (last >= 0).all() and int(last.max()) + 1 == len(p.source)
    for kept, found in seen:
        assert (found[kept >= 0] == kept[kept >= 0]).all()


def test_the_builder_turns_a_config_into_plan_inputs() -> None:
    from mixindex.builder import plan_inputs
    from mixindex.plan.planner import PlanInputs
    from mixindex.spec.config import DatasetConfig, MixStageConfig, PipelineConfig

    # The planner takes plan inputs only; reading a config is the builder's job.
    assert not hasattr(PlanInputs, "from_config")
    config = PipelineConfig(
        datasets=[DatasetConfig(name=n, data_files=f"{n}.arrow") for n in ("a", "b")],
        mix=MixStageConfig(
            seed=3,
            weights={"b": 3, "a": 1},
            block_size=4,
            stop_strategy="first_exhausted",  # type: ignore[arg-type]
            row_order="shuffled",
        ),
    )
    inputs = plan_inputs(config, [np.int64(5), 9])
    assert inputs.names == ("a", "b") and inputs.lengths == (5, 9)
    assert all(type(n) is int for n in inputs.lengths)
    assert inputs.stop is StopStrategy.FIRST_EXHAUSTED
    assert (inputs.block_size, inputs.seed, inputs.num_examples) == (4, 3, None)
    assert inputs.row_order == "shuffled"
    assert inputs.scheduler.get_weights(0) == {"a": 0.25, "b": 0.75}


@pytest.mark.parametrize("compress", [False, True])
def test_a_small_build_loads_no_compiler_and_no_zarr(tmp_path: Path, compress: bool) -> None:
    # numba and its cached kernels cost about half a second to load, zarr about 0.4 s: more than
    # a small plan. The builder writes the zarr documents and chunk files itself.
    import os
    import subprocess
    import sys

    import pyarrow as pa
    import pyarrow.parquet as pq

    import mixindex

    spec = tmp_path / "mix.toml"
    pq.write_table(pa.table({"x": list(range(40))}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"x": list(range(30))}), tmp_path / "b.parquet")
    spec.write_text(
        '[[datasets]]\nname = "a"\ndata_files = "a.parquet"\n'
        '[[datasets]]\nname = "b"\ndata_files = "b.parquet"\n'
        "[mix]\nweights = { a = 1, b = 2 }\nblock_size = 10\nnum_examples = 500\nseed = 1\n"
    )
    code = (
        "import sys, mixindex; "
        "mixindex.build(sys.argv[1], sys.argv[2], compress=sys.argv[3] == '1'); "
        "print(sorted(m for m in ('numba', 'llvmlite', 'zarr') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(mixindex.__file__).resolve().parents[1])}
    out = subprocess.run(
        [sys.executable, "-c", code, str(spec), str(tmp_path / "m.mixindex"), str(int(compress))],
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
