"""Data-parallel sharding: each rank's slice of every global batch, and per-rank resume."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import DEFAULT_MIX, Shared
from hypothesis import given
from hypothesis import strategies as st

import mixindex
from mixindex import ShardingError
from mixindex.errors import StateError
from mixindex.read.state import Sharding

N = DEFAULT_MIX["num_examples"]  # 950


def test_golden_positions() -> None:
    # Global batches of 8 over 2 ranks: rank 0 reads 0-3, 8-11, ...; rank 1 reads 4-7, 12-15, ...
    r0 = Sharding(rank=0, world_size=2, global_batch_size=8)
    r1 = Sharding(rank=1, world_size=2, global_batch_size=8)
    assert r0.to_global(np.arange(8), 20).tolist() == [0, 1, 2, 3, 8, 9, 10, 11]
    assert r1.to_global(np.arange(8), 20).tolist() == [4, 5, 6, 7, 12, 13, 14, 15]
    # 20 = 2 whole global batches + 4 positions, dropped by default.
    assert r0.length(20) == r1.length(20) == 8
    # drop_last=False splits the last 4 positions 2 + 2.
    k0 = Sharding(rank=0, world_size=2, global_batch_size=8, drop_last=False)
    k1 = Sharding(rank=1, world_size=2, global_batch_size=8, drop_last=False)
    assert k0.to_global(np.arange(10), 20).tolist()[-2:] == [16, 17]
    assert k1.to_global(np.arange(10), 20).tolist()[-2:] == [18, 19]
    # Three ranks, 7 trailing positions: runs of 2, 2 and 3.
    tails = [
        Sharding(rank=r, world_size=3, global_batch_size=9, drop_last=False).length(25) - 6
        for r in range(3)
    ]
    assert tails == [2, 2, 3]


@given(
    n=st.integers(1, 500),
    world=st.integers(1, 6),
    per_rank=st.integers(1, 20),
    drop_last=st.booleans(),
)
def test_ranks_cover_the_global_order_once(
    n: int, world: int, per_rank: int, drop_last: bool
) -> None:
    g = world * per_rank
    shards = [
        Sharding(rank=r, world_size=world, global_batch_size=g, drop_last=drop_last)
        for r in range(world)
    ]
    parts = [s.to_global(np.arange(s.length(n)), n) for s in shards]
    covered = n if not drop_last else n // g * g
    union = np.sort(np.concatenate(parts))
    np.testing.assert_array_equal(union, np.arange(covered))  # no duplicate, no gap
    whole = n // g
    for batch in range(whole):
        # Global batch `batch` is rank 0's slice, then rank 1's, ...: the global order.
        got = np.concatenate([p[batch * per_rank : (batch + 1) * per_rank] for p in parts])
        np.testing.assert_array_equal(got, np.arange(batch * g, (batch + 1) * g))
    lengths = [s.length(n) for s in shards]
    assert max(lengths) - min(lengths) <= (0 if drop_last else 1)
    for p in parts:
        assert np.all(np.diff(p) > 0)  # each rank reads in global order


def test_shard_reads_its_global_positions(shared: Shared) -> None:
    ds = mixindex.open(shared.index)
    everything = list(ds)
    world, g = 3, 12
    shards = [ds.shard(r, world, global_batch_size=g) for r in range(world)]
    assert [len(s) for s in shards] == [N // g * 4] * 3 == [316] * 3
    seen: list[int] = []
    for s in shards:
        positions = s.to_global(np.arange(len(s)))
        seen.extend(positions.tolist())
        assert list(s) == [everything[p] for p in positions]
        assert s[5] == everything[int(positions[5])]
        assert s[-1] == everything[int(positions[-1])]
        assert s[2:9] == [everything[p] for p in positions[2:9]]
        source, row, _ = s.lookup([0, 1])
        ref = ds.lookup(positions[:2])
        np.testing.assert_array_equal(source, ref[0])
        np.testing.assert_array_equal(row, ref[1])
        with pytest.raises(IndexError, match="316"):
            s[316]
    assert sorted(seen) == list(range(N // g * g))
    # Interleaving the ranks' batches gives the global order back.
    merged = []
    for b in range(N // g):
        for s in shards:
            merged.extend(s[b * 4 : (b + 1) * 4])
    assert merged == everything[: N // g * g]
    assert "rank 1 of 3" in repr(shards[1])


def test_drop_last_false_covers_everything(shared: Shared) -> None:
    ds = mixindex.open(shared.index)
    everything = list(ds)
    shards = [ds.shard(r, 4, global_batch_size=16, drop_last=False) for r in range(4)]
    # 950 = 59 * 16 + 6; the 6 trailing positions go 1, 2, 1, 2.
    assert [len(s) for s in shards] == [59 * 4 + t for t in (1, 2, 1, 2)]
    got = sorted(p for s in shards for p in s.to_global(np.arange(len(s))).tolist())
    assert got == list(range(N))
    assert shards[3][-1] == everything[-1]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ((0, 3, 8), ["global_batch_size = 8", "world_size = 3", "multiple of 3", "9"]),
        ((2, 2, 8), ["rank = 2", "world_size = 2"]),
        ((0, 0, 8), ["world_size = 0"]),
        ((0, 2, 0), ["global_batch_size = 0"]),
        ((0, 2, 1000), ["950 examples", "global batch of 1000"]),
    ],
)
def test_bad_sharding(shared: Shared, args: tuple[int, int, int], words: list[str]) -> None:
    ds = mixindex.open(shared.index)
    rank, world, g = args
    with pytest.raises(ShardingError) as excinfo:
        ds.shard(rank, world, global_batch_size=g)
    assert isinstance(excinfo.value, ValueError)  # as before: except ValueError still works
    for w in words:
        assert w in str(excinfo.value)


def test_a_shard_is_not_sharded_again(shared: Shared) -> None:
    ds = mixindex.open(shared.index)
    with pytest.raises(ShardingError, match="already a shard"):
        ds.shard(0, 2, global_batch_size=8).shard(0, 2, global_batch_size=4)


def test_resume_every_position_of_every_rank(shared: Shared) -> None:
    ds = mixindex.open(shared.index)
    world, g = 2, 10
    for rank in range(world):
        mine = ds.shard(rank, world, global_batch_size=g, drop_last=False)
        everything = []
        it = iter(mine)
        states = [it.state_dict()]
        for ex in it:
            everything.append(ex)
            states.append(it.state_dict())
        assert len(everything) == len(mine) == 475
        other = mixindex.open(shared.index).shard(rank, world, global_batch_size=g, drop_last=False)
        for k, state in enumerate(states):
            again = iter(other)
            again.load_state_dict(state)
            assert list(again) == everything[k:], (rank, k)


def test_states_are_the_same_on_every_rank(shared: Shared) -> None:
    ds = mixindex.open(shared.index)
    world, g = 4, 16
    shards = [ds.shard(r, world, global_batch_size=g) for r in range(world)]
    rests: list[list[dict[str, Any]]] = []
    states = []
    for s in shards:
        it = iter(s)
        for _ in range(4 * 7 + 3):  # 7 whole global batches and 3 examples of the next
            next(it)
        states.append(it.state_dict())
        rests.append(list(it))
    assert states[0]["next_position"] == 7 * 16
    assert states[0]["shard"] == {
        "rank": 0,
        "world_size": 4,
        "global_batch_size": 16,
        "drop_last": True,
        "offset": 3,
    }
    for r, state in enumerate(states):
        assert {**state, "shard": {**state["shard"], "rank": 0}} == states[0]
        assert state["shard"]["rank"] == r
    # Rank 0's checkpoint restores every rank at the same global place.
    for r in range(world):
        fresh = iter(mixindex.open(shared.index).shard(r, world, global_batch_size=g))
        fresh.load_state_dict(states[0])
        assert list(fresh) == rests[r]


def test_state_under_another_sharding_is_refused(shared: Shared) -> None:
    ds = mixindex.open(shared.index)
    two = ds.shard(0, 2, global_batch_size=8)
    state = iter(two).state_dict()
    for other, seen in [
        (ds.shard(0, 4, global_batch_size=8), "world_size=4"),
        (ds.shard(0, 2, global_batch_size=16), "global_batch_size=16"),
        (ds.shard(0, 2, global_batch_size=8, drop_last=False), "drop_last=False"),
        (ds, "no sharding"),
    ]:
        # Refused by an iterator, and by the dataset's own check (StatefulDataLoader's).
        for load, offered in [
            (iter(other).load_state_dict, state),
            (other.load_state_dict, two.state_dict()),
        ]:
            with pytest.raises(StateError) as excinfo:
                load(offered)
            msg = str(excinfo.value)
            assert "another sharding" in msg and "world_size=2" in msg and seen in msg
    it = iter(two)
    with pytest.raises(StateError, match="no sharding"):
        it.load_state_dict(iter(ds).state_dict())
    # A position that is not a global batch start is damage, not a sharding.
    with pytest.raises(StateError, match="global batches of 8"):
        it.load_state_dict({**state, "next_position": 3})
    with pytest.raises(StateError, match="offset 4"):
        it.load_state_dict({**state, "shard": {**state["shard"], "offset": 4}})
