"""A committed tiny index: any change to the planner's output or the on-disk format shows here.

If a change is meant to alter the format, bump FORMAT_VERSION and rebuild the golden index with
``mixindex build tests/golden/spec.toml -o tests/golden/tiny.mixindex --force``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

import mixindex
from mixindex.builder import build
from mixindex.store.index import StoredIndex
from mixindex.store.layout import CHUNK_DIGESTS, POSITION_ARRAYS, TABLE_ARRAYS
from mixindex.store.meta import IndexMeta

GOLDEN = Path(__file__).parent / "golden"


def test_rebuilding_the_golden_spec_gives_the_same_bytes(tmp_path: Path) -> None:
    fresh = build(GOLDEN / "spec.toml", tmp_path / "tiny.mixindex")
    old, new = StoredIndex(GOLDEN / "tiny.mixindex"), StoredIndex(fresh)
    assert new.digest == old.digest
    golden = GOLDEN / "tiny.mixindex"
    for name in (*POSITION_ARRAYS, *TABLE_ARRAYS, CHUNK_DIGESTS):
        chunk = {CHUNK_DIGESTS: "c/0/0/0", **dict.fromkeys(TABLE_ARRAYS, "c/0/0")}.get(name, "c/0")
        for part in ("zarr.json", chunk):
            assert (fresh / name / part).read_bytes() == (golden / name / part).read_bytes(), part
    for key in (
        "format_version",
        "spec",
        "num_examples",
        "num_blocks",
        "block_size",
        "array_digests",
    ):
        assert getattr(new.meta, key) == getattr(old.meta, key), key
    for a, b in zip(new.sources, old.sources, strict=True):
        assert (a.name, a.type, a.num_rows, a.fingerprint) == (
            b.name,
            b.type,
            b.num_rows,
            b.fingerprint,
        )


def test_the_writer_writes_the_golden_attributes(tmp_path: Path) -> None:
    """The attributes written through IndexMeta are the golden's, key for key and in order,
    but for what depends on the machine: the build facts and the sources' absolute paths."""
    fresh = build(GOLDEN / "spec.toml", tmp_path / "tiny.mixindex")
    doc, golden = (
        json.loads((p / "zarr.json").read_text())["attributes"]["mixindex"]
        for p in (fresh, GOLDEN / "tiny.mixindex")
    )
    assert list(doc["build"]) == list(golden["build"])
    doc["build"] = golden["build"]
    for rec, old in zip(doc["sources"], golden["sources"], strict=True):
        assert [Path(f).name for f in rec["data_files"]] == [
            Path(f).name for f in old["data_files"]
        ]
        rec["data_files"] = old["data_files"]
    assert json.dumps(doc) == json.dumps(golden)
    assert IndexMeta.from_dict(doc).to_dict() == golden


def test_the_golden_index_reads_back() -> None:
    ds = mixindex.open(
        GOLDEN / "tiny.mixindex",
        data_files={
            "letters": [str(GOLDEN / "data" / "letters.parquet")],
            "numbers": [str(GOLDEN / "data" / "numbers.arrow")],
        },
    )
    source, row, epoch = ds.lookup(np.arange(len(ds)))
    assert len(ds) == 13
    assert source.tolist() == GOLDEN_SOURCE
    assert row.tolist() == GOLDEN_ROW
    assert epoch.tolist() == GOLDEN_EPOCH
    letters = pq.read_table(GOLDEN / "data" / "letters.parquet").to_pylist()
    numbers = [{"text": f"number {i}"} for i in range(5)]
    for i, ex in enumerate(ds):
        rows = letters if GOLDEN_SOURCE[i] == 0 else numbers
        assert ex == {**rows[GOLDEN_ROW[i]], "__source__": ds.names[GOLDEN_SOURCE[i]]}


GOLDEN_SOURCE = [1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 1, 1]
# Format 4; also what the plain-Python row network of tests/test_rng.py gives for these sources,
# slots and epochs (format 3 had [3, 3, 0, 1, 1, 2, 4, 6, 5, 6, 0, 4, 2]).
GOLDEN_ROW = [3, 1, 5, 4, 0, 0, 3, 2, 6, 5, 1, 2, 4]
GOLDEN_EPOCH = [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]
