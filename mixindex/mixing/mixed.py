"""``MixedShardedSource``: EasyDeL's weighted mix of sharded sources, planned by mixindex.

    >>> from itertools import islice
    >>> from mixindex import ArrowShardedSource, ParquetShardedSource
    >>> sources = {"code": ParquetShardedSource("data/code/*.parquet"),
    ...            "text": ArrowShardedSource("data/text/*.arrow")}
    >>> mixed = MixedShardedSource(sources, weights={"code": 0.4, "text": 0.6}, block_size=10,
    ...                            seed=42, stop_strategy="first_exhausted")
    >>> mixed.shard_names, len(mixed)
    (['mixed_shard_0'], 100)
    >>> [example["__source__"] for example in islice(mixed.open_shard("mixed_shard_0"), 5)]
    ['code', 'code', 'text', 'text', 'code']
    >>> next(mixed.open_shard_at_row("mixed_shard_0", 10))  # resume at position 10
    {'text': 'text 6', '__source__': 'text'}
    >>> mine = mixed.shard(1, 2, global_batch_size=4)  # positions 2, 3, 6, 7, 10, ...
    >>> len(mine)
    50

The mix is one shard, ``"mixed_shard_0"``, whose row ``p`` is position ``p`` of the plan (the
same sequence as ``mixindex build`` of the same spec). ``len()`` is the mix's true length
(``TypeError`` when it never ends, or when a source's length is unknown), every stop strategy
ends where S5 says, and :meth:`MixedShardedSource.shard` gives each data-parallel rank its part
of every global batch, like :meth:`mixindex.read.dataset.MixedDataset.shard`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from itertools import islice
from typing import Any

import numpy as np

from mixindex.errors import ShardingError, SpecError
from mixindex.mixing.inputs import as_input
from mixindex.mixing.sharded import ShardedDataSource, ShardInfo, draw_seed
from mixindex.mixing.streams import Mixer
from mixindex.mixing.walk import INFINITE, make_settings
from mixindex.read.state import Sharding
from mixindex.spec.schedule import WeightScheduler

__all__ = ["MixedShardedSource"]


class MixedShardedSource(ShardedDataSource):
    """A weighted mix of named sharded sources (or datasets), as one shard ``"mixed_shard_0"``.

    ``weights`` (None: equal) or ``weight_scheduler`` (it wins; the weights are still checked)
    must name exactly the sources; the schedule's step is the position in the mix. ``seed=None``
    draws a seed once, logs it and keeps it in :attr:`seed`. ``stop_strategy`` is ``"restart"``,
    ``"first_exhausted"`` or ``"all_exhausted"`` (S5); ``num_examples`` caps the mix.
    """

    SHARD = "mixed_shard_0"

    def __init__(
        self,
        sources: Mapping[str, Any],
        weights: Mapping[str, float] | None = None,
        block_size: int = 1000,
        seed: int | None = None,
        stop_strategy: str = "restart",
        weight_scheduler: WeightScheduler | None = None,
        *,
        num_examples: int | None = None,
    ) -> None:
        if not isinstance(sources, Mapping):
            raise SpecError(
                f"sources must be a dict of name -> source, got {type(sources).__name__}; "
                'write sources={"code": code_source, "text": text_source}'
            )
        if seed is None:
            seed = draw_seed("MixedShardedSource")
        self.settings = make_settings(
            list(sources),
            weights=weights,
            weight_scheduler=weight_scheduler,
            block_size=block_size,
            seed=seed,
            stop=stop_strategy,
            stop_name="stop_strategy",
            num_examples=num_examples,
        )
        self.sources = dict(sources)
        self.seed = self.settings.seed
        self.mixer = Mixer(self.settings, [as_input(n, s) for n, s in self.sources.items()])
        self.sharding: Sharding | None = None

    # ---- the shard -----------------------------------------------------------------------------

    @property
    def shard_names(self) -> Sequence[str]:
        return [self.SHARD]

    def num_shards(self) -> int:
        return 1

    def _check(self, shard_name: str) -> None:
        if shard_name != self.SHARD:
            raise KeyError(f"no shard {shard_name!r}; the only shard is {self.SHARD!r}")

    def get_shard_info(self, shard_name: str) -> ShardInfo | None:
        self._check(shard_name)
        try:
            return ShardInfo(0, self.SHARD, len(self))
        except TypeError:
            return None

    def open_shard(self, shard_name: str) -> Iterator[dict[str, Any]]:
        return self.open_shard_at_row(shard_name, 0)

    def open_shard_at_row(self, shard_name: str, row: int) -> Iterator[dict[str, Any]]:
        """The mix from position ``row`` (of this rank's part, when sharded) on.

        Map-style sources resume at once; streams are read up to where they were (a stream has
        no other way to get there).
        """
        self._check(shard_name)
        if isinstance(row, bool) or not isinstance(row, int) or row < 0:
            raise ValueError(f"row = {row!r} must be a whole number >= 0")
        if self.sharding is None:
            return self.mixer.iterate(position=row)
        return self._sharded(row)

    def _length(self) -> int | None:
        """The mix's length; None when endless; TypeError when unknown."""
        return self.mixer.length()

    def __len__(self) -> int:
        n = self._length()
        if n is None:
            raise TypeError(
                "this mix never ends (stop_strategy='restart' with no num_examples), so it has "
                "no len(); pass num_examples=N, or use first_exhausted / all_exhausted"
            )
        return n if self.sharding is None else self.sharding.length(n)

    # ---- data parallel -------------------------------------------------------------------------

    def shard(
        self, rank: int, world_size: int, *, global_batch_size: int, drop_last: bool = True
    ) -> MixedShardedSource:
        """Rank ``rank``'s view: ``global_batch_size / world_size`` positions of each global batch
        (see :mod:`mixindex.read.state`); a trailing partial global batch is dropped unless
        ``drop_last=False``, which splits it."""
        if self.sharding is not None:
            raise ShardingError(
                f"this source is already one rank's shard ({self.sharding.describe()}); shard "
                "the whole mix instead"
            )
        view = copy.copy(self)
        view.sharding = Sharding(
            rank=rank, world_size=world_size, global_batch_size=global_batch_size,
            drop_last=drop_last,
        )  # fmt: skip
        return view

    def _sharded(self, row: int) -> Iterator[dict[str, Any]]:
        sh = self.sharding
        if sh is None:
            raise RuntimeError("mixindex internal error: sh is None")
        try:
            n = self._length()
        except TypeError:
            n = -1  # unknown until read
        if self.mixer.indexed and n != -1:
            yield from self._runs(row, INFINITE if n is None else n)
            return
        yield from self._buffered(row)

    def _runs(self, row: int, n: int) -> Iterator[dict[str, Any]]:
        """Rows by number: read only this rank's runs of positions."""
        sh = self.sharding
        if sh is None:
            raise RuntimeError("mixindex internal error: sh is None")
        total = sh.length(n)
        k = sh.per_rank
        local = row
        while local < total:
            start = int(sh.to_global(np.array([local]), n)[0])
            run = min(k - local % k, total - local)
            yield from islice(self.mixer.iterate(position=start), run)
            local += run

    def _buffered(self, row: int) -> Iterator[dict[str, Any]]:
        """Streams: read every position once, keep this rank's part of each global batch."""
        sh = self.sharding
        if sh is None:
            raise RuntimeError("mixindex internal error: sh is None")
        g, k, w, r = sh.global_batch_size, sh.per_rank, sh.world_size, sh.rank
        batch, skip = divmod(row, k)
        buf: list[dict[str, Any]] = []
        for example in self.mixer.iterate(position=batch * g):
            buf.append(example)
            if len(buf) == g:
                yield from buf[r * k + skip : (r + 1) * k]
                buf.clear()
                skip = 0
        if buf and not sh.drop_last:
            t = len(buf)
            yield from buf[r * t // w + skip : (r + 1) * t // w]

    def __repr__(self) -> str:
        shard = "" if self.sharding is None else f", shard=({self.sharding.describe()})"
        return (
            f"MixedShardedSource(sources={list(self.sources)}, block_size="
            f"{self.settings.block_size}, seed={self.seed}, stop_strategy="
            f"{self.settings.stop.value!r}{shard})"
        )
