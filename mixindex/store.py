"""The on-disk index: a zarr v3 group, written atomically, read back by memory map.

Layout (the contract of DESIGN.md)::

    NAME.mixindex/
      zarr.json          group; attributes["mixindex"]: format version, spec, sources, build, digest
      source/ row/ epoch/    1-D, length N, chunked by whole blocks, uncompressed
      counts/            (blocks, sources): slots of each source in each block
      cursors/           (blocks, sources): each source's stream cursor at the block's start

Writing goes through zarr into a temporary sibling that is renamed into place at the end, so a
half-written index never opens. Reading parses the JSON metadata itself and memory-maps the raw
chunk files (uncompressed, little-endian), so the reader does not import zarr at all; an index
written with compression is read through zarr instead.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mixindex.errors import IndexFormatError

FORMAT_VERSION = 1
POSITION_ARRAYS = ("source", "row", "epoch")
TABLE_ARRAYS = ("counts", "cursors")
ATTR_KEY = "mixindex"


def array_digest(data: np.ndarray) -> str:
    """sha256 of an array chunk's little-endian bytes."""
    return hashlib.sha256(_le_bytes(data)).hexdigest()


def _le_bytes(data: np.ndarray) -> memoryview:
    return np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("<")).data


def combine_digests(array_digests: Mapping[str, str], shape_facts: Mapping[str, Any]) -> str:
    """The index's content digest: one sha256 over each whole array's sha256 and the shapes.

    Each array is hashed as one stream of bytes, so the digest does not depend on how the
    positions were cut into chunks (``chunk_blocks``): the same mix gives the same digest.
    """
    doc = json.dumps({"arrays": array_digests, "facts": shape_facts}, sort_keys=True)
    return "sha256:" + hashlib.sha256(doc.encode()).hexdigest()


def digest_facts(
    num_examples: int, num_blocks: int, num_sources: int, dtypes: Mapping[str, Any]
) -> dict[str, Any]:
    """The shape facts that :func:`combine_digests` covers besides the arrays' bytes; shared by
    the writer and ``mixindex verify``, which recomputes the digest."""
    return {
        "num_examples": num_examples,
        "num_blocks": num_blocks,
        "num_sources": num_sources,
        "dtypes": {n: str(np.dtype(d)) for n, d in dtypes.items()},
    }


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
        self.digests: dict[str, list[str]] = {
            name: [] for name in (*POSITION_ARRAYS, *TABLE_ARRAYS)
        }
        # Whole-array hashes, fed chunk by chunk: the content digest must not see the chunking.
        self.hashes = {name: hashlib.sha256() for name in self.digests}
        codec: dict[str, Any] = {"compressors": None}
        if compress:
            from zarr.codecs import ZstdCodec

            codec = {"compressors": ZstdCodec(level=3)}
        config: Any = {"write_empty_chunks": True}
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
            self.digests[name].append(array_digest(data))
            self.hashes[name].update(_le_bytes(data))
        nb = len(arrays["counts"])
        for name in TABLE_ARRAYS:
            data = np.asarray(arrays[name], dtype=self.arrays[name].dtype)
            self.arrays[name][first_block : first_block + nb] = data
            self.digests[name].append(array_digest(data))
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
        facts = digest_facts(
            self.length, self.blocks, k, {n: self.arrays[n].dtype for n in self.digests}
        )
        digest = combine_digests({n: h.hexdigest() for n, h in self.hashes.items()}, facts)
        meta = dict(attrs)
        meta.update(
            format_version=FORMAT_VERSION,
            num_examples=self.length,
            num_blocks=self.blocks,
            block_size=self.block_size,
            chunk_positions=self.chunk_positions,
            chunk_blocks=self.chunk_blocks,
            digest=digest,
            chunk_digests=self.digests,
        )
        self.group.attrs[ATTR_KEY] = meta
        from mixindex.publish import publish

        publish(self.tmp, self.path, force=self.force)
        return digest

    def abort(self) -> None:
        from mixindex.publish import discard

        discard(self.tmp)


