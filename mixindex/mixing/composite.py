"""Several sharded sources end to end, without mixing (EasyDeL's ``CompositeShardedSource``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from mixindex.errors import SpecError
from mixindex.mixing.sharded import ShardedDataSource, ShardInfo

__all__ = ["CompositeShardedSource"]


class CompositeShardedSource(ShardedDataSource):
    """Several sources' shards end to end (no mixing). A shard name that two sources share gets
    ``#i`` (the source's index) appended, so every name opens exactly one shard."""

    def __init__(self, sources: Sequence[ShardedDataSource]) -> None:
        sources = list(sources)
        if not sources:
            raise SpecError("CompositeShardedSource needs at least one source")
        for s in sources:
            if not isinstance(s, ShardedDataSource):
                raise SpecError(
                    f"CompositeShardedSource takes ShardedDataSource objects, got {s!r}; wrap "
                    "datasets with HFDatasetShardedSource"
                )
        self.sources = sources
        seen: dict[str, int] = {}
        for s in sources:
            for name in s.shard_names:
                seen[name] = seen.get(name, 0) + 1
        self._where: dict[str, tuple[int, str]] = {}
        names: list[str] = []
        for i, s in enumerate(sources):
            for name in s.shard_names:
                shown = name if seen[name] == 1 else f"{name}#{i}"
                if shown in self._where:
                    raise SpecError(f"shard name {shown!r} occurs twice in source {i}")
                self._where[shown] = (i, name)
                names.append(shown)
        self._names = names

    @property
    def shard_names(self) -> Sequence[str]:
        return list(self._names)

    def _find(self, shard_name: str) -> tuple[ShardedDataSource, str]:
        try:
            i, name = self._where[shard_name]
        except KeyError:
            raise KeyError(f"no shard {shard_name!r} in this CompositeShardedSource") from None
        return self.sources[i], name

    def get_shard_info(self, shard_name: str) -> ShardInfo | None:
        src, name = self._find(shard_name)
        n = src._shard_rows(name)
        return None if n is None else ShardInfo(self._names.index(shard_name), shard_name, n)

    def open_shard(self, shard_name: str) -> Iterator[Any]:
        src, name = self._find(shard_name)
        return src.open_shard(name)

    def open_shard_at_row(self, shard_name: str, row: int) -> Iterator[Any]:
        src, name = self._find(shard_name)
        return src.open_shard_at_row(name, row)

    def __len__(self) -> int:
        return sum(len(s) for s in self.sources)
