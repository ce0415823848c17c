"""``HFDatasetShardedSource``: a Hugging Face ``Dataset`` or ``IterableDataset`` as one shard.

    >>> import datasets
    >>> src = HFDatasetShardedSource(datasets.Dataset.from_dict({"text": ["a = 1", "b = 2"]}))
    >>> src.shard_names, list(src.open_shard("hf_dataset"))
    (['hf_dataset'], [{'text': 'a = 1'}, {'text': 'b = 2'}])

A map-style ``Dataset`` is read through mixindex's Arrow reading (rows by number, so a mix of
such sources is planned with rows and resumes without reading anything before), an
``IterableDataset`` as the stream it is: a mix calls its ``set_epoch`` for every new pass and
resumes it from its own ``state_dict``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from mixindex.errors import SourceError
from mixindex.mixing.inputs import DatasetInput, Input, IterableDatasetInput, is_iterable_dataset
from mixindex.mixing.sharded import ShardedDataSource, ShardInfo
from mixindex.sources.hf import is_hf_dataset

__all__ = ["HFDatasetShardedSource"]


class HFDatasetShardedSource(ShardedDataSource):
    """One ``datasets.Dataset`` or ``IterableDataset`` as a source of one shard (named ``name``,
    default ``"hf_dataset"``)."""

    def __init__(self, dataset: Any, name: str | None = None) -> None:
        if not (is_hf_dataset(dataset) or is_iterable_dataset(dataset)):
            raise SourceError(
                f"HFDatasetShardedSource wraps a datasets.Dataset or IterableDataset, not a "
                f"{type(dataset).__name__}; for other iterables write a ShardedDataSource"
            )
        if name is not None and (not isinstance(name, str) or not name):
            raise SourceError(f"name = {name!r} must be a non-empty string")
        self.dataset = dataset
        self.name = name or "hf_dataset"
        self.streaming = not is_hf_dataset(dataset)

    @property
    def shard_names(self) -> Sequence[str]:
        return [self.name]

    def _check(self, shard_name: str) -> None:
        if shard_name != self.name:
            raise KeyError(f"no shard {shard_name!r}; the only shard is {self.name!r}")

    def _mix_input(self, name: str) -> Input:
        """How a mix reads this source (see :mod:`mixindex.mixing.inputs`)."""
        if self.streaming:
            return IterableDatasetInput(name, self.dataset)
        return DatasetInput(name, self.dataset)

    def get_shard_info(self, shard_name: str) -> ShardInfo | None:
        self._check(shard_name)
        return None if self.streaming else ShardInfo(0, self.name, len(self.dataset))

    def open_shard(self, shard_name: str) -> Iterator[dict[str, Any]]:
        return self.open_shard_at_row(shard_name, 0)

    def open_shard_at_row(self, shard_name: str, row: int) -> Iterator[dict[str, Any]]:
        self._check(shard_name)
        if isinstance(row, bool) or not isinstance(row, int) or row < 0:
            raise ValueError(f"row = {row!r} must be a whole number >= 0")
        return (dict(example) for example in self._mix_input(self.name).open(0, row))

    def __len__(self) -> int:
        if self.streaming:
            return super().__len__()
        return len(self.dataset)

    def __repr__(self) -> str:
        kind = "IterableDataset" if self.streaming else f"Dataset of {len(self.dataset)} rows"
        return f"HFDatasetShardedSource({self.name!r}, {kind})"
