"""An index's arrays read back with zarr itself (not mixindex's memory-mapped reader), so that
the tests compare answers against an independent reading."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr


@dataclass
class Arrays:
    """An index as zarr reads it."""

    source: np.ndarray
    row: np.ndarray
    epoch: np.ndarray
    counts: np.ndarray
    names: list[str]
    num_rows: list[int]
    block_size: int

    @property
    def n(self) -> int:
        return len(self.source)


def read_arrays(path: Path) -> Arrays:
    group = zarr.open_group(str(path), mode="r")
    meta = dict(group.attrs)["mixindex"]
    return Arrays(
        source=np.asarray(group["source"][:]).astype(np.int64),
        row=np.asarray(group["row"][:]).astype(np.int64),
        epoch=np.asarray(group["epoch"][:]).astype(np.int64),
        counts=np.asarray(group["counts"][:]).astype(np.int64),
        names=[s["name"] for s in meta["sources"]],
        num_rows=[s["num_rows"] for s in meta["sources"]],
        block_size=int(meta["block_size"]),
    )
