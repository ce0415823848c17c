"""block_mixture_interleave: the same sequence as a built index, exact counts, real stop
strategies, streams read in their own order, and resume from any position."""

from __future__ import annotations

import itertools
import json
import logging
import pickle
from collections import Counter
from pathlib import Path
from typing import Any

import datasets
import pytest

import mixindex
from mixindex import PipelineConfig, PlanError, SourceError, SpecError, StateError
from mixindex.mixing.interleave import block_mixture_interleave, equivalent_spec

datasets.disable_progress_bars()

SIZES = {"a": 37, "b": 23, "c": 11}
WEIGHTS = {"a": 0.5, "b": 0.3, "c": 0.2}


def make(name: str, n: int) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"id": [f"{name}{i}" for i in range(n)], "n": list(range(n))})


@pytest.fixture(scope="module")
def maps() -> dict[str, datasets.Dataset]:
    return {name: make(name, n) for name, n in SIZES.items()}


def streams(maps: dict[str, datasets.Dataset], num_shards: int = 3) -> dict[str, Any]:
    # Shards of odd sizes, so that a pass crosses shard boundaries.
    return {name: ds.to_iterable_dataset(num_shards=num_shards) for name, ds in maps.items()}


def pairs(examples: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(ex["__source__"], ex["n"]) for ex in examples]


def run(inputs: dict[str, Any], stop: str, limit: int | None = None, **kw: Any) -> list[Any]:
    kw.setdefault("weights", WEIGHTS)
    kw.setdefault("block_size", 10)
    kw.setdefault("seed", 3)
    mixed = block_mixture_interleave(inputs, stop=stop, **kw)
    return list(itertools.islice(mixed, limit))


def index_pairs(
    tmp_path: Path, maps: dict[str, datasets.Dataset], stop: str, **kw: Any
) -> list[tuple[str, int]]:
    """The (source, row) sequence of `mixindex build` on the equivalent spec."""
    mix = equivalent_spec(maps, weights=WEIGHTS, block_size=10, seed=3, stop=stop, **kw)
    spec = {"datasets": [{"name": k, "data_files": v} for k, v in maps.items()], "mix": mix}
    path = mixindex.build(PipelineConfig.from_dict(spec), tmp_path / f"{stop}.mixindex")
    ds = mixindex.open(path, datasets=maps)
    source, row, _ = ds.lookup(range(len(ds)))
    return [(ds.names[s], int(r)) for s, r in zip(source, row, strict=True)]


@pytest.mark.parametrize("stop", ["restart", "first_exhausted", "all_exhausted"])
def test_the_sequence_is_the_built_index_for_maps_and_for_streams(
    tmp_path: Path, maps: dict[str, datasets.Dataset], stop: str
) -> None:
    kw = {"num_examples": 300} if stop == "restart" else {}
    expected = index_pairs(tmp_path, maps, stop, **kw)
    assert pairs(run(maps, stop, **kw)) == expected
    # A stream is read in its own order, which for one shard is the rows' order in every pass
    # (datasets reorders the shards of a stream of several at each set_epoch).
    assert pairs(run(streams(maps, num_shards=1), stop, **kw)) == expected
    # Mixed kinds: a map, a stream and a generator function.
    gen = maps["c"].to_list
    mixed = {"a": maps["a"], "b": streams(maps, 1)["b"], "c": lambda: iter(gen())}
    assert pairs(run(mixed, stop, **kw)) == expected


def test_restart_without_a_length_is_endless_and_a_prefix_of_every_finite_mix(
    maps: dict[str, datasets.Dataset],
) -> None:
    endless = run(maps, "restart", limit=2000)
    assert len(endless) == 2000
    assert pairs(endless[:300]) == pairs(run(maps, "restart", num_examples=300))
    # Sources wrap: c (11 rows) has served its rows many times, each pass in order.
    c = [n for s, n in pairs(endless) if s == "c"]
    assert c[:22] == list(range(11)) * 2


def test_each_block_gets_exact_whole_counts(maps: dict[str, datasets.Dataset]) -> None:
    out = pairs(run(maps, "restart", limit=200))
    for block in range(20):
        counts = Counter(s for s, _ in out[block * 10 : (block + 1) * 10])
        assert counts == {"a": 5, "b": 3, "c": 2}
    # Three equal weights in blocks of 10: EasyDeL floors each block to 3 and gives the
    # remainder to one source (12/9/9 after three blocks); here every source stays within one
    # example of its target at every block boundary.
    equal = pairs(run(maps, "restart", limit=300, weights=None))
    for end in range(10, 301, 10):
        counts = Counter(s for s, _ in equal[:end])
        assert all(abs(counts[s] - end / 3) < 1 for s in SIZES), (end, counts)


