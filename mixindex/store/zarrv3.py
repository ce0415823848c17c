"""The zarr v3 pieces an index is made of, written without zarr: each array's ``zarr.json``,
the group's, and chunk files (raw little-endian bytes, or zstd frames).

Importing zarr costs about 0.4 s, more than the whole build of a small mix, and its write path
runs every chunk through one event-loop thread; an index needs only regular 1-D (or row-chunked)
arrays of unsigned integers, so the builder writes them itself. The arrays' documents and
chunks are byte for byte what zarr-python 3.1 writes (tests/test_zarrv3.py compares them, and the
golden index pins them), and zarr opens the result.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ArrayLayout", "group_doc", "write_doc", "write_rows"]

# zarr-python's JSON layout.
_INDENT = 2
ZSTD_LEVEL = 3


class ArrayLayout:
    """How one array is stored: dtype, rows per chunk, the shape of a row, compression.

    Plain data (picklable): a worker in another process or on a cluster encodes chunks by it.
    """

    def __init__(self, dtype: Any, chunk_rows: int, row_shape: tuple[int, ...], compress: bool):
        self.dtype = np.dtype(dtype)
        if self.dtype.kind not in "ui":
            raise ValueError(f"an index array holds integers, not {self.dtype}")
        self.chunk_rows = int(chunk_rows)
        self.row_shape = tuple(int(n) for n in row_shape)
        self.compress = compress

    def chunk_key(self, i: int) -> str:
        """Chunk ``i``'s file inside the array folder (zarr's default keys): ``c/3``, ``c/3/0``."""
        return "/".join(["c", str(i)] + ["0"] * len(self.row_shape))

    def encode(self, piece: np.ndarray) -> memoryview | bytes:
        """One chunk's file: ``piece`` (at most a chunk of rows) in little-endian bytes, a short
        last chunk padded with the fill value 0 (zarr stores it whole too); zstd if compressed."""
        le = self.dtype.newbyteorder("<")
        if len(piece) == self.chunk_rows:
            raw = np.ascontiguousarray(piece, dtype=le).data
        else:
            whole = np.zeros((self.chunk_rows, *self.row_shape), dtype=le)
            whole[: len(piece)] = piece
            raw = whole.data
        if not self.compress:
            return raw
        from numcodecs import Zstd

        return bytes(Zstd(level=ZSTD_LEVEL).encode(raw))

    def doc(self, rows: int) -> dict[str, Any]:
        """The array's ``zarr.json`` for a length of ``rows``, key for key as zarr-python
        writes it."""
        codec: dict[str, Any] = {"name": "bytes"}
        if self.dtype.itemsize > 1:
            codec["configuration"] = {"endian": "little"}
        codecs = [codec]
        if self.compress:
            zstd = {"level": ZSTD_LEVEL, "checksum": False}
            codecs.append({"name": "zstd", "configuration": zstd})
        return {
            "shape": [rows, *self.row_shape],
            "data_type": self.dtype.name,
            "chunk_grid": {
                "name": "regular",
                "configuration": {"chunk_shape": [self.chunk_rows, *self.row_shape]},
            },
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "fill_value": 0,
            "codecs": codecs,
            "attributes": {},
            "zarr_format": 3,
            "node_type": "array",
            "storage_transformers": [],
        }


def write_rows(folder: Path, layout: ArrayLayout, lo: int, data: np.ndarray) -> None:
    """Write ``data`` as the rows from ``lo`` (a chunk boundary) of the array in ``folder``:
    whole chunks, or a last one cut short by the end of the data (padded, as zarr pads it)."""
    rows = layout.chunk_rows
    if lo % rows or data.shape[1:] != layout.row_shape:
        raise ValueError(
            f"rows {lo}.. of shape {data.shape[1:]} are off {folder.name}'s chunks of {rows}"
        )
    for at in range(0, len(data), rows):
        path = folder / layout.chunk_key((lo + at) // rows)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            f.write(layout.encode(data[at : at + rows]))


def group_doc(attributes: dict[str, Any]) -> dict[str, Any]:
    """A group's ``zarr.json``."""
    return {"attributes": attributes, "zarr_format": 3, "node_type": "group"}


def write_doc(path: Path, doc: dict[str, Any], *, new: bool = False) -> None:
    """Write ``doc`` to ``path`` as zarr does; ``new``: fail if the file is there already."""
    text = json.dumps(doc, indent=_INDENT, allow_nan=True)
    with open(path, "x" if new else "w", encoding="utf-8") as f:
        f.write(text)
