"""Datasets are stateless, iterators hold the state (mixindex/read/iterator.py), and a shard owns
its handles: two iterators never move each other, a loaded state moves only its iterator, and
closing a shard leaves its dataset open (and the other way round)."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import pytest
from conftest import DEFAULT_MIX, Data, Shared, SpecWriter, spec_dict

import mixindex
from mixindex import ShardingError, StateError
from mixindex.builder import build
from mixindex.errors import IndexReplacedError
from mixindex.read.iterator import MixIterator
from mixindex.read.state import Sharding

N = DEFAULT_MIX["num_examples"]  # 950


def by_position(ds: Any) -> list[dict[str, Any]]:
    """Every example read by position, without any iterator."""
    return [ds[p] for p in range(len(ds))]


@pytest.mark.parametrize("sharded", [False, True])
def test_two_iterators_interleaved(shared: Shared, sharded: bool) -> None:
    ds = mixindex.open(shared.index)
    if sharded:
        ds = ds.shard(1, 2, global_batch_size=10)
    everything = by_position(ds)
    a, b = iter(ds), ds.iter(batch_size=7)
    assert isinstance(a, MixIterator) and a is not b
    got_a: list[dict[str, Any]] = []
    got_b: list[dict[str, Any]] = []
    states: list[tuple[str, int, dict[str, Any]]] = []
    # Uneven steps, so the two are at different places (and in different read batches) each time.
    while len(got_a) < len(everything) or len(got_b) < len(everything):
        got_a.extend(next(a) for _ in range(min(3, len(everything) - len(got_a))))
        got_b.extend(next(b) for _ in range(min(5, len(everything) - len(got_b))))
        assert a.state_dict() != b.state_dict() or len(got_a) == len(got_b)
        states.append(("a", len(got_a), a.state_dict()))
        states.append(("b", len(got_b), b.state_dict()))
    assert got_a == everything and got_b == everything
    assert list(a) == [] and list(b) == []
    # Each iterator's states are its own: each resumes right after that iterator's examples.
    for _, k, state in states[::17]:
        again = iter(ds)
        again.load_state_dict(state)
        assert list(again) == everything[k:], k


def test_loading_a_state_moves_only_that_iterator(shared: Shared) -> None:
    ds = mixindex.open(shared.index)
    everything = by_position(ds)
    other = iter(ds)
    head = [next(other) for _ in range(10)]
    it = iter(ds)
    it.load_state_dict({**it.state_dict(), "next_position": 900})
    assert next(it) == everything[900]
    # Later iter(ds) start at 0: an epoch loop does not skip 900 examples per epoch.
    for _ in range(2):
        assert list(ds) == everything
    assert list(ds.iter()) == everything
    # The iterator that was already running goes on from its own place.
    assert head + list(other) == everything
    assert list(it) == everything[901:]


def test_the_dataset_state_has_no_position(shared: Shared) -> None:
    ds = mixindex.open(shared.index)
    assert ds.state_dict() == {
        "format_version": 1,
        "digest": ds.digest,
        "seed": ds.seed,
        "shard": None,
    }
    mine = ds.shard(0, 2, global_batch_size=10)
    assert mine.state_dict()["shard"] == {
        "rank": 0,
        "world_size": 2,
        "global_batch_size": 10,
        "drop_last": True,
    }
    it = iter(ds)
    for _ in range(37):
        next(it)
    # An iterator's state given to the dataset is refused, not silently ignored (nor applied).
    with pytest.raises(StateError) as excinfo:
        ds.load_state_dict(it.state_dict())
    assert "next_position 37" in str(excinfo.value)
    assert "it.load_state_dict(state)" in str(excinfo.value)
    # The dataset's state given to an iterator is refused: it names no place to resume.
    with pytest.raises(StateError, match="no next_position"):
        it.load_state_dict(ds.state_dict())
    assert next(it) == ds[37]  # the refused load left the iterator where it was
    ds.load_state_dict(json.loads(json.dumps(ds.state_dict())))  # its own state: a check only
    assert next(iter(ds)) == ds[0]


def test_an_iterator_pickles_its_place_not_its_examples(shared: Shared) -> None:
    ds = mixindex.open(shared.index).shard(0, 2, global_batch_size=10)
    everything = by_position(ds)
    it = ds.iter(batch_size=256)
    head = [next(it) for _ in range(100)]  # 156 examples read ahead
    blob = pickle.dumps(it)
    assert len(blob) < 20_000
    back = pickle.loads(blob)
    assert back.state_dict() == it.state_dict()
    assert head + list(back) == everything
    assert head + list(it) == everything


def test_sharding_errors_are_ours() -> None:
    for kwargs in (
        {"rank": 0, "world_size": 2, "global_batch_size": 8, "drop_last": "yes"},
        {"rank": 0, "world_size": True, "global_batch_size": 8},
        {"rank": -1, "world_size": 2, "global_batch_size": 8},
    ):
        with pytest.raises(ShardingError) as excinfo:
            Sharding(**kwargs)
        assert isinstance(excinfo.value, ValueError)
    assert "ShardingError" in mixindex.__all__


# ---- shards own their handles ------------------------------------------------------------------


@pytest.fixture
def private(data: Data, write_spec: SpecWriter, tmp_path: Path) -> Path:
    """An index of its own (many chunk files) over data of its own: the test moves both."""
    mix = {"block_size": 10, "num_examples": 600}
    return build(write_spec(spec_dict(**mix)), tmp_path / "mix.mixindex", chunk_blocks=1)


def move_everything_away(index: Path) -> None:
    """Rename the index and its data folders: only handles opened before still reach them."""
    os.rename(index, index.with_name("aside.mixindex"))
    os.rename(index.parent / "data", index.parent / "data-aside")


def test_closing_a_shard_leaves_the_dataset_open(private: Path) -> None:
    ds = mixindex.open(private)
    one, two = (ds.shard(r, 2, global_batch_size=10) for r in range(2))
    want = ds[0 : len(ds)]  # every chunk mapped, every source file open
    want_two = two[0 : len(two)]
    one[0 : len(one)]
    one.close()
    move_everything_away(private)
    # The dataset and the other shard still read through their own handles.
    assert ds[0 : len(ds)] == want
    assert list(two) == want_two
    # The closed shard did let go of its handles: reading again looks at the path.
    with pytest.raises(IndexReplacedError, match="replaced or removed"):
        one[0]


def test_a_shard_reads_the_index_its_dataset_opened(
    private: Path, write_spec: SpecWriter, tmp_path: Path
) -> None:
    ds = mixindex.open(private)
    want = by_position(ds.shard(0, 2, global_batch_size=10))
    os.rename(private, tmp_path / "aside.mixindex")
    build(write_spec(spec_dict(seed=99, block_size=10, num_examples=600), "v2.toml"), private)
    assert mixindex.open(private).digest != ds.digest
    # Cut after a rebuild replaced the path: still the index the dataset opened.
    mine = ds.shard(0, 2, global_batch_size=10)
    assert mine.digest == ds.digest
    assert list(mine) == want


def test_closing_the_dataset_leaves_its_shards_open(private: Path) -> None:
    ds = mixindex.open(private)
    mine = ds.shard(1, 2, global_batch_size=10)
    want = mine[0 : len(mine)]
    ds[0 : len(ds)]
    ds.close()
    move_everything_away(private)
    assert mine[0 : len(mine)] == want
    assert list(mine) == want
    with pytest.raises(IndexReplacedError, match="replaced or removed"):
        ds[0]


def test_a_drawn_seed_is_in_the_index_and_in_every_state(data: Data, tmp_path: Path) -> None:
    # seed=None draws a seed once; a checkpoint alone must say which mix it came from.
    from mixindex import DatasetConfig, MixStageConfig, PipelineConfig

    config = PipelineConfig(
        datasets=[
            DatasetConfig(name="notes", data_files="data/notes.arrow"),
            DatasetConfig(name="docs", data_files="data/docs", type="arrow"),
        ],
        mix=MixStageConfig(seed=None, num_examples=40, block_size=10),
        base_dir=tmp_path,
    )
    ds = mixindex.open(build(config, tmp_path / "drawn.mixindex"))
    assert ds.seed == config.mix.seed == ds.index.meta.mix.seed
    it = iter(ds.shard(0, 2, global_batch_size=4))
    next(it)
    assert it.state_dict()["seed"] == config.mix.seed
    assert ds.state_dict()["seed"] == config.mix.seed
    # The same seed, given explicitly, builds the same index.
    again = PipelineConfig(
        datasets=config.datasets,
        mix=MixStageConfig(seed=config.mix.seed, num_examples=40, block_size=10),
        base_dir=tmp_path,
    )
    assert mixindex.open(build(again, tmp_path / "again.mixindex")).digest == ds.digest
