"""Serving a built index: ``mixindex.open(path)`` -> a dataset of examples by position.

Each example is a new dict: the columns of the source's row plus ``"__source__"``. Lookups are
O(1) memory-mapped reads; a batch of positions is grouped by source, and each source groups its
rows by Arrow record batch or Parquet row group, takes once per group and the rows are put back
in the requested order. Opening checks every source against the fingerprint recorded at build
time (S7). The dataset is map-style for PyTorch and a random-access source for Grain, and holds
no position: each ``iter(ds)`` is a new :class:`~mixindex.read.iterator.MixIterator` that owns
its place and resumes in O(1). :meth:`MixedDataset.shard` gives each data-parallel rank its
slice of every global batch (see :mod:`mixindex.read.state`), as a dataset with its own handles.

>>> import mixindex
>>> ds = mixindex.open("mix.mixindex")
>>> ds[0]["__source__"], ds[-1]
('code', {'text': 'text 59', '__source__': 'text'})
>>> rank = ds.shard(1, 2, global_batch_size=4)  # positions 2, 3, 6, 7, 10, ...
>>> examples = iter(rank)
>>> next(examples)["text"], next(examples)["text"]
('text 0', 'text 1')
>>> state = examples.state_dict()  # later, or in another process:
>>> resumed = iter(rank)
>>> resumed.load_state_dict(state)
>>> next(resumed)
{'text': 'def f3(): pass', '__source__': 'code'}
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from mixindex.errors import IndexReplacedError, ShardingError, SourceChangedError, SourceError
from mixindex.read.iterator import ITER_BATCH, MixIterator
from mixindex.read.positions import check_position, check_positions, is_position
from mixindex.read.rows import SOURCE_FIELD, conform, to_examples, unified_schema
from mixindex.read.state import Sharding, check_dataset_state, dataset_state
from mixindex.sources import Source, reopen_source
from mixindex.sources.base import check_columns
from mixindex.sources.remote import replaced_object
from mixindex.store.attrs import SourceOrigin
from mixindex.store.index import StoredIndex

if TYPE_CHECKING:
    import datasets

__all__ = ["ITER_BATCH", "SOURCE_FIELD", "MixIterator", "MixedDataset", "open"]


def _describe_change(name: str, old: SourceOrigin, new: Mapping[str, Any]) -> str:
    replaced = replaced_object(old.to_dict(), new)
    if old.num_rows != new["num_rows"]:
        what = f"its row count changed from {old.num_rows} to {new['num_rows']}"
        what += f"; {replaced}" if replaced else ""
    elif [Path(f).name for f in old.data_files] != [Path(f).name for f in new["data_files"]]:
        what = "its files changed"
    elif replaced is not None:
        what = replaced
    else:
        what = "its files' sizes, schema or metadata changed"
    return (
        f"source {name!r} changed since the index was built: {what} (fingerprint "
        f"{old.fingerprint} -> {new['fingerprint']}); rebuild the index, or open it with "
        "verify=False (--no-verify) to read it anyway"
    )


class MixedDataset:
    """A planned mixture, read by position. Use :func:`open` to get one.

    ``len``, ``ds[i]``, slices and ``ds.__getitems__(positions)`` read by position;
    ``ds.read_batch(positions)`` returns a ``pyarrow.Table``; ``iter(ds)`` and
    ``ds.iter(start=...)`` return a new :class:`~mixindex.read.iterator.MixIterator`, which
    owns its place (``state_dict`` / ``load_state_dict``); the dataset holds none.
    ``shard(...)`` gives one data-parallel rank's view, whose positions are local to the rank.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        data_files: Mapping[str, Sequence[str]] | None = None,
        datasets: Mapping[str, Any] | None = None,
        columns: Sequence[str] | None = None,
        verify: bool = True,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._storage_options = dict(storage_options) if storage_options is not None else None
        self.index = StoredIndex(
            path, storage_options=dict(storage_options) if storage_options is not None else None
        )
        if isinstance(columns, str):
            columns = [columns]
        self.columns = list(columns) if columns is not None else None
        data_files = dict(data_files or {})
        datasets = dict(datasets or {})
        self.names: list[str] = list(self.index.meta.names)
        unknown = [n for n in (*data_files, *datasets) if n not in self.names]
        if unknown:
            raise SourceChangedError(
                f"no source named {unknown[0]!r} in this index (sources: {', '.join(self.names)})"
            )
        self.sources: list[Source] = []
        for rec in self.index.sources:
            name = rec.name
            override = datasets.get(name, data_files.get(name))
            try:
                src = reopen_source(rec.to_dict(), override, storage_options)
            except SourceError as exc:
                if not verify or override is not None:
                    raise
                # A recorded file that is gone or no longer readable is a changed source (S7).
                raise SourceChangedError(
                    f"source {name!r} changed since the index was built: {exc}"
                ) from None
            if verify:
                now = src.describe()
                # Data passed again for a cached source is checked against what the cache
                # was made from.
                want = rec.origin if override is not None else rec
                if now["fingerprint"] != want.fingerprint or now["num_rows"] != want.num_rows:
                    raise SourceChangedError(_describe_change(name, want, now))
            # A projection that a source cannot satisfy fails now, not at the first read.
            check_columns(self.columns, src.schema, name)
            self.sources.append(src)
        self._sharding: Sharding | None = None
        self._arrow_schema: pa.Schema | None = None

    # ---- facts ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        n = self.index.num_examples
        return n if self._sharding is None else self._sharding.length(n)

    @property
    def num_examples(self) -> int:
        """The length of the whole mix (``len(ds)`` is the length of this rank's shard)."""
        return self.index.num_examples

    @property
    def digest(self) -> str:
        """The index's content digest."""
        return self.index.digest

    @property
    def seed(self) -> int:
        """The mix's seed (drawn once and recorded in the index when the spec said None)."""
        return self.index.meta.mix.seed

    @property
    def sharding(self) -> Sharding | None:
        """The sharding of this view, or None for the whole mix."""
        return self._sharding

    def __repr__(self) -> str:
        # Grain checks a checkpoint against repr(data_source): it names the index by its content
        # digest rather than its path, so that a moved index still resumes.
        shard = "" if self._sharding is None else f", shard=({self._sharding.describe()})"
        return (
            f"MixedDataset({len(self):,} examples, sources={self.names}, "
            f"digest={self.digest[:23]!r}{shard})"
        )

    # ---- positions -----------------------------------------------------------------------------

    def _positions(self, positions: Sequence[int] | np.ndarray) -> np.ndarray:
        return check_positions(positions, len(self))

    def to_global(self, positions: Sequence[int] | np.ndarray) -> np.ndarray:
        """Positions in the whole mix of this view's positions (the same unless sharded)."""
        pos = self._positions(positions)
        if self._sharding is None:
            return pos
        return self._sharding.to_global(pos, self.index.num_examples)

    def lookup(
        self, positions: Sequence[int] | np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(source_id, row, epoch)`` arrays for the given positions."""
        return self.index.lookup(self.to_global(positions))

    def _grouped(
        self, positions: Sequence[int] | np.ndarray
    ) -> tuple[np.ndarray, list[tuple[int, np.ndarray, list[pa.RecordBatch]]]]:
        """``(source ids, [(source id, output indices, parts), ...])``: one grouped take per
        source, whose parts' rows (end to end) go to the output indices."""
        pos = self.to_global(positions)
        arrays = self.index.arrays
        source = arrays["source"].take(pos)
        self.index.check_source_ids(source, pos)
        row = arrays["row"].take(pos).astype(np.int64, copy=False)
        if len(pos) == 0:
            return source, []
        order = np.argsort(source, kind="stable")
        sorted_source = source[order]
        cuts = np.flatnonzero(sorted_source[1:] != sorted_source[:-1]) + 1
        groups = []
        for where in np.split(order, cuts):
            s = int(source[where[0]])
            parts, within = self.sources[s].take_parts(row[where], self.columns)
            groups.append((s, where if within is None else where[within], parts))
        return source, groups

    # ---- reading -------------------------------------------------------------------------------

    def __getitems__(self, positions: Sequence[int] | np.ndarray) -> list[dict[str, Any]]:
        """Examples at many positions, in order; one grouped read per source."""
        _, groups = self._grouped(positions)
        if not groups:
            return []
        examples: list[dict[str, Any]] = []
        for s, _, parts in groups:
            examples.extend(to_examples(parts, self.names[s]))
        where = groups[0][1] if len(groups) == 1 else np.concatenate([g[1] for g in groups])
        if len(where) == 1 or np.all(where[1:] > where[:-1]):
            return examples
        # examples[k] belongs at where[k]: gather by the inverse permutation, in C.
        inverse = np.empty_like(where)
        inverse[where] = np.arange(len(where), dtype=where.dtype)
        return list(itemgetter(*inverse.tolist())(examples))

    # Grain reads batches through `_getitems` (SupportsBatchedReadRandomAccessDataSource).
    _getitems = __getitems__

    def __getitem__(self, key: int | slice) -> Any:
        if isinstance(key, slice):
            r = range(len(self))[key]
            return self.__getitems__(np.arange(r.start, r.stop, r.step, dtype=np.int64))
        if is_position(key):
            return self.__getitems__([check_position(key, len(self))])[0]
        raise TypeError(f"index with an int or a slice, not {type(key).__name__} ({key!r:.40})")

    def arrow_schema(self) -> pa.Schema:
        """The schema of :meth:`read_batch`: every source's (projected) columns, then
        ``__source__``; a column missing from a source is null in its rows."""
        if self._arrow_schema is None:
            self._arrow_schema = unified_schema([s.schema for s in self.sources], self.columns)
        return self._arrow_schema

    def read_batch(self, positions: Sequence[int] | np.ndarray) -> pa.Table:
        """The examples at ``positions`` as one ``pyarrow.Table`` (schema :meth:`arrow_schema`),
        in order; ``__source__`` is a dictionary column of source names."""
        schema = self.arrow_schema()
        source, groups = self._grouped(positions)
        data_schema = pa.schema(list(schema)[:-1])
        parts = [conform(batch, data_schema) for _, _, batches in groups for batch in batches]
        if not parts:
            return schema.empty_table()
        out = parts[0] if len(parts) == 1 else pa.concat_batches(parts)
        where = np.concatenate([g[1] for g in groups])
        if not np.all(where[1:] > where[:-1]):
            # One single-chunk take puts every source's rows back in order (never Table.take
            # over several chunks: apache/arrow#39565).
            inverse = np.empty_like(where)
            inverse[where] = np.arange(len(where), dtype=where.dtype)
            out = out.take(pa.array(inverse))
        names = pa.DictionaryArray.from_arrays(
            pa.array(source.astype(np.int32)), pa.array(self.names, pa.string())
        )
        return pa.Table.from_batches(
            [pa.RecordBatch.from_arrays([*out.columns, names], schema=schema)]
        )

    # ---- iteration and resume ------------------------------------------------------------------

    def iter(self, start: int = 0, batch_size: int = ITER_BATCH) -> MixIterator:
        """A new iterator over the examples from position ``start`` to the end, read
        ``batch_size`` at a time. Starting anywhere costs the same: one grouped read.

        The iterator owns its place (``it.state_dict()`` / ``it.load_state_dict(state)``);
        iterators of one dataset never move each other.
        """
        n = len(self)
        if not is_position(start):
            raise TypeError(f"start must be a position (int), not {type(start).__name__}")
        start = int(start) + n if start < 0 else int(start)
        if not 0 <= start <= n:
            raise IndexError(f"start {start} is out of range for a mix of {n} examples")
        if not is_position(batch_size) or batch_size < 1:
            raise ValueError(f"batch_size = {batch_size!r} must be a whole number >= 1")
        return MixIterator(self, start, int(batch_size))

    def __iter__(self) -> MixIterator:
        """A new iterator from position 0: every ``iter(ds)`` starts a new pass."""
        return self.iter()

    def state_dict(self) -> dict[str, Any]:
        """Which index and sharding this dataset reads, as a versioned dict: no position (a
        dataset has none; take an iterator's ``state_dict()`` to resume).

        torchdata's ``StatefulDataLoader`` saves it beside its sampler's place, so that
        :meth:`load_state_dict` refuses a checkpoint of another index or sharding.

        >>> import mixindex
        >>> sorted(mixindex.open("mix.mixindex").state_dict())
        ['digest', 'format_version', 'seed', 'shard']
        """
        return dataset_state(self.digest, self._sharding, self.seed)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Check that a state of :meth:`state_dict` names this index and sharding; nothing
        moves. Raises :class:`~mixindex.errors.StateError` (printing both values) otherwise,
        and for an iterator's state, whose place only an iterator can take.
        """
        check_dataset_state(state, self.digest, self._sharding)

    # ---- sharding and loaders ------------------------------------------------------------------

    def shard(
        self, rank: int, world_size: int, *, global_batch_size: int, drop_last: bool = True
    ) -> MixedDataset:
        """Rank ``rank``'s view: ``global_batch_size / world_size`` positions of each global
        batch. A trailing partial global batch is dropped unless ``drop_last=False``, which
        splits it as evenly as possible (ranks may then differ in length by one).

        >>> import mixindex
        >>> mine = mixindex.open("mix.mixindex").shard(rank=1, world_size=2, global_batch_size=8)
        >>> mine.to_global(range(6)).tolist()
        [4, 5, 6, 7, 12, 13]
        """
        if self._sharding is not None:
            raise ShardingError(
                f"this dataset is already a shard ({self._sharding.describe()}); shard the "
                "whole mix instead"
            )
        sharding = Sharding(
            rank=rank, world_size=world_size, global_batch_size=global_batch_size,
            drop_last=drop_last,
        )  # fmt: skip
        n = self.index.num_examples
        if sharding.length(n) == 0:
            raise ShardingError(
                f"the mix has {n} examples, fewer than one global batch of "
                f"{global_batch_size}: rank {rank} would read nothing; use a smaller "
                "global_batch_size or drop_last=False"
            )
        # Not copy.copy(self), which goes through __getstate__ and opens the index at its path
        # again: a rebuild may have replaced it there. The shard owns handles of its own on the
        # very index folder this dataset opened, so that closing one leaves the other open.
        view = object.__new__(MixedDataset)
        view.__dict__.update(self.__dict__)
        view._sharding = sharding
        view.index = self.index.clone()
        # A source's copy drops its handles, as pickling does, and opens its own on first use.
        view.sources = [copy.copy(src) for src in self.sources]
        return view

    def to_iterable_dataset(self, num_shards: int = 1) -> datasets.IterableDataset:
        """A ``datasets.IterableDataset`` over this dataset whose ``state_dict`` resumes in O(1).

        ``num_shards`` contiguous runs of positions let DataLoader workers share the work (each
        worker reads whole runs, so with workers the order is by run, as for any HF dataset).
        """
        from mixindex.read.integrations import to_iterable_dataset

        return to_iterable_dataset(self, num_shards=num_shards)

    # ---- processes -----------------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        # The index travels as its path: pickling the memory maps would copy the arrays. Sources
        # pickle without their handles and reopen in the new process (a forked child reopens
        # them too, by process id).
        state = self.__dict__.copy()
        state["index"] = (str(self.index.path), self.digest)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        path, digest = state["index"]
        index = StoredIndex(path, storage_options=state.get("_storage_options"))
        if index.digest != digest:
            raise IndexReplacedError(
                f"the index at {path!r} changed since this dataset was sent to another process "
                f"(digest {digest} -> {index.digest}); open it again"
            )
        self.__dict__.update(state)
        self.index = index

    def close(self) -> None:
        for src in self.sources:
            src.close()
        self.index.close()


def open(
    path: str | Path,
    *,
    data_files: Mapping[str, Sequence[str]] | None = None,
    datasets: Mapping[str, Any] | None = None,
    columns: Sequence[str] | None = None,
    verify: bool = True,
    storage_options: Mapping[str, Any] | None = None,
) -> MixedDataset:
    """Open a built index for reading: a local path, or a URL such as ``s3://bucket/mix.mixindex``
    (chunks fetched as they are read, into a local cache; ``storage_options`` go to fsspec).

    ``data_files`` / ``datasets`` replace where a source's data lives (for moved files, or for a
    ``datasets.Dataset`` that was built from memory); ``columns`` keeps only these columns (every
    source must have them); ``verify=False`` skips the fingerprint check. ``storage_options``
    are fsspec's options for sources behind URLs (an index records no credentials or endpoints;
    without them the environment's are used).
    """
    return MixedDataset(
        path,
        data_files=data_files,
        datasets=datasets,
        columns=columns,
        verify=verify,
        storage_options=storage_options,
    )
