"""Writing an index: zarr v3 arrays in a temporary sibling (written without zarr,
:mod:`mixindex.store.zarrv3`), whole-array and per-chunk digests, then an atomic publish into
place (:mod:`mixindex.store.publish`), so a half-written index never opens.

Chunks may be written by many workers at once, in any order (:class:`RegionWriter`: each chunk
has its own files); :meth:`IndexWriter.record` then takes them in position order, since the
whole-array digests must not depend on the chunking or on who wrote what.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from mixindex.errors import MixIndexError
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
from mixindex.store.zarrv3 import ArrayLayout, group_doc, write_doc, write_rows

__all__ = ["IndexWriter", "RegionWriter", "array_digest"]

# Rows of chunk_digests per stored chunk (each row is 160 bytes).
_DIGEST_ROWS = 4096


def array_digest(data: np.ndarray) -> str:
    """sha256 of an array chunk's little-endian bytes."""
    return hashlib.sha256(_le_bytes(data)).hexdigest()


def _le_bytes(data: np.ndarray) -> memoryview:
    return np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("<")).data


@dataclass
class RegionWriter:
    """Writes chunks into the arrays of the folder ``folder``, laid out as ``layouts`` says:
    picklable, so that a thread, a process or a cluster worker sharing the file system can
    write chunks at the same time (each chunk has files of its own)."""

    folder: str
    layouts: dict[str, ArrayLayout]

    def write(
        self, start: int, first_block: int, arrays: Mapping[str, np.ndarray]
    ) -> dict[str, bytes]:
        """Write the positions from ``start`` and the table rows from ``first_block`` (whole
        chunks, or the last one); returns each array's sha256 for the chunk."""
        digests = {}
        for name in ARRAYS:
            layout = self.layouts[name]
            data = np.asarray(arrays[name], dtype=layout.dtype)
            lo = first_block if name in TABLE_ARRAYS else start
            write_rows(Path(self.folder, name), layout, lo, data)
            digests[name] = hashlib.sha256(_le_bytes(data)).digest()
        return digests


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
        self.chunk_positions = chunk_blocks * block_size
        self.chunk_blocks = chunk_blocks
        self.block_size = block_size
        self.compress = compress
        k = max(num_sources, 1)
        self.layouts = {
            name: ArrayLayout(dtypes[name], self.chunk_positions, (), compress)
            for name in POSITION_ARRAYS
        }
        for name in TABLE_ARRAYS:
            self.layouts[name] = ArrayLayout(dtypes[name], chunk_blocks, (k,), compress)
        self.regions = RegionWriter(str(self.tmp), self.layouts)
        self.reset()
        if self.adopted:
            return  # the arrays are there (the journal's identity fixes their layout)
        # A new group, never one taken over: anything this process itself left under the name
        # was discarded, so a group found there is another writer's.
        self.tmp.mkdir(parents=True, exist_ok=True)
        write_doc(self.tmp / "zarr.json", group_doc({}), new=True)
        bound_blocks = -(-length_bound // block_size)
        for name in ARRAYS:
            self._array_doc(name, max(length_bound if name in POSITION_ARRAYS else bound_blocks, 1))

    def _array_doc(self, name: str, rows: int) -> None:
        (self.tmp / name).mkdir(exist_ok=True)
        write_doc(self.tmp / name / "zarr.json", self.layouts[name].doc(rows))

    @property
    def dtypes(self) -> dict[str, np.dtype]:
        """Each array's stored dtype."""
        return {name: layout.dtype for name, layout in self.layouts.items()}

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
            data = np.asarray(arrays[name], dtype=self.layouts[name].dtype)
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
        from mixindex.store.chunks import ChunkedArray
        from mixindex.store.folder import IndexFolder

        kept = self.journal.kept()
        folder = IndexFolder(self.tmp)
        try:
            stored = {name: ChunkedArray(folder, name) for name in ARRAYS}
            for i, digests in enumerate(kept):
                try:
                    arrays = {name: stored[name].load(i) for name in ARRAYS}
                except MixIndexError:
                    break  # a chunk file missing or cut short
                found = {n: hashlib.sha256(_le_bytes(a)).digest() for n, a in arrays.items()}
                # A chunk is kept only with the state that plans the one after it.
                if found != digests or self.journal.state(i + 1) is None:
                    break
                self.record(i * self.chunk_positions, arrays, i * self.chunk_blocks, found)
        finally:
            folder.close()
        done = self.length // self.chunk_positions
        state = self.journal.state(done)
        self.journal.forget_from(done)
        return state

    def commit(self, attrs: dict[str, Any]) -> str:
        """Trim the arrays to their final length, store the attributes, and move into place.

        Returns the content digest (also stored in the attributes).
        """
        # Each array's final length (no chunk was written past it).
        for name in ARRAYS:
            self._array_doc(name, self.length if name in POSITION_ARRAYS else self.blocks)
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
        digest = content_digest(meta, whole, self.dtypes)
        attrs = {ATTR_KEY: replace(meta, digest=digest).to_dict()}
        write_doc(self.tmp / "zarr.json", group_doc(attrs))
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
        layout = ArrayLayout(
            np.uint8, max(1, min(n, _DIGEST_ROWS)), (len(ARRAYS), 32), self.compress
        )
        folder = self.tmp / CHUNK_DIGESTS
        # A resumed build may have got this far before: the same table, written over.
        folder.mkdir(exist_ok=True)
        write_doc(folder / "zarr.json", layout.doc(n))
        write_rows(folder, layout, 0, table)

    def abort(self) -> None:
        from mixindex.store.publish import discard

        discard(self.tmp)
