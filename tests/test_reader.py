"""mixindex.open: building from every spec format, reading by position, and fingerprints (S7)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import (
    CODE_SCHEMA,
    CODE_SIZES,
    DEFAULT_MIX,
    Data,
    Shared,
    SpecWriter,
    code_rows,
    write_parquet,
)

import mixindex
from mixindex.builder import build
from mixindex.errors import SourceChangedError
from mixindex.read.dataset import MixedDataset

N = DEFAULT_MIX["num_examples"]
NAMES = ["code", "notes", "docs"]
COLUMNS = {"code": ["text", "path"], "notes": ["topic", "text"], "docs": ["title", "text"]}


def expected_at(ds: MixedDataset, ref: dict[str, list[dict[str, Any]]], p: int) -> dict[str, Any]:
    """What ds[p] must be: the recorded (source, row) read from the reference, plus __source__."""
    source, row, _ = ds.lookup([p])
    name = NAMES[int(source[0])]
    return {**ref[name][int(row[0])], "__source__": name}


def arrays(path: Path) -> tuple[np.ndarray, ...]:
    ds = mixindex.open(path)
    try:
        return ds.lookup(np.arange(len(ds)))
    finally:
        ds.close()


# ---- spec formats and paths ------------------------------------------------------------------


def test_toml_yaml_json_give_the_same_index(
    data: Data,
    write_spec: SpecWriter,
    spec: Callable[..., dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Weights as a schedule, so that nested tables are parsed in each format too.
    s = spec(
        weights=None,
        weight_schedule=[
            {"step": 0, "weights": {"code": 3, "notes": 2, "docs": 1}},
            {"step": 400, "weights": {"code": 1, "notes": 1, "docs": 2}},
        ],
        weight_schedule_type="linear",
    )
    specs = [write_spec(s, name) for name in ("mix.toml", "mix.yaml", "mix.json")]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # Relative data_files are relative to the spec's folder, not to the current directory.
    monkeypatch.chdir(elsewhere)
    outs = [build(p, elsewhere / f"{p.suffix[1:]}.mixindex") for p in specs]
    assert all(o.is_dir() for o in outs)
    assert not (elsewhere / "data").exists()

    opened = [mixindex.open(o) for o in outs]
    digests = {ds.digest for ds in opened}
    assert len(digests) == 1
    metas = [ds.index.meta for ds in opened]
    assert metas[0].spec == metas[1].spec == metas[2].spec
    first = arrays(outs[0])
    for o in outs[1:]:
        for a, b in zip(first, arrays(o), strict=True):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
    # The recorded files are the absolute paths of the files beside the spec.
    code = metas[0].sources[0]
    assert list(code.data_files) == [str(f) for f in data.code_files]
    assert code.num_rows == sum(CODE_SIZES)
    # The schedule really changes the mix: both points were parsed.
    weights = [p.weights for p in metas[0].mix.weight_schedule]
    assert weights == [
        {"code": 0.5, "notes": 2 / 6, "docs": 1 / 6},
        {"code": 0.25, "notes": 0.25, "docs": 0.5},
    ]


# ---- reading ---------------------------------------------------------------------------------


def test_every_position_is_the_recorded_source_row(shared: Shared) -> None:
    ref = shared.reference
    ds = mixindex.open(shared.index)
    assert len(ds) == N
    source, _, epoch = ds.lookup(np.arange(N))
    # The mix is not degenerate: every source appears, and rows repeat across epochs.
    assert set(source.tolist()) == {0, 1, 2}
    assert epoch.max() >= 1
    for p in range(N):
        got = ds[p]
        assert got == expected_at(ds, ref, p)
        assert got["__source__"] == NAMES[int(source[p])]
        # Each source keeps its own columns, and only those.
        assert list(got) == [*COLUMNS[got["__source__"]], "__source__"]
    assert ds[-1] == ds[N - 1] == expected_at(ds, ref, N - 1)
    assert ds[-N] == ds[0]
    assert ds[np.int64(5)] == ds[5]


@pytest.mark.parametrize("bad", [N, N + 100, -N - 1])
def test_out_of_range_is_index_error(shared: Shared, bad: int) -> None:
    ds = mixindex.open(shared.index)
    with pytest.raises(IndexError, match=str(bad)):
        ds[bad]
    with pytest.raises(IndexError, match=str(bad)):
        ds.__getitems__([0, bad])


def test_slices(shared: Shared) -> None:
    ds = mixindex.open(shared.index)
    singles = [ds[i] for i in range(N)]
    assert ds[10:25] == singles[10:25]
    assert ds[::3] == singles[::3]
    assert len(ds[::3]) == -(-N // 3)
    assert ds[-5:] == singles[-5:]
    assert ds[::-7] == singles[::-7]
    assert ds[50:10] == []
    assert ds[:] == singles


def test_getitems_keeps_requested_order_and_duplicates(shared: Shared) -> None:
    ds = mixindex.open(shared.index)
    positions = [500, 3, 500, -1, 0, N - 1, 3, 170, 171]
    got = ds.__getitems__(positions)
    assert got == [ds[p] for p in positions]
    assert got[0] is not got[2]
    assert ds.__getitems__(np.array(positions)) == got
    assert ds.__getitems__([]) == []


def test_iteration_yields_every_example(shared: Shared) -> None:
    ds = mixindex.open(shared.index)
    everything = list(ds)
    assert len(everything) == len(ds)
    assert everything == [ds[i] for i in range(N)]
    # Batches that do not divide the length, starting in the middle.
    assert list(ds.iter(start=5, batch_size=7)) == everything[5:]


def test_each_example_is_a_new_dict(shared: Shared) -> None:
    ds = mixindex.open(shared.index)
    first = ds[0]
    kept = dict(first)
    first["text"] = "mutated"
    first["extra"] = 1
    del first["__source__"]
    assert ds[0] == kept
    assert ds[0] is not ds[0]
    a, b = ds.__getitems__([4, 4])
    a["text"] = "mutated"
    assert b == ds[4] != a


def test_column_projection(shared: Shared) -> None:
    ref = shared.reference
    ds = mixindex.open(shared.index, columns=["text"])
    for p in range(0, N, 4):
        full = {**expected_at(ds, ref, p)}
        assert ds[p] == {"text": full["text"], "__source__": full["__source__"]}


# ---- fingerprints (S7) -----------------------------------------------------------------------


def changed_message(excinfo: pytest.ExceptionInfo[SourceChangedError], name: str) -> str:
    msg = str(excinfo.value)
    assert isinstance(excinfo.value, ValueError)
    assert f"source {name!r}" in msg
    return msg


def test_appended_rows_are_detected(data: Data, built: Path) -> None:
    f = data.code_files[1]
    write_parquet(f, code_rows(CODE_SIZES[0], CODE_SIZES[1] + 3), CODE_SCHEMA)
    with pytest.raises(SourceChangedError) as excinfo:
        mixindex.open(built)
    msg = changed_message(excinfo, "code")
    assert "row count changed from 60 to 63" in msg
    # The caller may opt out; the recorded rows are still read from the (longer) files.
    ds = mixindex.open(built, verify=False)
    ref = data.reference()
    assert [ds[p] for p in range(N)] == [expected_at(ds, ref, p) for p in range(N)]


def test_rewritten_value_is_detected(data: Data, built: Path) -> None:
    # Same row count and row groups, one value changed.
    rows = code_rows(0, CODE_SIZES[0])
    rows[5] = {**rows[5], "text": rows[5]["text"] + " # edited"}
    write_parquet(data.code_files[0], rows, CODE_SCHEMA)
    assert pq.ParquetFile(data.code_files[0]).metadata.num_rows == CODE_SIZES[0]
    with pytest.raises(SourceChangedError) as excinfo:
        mixindex.open(built)
    msg = changed_message(excinfo, "code")
    assert "'notes'" not in msg and "'docs'" not in msg
    ds = mixindex.open(built, verify=False)
    source, row, _ = ds.lookup(np.arange(N))
    hits = np.flatnonzero((source == 0) & (row == 5))
    assert hits.size, "the default mix reads code row 5"
    assert ds[int(hits[0])]["text"].endswith(" # edited")


def test_rewritten_arrow_file_is_detected(data: Data, built: Path) -> None:
    with pa.memory_map(str(data.notes_file)) as mm:
        rows = pa.ipc.open_file(mm).read_all().to_pylist()
    # Longer by more than the 64-byte padding of IPC buffers: the shallow fingerprint sees sizes
    # (an edit that keeps every size is only seen by a deep fingerprint).
    rows[0]["text"] += " and more" * 10
    table = pa.Table.from_pylist(rows)
    with pa.OSFile(str(data.notes_file), "wb") as f, pa.ipc.new_file(f, table.schema) as w:
        w.write_table(table, max_chunksize=10)
    with pytest.raises(SourceChangedError) as excinfo:
        mixindex.open(built)
    changed_message(excinfo, "notes")


def test_deleted_file_of_a_multi_file_source_is_detected(data: Data, built: Path) -> None:
    data.code_files[1].unlink()
    with pytest.raises(SourceChangedError) as excinfo:
        mixindex.open(built)
    msg = changed_message(excinfo, "code")
    assert "part-1.parquet" in msg


def test_moved_files_open_with_data_files(data: Data, built: Path, tmp_path: Path) -> None:
    ref = data.reference()
    recorded = {s.name: s.fingerprint for s in mixindex.open(built).index.sources}
    moved = tmp_path / "moved"
    shutil.copytree(data.root, moved)
    shutil.rmtree(data.root)
    with pytest.raises(SourceChangedError, match="'code'"):
        mixindex.open(built)
    ds = mixindex.open(
        built,
        data_files={
            "code": [str(moved / "code" / f.name) for f in data.code_files],
            "notes": [str(moved / "notes.arrow")],
            "docs": [str(moved / "docs")],
        },
    )
    for src in ds.sources:
        assert src.data_files[0].startswith(str(moved))
        assert src.describe()["fingerprint"] == recorded[src.name]
    assert [ds[p] for p in range(N)] == [expected_at(ds, ref, p) for p in range(N)]


def test_data_files_for_an_unknown_source(shared: Shared) -> None:
    with pytest.raises(SourceChangedError, match="'nope'"):
        mixindex.open(shared.index, data_files={"nope": ["x.parquet"]})
