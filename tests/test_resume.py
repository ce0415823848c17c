"""Resume state: O(1) restore from every position, and states that belong elsewhere refused.

The state lives on iterators (``it = iter(ds)``), never on the dataset: see test_iterator.py for
iterators that must not move each other."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import DEFAULT_MIX, Shared

import mixindex
from mixindex.errors import StateError
from mixindex.read.dataset import MixedDataset

N = DEFAULT_MIX["num_examples"]


def states_along(ds: MixedDataset) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every example of one pass, and the state before each example and after the last."""
    examples: list[dict[str, Any]] = []
    it = iter(ds)
    states = [it.state_dict()]
    for ex in it:
        examples.append(ex)
        states.append(it.state_dict())
    return examples, states


def assert_equal_output_after_checkpoint(
    ds: MixedDataset, fresh: Callable[[], MixedDataset]
) -> None:
    """Restore from every position, into a fresh reader, and compare the rest (grain's helper)."""
    everything, states = states_along(ds)
    assert len(states) == len(everything) + 1
    other = fresh()
    it = iter(other)
    for p, state in enumerate(states):
        json.loads(json.dumps(state))  # plain JSON
        it.load_state_dict(state)  # one iterator, moved back and forth
        assert list(it) == everything[p:], f"resumed at {p}"


def test_restore_from_every_position(shared: Shared) -> None:
    ds = mixindex.open(shared.index)
    assert_equal_output_after_checkpoint(ds, lambda: mixindex.open(shared.index))
    # The mix is not trivial: every source appears, and the pass covers the whole index.
    everything = list(mixindex.open(shared.index))
    assert len(everything) == N
    assert {ex["__source__"] for ex in everything} == {"code", "notes", "docs"}


def test_state_is_small_and_versioned(shared: Shared) -> None:
    ds = mixindex.open(shared.index)
    it = iter(ds)
    assert it.state_dict() == {
        "format_version": 1,
        "digest": ds.digest,
        "seed": DEFAULT_MIX["seed"],
        "next_position": 0,
        "shard": None,
    }
    for _ in range(37):
        next(it)
    state = it.state_dict()
    assert state["next_position"] == it.position == 37
    assert len(json.dumps(state)) < 200
    assert ds.digest.startswith("sha256:") and len(ds.digest) == 71
    # Draining the iterator leaves the state at the end: resuming there yields nothing.
    assert len(list(it)) == N - 37
    end = it.state_dict()
    assert end["next_position"] == N
    fresh = iter(mixindex.open(shared.index))
    fresh.load_state_dict(end)
    assert list(fresh) == []
    # The dataset's own state names the index and sharding, and no position.
    assert ds.state_dict() == {
        "format_version": 1,
        "digest": ds.digest,
        "seed": ds.seed,
        "shard": None,
    }


def test_iter_start_and_batch_size(shared: Shared) -> None:
    ds = mixindex.open(shared.index)
    everything = list(ds)
    for start in (0, 1, 499, 500, N - 1, N):
        for batch_size in (1, 7, 1024):
            assert list(ds.iter(start=start, batch_size=batch_size)) == everything[start:]
    assert list(ds.iter(start=-3)) == everything[-3:]
    with pytest.raises(IndexError, match=str(N + 1)):
        ds.iter(start=N + 1)
    with pytest.raises(ValueError, match="batch_size"):
        ds.iter(batch_size=0)
    # An iterator from start=p keeps its state from there.
    it = ds.iter(start=900, batch_size=7)
    assert it.state_dict()["next_position"] == 900
    next(it)
    assert it.state_dict()["next_position"] == 901


def test_first_example_costs_one_read_wherever_it_starts(
    shared: Shared, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = mixindex.open(shared.index)
    expected = {p: ds[p] for p in (0, 400, N - 1)}
    reads: list[np.ndarray] = []
    real = MixedDataset.__getitems__

    def spy(self: MixedDataset, positions: Any) -> list[dict[str, Any]]:
        reads.append(np.asarray(positions))
        return real(self, positions)

    monkeypatch.setattr(MixedDataset, "__getitems__", spy)
    for p, want in expected.items():
        reads.clear()
        it = iter(ds)
        it.load_state_dict({**it.state_dict(), "next_position": p})
        assert next(it) == want
        # One grouped read, of the batch starting at p: nothing before p is read or replayed.
        assert len(reads) == 1
        assert reads[0][0] == p and len(reads[0]) == min(1024, N - p)


def test_state_of_another_index_is_refused(shared: Shared, other_index: Path) -> None:
    ds = mixindex.open(shared.index)
    other = mixindex.open(other_index)
    assert other.digest != ds.digest
    it = iter(ds)
    for _ in range(5):
        next(it)
    elsewhere = iter(other)
    next(elsewhere)
    for load, state in [
        (it.load_state_dict, elsewhere.state_dict()),
        (ds.load_state_dict, other.state_dict()),
    ]:
        with pytest.raises(StateError) as excinfo:
            load(state)
        msg = str(excinfo.value)
        assert isinstance(excinfo.value, ValueError)
        assert other.digest in msg and ds.digest in msg
    # A refused state leaves the iterator where it was.
    assert it.state_dict()["next_position"] == 5
    assert next(it) == ds[5]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"format_version": 2}, ["format_version 2", "version 1"]),
        ({"format_version": None}, ["format_version None"]),
        ({"next_position": N + 1}, [f"next_position {N + 1}", f"{N} examples"]),
        ({"next_position": -1}, ["next_position -1"]),
        ({"next_position": "3"}, ["next_position '3'"]),
        (
            {"shard": {"rank": 0, "world_size": 2, "global_batch_size": 8, "drop_last": True}},
            ["another sharding", "world_size=2", "no sharding"],
        ),
    ],
)
def test_bad_states_are_refused(shared: Shared, change: dict[str, Any], words: list[str]) -> None:
    it = iter(mixindex.open(shared.index))
    with pytest.raises(StateError) as excinfo:
        it.load_state_dict({**it.state_dict(), **change})
    for w in words:
        assert w in str(excinfo.value)


def test_a_state_must_be_a_dict(shared: Shared) -> None:
    ds = mixindex.open(shared.index)
    with pytest.raises(StateError, match="not list"):
        iter(ds).load_state_dict([1, 2])  # type: ignore[arg-type]
    with pytest.raises(StateError, match="not list"):
        ds.load_state_dict([1, 2])  # type: ignore[arg-type]
