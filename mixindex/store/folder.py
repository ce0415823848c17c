"""An index folder opened once, so that a reader keeps reading the index it opened.

``build --force`` publishes a new index by renaming folders over the old path. A reader that
opened its files by path would, after such a swap, map the new index's chunks beside the old
one's already-mapped chunks and serve positions from two mixes. So the folder is opened once and
every file is opened relative to that descriptor (``openat``): whatever is renamed over the path,
the reader stays on the folder it opened. When that folder has been deleted, a file not opened
yet is gone, and the reader raises :class:`~mixindex.errors.IndexReplacedError` naming the digest
it opened and what the path holds now. Where ``dir_fd`` is not supported, every file open
compares the path's (device, inode) with the folder's at open instead.

>>> folder = IndexFolder(Path("mix.mixindex"))
>>> folder.read_json("zarr.json")["node_type"]
'group'
"""

from __future__ import annotations

import json
import mmap
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mixindex.errors import IndexFormatError, IndexReplacedError, one_line

__all__ = ["IndexFolder", "not_an_index"]

_DIR_FD = os.open in os.supports_dir_fd and hasattr(os, "O_DIRECTORY")


def not_an_index(path: Path | str, why: str) -> IndexFormatError:
    return IndexFormatError(
        f"{str(path)!r} is not a mixindex index ({why}); build one with "
        "'mixindex build SPEC -o OUT'"
    )


class IndexFolder:
    """One index folder, opened once; its files are read relative to it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.digest: str | None = None  # the opened index's digest, for messages
        self._fd: int | None = None
        try:
            st = self._open()
        except (FileNotFoundError, NotADirectoryError):
            raise not_an_index(path, "not a folder") from None
        except OSError as exc:
            raise IndexFormatError(f"{str(path)!r} cannot be opened: {one_line(exc)}") from None
        self._id = (st.st_dev, st.st_ino)

    def _open(self) -> os.stat_result:
        if not _DIR_FD:
            st = os.stat(self.path)
            if not stat.S_ISDIR(st.st_mode):
                raise NotADirectoryError(str(self.path))
            return st
        self._fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        return os.fstat(self._fd)

    def _dir_fd(self) -> int | None:
        """The folder's descriptor; after :meth:`close`, the path opened again, which must
        still be the same folder holding the same index."""
        if self._fd is not None or not _DIR_FD:
            if not _DIR_FD:
                self._check_same()
            return self._fd
        try:
            st = self._open()
        except OSError:
            raise self._replaced("nothing is there now") from None
        if (st.st_dev, st.st_ino) != self._id or self._digest_here() != self.digest:
            self.close()
            raise self._replaced(f"it now holds {self._digest_here()}")
        return self._fd

    def _check_same(self) -> None:
        what = self.replaced()
        if what is not None:
            raise self._replaced(what)

    def replaced(self) -> str | None:
        """None while the path still leads to the folder opened, else what it holds now."""
        try:
            st = os.stat(self.path)
        except OSError:
            return "nothing is there now"
        if (st.st_dev, st.st_ino) == self._id:
            return None
        return f"it now holds {self._digest_here()}"

    def _digest_here(self) -> str:
        from mixindex.store.meta import recorded_digest

        try:
            with open(self.path / "zarr.json", encoding="utf-8") as f:
                digest = recorded_digest(json.load(f))
        except (OSError, ValueError):
            digest = None
        return digest if digest is not None else "no readable index"

    def _replaced(self, what: str) -> IndexReplacedError:
        return IndexReplacedError(
            f"the index at {str(self.path)!r} was replaced or removed while it was open (this "
            f"reader opened digest {self.digest}; {what}); open it again"
        )

    def open_fd(self, name: str) -> int:
        """A descriptor of the file ``name`` (``row/c/3``) of the folder opened.

        FileNotFoundError if it is missing from an index still at its path;
        IndexReplacedError if it is missing because the index was replaced or removed.
        """
        fd = self._dir_fd()
        try:
            if fd is None:
                return os.open(self.path / name, os.O_RDONLY)
            return os.open(name, os.O_RDONLY, dir_fd=fd)
        except (FileNotFoundError, NotADirectoryError):
            what = self.replaced()
            if what is not None:
                raise self._replaced(what) from None
            raise FileNotFoundError(name) from None

    def read_json(self, name: str) -> dict[str, Any]:
        """A JSON object file of the folder; IndexFormatError if missing or unreadable."""
        where = self.path / name
        try:
            with os.fdopen(self.open_fd(name), "rb") as f:
                data = json.loads(f.read())
        except FileNotFoundError:
            raise not_an_index(self.path, f"no {name}") from None
        except (OSError, ValueError) as exc:
            raise IndexFormatError(f"{str(where)!r} cannot be read: {one_line(exc)}") from None
        if not isinstance(data, dict):
            raise IndexFormatError(f"{str(where)!r} is not zarr metadata")
        return data

    def read_bytes(self, name: str) -> bytes:
        """A file's bytes; FileNotFoundError if it is missing (see :meth:`open_fd`)."""
        with os.fdopen(self.open_fd(name), "rb") as f:
            return f.read()

    def map(self, name: str, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        """The file ``name`` memory-mapped as an array of ``shape``; its size must be exact."""
        need = int(np.prod(shape)) * dtype.itemsize
        fd = self.open_fd(name)
        try:
            size = os.fstat(fd).st_size
            if size != need:
                raise IndexFormatError(
                    f"{str(self.path / name)!r} is damaged: {size} bytes, expected {need}; "
                    "check the index with 'mixindex verify' and rebuild it"
                )
            buf = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)
        return np.frombuffer(buf, dtype=dtype).reshape(shape)

    def check_chunk(self, name: str, i: int, data: np.ndarray) -> None:
        """Nothing: a local chunk is checked by its size when mapped (``mixindex verify``
        hashes it); a remote one against its digest (:mod:`mixindex.store.remotefolder`)."""

    def size(self, name: str) -> int:
        """A file's size in bytes; FileNotFoundError if it is missing (see :meth:`open_fd`)."""
        fd = self.open_fd(name)
        try:
            return os.fstat(fd).st_size
        finally:
            os.close(fd)

    def clone(self) -> IndexFolder:
        """Another handle on this same folder (not on whatever the path holds now), closed
        independently of this one."""
        other = object.__new__(IndexFolder)  # not copy.copy: __getstate__ refuses copies
        other.__dict__.update(self.__dict__)
        if self._fd is not None:
            other._fd = os.dup(self._fd)
        return other

    def __getstate__(self) -> None:
        # A copy would own the same descriptor and close it twice (perhaps someone else's by
        # then); MixedDataset pickles its index as a path and a digest instead.
        raise TypeError("an open index folder cannot be copied or pickled; open the index again")

    def close(self, _os_close: Callable[[int], None] = os.close) -> None:
        # os.close is bound at definition: at interpreter exit, __del__ may run after the module's
        # globals (os among them) were cleared.
        if self._fd is not None:
            fd, self._fd = self._fd, None
            _os_close(fd)

    def __del__(self) -> None:
        self.close()
