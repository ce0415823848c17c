"""Writing an index: zarr arrays in a temporary sibling, whole-array and per-chunk digests,
then an atomic publish into place (:mod:`mixindex.store.publish`), so a half-written index never
opens.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from mixindex.store.layout import (
    ARRAYS,
    ATTR_KEY,
    CHUNK_DIGESTS,
    FORMAT_VERSION,
    POSITION_ARRAYS,
    TABLE_ARRAYS,
)
from mixindex.store.meta import IndexMeta, content_digest

__all__ = ["IndexWriter", "array_digest"]

# Rows of chunk_digests per stored chunk (each row is 160 bytes).
_DIGEST_ROWS = 4096


def array_digest(data: np.ndarray) -> str:
    """sha256 of an array chunk's little-endian bytes."""
    return hashlib.sha256(_le_bytes(data)).hexdigest()


def _le_bytes(data: np.ndarray) -> memoryview:
    return np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("<")).data


class IndexWriter:
    """Writes one index: ``with IndexWriter(path, ...) as w:``, then ``w.write_chunk(chunk)`` for
    each chunk and ``w.commit(attrs)``; as a context manager, a failure leaves nothing behind."""

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
        from mixindex.store.output import check_existing
        from mixindex.store.publish import tmp_path

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
        doc = dict(attrs)
        doc.update(
            format_version=FORMAT_VERSION,
            num_examples=self.length,
            num_blocks=self.blocks,
            block_size=self.block_size,
            chunk_positions=self.chunk_positions,
            chunk_blocks=self.chunk_blocks,
            array_digests=whole,
            digest="",  # filled in below: the digest covers the checked attributes
        )
        # Read back through IndexMeta, so that what is written is what every reader accepts.
        meta = IndexMeta.from_dict(doc, self.path)
        digest = content_digest(meta, whole, {n: self.arrays[n].dtype for n in ARRAYS})
        self.group.attrs[ATTR_KEY] = replace(meta, digest=digest).to_dict()
        from mixindex.store.publish import publish

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
        from mixindex.store.publish import discard

        discard(self.tmp)
