"""Reading a built index: its attributes, checked, and its arrays, memory-mapped lazily.

Reading parses the JSON metadata itself and memory-maps the raw chunk files (uncompressed,
little-endian), so the reader does not import zarr at all; an index written with compression has
its chunks decompressed with numcodecs. Every file is opened relative to the index folder opened
once (:mod:`mixindex.store.folder`), and every chunk file must be there at its full size: zarr
writes whole chunks, even the last one.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mixindex.errors import IndexFormatError
from mixindex.store.attrs import SourceRecord
from mixindex.store.chunks import ChunkedArray
from mixindex.store.folder import IndexFolder, not_an_index
from mixindex.store.layout import ARRAYS, ATTR_KEY, CHUNK_DIGESTS, POSITION_ARRAYS, TABLE_ARRAYS
from mixindex.store.meta import IndexMeta, attributes_of, content_digest
from mixindex.store.remote import IndexUrl, is_url

if TYPE_CHECKING:
    from mixindex.store.remotefolder import RemoteFolder

__all__ = ["StoredIndex"]


class StoredIndex:
    """An index on disk: its attributes and its arrays, memory-mapped lazily.

    Opening reads only metadata and checks it against itself in O(1): the attributes' types,
    the arrays' lengths, shapes, chunking and dtypes, and the content digest recomputed from the
    recorded array digests and the attributes (``check_digest=False`` leaves that to the
    caller: ``mixindex verify`` reports it).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        check_digest: bool = True,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        self.path: Path | IndexUrl
        self.folder: IndexFolder | RemoteFolder
        self.storage_options = storage_options
        if is_url(path):
            # Object storage (mixindex.store.remote): fsspec and its backend load only here.
            from mixindex.store.remotefolder import RemoteFolder

            self.path = IndexUrl(str(path).rstrip("/"))
            self.folder = RemoteFolder(self.path, storage_options)
        else:
            self.path = Path(path)
            self.folder = IndexFolder(self.path)
        group = self.folder.read_json("zarr.json")
        doc = attributes_of(group)
        if group.get("zarr_format") != 3 or doc is None:
            raise not_an_index(self.path, f"a zarr store without '{ATTR_KEY}' attributes")
        self.meta = IndexMeta.from_dict(doc, self.path)
        self.folder.digest = self.meta.digest
        self.arrays = {name: ChunkedArray(self.folder, name) for name in ARRAYS}
        self._check_arrays()
        self.dtypes = {name: self.arrays[name].dtype for name in ARRAYS}
        if check_digest and self.recomputed_digest() != self.digest:
            raise IndexFormatError(
                f"{str(self.path)!r} is damaged: its attributes do not match its digest "
                f"{self.digest} (they were edited by hand?); 'mixindex verify' says more; "
                "rebuild the index"
            )

    def _check_arrays(self) -> None:
        """The arrays agree with the attributes: O(1), nothing but metadata is read."""
        meta, arrays = self.meta, self.arrays
        n, b, k, nb = meta.num_examples, meta.block_size, meta.num_sources, meta.num_blocks
        facts: list[tuple[str, Any, Any]] = [
            ("num_blocks", nb, -(-n // b)),
            ("chunk_positions", meta.chunk_positions, meta.chunk_blocks * b),
        ]
        for name in POSITION_ARRAYS:
            facts.append((f"the shape of {name!r}", arrays[name].shape, (n,)))
            facts.append((f"the chunks of {name!r}", arrays[name].chunks, (meta.chunk_positions,)))
        for name in TABLE_ARRAYS:
            facts.append((f"the shape of {name!r}", arrays[name].shape, (nb, k)))
            facts.append((f"the chunks of {name!r}", arrays[name].chunks, (meta.chunk_blocks, k)))
        for name in ARRAYS:
            dtype = arrays[name].dtype
            if dtype.kind != "u":
                facts.append((f"the dtype of {name!r}", dtype.name, "an unsigned integer"))
        for what, found, expected in facts:
            if found != expected:
                raise IndexFormatError(
                    f"{str(self.path)!r} is damaged: {what} is {_show(found)}, expected "
                    f"{_show(expected)} from its attributes; rebuild the index"
                )

    @property
    def num_examples(self) -> int:
        return self.meta.num_examples

    @property
    def sources(self) -> tuple[SourceRecord, ...]:
        return self.meta.sources

    @property
    def digest(self) -> str:
        return self.meta.digest

    def recomputed_digest(self, array_digests: Mapping[str, str] | None = None) -> str:
        """The content digest from the attributes and ``array_digests`` (default: the
        recorded ones; ``mixindex verify`` passes the ones it hashed)."""
        if array_digests is None:
            array_digests = self.meta.array_digests
        return content_digest(self.meta, {n: array_digests[n] for n in ARRAYS}, self.dtypes)

    def chunk_digests(self) -> ChunkedArray:
        """The per-chunk sha256 array (read by ``mixindex verify`` only)."""
        return ChunkedArray(self.folder, CHUNK_DIGESTS)

    def check_source_ids(self, source: np.ndarray, positions: np.ndarray) -> None:
        """Every source id in ``source`` (read at ``positions``) names a source: a damaged byte
        is IndexFormatError naming the position and its chunk file, not an IndexError."""
        k = self.meta.num_sources
        if source.size == 0 or int(source.max()) < k:
            return
        at = int(np.argmax(source >= k))
        p = int(positions[at])
        arr = self.arrays["source"]
        raise IndexFormatError(
            f"{str(arr.chunk_path(p // arr.chunks[0]))!r} is damaged: position {p:,} has "
            f"source id {int(source[at])} but the index has {k} sources; check the index with "
            "'mixindex verify' and rebuild it"
        )

    def lookup(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(source, row, epoch)`` at each position (an int64 array of valid positions)."""
        source, row, epoch = (self.arrays[name].take(positions) for name in POSITION_ARRAYS)
        self.check_source_ids(source, positions)
        return source, row, epoch

    def table(self, name: str) -> np.ndarray:
        """The whole ``counts`` or ``cursors`` table."""
        arr = self.arrays[name]
        return arr.read(0, len(arr))

    def clone(self) -> StoredIndex:
        """Another reader of this same opened index with its own folder handle and maps:
        closing either leaves the other open (a dataset's shards are built with it)."""
        other = copy.copy(self)
        other.folder = self.folder.clone()
        other.arrays = {name: arr.on(other.folder) for name, arr in self.arrays.items()}
        return other

    def close(self) -> None:
        for arr in self.arrays.values():
            arr.close()
        self.folder.close()


def _show(value: Any) -> str:
    return str(list(value)) if isinstance(value, tuple) else str(value)
