"""One stored array of an index, read chunk by chunk: raw chunk files memory-mapped, zstd
chunks decompressed with numcodecs; every file opened through the index's
:class:`~mixindex.store.folder.IndexFolder`.

Every chunk file must exist at its full size (zarr writes whole chunks, even the last, partial
one): a missing, short or over-long file is IndexFormatError naming it, never zeros.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mixindex.errors import IndexFormatError, MixIndexError, one_line
from mixindex.store.folder import IndexFolder

if TYPE_CHECKING:
    from mixindex.store.remote import IndexUrl
    from mixindex.store.remotefolder import RemoteFolder

__all__ = ["ChunkedArray"]


class ChunkedArray:
    """A read-only view of one stored array: chunk files mapped (or decompressed) on first use.

    Every chunk file must exist at its full size (zarr writes whole chunks, even the last one):
    a missing, short or over-long file is IndexFormatError naming it, never zeros.
    """

    def __init__(self, folder: IndexFolder | RemoteFolder, name: str) -> None:
        # The array's own zarr.json (shape, chunks, dtype, codecs), not the index's attributes.
        doc = folder.read_json(f"{name}/zarr.json")
        try:
            self.shape = tuple(int(n) for n in doc["shape"])
            self.chunks = tuple(int(n) for n in doc["chunk_grid"]["configuration"]["chunk_shape"])
            self.dtype = np.dtype(doc["data_type"]).newbyteorder("<")
            codecs = [c["name"] for c in doc["codecs"]]
            endian = doc["codecs"][0].get("configuration", {}).get("endian", "little")
            sep = doc["chunk_key_encoding"]["configuration"]["separator"]
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise IndexFormatError(
                f"{str(folder.path / name)!r} has unreadable array metadata ({one_line(exc)})"
            ) from None
        if codecs not in (["bytes"], ["bytes", "zstd"]) or endian != "little":
            raise IndexFormatError(
                f"{str(folder.path / name)!r} is stored with codecs {codecs} ({endian}-endian); "
                "mixindex writes little-endian bytes, optionally zstd; rebuild the index"
            )
        if len(self.chunks) != len(self.shape) or min(self.chunks, default=0) < 1:
            raise IndexFormatError(
                f"{str(folder.path / name)!r} has chunks {list(self.chunks)} for shape "
                f"{list(self.shape)}; rebuild the index"
            )
        self.name = name
        self.path = folder.path / name
        self.sep = sep
        self.raw = codecs == ["bytes"]
        self._folder = folder
        self._maps: dict[int, np.ndarray] = {}

    def on(self, folder: IndexFolder | RemoteFolder) -> ChunkedArray:
        """This array read through ``folder`` (a clone of its own), with no chunk mapped yet."""
        other = copy.copy(self)
        other._folder = folder
        other._maps = {}
        return other

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def num_chunks(self) -> int:
        return -(-self.shape[0] // self.chunks[0])

    @property
    def chunk_bytes(self) -> int:
        """The size of every chunk, decompressed."""
        return int(np.prod(self.chunks)) * int(self.dtype.itemsize)

    def chunk_key(self, i: int) -> str:
        """Chunk ``i``'s file inside the array folder, as zarr v3 names it: ``c/3``, ``c/3/0``."""
        return str(self.sep).join(["c", str(i)] + ["0"] * (len(self.shape) - 1))

    def chunk_path(self, i: int) -> Path | IndexUrl:
        """Chunk ``i``'s file, for messages."""
        return self.path / self.chunk_key(i)

    def chunk(self, i: int) -> np.ndarray:
        """Chunk ``i`` (rows along the first axis), clipped to the array's shape; kept mapped."""
        got = self._maps.get(i)
        if got is None:
            got = self._maps[i] = self.load(i)
        return got

    def _missing(self, i: int) -> IndexFormatError:
        return IndexFormatError(
            f"{str(self.chunk_path(i))!r} is missing (chunk {i} of {self.name!r}); check the "
            "index with 'mixindex verify' and rebuild it"
        )

    def has_file(self, i: int) -> bool:
        """Whether chunk ``i``'s file exists (whatever its size)."""
        try:
            self._folder.size(f"{self.name}/{self.chunk_key(i)}")
        except FileNotFoundError:
            return False
        return True

    def check_file(self, i: int) -> None:
        """Chunk ``i``'s file exists (and, uncompressed, has its full size): one stat."""
        try:
            size = self._folder.size(f"{self.name}/{self.chunk_key(i)}")
        except FileNotFoundError:
            raise self._missing(i) from None
        if self.raw and size != self.chunk_bytes:
            raise IndexFormatError(
                f"{str(self.chunk_path(i))!r} is damaged: {size} bytes, expected "
                f"{self.chunk_bytes} (chunk {i} of {self.name!r}); check the index with "
                "'mixindex verify' and rebuild it"
            )

    def load(self, i: int) -> np.ndarray:
        """Chunk ``i`` like :meth:`chunk`, but not kept: a scan over every chunk (audit, verify)
        then holds one chunk's pages at a time instead of the whole array's."""
        if not 0 <= i < self.num_chunks:
            raise IndexError(f"chunk {i} of {self.name!r} does not exist")
        lo = i * self.chunks[0]
        hi = min(lo + self.chunks[0], self.shape[0])
        name = f"{self.name}/{self.chunk_key(i)}"
        try:
            if self.raw:
                full = self._folder.map(name, self.dtype, self.chunks)
            else:
                full = self._decompress(i, self._folder.read_bytes(name))
        except FileNotFoundError:
            raise self._missing(i) from None
        except (ValueError, OSError) as exc:
            if isinstance(exc, MixIndexError):
                raise
            raise IndexFormatError(
                f"{str(self.chunk_path(i))!r} is damaged ({one_line(exc)}); check the index "
                "with 'mixindex verify' and rebuild it"
            ) from None
        self._folder.check_chunk(self.name, i, full[: hi - lo])
        return full[: hi - lo]

    def _decompress(self, i: int, data: bytes) -> np.ndarray:
        from numcodecs import Zstd

        try:
            raw = bytes(Zstd().decode(data))
        except Exception as exc:  # numcodecs raises RuntimeError and others on bad frames
            raise ValueError(one_line(exc)) from None
        if len(raw) != self.chunk_bytes:
            raise IndexFormatError(
                f"{str(self.chunk_path(i))!r} is damaged: it decompresses to {len(raw)} bytes, "
                f"expected {self.chunk_bytes}; check the index with 'mixindex verify' and "
                "rebuild it"
            )
        return np.frombuffer(raw, dtype=self.dtype).reshape(self.chunks)

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
