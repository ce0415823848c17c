"""The builder writes zarr v3 without zarr (mixindex.store.zarrv3): documents and chunk files
byte for byte what zarr-python writes for the same array, and zarr reads them back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st

from mixindex.store.zarrv3 import ArrayLayout, group_doc, write_doc, write_rows

DTYPES = [np.uint8, np.uint16, np.uint32, np.uint64, np.int64]


def zarr_array(folder: Path, data: np.ndarray, chunk_rows: int, compress: bool) -> Path:
    """``data`` written by zarr itself, as the builder used to write it."""
    from zarr.codecs import ZstdCodec

    group = zarr.open_group(str(folder), mode="w-", zarr_format=3)
    arr = group.create_array(
        "x",
        shape=data.shape,
        chunks=(chunk_rows, *data.shape[1:]),
        dtype=data.dtype,
        fill_value=0,
        compressors=ZstdCodec(level=3) if compress else None,
        config={"write_empty_chunks": True},
    )
    arr[...] = data
    return folder / "x"


def ours(folder: Path, data: np.ndarray, chunk_rows: int, compress: bool) -> Path:
    layout = ArrayLayout(data.dtype, chunk_rows, data.shape[1:], compress)
    where = folder / "x"
    where.mkdir(parents=True)
    write_doc(folder / "zarr.json", group_doc({}), new=True)
    write_doc(where / "zarr.json", layout.doc(len(data)))
    write_rows(where, layout, 0, data)
    return where


def files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@settings(max_examples=40, deadline=None)
@given(
    dtype=st.sampled_from(DTYPES),
    rows=st.integers(1, 60),
    chunk_rows=st.integers(1, 25),
    width=st.sampled_from([None, 1, 3]),
    compress=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_the_files_are_zarrs_own(
    tmp_path_factory: pytest.TempPathFactory,
    dtype: type,
    rows: int,
    chunk_rows: int,
    width: int | None,
    compress: bool,
    seed: int,
) -> None:
    """Every chunk (a short last one padded, zeros too) and the array's zarr.json, byte for
    byte; zarr reads the array back."""
    shape = (rows,) if width is None else (rows, width)
    info = np.iinfo(dtype)
    data = np.random.default_rng(seed).integers(0, info.max, size=shape, dtype=dtype)
    data[: rows // 2] = 0  # whole chunks of zeros are written too
    base = tmp_path_factory.mktemp("z")
    theirs = zarr_array(base / "zarr", data, chunk_rows, compress)
    mine = ours(base / "ours", data, chunk_rows, compress)
    assert files(mine) == files(theirs)
    # (The group's zarr.json differs between zarr versions: 3.1.0 adds consolidated_metadata.)
    back = zarr.open_array(str(mine), mode="r")
    np.testing.assert_array_equal(back[...], data)


def test_group_attributes_read_back_through_zarr(tmp_path: Path) -> None:
    attrs = {"mixindex": {"name": "café", "weights": [0.7, 0.3], "n": 2**40}}
    write_doc(tmp_path / "zarr.json", group_doc(attrs), new=True)
    assert zarr.open_group(str(tmp_path), mode="r").attrs.asdict() == attrs
    assert json.loads((tmp_path / "zarr.json").read_text())["node_type"] == "group"


def test_a_new_group_never_writes_over_one(tmp_path: Path) -> None:
    write_doc(tmp_path / "zarr.json", group_doc({"a": 1}), new=True)
    with pytest.raises(FileExistsError):
        write_doc(tmp_path / "zarr.json", group_doc({}), new=True)
    assert json.loads((tmp_path / "zarr.json").read_text())["attributes"] == {"a": 1}


@pytest.mark.parametrize(
    ("lo", "shape"), [(3, (4,)), (0, (4, 2))], ids=["off-a-chunk", "wrong-row-shape"]
)
def test_rows_off_the_chunking_are_refused(tmp_path: Path, lo: int, shape: tuple[int, ...]) -> None:
    layout = ArrayLayout(np.uint16, 4, (), False)
    with pytest.raises(ValueError, match="off x's chunks of 4"):
        write_rows(tmp_path / "x", layout, lo, np.zeros(shape, dtype=np.uint16))
    assert not (tmp_path / "x").exists()


def test_only_integers_are_laid_out() -> None:
    with pytest.raises(ValueError, match="integers, not float32"):
        ArrayLayout(np.float32, 4, (), False)