class ChunkedArray:
    """A read-only view of one stored array: raw chunk files mapped on first use."""

    def __init__(self, folder: Path) -> None:
        meta = _read_json(folder / "zarr.json", folder)
        try:
            self.shape = tuple(meta["shape"])
            self.chunks = tuple(meta["chunk_grid"]["configuration"]["chunk_shape"])
            self.dtype = np.dtype(meta["data_type"]).newbyteorder("<")
            codecs = meta["codecs"]
            sep = meta["chunk_key_encoding"]["configuration"]["separator"]
        except (KeyError, TypeError, ValueError) as exc:
            raise IndexFormatError(
                f"{str(folder)!r} has unreadable array metadata ({exc})"
            ) from None
        self.folder = folder
        self.sep = sep
        self.raw = len(codecs) == 1 and codecs[0].get("name") == "bytes"
        self._maps: dict[int, np.ndarray] = {}
        self._zarr: Any = None

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def num_chunks(self) -> int:
        return -(-self.shape[0] // self.chunks[0])

    def chunk_key(self, i: int) -> str:
        """Chunk ``i``'s file inside the array folder, as zarr v3 names it: ``c/3``, ``c/3/0``."""
        return "c" + self.sep + self.sep.join([str(i)] + ["0"] * (len(self.shape) - 1))

    def chunk(self, i: int) -> np.ndarray:
        """Chunk ``i`` (rows along the first axis), clipped to the array's shape; kept mapped."""
        got = self._maps.get(i)
        if got is None:
            got = self._maps[i] = self.load(i)
        return got

    def load(self, i: int) -> np.ndarray:
        """Chunk ``i`` like :meth:`chunk`, but not kept: a scan over every chunk (audit, verify)
        then holds one chunk's pages at a time instead of the whole array's."""
        lo = i * self.chunks[0]
        hi = min(lo + self.chunks[0], self.shape[0])
        if not self.raw:
            if self._zarr is None:
                import zarr

                self._zarr = zarr.open_array(str(self.folder), mode="r")
            return np.asarray(self._zarr[lo:hi])
        path = self.folder / self.chunk_key(i)
        if not path.exists():
            return np.zeros((hi - lo, *self.shape[1:]), dtype=self.dtype)
        try:
            full = np.memmap(path, dtype=self.dtype, mode="r", shape=self.chunks)
        except (ValueError, OSError) as exc:
            raise IndexFormatError(f"{str(path)!r} is damaged ({exc}); rebuild the index") from None
        return full[: hi - lo]

    def iter_chunks(self) -> Iterator[np.ndarray]:
        """Every chunk in order, each loaded with :meth:`load` (not kept)."""
        for i in range(self.num_chunks):
            yield self.load(i)

    def take(self, positions: np.ndarray) -> np.ndarray:
        """Values at many positions (int64 array, each in range), in order."""
        size = self.chunks[0]
        out = np.empty((len(positions), *self.shape[1:]), dtype=self.dtype.newbyteorder("="))
        which = positions // size
        if len(positions) and which.min() == which.max():
            out[:] = self.chunk(int(which[0]))[positions - which[0] * size]
            return out
        for c in np.unique(which):
            sel = which == c
            out[sel] = self.chunk(int(c))[positions[sel] - c * size]
        return out

    def read(self, lo: int, hi: int) -> np.ndarray:
        """A contiguous run ``[lo, hi)`` along the first axis."""
        return self.take(np.arange(lo, hi, dtype=np.int64))

    def close(self) -> None:
        self._maps.clear()


def _read_json(path: Path, index: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise IndexFormatError(
            f"{str(index)!r} is not a mixindex index (no {path.name}); build one with "
            "'mixindex build SPEC -o OUT'"
        ) from None
    except (OSError, ValueError) as exc:
        raise IndexFormatError(f"{str(path)!r} cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise IndexFormatError(f"{str(path)!r} is not zarr metadata")
    return data


class StoredIndex:
    """An index on disk: its attributes and its arrays, memory-mapped lazily."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise IndexFormatError(
                f"{str(self.path)!r} is not a mixindex index (not a folder); build one with "
                "'mixindex build SPEC -o OUT'"
            )
        group = _read_json(self.path / "zarr.json", self.path)
        meta = group.get("attributes", {}).get(ATTR_KEY)
        if group.get("zarr_format") != 3 or not isinstance(meta, dict):
            raise IndexFormatError(
                f"{str(self.path)!r} is a zarr store but not a mixindex index "
                f"(no '{ATTR_KEY}' attributes)"
            )
        version = meta.get("format_version")
        if version != FORMAT_VERSION:
            raise IndexFormatError(
                f"{str(self.path)!r} has format version {version!r}; this mixindex reads version "
                f"{FORMAT_VERSION}; rebuild the index with this version"
            )
        self.meta: dict[str, Any] = meta
        self.arrays = {
            name: ChunkedArray(self.path / name) for name in (*POSITION_ARRAYS, *TABLE_ARRAYS)
        }
        n = int(meta["num_examples"])
        for name in POSITION_ARRAYS:
            if len(self.arrays[name]) != n:
                raise IndexFormatError(
                    f"{str(self.path)!r} is damaged: array {name!r} has length "
                    f"{len(self.arrays[name])}, expected {n}"
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

    def lookup(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(source, row, epoch)`` at each position (an int64 array of valid positions)."""
        return tuple(self.arrays[name].take(positions) for name in POSITION_ARRAYS)  # type: ignore[return-value]

    def table(self, name: str) -> np.ndarray:
        """The whole ``counts`` or ``cursors`` table."""
        arr = self.arrays[name]
        return arr.read(0, len(arr))

    def close(self) -> None:
        for arr in self.arrays.values():
            arr.close()
