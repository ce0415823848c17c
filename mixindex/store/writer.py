"""Writing an index: zarr arrays in a temporary sibling, whole-array and per-chunk digests,
then an atomic publish into place (:mod:`mixindex.store.publish`), so a half-written index never
opens.

Chunks may be written by many workers at once, in any order (:class:`RegionWriter`: each chunk
has its own files); :meth:`IndexWriter.record` then takes them in position order, since the
whole-array digests must not depend on the chunking or on who wrote what.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
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
from mixindex.store.resume import Journal

__all__ = ["IndexWriter", "RegionWriter", "array_digest"]

# Rows of chunk_digests per stored chunk (each row is 160 bytes).
_DIGEST_ROWS = 4096
# zarr's settings are one global dict, and ``zarr.config.set`` puts back on exit what it found on
# entry: two threads inside it at once undo each other's setting, so that an array may open
# without write_empty_chunks (its chunks of zeros then go unwritten) and the process keeps the
# setting for good. Workers open their arrays one at a time.
_OPEN_LOCK = threading.Lock()


def array_digest(data: np.ndarray) -> str:
    """sha256 of an array chunk's little-endian bytes."""
    return hashlib.sha256(_le_bytes(data)).hexdigest()


def _le_bytes(data: np.ndarray) -> memoryview:
    return np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("<")).data


