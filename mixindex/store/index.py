"""The on-disk index: a zarr v3 group, written atomically, read back by memory map.

Layout (the contract of DESIGN.md)::

    NAME.mixindex/
      zarr.json          group; attributes["mixindex"]: format version, spec, sources, build,
                         array digests, content digest (see mixindex.meta)
      source/ row/ epoch/    1-D, length N, chunked by whole blocks, uncompressed
      counts/            (blocks, sources): slots of each source in each block
      cursors/           (blocks, sources): each source's stream cursor at the block's start
      chunk_digests/     (chunks, 5, 32) uint8: each chunk's sha256, arrays in ARRAYS order

Writing goes through zarr into a temporary sibling that is renamed into place at the end, so a
half-written index never opens. Reading parses the JSON metadata itself and memory-maps the raw
chunk files (uncompressed, little-endian), so the reader does not import zarr at all; an index
written with compression has its chunks decompressed with numcodecs. Every file is opened
relative to the index folder opened once (:mod:`mixindex.folder`), and every chunk file must
be there at its full size: zarr writes whole chunks, even the last one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mixindex.chunks import ChunkedArray
from mixindex.errors import IndexFormatError
from mixindex.folder import IndexFolder, not_an_index
from mixindex.meta import ARRAYS, check_meta, content_digest

__all__ = [
    "ARRAYS",
    "FORMAT_VERSION",
    "POSITION_ARRAYS",
    "TABLE_ARRAYS",
    "ChunkedArray",
    "IndexWriter",
    "StoredIndex",
    "array_digest",
]

FORMAT_VERSION = 2
POSITION_ARRAYS = ("source", "row", "epoch")
TABLE_ARRAYS = ("counts", "cursors")
CHUNK_DIGESTS = "chunk_digests"
ATTR_KEY = "mixindex"
# Rows of chunk_digests per stored chunk (each row is 160 bytes).
_DIGEST_ROWS = 4096


def array_digest(data: np.ndarray) -> str:
    """sha256 of an array chunk's little-endian bytes."""
    return hashlib.sha256(_le_bytes(data)).hexdigest()


def _le_bytes(data: np.ndarray) -> memoryview:
    return np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("<")).data