def test_examples_are_new_dicts_with_their_source(maps: dict[str, datasets.Dataset]) -> None:
    rows = [{"n": i} for i in range(5)]
    out = run({"a": maps["a"], "g": lambda: iter(rows)}, "first_exhausted", weights=None)
    assert {ex["__source__"] for ex in out} == {"a", "g"}
    assert all("__source__" not in r for r in rows)  # EasyDeL writes into the row dict


def test_stop_accepts_exactly_three_strategies(maps: dict[str, datasets.Dataset]) -> None:
    # EasyDeL treats every stop other than "restart" as first_exhausted.
    for bad in ("all", "stop", "First_Exhausted", None):
        with pytest.raises(SpecError, match="restart"):
            block_mixture_interleave(maps, stop=bad)  # type: ignore[arg-type]


def test_first_exhausted_never_repeats_and_ends_at_the_first_source_to_run_out(
    maps: dict[str, datasets.Dataset],
) -> None:
    out = pairs(run(streams(maps), "first_exhausted"))
    assert len(set(out)) == len(out)
    served = Counter(s for s, _ in out)
    full = [s for s in SIZES if served[s] == SIZES[s]]
    assert len(full) == 1
    # It ends just before that source's next slot, the first that would repeat a row.
    longer = pairs(run(maps, "restart", limit=len(out) + 1))
    assert longer[:-1] == out and longer[-1] == (full[0], 0)


def test_all_exhausted_ends_just_after_the_last_source_serves_its_last_row(
    maps: dict[str, datasets.Dataset],
) -> None:
    for inputs in (maps, streams(maps)):
        out = pairs(run(inputs, "all_exhausted"))
        assert all({n for s, n in out if s == name} == set(range(k)) for name, k in SIZES.items())
        shorter = out[:-1]
        assert any(len({n for s, n in shorter if s == name}) < k for name, k in SIZES.items())


def test_all_exhausted_that_cannot_end_is_refused(maps: dict[str, datasets.Dataset]) -> None:
    weights = {"a": 1, "b": 1, "c": 0}
    with pytest.raises(PlanError, match="'c'"):
        block_mixture_interleave(maps, weights=weights, stop="all_exhausted")
    # For streams the lengths are unknown up front: the mix stops with the same error.
    with pytest.raises(PlanError, match="'c'"):
        run(streams(maps), "all_exhausted", weights=weights)


def test_seeds(maps: dict[str, datasets.Dataset]) -> None:
    first = pairs(run(maps, "restart", limit=100, seed=42))
    assert first == pairs(run(maps, "restart", limit=100, seed=42))
    assert first != pairs(run(maps, "restart", limit=100, seed=43))
    assert pairs(run(maps, "restart", limit=100, seed=0)) != first
    with pytest.raises(SpecError, match="seed"):
        block_mixture_interleave(maps, seed=-1)


def test_weights_must_name_the_datasets(maps: dict[str, datasets.Dataset]) -> None:
    with pytest.raises(SpecError, match="'txt'"):
        block_mixture_interleave(maps, weights={"a": 1, "b": 1, "txt": 1})
    with pytest.raises(SpecError, match="'c'"):
        block_mixture_interleave(maps, weights={"a": 1, "b": 1})
    with pytest.raises(SpecError, match="dict"):
        block_mixture_interleave([maps["a"]])  # type: ignore[arg-type]


def test_a_shuffled_stream_reshuffles_on_each_pass(maps: dict[str, datasets.Dataset]) -> None:
    shuffled = maps["a"].to_iterable_dataset(num_shards=2).shuffle(seed=0, buffer_size=8)
    mixed = run({"a": shuffled, "c": maps["c"]}, "restart", limit=200, weights=None)
    out = [n for s, n in pairs(mixed) if s == "a"]
    passes = [out[k * 37 : (k + 1) * 37] for k in range(2)]
    assert all(sorted(p) == list(range(37)) for p in passes)
    assert passes[0] != passes[1]
    # Pass k is what the stream itself gives at epoch k.
    for k, p in enumerate(passes):
        shuffled.set_epoch(k)
        assert p == [ex["n"] for ex in shuffled]


