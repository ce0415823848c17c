"""Batched reads: one grouped take per source, the Arrow output form, and column projection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from conftest import DEFAULT_MIX, Shared

import mixindex
from mixindex import DatasetConfig, MixStageConfig, PipelineConfig
from mixindex.builder import build
from mixindex.errors import SourceError
from mixindex.read.dataset import MixedDataset

N = DEFAULT_MIX["num_examples"]
NAMES = ["code", "notes", "docs"]


def test_one_take_per_source(shared: Shared, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = mixindex.open(shared.index)
    rng = np.random.default_rng(0)
    positions = rng.integers(0, N, 300)
    want = [ds[int(p)] for p in positions]
    calls: list[tuple[str, int]] = []
    for src in ds.sources:
        real = src.take_parts

        def spy(rows: Any, columns: Any = None, _real: Any = real, _name: str = src.name) -> Any:
            calls.append((_name, len(rows)))
            return _real(rows, columns)

        monkeypatch.setattr(src, "take_parts", spy)
    assert ds.__getitems__(positions) == want
    source, _, _ = ds.lookup(positions)
    counts = np.bincount(source, minlength=3)
    assert sorted(calls) == sorted((NAMES[s], int(counts[s])) for s in range(3) if counts[s])


def reference_table(ds: MixedDataset, positions: np.ndarray) -> list[dict[str, Any]]:
    columns = ["text", "path", "topic", "title"]
    rows = []
    for ex in (ds[int(p)] for p in positions):
        rows.append({c: ex.get(c) for c in columns} | {"__source__": ex["__source__"]})
    return rows


def test_read_batch_is_one_table_in_order(shared: Shared) -> None:
    ds = mixindex.open(shared.index)
    positions = np.array([5, 900, 3, 3, -1, 0, 471, 12])
    table = ds.read_batch(positions)
    assert isinstance(table, pa.Table)
    assert table.schema == ds.arrow_schema()
    # Columns in source order (code: text, path; notes: topic; docs: title), then __source__.
    assert table.column_names == ["text", "path", "topic", "title", "__source__"]
    assert table.schema.field("__source__").type == pa.dictionary(pa.int32(), pa.string())
    assert table.column("text").num_chunks == 1
    assert table.to_pylist() == reference_table(ds, positions)
    # Every batch has the same schema, even one that touches a single source.
    source, _, _ = ds.lookup(np.arange(N))
    only_notes = np.flatnonzero(source == 1)[:5]
    one = ds.read_batch(only_notes)
    assert one.schema == table.schema
    assert one.column("path").null_count == 5
    assert one.to_pylist() == reference_table(ds, only_notes)
    empty = ds.read_batch([])
    assert empty.num_rows == 0 and empty.schema == table.schema


def test_read_batch_of_a_shard_and_projection(shared: Shared) -> None:
    ds = mixindex.open(shared.index, columns=["text"])
    mine = ds.shard(1, 2, global_batch_size=8)
    table = mine.read_batch(np.arange(20))
    assert table.column_names == ["text", "__source__"]
    want = [ds[int(p)] for p in mine.to_global(np.arange(20))]
    assert table.to_pylist() == want


def test_projection_a_source_cannot_satisfy_fails_at_open(shared: Shared) -> None:
    with pytest.raises(SourceError, match="'code' has no column 'topic'"):
        mixindex.open(shared.index, columns=["topic"])
    ds = mixindex.open(shared.index, columns="text")
    assert list(ds[0]) == ["text", "__source__"]


def test_slices_do_not_materialise_every_position(shared: Shared) -> None:
    ds = mixindex.open(shared.index)
    assert ds[N - 3 :] == [ds[N - 3], ds[N - 2], ds[N - 1]]
    assert ds[::-400] == [ds[N - 1], ds[N - 401], ds[N - 801]]


MEMORY_CHILD = r"""
import json, sys
import numpy as np
import pyarrow.compute, pyarrow.ipc  # imported by the first open: not what is measured
import mixindex, mixindex.read.dataset

def anon():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024

before = anon()
ds = mixindex.open(sys.argv[1])
opened = anon()
rng = np.random.default_rng(0)
# One-time costs first (Arrow's allocator reserves its segments on the first takes).
ds.__getitems__(np.sort(rng.integers(0, len(ds), 1024)))
warm = anon()
positions = np.sort(rng.integers(0, len(ds), 50_000))
for lo in range(0, len(positions), 1024):
    ds.__getitems__(positions[lo : lo + 1024])
print(json.dumps({"n": len(ds), "open": opened - before, "read": anon() - warm}))
"""


def test_opening_maps_the_index_rather_than_loading_it(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    table = pa.table({"text": [f"row {i}" for i in range(1000)]})
    with pa.OSFile(str(tmp_path / "a.arrow"), "wb") as f, pa.ipc.new_file(f, table.schema) as w:
        w.write_table(table)
    config = PipelineConfig(
        datasets=[
            DatasetConfig(name="a", data_files="a.arrow"),
            DatasetConfig(name="b", data_files="a.arrow"),
        ],
        mix=MixStageConfig(seed=0, block_size=10_000, num_examples=5_000_000),
        base_dir=tmp_path,
    )
    index = build(config, tmp_path / "big.mixindex")
    arrays = sum(f.stat().st_size for f in index.rglob("c/*"))
    assert arrays > 25 * 2**20
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD, str(index)], capture_output=True, text=True, check=True
    )
    got = json.loads(out.stdout)
    assert got["n"] == 5_000_000
    # The process's own memory (RssAnon, not the file pages of the map) does not take in the
    # arrays, whether the index is opened or read all over.
    assert got["open"] < 4
    assert got["read"] < 4