class IndexWriter:
    """Writes one index; use as a context manager so a failure leaves nothing behind.

    >>> # with IndexWriter(path, ...) as w: w.write_chunk(chunk); w.commit(attrs)
    """

    def __init__(
        self,
        path: str | Path,
        *,
        dtypes: Mapping[str, np.dtype],
        num_sources: int,
        chunk_blocks: int,
        block_size: int,
        length_bound: int,
        force: bool = False,
        compress: bool = False,
    ) -> None:
        from mixindex.output import check_existing
        from mixindex.publish import tmp_path

        self.path = Path(path)
        self.force = force
        check_existing(self.path, force)
        self.tmp = tmp_path(self.path)
        try:
            self._setup(dtypes, num_sources, chunk_blocks, block_size, length_bound, compress)
        except BaseException:
            # A failure (or SIGTERM) while creating the arrays must not leave the folder behind.
            self.abort()
            raise

    def _setup(
        self,
        dtypes: Mapping[str, np.dtype],
        num_sources: int,
        chunk_blocks: int,
        block_size: int,
        length_bound: int,
        compress: bool,
    ) -> None:
        import zarr

        self.group = zarr.open_group(str(self.tmp), mode="w", zarr_format=3)
        self.chunk_positions = chunk_blocks * block_size
        self.chunk_blocks = chunk_blocks
        self.block_size = block_size
        self.length = 0
        self.blocks = 0
        self.digests: dict[str, list[bytes]] = {name: [] for name in ARRAYS}
        # Whole-array hashes, fed chunk by chunk: the content digest must not see the chunking.
        self.hashes = {name: hashlib.sha256() for name in self.digests}
        codec: dict[str, Any] = {"compressors": None}
        if compress:
            from zarr.codecs import ZstdCodec

            codec = {"compressors": ZstdCodec(level=3)}
        config: Any = {"write_empty_chunks": True}
        self.codec, self.config = codec, config
        self.arrays = {}
        bound_blocks = -(-length_bound // block_size)
        for name in POSITION_ARRAYS:
            self.arrays[name] = self.group.create_array(
                name,
                shape=(max(length_bound, 1),),
                chunks=(self.chunk_positions,),
                dtype=dtypes[name],
                fill_value=0,
                config=config,
                **codec,
            )
        for name in TABLE_ARRAYS:
            self.arrays[name] = self.group.create_array(
                name,
                shape=(max(bound_blocks, 1), max(num_sources, 1)),
                chunks=(chunk_blocks, max(num_sources, 1)),
                dtype=dtypes[name],
                fill_value=0,
                config=config,
                **codec,
            )

    def __enter__(self) -> IndexWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.abort()

    def write_chunk(self, start: int, arrays: Mapping[str, np.ndarray], first_block: int) -> None:
        """Write the positions ``[start, start + len)`` and the tables of their blocks."""
        if start != self.length or start % self.chunk_positions:
            raise ValueError(f"chunks must be written in order; got start {start}")
        n = len(arrays["source"])
        for name in POSITION_ARRAYS:
            data = np.asarray(arrays[name], dtype=self.arrays[name].dtype)
            self.arrays[name][start : start + n] = data
            self.digests[name].append(hashlib.sha256(_le_bytes(data)).digest())
            self.hashes[name].update(_le_bytes(data))
        nb = len(arrays["counts"])
        for name in TABLE_ARRAYS:
            data = np.asarray(arrays[name], dtype=self.arrays[name].dtype)
            self.arrays[name][first_block : first_block + nb] = data
            self.digests[name].append(hashlib.sha256(_le_bytes(data)).digest())
            self.hashes[name].update(_le_bytes(data))
        self.length = start + n
        self.blocks = first_block + nb

    def commit(self, attrs: dict[str, Any]) -> str:
        """Trim the arrays to their final length, store the attributes, and move into place.

        Returns the content digest (also stored in the attributes).
        """
        for name in POSITION_ARRAYS:
            self.arrays[name].resize((self.length,))
        k = self.arrays["counts"].shape[1]
        for name in TABLE_ARRAYS:
            self.arrays[name].resize((self.blocks, k))
        self._write_chunk_digests()
        whole = {n: h.hexdigest() for n, h in self.hashes.items()}
        meta = dict(attrs)
        meta.update(
            format_version=FORMAT_VERSION,
            num_examples=self.length,
            num_blocks=self.blocks,
            block_size=self.block_size,
            chunk_positions=self.chunk_positions,
            chunk_blocks=self.chunk_blocks,
            array_digests=whole,
        )
        digest = meta["digest"] = content_digest(
            meta, whole, {n: self.arrays[n].dtype for n in ARRAYS}
        )
        self.group.attrs[ATTR_KEY] = meta
        from mixindex.publish import publish

        publish(self.tmp, self.path, force=self.force)
        return digest

    def _write_chunk_digests(self) -> None:
        """Each chunk's sha256 as an array for ``mixindex verify``: as JSON in the attributes
        they would be parsed at every open (3 MB at 10^10 positions)."""
        n = len(self.digests["source"])
        table = np.frombuffer(
            b"".join(d for i in range(n) for d in (self.digests[a][i] for a in ARRAYS)),
            dtype=np.uint8,
        ).reshape(n, len(ARRAYS), 32)
        arr = self.group.create_array(
            CHUNK_DIGESTS,
            shape=table.shape,
            chunks=(max(1, min(n, _DIGEST_ROWS)), len(ARRAYS), 32),
            dtype=np.uint8,
            fill_value=0,
            config=self.config,
            **self.codec,
        )
        if n:
            arr[:] = table

    def abort(self) -> None:
        from mixindex.publish import discard

        discard(self.tmp)


class StoredIndex:
    """An index on disk: its attributes and its arrays, memory-mapped lazily.

    Opening reads only metadata and checks it against itself in O(1): the attributes' types,
    the arrays' lengths, shapes, chunking and dtypes, and the content digest recomputed from the
    recorded array digests and the attributes (``check_digest=False`` leaves that to the
    caller: ``mixindex verify`` reports it).
    """

    def __init__(self, path: str | Path, *, check_digest: bool = True) -> None:
        self.path = Path(path)
        self.folder = IndexFolder(self.path)
        group = self.folder.read_json("zarr.json")
        attrs = group.get("attributes")
        meta = attrs.get(ATTR_KEY) if isinstance(attrs, dict) else None
        if group.get("zarr_format") != 3 or not isinstance(meta, dict):
            raise not_an_index(self.path, f"a zarr store without '{ATTR_KEY}' attributes")
        version = meta.get("format_version")
        if version != FORMAT_VERSION:
            raise IndexFormatError(
                f"{str(self.path)!r} has format version {version!r}; this mixindex reads version "
                f"{FORMAT_VERSION}; rebuild the index with 'mixindex build SPEC -o OUT --force'"
            )
        check_meta(meta, self.path)
        self.meta: dict[str, Any] = meta
        self.folder.digest = meta["digest"]
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
        n, b, k = meta["num_examples"], meta["block_size"], len(meta["sources"])
        nb = meta["num_blocks"]
        facts: list[tuple[str, Any, Any]] = [
            ("num_blocks", nb, -(-n // b)),
            ("chunk_positions", meta["chunk_positions"], meta["chunk_blocks"] * b),
        ]
        for name in POSITION_ARRAYS:
            facts.append((f"the shape of {name!r}", arrays[name].shape, (n,)))
            facts.append(
                (f"the chunks of {name!r}", arrays[name].chunks, (meta["chunk_positions"],))
            )
        for name in TABLE_ARRAYS:
            facts.append((f"the shape of {name!r}", arrays[name].shape, (nb, k)))
            facts.append(
                (f"the chunks of {name!r}", arrays[name].chunks, (meta["chunk_blocks"], k))
            )
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
        return int(self.meta["num_examples"])

    @property
    def sources(self) -> list[dict[str, Any]]:
        return list(self.meta["sources"])

    @property
    def digest(self) -> str:
        return str(self.meta["digest"])

    def recomputed_digest(self, array_digests: Mapping[str, str] | None = None) -> str:
        """The content digest from the attributes and ``array_digests`` (default: the
        recorded ones; ``mixindex verify`` passes the ones it hashed)."""
        if array_digests is None:
            array_digests = self.meta["array_digests"]
        return content_digest(self.meta, {n: array_digests[n] for n in ARRAYS}, self.dtypes)

    def chunk_digests(self) -> ChunkedArray:
        """The per-chunk sha256 array (read by ``mixindex verify`` only)."""
        return ChunkedArray(self.folder, CHUNK_DIGESTS)

    def check_source_ids(self, source: np.ndarray, positions: np.ndarray) -> None:
        """Every source id in ``source`` (read at ``positions``) names a source: a damaged byte
        is IndexFormatError naming the position and its chunk file, not an IndexError."""
        k = len(self.meta["sources"])
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

    def close(self) -> None:
        for arr in self.arrays.values():
            arr.close()
        self.folder.close()


def _show(value: Any) -> str:
    return str(list(value)) if isinstance(value, tuple) else str(value)