def test_generators(maps: dict[str, datasets.Dataset]) -> None:
    rows = [{"n": i} for i in range(4)]
    # A generator object can be read once: fine until it must start a second pass.
    out = run({"a": maps["a"], "g": iter(rows)}, "first_exhausted", weights=None)
    assert [ex["n"] for ex in out if ex["__source__"] == "g"] == [0, 1, 2, 3]
    with pytest.raises(SourceError, match="one-shot"):
        run({"a": maps["a"], "g": iter(rows)}, "all_exhausted", weights=None)
    with pytest.raises(SourceError, match="no rows"):
        run({"a": maps["a"], "g": lambda: iter([])}, "restart", limit=5, weights=None)
    with pytest.raises(SourceError, match="not a dict"):
        run({"a": maps["a"], "g": lambda: iter([1, 2])}, "restart", limit=5, weights=None)


def resume_everywhere(make_mix: Any, cuts: list[int]) -> None:
    """Stop after each cut, save the state as JSON, resume a fresh mix: the rest is the same."""
    full = list(make_mix())
    for cut in cuts:
        mixed = make_mix()
        head = list(itertools.islice(mixed, cut))
        state = json.loads(json.dumps(mixed.state_dict()))
        again = make_mix()
        again.load_state_dict(state)
        assert head + list(again) == full, cut


@pytest.mark.parametrize("stop", ["restart", "first_exhausted", "all_exhausted"])
@pytest.mark.parametrize("kind", ["maps", "streams", "generators"])
def test_resume_in_the_middle(maps: dict[str, datasets.Dataset], stop: str, kind: str) -> None:
    def make_mix() -> datasets.IterableDataset:
        if kind == "maps":
            inputs: dict[str, Any] = dict(maps)
        elif kind == "streams":
            inputs = streams(maps)
        else:
            inputs = {"a": streams(maps)["a"], "b": maps["b"], "c": maps["c"].to_list}
        num = 150 if stop == "restart" else None
        return block_mixture_interleave(
            inputs, weights=WEIGHTS, block_size=7, seed=5, stop=stop, num_examples=num
        )

    n = len(list(make_mix()))
    resume_everywhere(make_mix, [1, 9, n // 2, n - 1, n])


def test_a_state_from_another_mix_is_refused(maps: dict[str, datasets.Dataset]) -> None:
    mixed = block_mixture_interleave(maps, seed=1)
    next(iter(mixed))
    other = block_mixture_interleave(maps, seed=2)
    with pytest.raises(StateError, match="another mix"):
        other.load_state_dict(mixed.state_dict())
        next(iter(other))


def test_a_mix_pickles_for_dataloader_workers(maps: dict[str, datasets.Dataset]) -> None:
    for inputs in (maps, streams(maps)):
        mixed = block_mixture_interleave(inputs, seed=4, block_size=10, stop="first_exhausted")
        head = pairs(itertools.islice(mixed, 30))  # mid-iteration: planned chunks, open streams
        again = pickle.loads(pickle.dumps(mixed))
        assert pairs(again) == pairs(mixed) and head == pairs(mixed)[:30]


def test_the_state_records_the_seed(maps: dict[str, datasets.Dataset]) -> None:
    mixed = block_mixture_interleave(maps, seed=0)
    next(iter(mixed))
    assert mixed.state_dict()["examples_iterable"]["seed"] == 0


def test_quiet_by_default(maps: dict[str, datasets.Dataset], caplog: Any) -> None:
    with caplog.at_level(logging.INFO, logger="mixindex"):
        run(maps, "first_exhausted")
    assert not caplog.records


@pytest.mark.parametrize("api", ["interleave", "mixed"])
def test_weights_that_are_not_a_dict_are_refused_in_one_line(api: str) -> None:
    import datasets as hf

    from mixindex import HFDatasetShardedSource, MixedShardedSource, SpecError
    from mixindex.mixing.interleave import block_mixture_interleave

    ds = {"a": hf.Dataset.from_dict({"x": [1, 2]}), "b": hf.Dataset.from_dict({"x": [3]})}
    with pytest.raises(SpecError, match=r"weights must be a dict of name -> weight or None"):
        if api == "interleave":
            block_mixture_interleave(ds, weights=[0.5, 0.5])  # type: ignore[arg-type]
        else:
            sources = {k: HFDatasetShardedSource(v) for k, v in ds.items()}
            MixedShardedSource(sources, weights=[0.5, 0.5], seed=1)  # type: ignore[arg-type]