@dataclass
class RegionWriter:
    """Writes chunks into the arrays of the folder ``folder``: picklable, so that a thread, a
    process or a cluster worker sharing the file system can write chunks at the same time."""

    folder: str
    _arrays: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        return {"folder": self.folder, "_arrays": {}}

    def _array(self, name: str) -> Any:
        arr = self._arrays.get(name)
        if arr is None:
            import zarr

            # Chunks of zeros too: a reader needs every chunk's file. (The array takes the
            # setting when it is opened; open_array has no config argument before zarr 3.1.4.)
            with _OPEN_LOCK, zarr.config.set({"array.write_empty_chunks": True}):
                arr = zarr.open_array(f"{self.folder}/{name}", mode="r+")
            self._arrays[name] = arr
        return arr

    def write(
        self, start: int, first_block: int, arrays: Mapping[str, np.ndarray]
    ) -> dict[str, bytes]:
        """Write the positions from ``start`` and the table rows from ``first_block`` (whole
        chunks, or the last one); returns each array's sha256 for the chunk."""
        digests = {}
        for name in ARRAYS:
            arr = self._array(name)
            data = np.asarray(arrays[name], dtype=arr.dtype)
            lo = first_block if name in TABLE_ARRAYS else start
            if not self._write_files(name, arr, lo, data):
                arr[lo : lo + len(data)] = data
            digests[name] = hashlib.sha256(_le_bytes(data)).digest()
        return digests

    def _write_files(self, name: str, arr: Any, lo: int, data: np.ndarray) -> bool:
        """Write whole chunks of an uncompressed array straight to their files (zarr's own
        write goes through its event loop thread, which all workers then queue on); a chunk
        cut short by the end of the data is padded with the fill value, 0, as zarr pads it.
        False (nothing written) where that does not apply: compressed, or off chunk bounds."""
        rows = arr.chunks[0]
        if len(arr.metadata.codecs) != 1 or lo % rows or arr.chunks[1:] != data.shape[1:]:
            return False
        for at in range(0, len(data), rows):
            piece = data[at : at + rows]
            if len(piece) < rows:
                piece = np.concatenate(
                    [piece, np.zeros((rows - len(piece), *piece.shape[1:]), piece.dtype)]
                )
            coords = ((lo + at) // rows,) + (0,) * (data.ndim - 1)
            path = Path(self.folder, name, arr.metadata.encode_chunk_key(coords))
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as f:
                f.write(_le_bytes(piece))
        return True


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
        identity: Mapping[str, Any] | None = None,
        adopt: bool = False,
    ) -> None:
        """``identity`` (JSON) says what decides the bytes, for the journal; ``adopt`` takes
        over this process's temporary folder, already there (a dead build's, renamed by
        :func:`~mixindex.store.resume.adopt_leftover`), if its journal is for ``identity``
        (:attr:`adopted`; call :meth:`resume`), else replaces it."""
        from mixindex.store.output import check_existing
        from mixindex.store.publish import discard, tmp_path

        self.path = Path(path)
        self.force = force
        check_existing(self.path, force)
        self.tmp = tmp_path(self.path)
        self.journal = Journal(self.tmp)
        identity = json.loads(json.dumps(identity or {}))
        self.adopted = adopt and self.journal.identity() == identity
        if not self.adopted:
            discard(self.tmp)
        try:
            self._setup(dtypes, num_sources, chunk_blocks, block_size, length_bound, compress)
            if not self.adopted:
                self.journal.start(identity)
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

        # "w-", not "w": zarr's "w" removes the folder it has just made and makes it again, so
        # for a moment this build's folder would not exist (another process could take it as
        # gone). The name is this process's own: anything left there by it was discarded.
        self.group = zarr.open_group(
            str(self.tmp), mode="r+" if self.adopted else "w-", zarr_format=3
        )
        self.regions = RegionWriter(str(self.tmp))
        self.chunk_positions = chunk_blocks * block_size
        self.chunk_blocks = chunk_blocks
        self.block_size = block_size
        self.reset()
        codec: dict[str, Any] = {"compressors": None}
        if compress:
            from zarr.codecs import ZstdCodec

            codec = {"compressors": ZstdCodec(level=3)}
        config: Any = {"write_empty_chunks": True}
        self.codec, self.config = codec, config
        self.arrays: dict[str, Any] = {}
        if self.adopted:
            self.arrays = {name: self.group[name] for name in ARRAYS}
            return
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

    def reset(self) -> None:
        """Record from the first chunk again (what is on disk is written over)."""
        self.length = 0
        self.blocks = 0
        self.digests: dict[str, list[bytes]] = {name: [] for name in ARRAYS}
        # Whole-array hashes, fed chunk by chunk: the content digest must not see the chunking.
        self.hashes = {name: hashlib.sha256() for name in ARRAYS}

    def __enter__(self) -> IndexWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.abort()

    def write_chunk(self, start: int, arrays: Mapping[str, np.ndarray], first_block: int) -> None:
        """Write the positions ``[start, start + len)`` and the tables of their blocks, in order."""
        self._check_next(start)
        self.record(start, arrays, first_block, self.regions.write(start, first_block, arrays))

    def _check_next(self, start: int) -> None:
        if start != self.length or start % self.chunk_positions:
            raise ValueError(f"chunks must be recorded in order; got start {start}")

    def record(
        self,
        start: int,
        arrays: Mapping[str, np.ndarray],
        first_block: int,
        digests: Mapping[str, bytes],
    ) -> None:
        """Take the chunk from ``start``, already written (:class:`RegionWriter`), in order:
        feed the whole-array digests and journal it as done."""
        self._check_next(start)
        for name in ARRAYS:
            data = np.asarray(arrays[name], dtype=self.arrays[name].dtype)
            self.digests[name].append(digests[name])
            self.hashes[name].update(_le_bytes(data))
        self.journal.done(start // self.chunk_positions, digests)
        self.length = start + len(arrays["source"])
        self.blocks = first_block + len(arrays["counts"])

    def begin(self, start: int, state: Mapping[str, Any]) -> None:
        """Journal planning's ``state`` at the chunk from ``start``, before it is written."""
        self.journal.begin(start // self.chunk_positions, state)

    def resume(self) -> Any:
        """Keep the adopted folder's chunks that check out against the journal (re-read and
        hashed, in order) and return the planning state to go on from (None: the start)."""
        kept = self.journal.kept()
        for i, digests in enumerate(kept):
            lo, blo = i * self.chunk_positions, i * self.chunk_blocks
            arrays: dict[str, np.ndarray] = {
                n: self.arrays[n][lo : lo + self.chunk_positions] for n in POSITION_ARRAYS
            }
            for name in TABLE_ARRAYS:
                arrays[name] = self.arrays[name][blo : blo + self.chunk_blocks]
            found = {n: hashlib.sha256(_le_bytes(a)).digest() for n, a in arrays.items()}
            # A chunk is kept only with the state that plans the one after it.
            if found != digests or self.journal.state(i + 1) is None:
                break
            self.record(lo, arrays, blo, found)
        done = self.length // self.chunk_positions
        state = self.journal.state(done)
        self.journal.forget_from(done)
        return state

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
        self.journal.remove()
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
            overwrite=True,  # a resumed build may have got this far before
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
