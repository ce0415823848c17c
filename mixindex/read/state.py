"""Data-parallel sharding and resume state: the position arithmetic, with no I/O.

**Sharding.** The mix is cut into global batches of ``global_batch_size`` (G) positions. Rank
``r`` of ``w`` reads the slice ``[g*G + r*G/w, g*G + (r+1)*G/w)`` of every global batch ``g``,
so the ranks together read the global order with no duplicate and no gap, whatever the number
of loader workers. A trailing partial global batch is dropped by default (every rank then has
the same length); with ``drop_last=False`` its positions are split into ``w`` contiguous runs
whose lengths differ by at most one.

**State.** An iterator's state (``it.state_dict()``) is a small, versioned, JSON-able dict::

    {"format_version": 1, "digest": "sha256:...", "seed": 42, "next_position": 16,
     "shard": {"rank": 0, "world_size": 2, "global_batch_size": 8, "drop_last": true,
               "offset": 3}}

``next_position`` is a *global* position. Unsharded, it is the next position to read. For a
shard it is where the global batch holding this rank's next example starts, and ``offset`` is
how many of this rank's examples of that batch were already read. Ranks that read in lock step
hold the same two numbers, so the state of any rank (rank 0's, say) restores every rank; the
world size, global batch size and ``drop_last`` must match, or the state is refused.

A dataset has no position, so its own state (``ds.state_dict()``, which torchdata's
``StatefulDataLoader`` saves beside its sampler's place) is the same dict without
``next_position`` and ``offset``: it only makes a loader refuse a checkpoint of another index
or sharding. Each kind of state is refused where the other is expected.

    >>> s = Sharding(rank=1, world_size=2, global_batch_size=4)
    >>> s.to_global(np.arange(4), 10).tolist()
    [2, 3, 6, 7]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mixindex.errors import ShardingError, StateError

STATE_VERSION = 1

__all__ = [
    "STATE_VERSION",
    "Sharding",
    "check_dataset_state",
    "dataset_state",
    "load_state",
    "make_state",
]


def _count(value: object, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ShardingError(f"{what} = {value!r} must be a whole number >= {minimum}")
    return int(value)


@dataclass(frozen=True, kw_only=True)
class Sharding:
    """Which slice of every global batch one rank reads."""

    rank: int
    world_size: int
    global_batch_size: int
    drop_last: bool = True

    def __post_init__(self) -> None:
        w = _count(self.world_size, "world_size", 1)
        g = _count(self.global_batch_size, "global_batch_size", 1)
        r = _count(self.rank, "rank", 0)
        if r >= w:
            raise ShardingError(
                f"rank = {r} must be below world_size = {w} (ranks are 0 to {w - 1})"
            )
        if g % w:
            raise ShardingError(
                f"global_batch_size = {g} is not divisible by world_size = {w}; every rank "
                f"reads global_batch_size / world_size positions of each global batch, so pick "
                f"a multiple of {w} (for example {g + w - g % w})"
            )
        if not isinstance(self.drop_last, bool):
            raise ShardingError(f"drop_last = {self.drop_last!r} must be True or False")

    @property
    def per_rank(self) -> int:
        """Positions of each whole global batch that this rank reads."""
        return self.global_batch_size // self.world_size

    def _tail(self, n: int) -> tuple[int, int, int]:
        """``(whole batches, first tail position, this rank's tail length)`` for a mix of ``n``."""
        g = self.global_batch_size
        whole = n // g
        base = whole * g
        if self.drop_last:
            return whole, base, 0
        t = n - base
        lo = self.rank * t // self.world_size
        hi = (self.rank + 1) * t // self.world_size
        return whole, base + lo, hi - lo

    def length(self, n: int) -> int:
        """How many positions this rank reads from a mix of ``n``."""
        whole, _, tail = self._tail(n)
        return whole * self.per_rank + tail

    def to_global(self, local: np.ndarray, n: int) -> np.ndarray:
        """Global positions of this rank's local positions (int64, each in range)."""
        local = np.asarray(local, dtype=np.int64)
        whole, tail_start, _ = self._tail(n)
        k = self.per_rank
        batch, offset = np.divmod(local, k)
        out = batch * self.global_batch_size + self.rank * k + offset
        in_tail = local >= whole * k
        if in_tail.any():
            out = np.where(in_tail, tail_start + local - whole * k, out)
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        tail = "dropped" if self.drop_last else "split"
        return (
            f"rank {self.rank} of {self.world_size}, global batches of "
            f"{self.global_batch_size}, trailing partial batch {tail}"
        )


def make_state(
    digest: str, local: int, n: int, sharding: Sharding | None, seed: int | None = None
) -> dict[str, Any]:
    """The state of a reader whose next local position is ``local`` (in ``[0, len]``).

    ``seed`` is the mix's seed, recorded so that a run whose seed was drawn (``seed=None``) can
    be repeated from any checkpoint; the digest already pins it, so it is not checked on load.
    """
    if sharding is None:
        return {
            "format_version": STATE_VERSION,
            "digest": digest,
            "seed": seed,
            "next_position": int(local),
            "shard": None,
        }
    whole, _, _ = sharding._tail(n)
    k = sharding.per_rank
    batch = min(local // k, whole)
    shard: dict[str, Any] = {**sharding.to_dict(), "offset": int(local - batch * k)}
    return {
        "format_version": STATE_VERSION,
        "digest": digest,
        "seed": seed,
        "next_position": int(batch * sharding.global_batch_size),
        "shard": shard,
    }


def _sharding_text(shard: object) -> str:
    if shard is None:
        return "no sharding"
    if isinstance(shard, Mapping):
        keys = ("world_size", "global_batch_size", "drop_last")
        return ", ".join(f"{k}={shard.get(k)!r}" for k in keys)
    return repr(shard)


def dataset_state(
    digest: str, sharding: Sharding | None, seed: int | None = None
) -> dict[str, Any]:
    """A dataset's state: which index (and seed) and sharding it reads, and no position (a
    dataset has none; its iterators do)."""
    return {
        "format_version": STATE_VERSION,
        "digest": digest,
        "seed": seed,
        "shard": None if sharding is None else sharding.to_dict(),
    }


def check_dataset_state(state: object, digest: str, sharding: Sharding | None) -> None:
    """StateError unless ``state`` is a dataset's state of this index and sharding."""
    state = _check_identity(state, digest, sharding)
    if "next_position" in state:
        raise StateError(
            f"this state holds next_position {state['next_position']!r}, a place in the mix, "
            "but a dataset has no place (its iterators do) and would ignore it; resume an "
            "iterator with it: it = iter(ds); it.load_state_dict(state)"
        )


def _check_identity(state: object, digest: str, sharding: Sharding | None) -> Mapping[str, Any]:
    """The state, if its version, index digest and sharding are these; else StateError."""
    if not isinstance(state, Mapping):
        raise StateError(
            f"a resume state is a dict from state_dict(), not {type(state).__name__}: {state!r}"
        )
    version = state.get("format_version")
    if version != STATE_VERSION:
        raise StateError(
            f"the state has format_version {version!r}; this mixindex reads version "
            f"{STATE_VERSION}; take the state with this version's state_dict()"
        )
    if state.get("digest") != digest:
        raise StateError(
            f"the state was taken from another index: state digest {state.get('digest')!r}, "
            f"this index {digest!r}; load it into the index it was taken from"
        )
    shard = state.get("shard")
    mine = None if sharding is None else sharding.to_dict()
    same = (shard is None and mine is None) or (
        isinstance(shard, Mapping)
        and mine is not None
        and all(shard.get(k) == mine[k] for k in ("world_size", "global_batch_size", "drop_last"))
    )
    if not same:
        raise StateError(
            f"the state was taken under another sharding: state {_sharding_text(shard)}, this "
            f"dataset {_sharding_text(mine)}; resume with the sharding the state was taken under"
        )
    return state


def load_state(state: object, digest: str, n: int, sharding: Sharding | None) -> int:
    """The local position an iterator's state resumes at; StateError if it belongs elsewhere."""
    state = _check_identity(state, digest, sharding)
    if "next_position" not in state:
        raise StateError(
            "the state has no next_position: it is a dataset's state (ds.state_dict()), which "
            "names the index and sharding but no place; resume with an iterator's state, from "
            "it.state_dict()"
        )
    pos = state["next_position"]
    if isinstance(pos, bool) or not isinstance(pos, int) or not 0 <= pos <= n:
        raise StateError(
            f"the state's next_position {pos!r} is not a position of this mix of {n} examples"
        )
    shard = state.get("shard")
    if sharding is None or not isinstance(shard, Mapping):
        return pos
    g = sharding.global_batch_size
    whole, _, tail = sharding._tail(n)
    offset = shard.get("offset")
    batch = pos // g
    if (
        isinstance(offset, bool)
        or not isinstance(offset, int)
        or offset < 0
        or pos % g
        or batch > whole
        or (batch < whole and offset >= sharding.per_rank)
    ):
        raise StateError(
            f"the state's next_position {pos} and offset {offset!r} do not name a place in "
            f"global batches of {g}; pass a state from state_dict() unchanged"
        )
    if batch == whole:
        # Inside the trailing split batch, ranks hold runs of different lengths: a lock-step
        # offset taken on a rank with a longer run ends this rank's shorter one.
        offset = min(offset, tail)
    return batch * sharding.per_rank + offset
