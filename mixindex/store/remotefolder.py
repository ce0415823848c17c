"""An index in object storage, read like a local index folder: each object fetched on first
use into a bounded local cache, and every chunk checked before it is served.

The pointer (:mod:`mixindex.store.remote`) is resolved once, at open; every object is then read
under that version, so a rebuild never changes what an open reader serves. An object missing
from the version is IndexReplacedError when the pointer has moved on (the version was removed
by a later ``build --force``), IndexFormatError naming it otherwise. A fetched chunk of a
position or table array is checked against its sha256 in ``chunk_digests`` (the digest chunks
themselves by their size), so a replaced or damaged object is refused, never served.

The cache is ``$MIXINDEX_CACHE_DIR/index/<version>/`` (see ``default_cache_dir``): objects of a
published version never change, so several processes on one host share it safely. It holds at
most ``$MIXINDEX_INDEX_CACHE_BYTES`` (default 4 GiB); the least recently used files go first.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mixindex.errors import IndexFormatError, IndexReplacedError, one_line
from mixindex.store.folder import not_an_index
from mixindex.store.layout import ARRAYS, CHUNK_DIGESTS
from mixindex.store.remote import (
    IndexUrl,
    fetch_error,
    filesystem,
    read_pointer,
    version_name,
    whole_get,
)

if TYPE_CHECKING:
    from mixindex.store.chunks import ChunkedArray

__all__ = ["DEFAULT_CACHE_BYTES", "RemoteFolder"]

DEFAULT_CACHE_BYTES = 4 << 30


def _cache_limit() -> int:
    text = os.environ.get("MIXINDEX_INDEX_CACHE_BYTES", "")
    try:
        return max(int(text), 0) if text else DEFAULT_CACHE_BYTES
    except ValueError:
        raise IndexFormatError(
            f"MIXINDEX_INDEX_CACHE_BYTES = {text!r} is not a number of bytes; set it to a whole "
            "number such as 4294967296"
        ) from None


class RemoteFolder:
    """One published version of a remote index; objects read relative to it."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.url = url.rstrip("/")
        self.storage_options = storage_options
        self.fs, self.root = filesystem(self.url, storage_options)
        self.fetched: list[str] = []  # keys fetched from the store, in order (not cache hits)
        pointer = read_pointer(self.fs, self.root, self.url)
        if pointer is None:
            # An index copied up by hand (zarr.json at the URL itself): read in place, no cache
            # of its metadata, since nothing stops it from being rewritten.
            self.version, self.digest = None, None
            self.base, self.path = self.root, IndexUrl(self.url)
        else:
            self.version, self.digest = str(pointer["version"]), str(pointer["digest"])
            self.base, self.path = f"{self.root}/{self.version}", IndexUrl(self.url) / self.version
        self._cache: Path | None = None
        self._digests: ChunkedArray | None = None
        self._pid = os.getpid()
        self._get = whole_get(self.fs)  # chunks are a few MB: one GET each
        if self.version is not None:
            self._prefetch_metadata()

    def _prefetch_metadata(self) -> None:
        """Every zarr.json of the version, fetched at once (concurrently) into the cache, so
        that no small request waits in front of the first chunk."""
        cache = self._cache_dir()
        names = ["zarr.json", *(f"{a}/zarr.json" for a in (*ARRAYS, CHUNK_DIGESTS))]
        missing = [n for n in names if cache is not None and not (cache / n).exists()]
        if not missing:
            return
        paths = [f"{self.base}/{n}" for n in missing]
        try:
            got = self._fs().cat(paths, on_error="omit", **self._get)
        except Exception as exc:
            raise fetch_error(str(self.path), exc) from None
        for n in missing:
            data = got.get(f"{self.base}/{n}")
            if isinstance(data, bytes):
                self.fetched.append(n)
                self._store(n, data)

    # ---- fetching ------------------------------------------------------------------------------

    def _fs(self) -> Any:
        if os.getpid() != self._pid:
            # A forked child: the parent's connections and event loop are not the child's.
            opts = {**(self.storage_options or {}), "skip_instance_cache": True}
            self.fs = filesystem(self.url, opts)[0]
            self._pid = os.getpid()
        return self.fs

    def _fetch(self, name: str) -> bytes:
        try:
            data = self._fs().cat_file(f"{self.base}/{name}", **self._get)
        except FileNotFoundError:
            what = self.replaced()
            if what is not None:
                raise self._replaced(what) from None
            raise
        except Exception as exc:  # network failures come as the backend's own types
            raise fetch_error(str(self.path / name), exc) from None
        self.fetched.append(name)
        return bytes(data)

    def _cache_dir(self) -> Path | None:
        if self.version is None and self.digest is None:
            return None
        if self._cache is None:
            from mixindex.sources.cache import default_cache_dir

            self._cache = default_cache_dir() / "index" / version_name(str(self.digest))
        return self._cache

    def _local(self, name: str) -> Path:
        """The object ``name`` as a file in the cache, fetched if it is not there yet."""
        cache = self._cache_dir()
        if cache is None:
            raise RuntimeError("no cache before the digest is known")
        path = cache / name
        try:
            os.utime(path)  # its last use, for the eviction order
            return path
        except FileNotFoundError:
            pass
        companions = [n for n in self._companions(name) if not (cache / n).exists()]
        if companions:
            self._fetch_together(name, companions)
        if not path.exists():
            self._store(name, self._fetch(name))
        return path

    def _companions(self, name: str) -> list[str]:
        """What a read of the ``source`` chunk ``name`` needs next: the same chunk of ``row``
        and the chunk of digests that checks both. Fetched together, a resume costs one round
        trip, not three."""
        head, _, rest = name.partition("/c/")
        if head != "source" or not rest.isdigit():
            return []
        i = int(rest)
        table = self._digest_table()
        return [f"row/c/{i}", f"{CHUNK_DIGESTS}/{table.chunk_key(i // table.chunks[0])}"]

    def _fetch_together(self, name: str, companions: list[str]) -> None:
        """``name`` and ``companions`` fetched concurrently into the cache; whatever fails is
        left out, to be fetched (and its error reported) on its own when it is read."""
        names = [name, *companions]
        try:
            got = self._fs().cat([f"{self.base}/{n}" for n in names], on_error="omit", **self._get)
        except Exception:
            return
        for n in names:
            data = got.get(f"{self.base}/{n}")
            if isinstance(data, bytes):
                self.fetched.append(n)
                self._store(n, data)

    def _store(self, name: str, data: bytes) -> None:
        cache = self._cache_dir()
        if cache is None:
            return
        path = cache / name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError as exc:
            raise IndexFormatError(
                f"the index cache folder {str(cache)!r} cannot be written ({one_line(exc)}); set "
                "MIXINDEX_CACHE_DIR to a writable folder"
            ) from None
        _evict(cache.parent, _cache_limit(), keep=path)

    # ---- what ChunkedArray and StoredIndex read ------------------------------------------------

    def read_json(self, name: str) -> dict[str, Any]:
        try:
            raw = self._fetch(name) if self.version is None else self._local(name).read_bytes()
            data = json.loads(raw)
        except FileNotFoundError:
            raise not_an_index(self.url, f"no {name}") from None
        except ValueError as exc:
            raise IndexFormatError(
                f"{str(self.path / name)!r} cannot be read: {one_line(exc)}"
            ) from None
        if not isinstance(data, dict):
            raise IndexFormatError(f"{str(self.path / name)!r} is not zarr metadata")
        if name == "zarr.json":
            self._check_group(data)
        return data

    def _check_group(self, group: dict[str, Any]) -> None:
        from mixindex.store.meta import recorded_digest

        found = recorded_digest(group)
        if self.version is None:
            self.digest = found
        elif found != self.digest:
            raise IndexFormatError(
                f"{str(self.path)!r} is damaged: its zarr.json records digest {found} but "
                f"{str(IndexUrl(self.url) / 'mixindex.json')!r} names {self.digest}; rebuild it"
            )

    def read_bytes(self, name: str) -> bytes:
        if self._cache_dir() is None:
            return self._fetch(name)
        return self._local(name).read_bytes()

    def map(self, name: str, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        need = int(np.prod(shape)) * dtype.itemsize
        if self._cache_dir() is None:
            data: Any = self._fetch(name)
        else:
            with open(self._local(name), "rb") as f:
                size = os.fstat(f.fileno()).st_size
                data = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ) if size else b""
        if len(data) != need:
            raise IndexFormatError(
                f"{str(self.path / name)!r} is damaged: {len(data)} bytes, expected {need}; "
                "check the index with 'mixindex verify' and rebuild it"
            )
        return np.frombuffer(data, dtype=dtype).reshape(shape)

    def size(self, name: str) -> int:
        try:
            info = self._fs().info(f"{self.base}/{name}")
        except FileNotFoundError:
            what = self.replaced()
            if what is not None:
                raise self._replaced(what) from None
            raise
        except Exception as exc:
            raise fetch_error(str(self.path / name), exc) from None
        return int(info["size"])

    def _digest_table(self) -> ChunkedArray:
        if self._digests is None:
            from mixindex.store.chunks import ChunkedArray

            self._digests = ChunkedArray(self, CHUNK_DIGESTS)
        return self._digests

    def check_chunk(self, name: str, i: int, data: np.ndarray) -> None:
        """Chunk ``i`` of array ``name`` (as decoded, clipped) matches its recorded sha256."""
        if name not in ARRAYS:
            return  # the digest table itself: its size was checked
        table = self._digest_table()
        if i >= len(table):
            raise IndexFormatError(
                f"{str(table.path)!r} has {len(table)} rows, too few for chunk {i} of {name!r}; "
                "rebuild the index"
            )
        rows = table.chunks[0]
        want = table.chunk(i // rows)[i % rows, ARRAYS.index(name)].tobytes()
        raw = np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("<")).data
        if hashlib.sha256(raw).digest() != want:
            key = f"{name}/c/{i}" + "/0" * (data.ndim - 1)
            cache = self._cache_dir()
            if cache is not None:
                (cache / key).unlink(missing_ok=True)
            raise IndexFormatError(
                f"{str(self.path / key)!r} does not match its recorded digest (chunk {i} of "
                f"{name!r}): the object was replaced or damaged; check the index with "
                "'mixindex verify' and rebuild it"
            )

    # ---- the version opened --------------------------------------------------------------------

    def replaced(self) -> str | None:
        """None while the pointer still names the version opened, else what it names now."""
        if self.version is None:
            return None
        try:
            pointer = read_pointer(self._fs(), self.root, self.url)
        except IndexFormatError:
            return "an unreadable pointer"
        if pointer is None:
            return "nothing is there now"
        return None if pointer["version"] == self.version else f"it now holds {pointer['digest']}"

    def _replaced(self, what: str) -> IndexReplacedError:
        return IndexReplacedError(
            f"the index at {self.url!r} was replaced or removed while it was open (this reader "
            f"opened digest {self.digest}, whose objects are gone; {what}); open it again"
        )

    def clone(self) -> RemoteFolder:
        """Another handle on the same version (a shard's); it counts its own fetches."""
        other = object.__new__(RemoteFolder)  # not copy.copy: __getstate__ refuses copies
        other.__dict__.update(self.__dict__)
        other.fetched = []
        other._digests = None
        return other

    def __getstate__(self) -> None:
        raise TypeError("an open index folder cannot be copied or pickled; open the index again")

    def close(self) -> None:
        self._digests = None


def _evict(root: Path, limit: int, *, keep: Path) -> None:
    """Remove the least recently used cached files until the cache holds at most ``limit``."""
    files: list[tuple[float, int, str]] = []
    total = 0
    for folder, _, names in os.walk(root):
        for n in names:
            p = os.path.join(folder, n)
            try:
                st = os.stat(p)
            except OSError:
                continue
            total += st.st_size
            files.append((st.st_mtime, st.st_size, p))
    if total <= limit:
        return
    files.sort()
    for _, size, p in files:
        if total <= limit:
            break
        if p == str(keep):
            continue
        try:
            os.unlink(p)  # a reader that mapped it keeps its pages
        except OSError:
            continue
        total -= size
