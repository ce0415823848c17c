"""``row_order = "grouped"`` end to end: built from the files' row groups, each pass a permutation
decoded group by group, the groups recorded and covered by the digest."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from clirun import assert_ok, run
from conftest import (
    CODE_ROW_GROUP,
    CODE_SIZES,
    NOTES_BATCH,
    NOTES_ROWS,
    Data,
    SpecWriter,
    spec_dict,
)

import mixindex
from mixindex.errors import IndexFormatError

CODE_GROUPS = [
    min(CODE_ROW_GROUP, n - i) for n in CODE_SIZES for i in range(0, n, CODE_ROW_GROUP)
]  # 8, 8, 8, 8, 5, 8, 8, 7
CODE_ROWS = sum(CODE_SIZES)


def code_row(example: dict[str, Any]) -> int:
    """The code source's row number, written into its text by conftest.code_rows."""
    found = re.match(r"def f(\d+)\(\)", example["text"])
    assert found is not None
    return int(found.group(1))


@pytest.fixture
def grouped(data: Data, write_spec: SpecWriter, tmp_path: Path) -> Path:
    spec = spec_dict(row_order="grouped", num_examples=2000)
    out = tmp_path / "grouped.mixindex"
    assert_ok(run("build", write_spec(spec), "-o", out))
    return out


def test_each_pass_permutes_the_rows_group_by_group(grouped: Path) -> None:
    ds = mixindex.open(grouped)
    code = [code_row(ex) for ex in ds if ex["__source__"] == "code"]
    passes = [code[i : i + CODE_ROWS] for i in range(0, len(code) - CODE_ROWS + 1, CODE_ROWS)]
    assert len(passes) >= 4
    group_of = np.repeat(np.arange(len(CODE_GROUPS)), CODE_GROUPS)
    for rows in passes:
        assert sorted(rows) == list(range(CODE_ROWS))  # every row once per pass
        runs = group_of[rows]
        assert np.count_nonzero(np.diff(runs)) + 1 == len(CODE_GROUPS)  # each group one run
    assert len({tuple(p) for p in passes}) == len(passes)  # a fresh order each pass
    assert len({tuple(group_of[p][::CODE_ROW_GROUP]) for p in passes}) > 1


def test_the_groups_are_recorded_and_covered_by_the_digest(grouped: Path, tmp_path: Path) -> None:
    doc = json.loads((grouped / "zarr.json").read_text())
    sources = doc["attributes"]["mixindex"]["sources"]
    assert sources[0]["row_groups"] == CODE_GROUPS
    notes = [min(NOTES_BATCH, NOTES_ROWS - i) for i in range(0, NOTES_ROWS, NOTES_BATCH)]
    assert sources[1]["row_groups"] == notes
    assert sum(sources[2]["row_groups"]) == sources[2]["num_rows"]
    # Other groups would serve other rows: an edit is refused like any other.
    sources[0]["row_groups"] = [CODE_ROWS]
    (grouped / "zarr.json").write_text(json.dumps(doc))
    with pytest.raises(IndexFormatError, match="do not match its digest"):
        mixindex.open(grouped, verify=False)


def test_a_shuffled_index_records_no_groups(
    data: Data, write_spec: SpecWriter, tmp_path: Path
) -> None:
    out = tmp_path / "shuffled.mixindex"
    assert_ok(run("build", write_spec(spec_dict()), "-o", out))
    doc = json.loads((out / "zarr.json").read_text())
    assert all("row_groups" not in s for s in doc["attributes"]["mixindex"]["sources"])


def test_grouped_parquet_reads_decode_each_group_once_per_pass(
    grouped: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert json.loads(run("inspect", grouped, "--json").stdout)["warnings"] == []
    decoded: list[int] = []
    real = pq.ParquetFile.read_row_group

    def counting(self: pq.ParquetFile, i: int, *args: Any, **kwargs: Any) -> Any:
        decoded.append(i)
        return real(self, i, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", counting)
    ds = mixindex.open(grouped)
    code = sum(ex["__source__"] == "code" for ex in ds)
    passes = -(-code // CODE_ROWS)
    # Shuffled order decodes a group for nearly every example; grouped once per group and pass
    # (a pass that starts inside a group may touch that group twice).
    assert len(decoded) <= (len(CODE_GROUPS) + 1) * passes
    assert code > 4 * len(decoded)
    batched = mixindex.open(grouped)
    decoded.clear()
    for start in range(0, len(batched), 64):
        batched.read_batch(list(range(start, min(start + 64, len(batched)))))
    assert len(decoded) <= (len(CODE_GROUPS) + 1) * passes


def test_grouped_is_an_accepted_row_order_and_others_are_not(
    data: Data, write_spec: SpecWriter, tmp_path: Path
) -> None:
    bad = run("build", write_spec(spec_dict(row_order="window")), "-o", tmp_path / "x.mixindex")
    assert bad.exit_code == 2 and "grouped" in bad.stderr


def test_a_converted_source_is_grouped_by_its_converted_batches(
    write_spec: SpecWriter, tmp_path: Path
) -> None:
    lines = tmp_path / "lines.jsonl"
    lines.write_text("".join(json.dumps({"text": f"line {i}"}) + "\n" for i in range(50)))
    spec = {
        "datasets": [{"name": "lines", "data_files": str(lines)}],
        "mix": {"seed": 3, "weights": {"lines": 1}, "block_size": 10, "num_examples": 200,
                "row_order": "grouped"},
    }  # fmt: skip
    out = tmp_path / "lines.mixindex"
    result = run("build", write_spec(spec), "-o", out, "--cache-dir", tmp_path / "cache")
    assert_ok(result)
    record = json.loads((out / "zarr.json").read_text())["attributes"]["mixindex"]["sources"][0]
    assert sum(record["row_groups"]) == 50
    texts = [int(ex["text"].split()[1]) for ex in mixindex.open(out)]
    for start in range(0, 200, 50):
        assert sorted(texts[start : start + 50]) == list(range(50))
