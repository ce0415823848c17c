"""The on-disk index (DESIGN.md, "Index layout"): a real zarr v3 group, written atomically."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from conftest import (
    CODE_SIZES,
    DEFAULT_MIX,
    DOCS_ROWS,
    NOTES_ROWS,
    Data,
    Shared,
    SpecWriter,
    not_an_index,
    spec_dict,
)

import mixindex
from mixindex.builder import build
from mixindex.errors import IndexExistsError, IndexFormatError
from mixindex.store.layout import FORMAT_VERSION
from mixindex.store.writer import RegionWriter

N = DEFAULT_MIX["num_examples"]
B = DEFAULT_MIX["block_size"]
NAMES = ["code", "notes", "docs"]


def lookup_all(path: Path) -> tuple[np.ndarray, ...]:
    ds = mixindex.open(path)
    try:
        return ds.lookup(np.arange(len(ds)))
    finally:
        ds.close()


def siblings(out: Path) -> list[str]:
    """Anything beside ``out`` that a build may have left: temporary or trash folders."""
    return sorted(p.name for p in out.parent.glob(f".{out.name}*"))


# ---- layout ----------------------------------------------------------------------------------


def test_group_attributes(shared: Shared) -> None:
    meta_doc = json.loads((shared.index / "zarr.json").read_text())
    assert meta_doc["zarr_format"] == 3
    assert meta_doc["node_type"] == "group"
    meta = meta_doc["attributes"]["mixindex"]
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["num_examples"] == N
    assert meta["digest"].startswith("sha256:") and len(meta["digest"]) == 7 + 64
    assert set(meta["build"]) >= {"mixindex_version", "created"}
    # The normalised spec: defaults spelled out, weights normalised into a schedule.
    mix = meta["spec"]["mix"]
    assert mix["seed"] == DEFAULT_MIX["seed"]
    assert mix["block_size"] == B
    assert mix["stop_strategy"] == "restart"
    assert mix["weight_schedule"] == [
        {"step": 0, "weights": {"code": 3 / 6, "notes": 2 / 6, "docs": 1 / 6}}
    ]
    assert [d["name"] for d in meta["spec"]["datasets"]] == NAMES
    # The sources in id order, with the files they were resolved to.
    data = shared.data
    sources = meta["sources"]
    assert [s["name"] for s in sources] == NAMES
    assert [s["type"] for s in sources] == ["parquet", "arrow", "arrow"]
    assert [s["num_rows"] for s in sources] == [sum(CODE_SIZES), NOTES_ROWS, DOCS_ROWS]
    assert sources[0]["data_files"] == [str(f) for f in data.code_files]
    assert sources[1]["data_files"] == [str(data.notes_file)]
    state = json.loads((data.docs_dir / "state.json").read_text())
    assert sources[2]["data_files"] == [
        str(data.docs_dir / f["filename"]) for f in state["_data_files"]
    ]
    for s in sources:
        assert set(s) >= {"name", "type", "data_files", "num_rows", "fingerprint"}
        assert s["fingerprint"].startswith("sha256:")
    assert len({s["fingerprint"] for s in sources}) == 3


def test_position_arrays_are_uncompressed_whole_block_chunks(shared: Shared) -> None:
    for name in ("source", "row", "epoch"):
        doc = json.loads((shared.index / name / "zarr.json").read_text())
        assert doc["zarr_format"] == 3 and doc["node_type"] == "array"
        assert doc["shape"] == [N]
        (chunk,) = doc["chunk_grid"]["configuration"]["chunk_shape"]
        assert chunk % B == 0
        # Uncompressed and little-endian, so that the reader can memory-map the chunk files.
        assert [c["name"] for c in doc["codecs"]] == ["bytes"]
        assert doc["codecs"][0].get("configuration", {}).get("endian", "little") == "little"
        assert (shared.index / name / "c" / "0").is_file()
    dtypes = {
        name: json.loads((shared.index / name / "zarr.json").read_text())["data_type"]
        for name in ("source", "row")
    }
    assert dtypes == {"source": "uint8", "row": "uint32"}


def test_zarr_reads_the_same_arrays(shared: Shared) -> None:
    group = zarr.open_group(str(shared.index), mode="r", zarr_format=3)
    source, row, epoch = lookup_all(shared.index)
    for name, mine in (("source", source), ("row", row), ("epoch", epoch)):
        arr = group[name]
        assert isinstance(arr, zarr.Array)
        theirs = arr[:]
        assert theirs.shape == (N,)
        np.testing.assert_array_equal(theirs, mine)
    assert dict(group.attrs)["mixindex"] == mixindex.open(shared.index).index.meta.to_dict()
    lengths = np.array([sum(CODE_SIZES), NOTES_ROWS, DOCS_ROWS])
    assert (row < lengths[source]).all()


def test_counts_and_cursors_match_the_positions(shared: Shared) -> None:
    group = zarr.open_group(str(shared.index), mode="r", zarr_format=3)
    counts = group["counts"][:]
    cursors = group["cursors"][:]
    blocks = -(-N // B)
    assert counts.shape == cursors.shape == (blocks, len(NAMES))
    source, _, _ = lookup_all(shared.index)
    block_len = [min(B, N - b * B) for b in range(blocks)]
    assert block_len[-1] < B, "the default mix ends in a partial block"
    np.testing.assert_array_equal(counts.sum(axis=1), block_len)
    # Counted independently from the position array.
    for b in range(blocks):
        np.testing.assert_array_equal(
            counts[b], np.bincount(source[b * B : (b + 1) * B], minlength=len(NAMES))
        )
    # A source's cursor at a block's start is how many slots it had before the block.
    np.testing.assert_array_equal(cursors[0], 0)
    np.testing.assert_array_equal(cursors[1:], np.cumsum(counts, axis=0)[:-1])


def test_streams_run_in_order(shared: Shared) -> None:
    # The k-th slot of a source, in position order, takes element k of its stream (S4): with
    # shuffled rows, each epoch is a permutation of the source's rows.
    source, row, epoch = lookup_all(shared.index)
    lengths = [sum(CODE_SIZES), NOTES_ROWS, DOCS_ROWS]
    for s, n in enumerate(lengths):
        mine_rows, mine_epochs = row[source == s], epoch[source == s]
        k = np.arange(len(mine_rows))
        np.testing.assert_array_equal(mine_epochs, k // n)
        for e in range(int(mine_epochs.max())):  # full epochs only
            assert sorted(mine_rows[mine_epochs == e].tolist()) == list(range(n))


# ---- the same index whatever the chunking ----------------------------------------------------


def build_both(write_spec: SpecWriter, tmp_path: Path, spec: dict[str, Any]) -> list[Path]:
    path = write_spec(spec)
    return [
        build(path, tmp_path / "default.mixindex"),
        build(path, tmp_path / "one.mixindex", chunk_blocks=1),
    ]


# A schedule that once planned a different mix with chunk_blocks=1 (S6): the apportioner looked
# ahead for deadlines only as far as the end of the current chunk.
CHUNK_DEPENDENT = {
    "weights": None,
    "weight_schedule": [
        {"step": 0, "weights": {"code": 0.269, "notes": 0.548, "docs": 0.345}},
        {"step": 40, "weights": {"code": 0.059, "notes": 0.221, "docs": 0.874}},
        {"step": 120, "weights": {"code": 0.934, "notes": 0.006, "docs": 0.014}},
    ],
    "weight_schedule_type": "linear",
    "block_size": 20,
}


@pytest.mark.parametrize(
    "mix",
    [
        pytest.param({}, id="default"),
        pytest.param(
            {"stop_strategy": "all_exhausted", "num_examples": None, "row_order": "sequential"},
            id="all_exhausted",
        ),
        pytest.param(CHUNK_DEPENDENT, id="schedule"),
    ],
)
def test_chunking_changes_nothing(
    data: Data,
    write_spec: SpecWriter,
    spec: Callable[..., dict[str, Any]],
    tmp_path: Path,
    mix: dict[str, Any],
) -> None:
    default, one = build_both(write_spec, tmp_path, spec(**mix))
    chunk = json.loads((one / "source" / "zarr.json").read_text())["chunk_grid"]
    block_size = json.loads((one / "zarr.json").read_text())["attributes"]["mixindex"]["block_size"]
    assert chunk["configuration"]["chunk_shape"] == [block_size]
    a, b = mixindex.open(default), mixindex.open(one)
    assert len(a) == len(b)
    assert len(list((one / "source" / "c").iterdir())) == -(-len(b) // block_size) > 1
    for x, y in zip(lookup_all(default), lookup_all(one), strict=True):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)
    ga = zarr.open_group(str(default), mode="r")
    gb = zarr.open_group(str(one), mode="r")
    for name in ("counts", "cursors"):
        np.testing.assert_array_equal(ga[name][:], gb[name][:])
    assert a.digest == b.digest


def test_compressed_index_reads_the_same(
    data: Data, write_spec: SpecWriter, tmp_path: Path
) -> None:
    path = write_spec()
    plain = build(path, tmp_path / "plain.mixindex")
    packed = build(path, tmp_path / "packed.mixindex", compress=True)
    doc = json.loads((packed / "row" / "zarr.json").read_text())
    assert "zstd" in [c["name"] for c in doc["codecs"]]
    for x, y in zip(lookup_all(plain), lookup_all(packed), strict=True):
        np.testing.assert_array_equal(x, y)
    assert mixindex.open(plain)[: N // 2] == mixindex.open(packed)[: N // 2]


# ---- atomic writes ---------------------------------------------------------------------------


def fail_after_first_chunk(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = RegionWriter.write

    def write(self: RegionWriter, start: int, first_block: int, arrays: Any) -> Any:
        calls.append(start)
        if start != 0:
            raise RuntimeError("disk on fire")
        return real(self, start, first_block, arrays)

    monkeypatch.setattr(RegionWriter, "write", write)
    return calls


def test_failed_build_leaves_nothing(
    data: Data, write_spec: SpecWriter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "mix.mixindex"
    calls = fail_after_first_chunk(monkeypatch)
    with pytest.raises(RuntimeError, match="disk on fire"):
        build(write_spec(), out, chunk_blocks=1)
    # Chunks are written on several threads, so chunks queued before the failure surfaced may
    # also have been written to the temporary folder, in any order.
    assert sorted(calls)[:2] == [0, B], "the first chunk was written before the failure"
    assert not out.exists()
    assert siblings(out) == []


def test_failed_forced_build_keeps_the_old_index(
    data: Data, write_spec: SpecWriter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = build(write_spec(), tmp_path / "mix.mixindex")
    before = (out / "zarr.json").read_bytes()
    old = lookup_all(out)
    fail_after_first_chunk(monkeypatch)
    with pytest.raises(RuntimeError):
        build(write_spec(spec_dict(seed=99)), out, chunk_blocks=1, force=True)
    assert (out / "zarr.json").read_bytes() == before
    for x, y in zip(old, lookup_all(out), strict=True):
        np.testing.assert_array_equal(x, y)
    assert siblings(out) == []


def test_existing_output_needs_force(data: Data, write_spec: SpecWriter, tmp_path: Path) -> None:
    out = build(write_spec(), tmp_path / "mix.mixindex")
    digest = mixindex.open(out).digest
    other = write_spec(spec_dict(seed=99), "other.toml")
    with pytest.raises(IndexExistsError, match="already exists"):
        build(other, out)
    assert mixindex.open(out).digest == digest
    build(other, out, force=True)
    assert mixindex.open(out).digest != digest
    assert mixindex.open(out).index.meta.mix.seed == 99
    assert siblings(out) == []


def test_force_leaves_a_regular_file_alone(
    data: Data, write_spec: SpecWriter, tmp_path: Path
) -> None:
    out = tmp_path / "mix.mixindex"
    out.write_text("not an index")
    with pytest.raises(IndexExistsError, match="is a file, not a mixindex index"):
        build(write_spec(), out, force=True)
    assert out.read_text() == "not an index"
    assert siblings(out) == []


# ---- what is not an index --------------------------------------------------------------------


def test_other_format_version_is_refused(shared: Shared, tmp_path: Path) -> None:
    copy = tmp_path / "copy.mixindex"
    shutil.copytree(shared.index, copy)
    doc = json.loads((copy / "zarr.json").read_text())
    doc["attributes"]["mixindex"]["format_version"] = 99
    (copy / "zarr.json").write_text(json.dumps(doc))
    with pytest.raises(IndexFormatError, match="format version 99"):
        mixindex.open(copy)


def test_damaged_index_is_refused(shared: Shared, tmp_path: Path) -> None:
    copy = tmp_path / "copy.mixindex"
    shutil.copytree(shared.index, copy)
    doc = json.loads((copy / "row" / "zarr.json").read_text())
    doc["shape"] = [N - 1]
    (copy / "row" / "zarr.json").write_text(json.dumps(doc))
    with pytest.raises(IndexFormatError, match="'row'"):
        mixindex.open(copy)


@pytest.mark.parametrize("kind", ["missing", "empty_dir", "file", "plain_zarr"])
def test_not_an_index(tmp_path: Path, kind: str) -> None:
    path = not_an_index(tmp_path, kind)
    with pytest.raises(IndexFormatError, match="not a mixindex index"):
        mixindex.open(path)
