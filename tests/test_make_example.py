"""scripts/make_example.py: the README's example data is real, complete and deterministic."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path
from types import ModuleType

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

# Generating the example data takes ~12 s, and the rerun test as long again.
pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_example.py"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_example", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row_counts(out: Path) -> dict[str, int]:
    data = out / "data"
    with pa.ipc.open_file(data / "docstrings" / "docstrings.arrow") as reader:
        docstrings = reader.read_all().num_rows
    return {
        "code": pq.read_table(data / "code").num_rows,
        "docs": datasets.load_from_disk(str(data / "docs")).num_rows,
        "docstrings": docstrings,
    }


@pytest.fixture(scope="module")
def make_example() -> ModuleType:
    return _load_script()


@pytest.fixture(scope="module")
def example(make_example: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("example")
    assert make_example.main(["--out", str(out), "--quiet"]) == 0
    return out


def test_three_sources_and_spec_exist(example: Path) -> None:
    data = example / "data"
    assert sorted(p.name for p in example.iterdir()) == ["data", "mix-v2.toml", "mix.toml"]
    assert sorted(p.name for p in data.iterdir()) == ["code", "docs", "docstrings"]
    parts = sorted(p.name for p in (data / "code").glob("*.parquet"))
    assert len(parts) >= 2
    assert parts[0] == "part-00000.parquet"
    assert (data / "docs" / "state.json").is_file()
    assert (data / "docstrings" / "docstrings.arrow").is_file()


def test_code_is_real_python_sorted_by_path(example: Path) -> None:
    files = sorted((example / "data" / "code").glob("*.parquet"))
    for f in files:
        meta = pq.ParquetFile(f).metadata
        assert meta.num_rows <= 500
        assert all(meta.row_group(i).num_rows <= 256 for i in range(meta.num_row_groups))
    table = pq.read_table(example / "data" / "code")
    assert table.schema.names == ["path", "text", "num_lines"]
    assert table.schema.field("num_lines").type == pa.int32()
    paths = table.column("path").to_pylist()
    texts = table.column("text").to_pylist()
    assert len(paths) > 100
    assert paths == sorted(paths)
    assert len(set(paths)) == len(paths)
    assert "json/decoder.py" in paths
    assert not any(
        part in {"site-packages", "test", "tests", "idlelib"}
        for p in paths
        for part in p.split("/")[:-1]
    )
    assert any("def " in t for t in texts)
    decoder = texts[paths.index("json/decoder.py")]
    assert "class JSONDecoder" in decoder
    lines = table.column("num_lines").to_pylist()
    assert lines[paths.index("json/decoder.py")] == len(decoder.splitlines())


def test_docs_load_with_datasets(example: Path) -> None:
    from pydoc_data.topics import topics

    docs = datasets.load_from_disk(str(example / "data" / "docs"))
    assert isinstance(docs, datasets.Dataset)
    assert docs.column_names == ["topic", "text"]
    names = docs["topic"]
    # One row per help topic: fewer than 100 on current Pythons (79 on 3.11).
    assert len(names) == len(topics) > 50
    assert names == sorted(names)
    assert docs[names.index("if")]["text"] == topics["if"]


def test_docstrings_sorted_and_long(example: Path) -> None:
    with pa.ipc.open_file(example / "data" / "docstrings" / "docstrings.arrow") as reader:
        table = reader.read_all()
    assert table.schema.names == ["qualname", "text"]
    qualnames = table.column("qualname").to_pylist()
    assert len(qualnames) > 100
    assert qualnames == sorted(qualnames)
    assert all(len(t) >= 80 for t in table.column("text").to_pylist())
    assert "json.decoder.JSONDecoder.decode" in qualnames
    assert "json" in qualnames  # the package docstring, from json/__init__.py


def test_mix_toml_names_the_three_sources(example: Path) -> None:
    spec = tomllib.loads((example / "mix.toml").read_text(encoding="utf-8"))
    assert [d["name"] for d in spec["datasets"]] == ["code", "docs", "docstrings"]
    for d in spec["datasets"]:
        assert not Path(d["data_files"]).is_absolute()
    assert spec["mix"]["num_examples"] == 50000
    assert spec["mix"]["weight_schedule"][1]["step"] == 20000


def test_mix_v2_adds_one_schedule_point_and_changes_nothing_else(example: Path) -> None:
    # The README's diff example compares the two: mix-v2.toml must parse, and differ from
    # mix.toml only by the point at step 30000.
    spec = tomllib.loads((example / "mix.toml").read_text(encoding="utf-8"))
    v2 = tomllib.loads((example / "mix-v2.toml").read_text(encoding="utf-8"))
    added = v2["mix"]["weight_schedule"].pop()
    assert added == {"step": 30000, "weights": {"code": 0.2, "docs": 0.2, "docstrings": 0.6}}
    assert v2 == spec


def test_rerun_is_identical_and_prints_one_line_per_source(
    make_example: ModuleType, example: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _row_counts(example)
    assert all(n > 50 for n in before.values())
    assert before["code"] > 100 and before["docstrings"] > 100
    snapshot = {p.relative_to(example): p.read_bytes() for p in example.rglob("*") if p.is_file()}
    # The same folder again: replaced, not refused, and with no temporary folders left over.
    assert make_example.main(["--out", str(example)]) == 0
    assert _row_counts(example) == before
    after = {p.relative_to(example): p.read_bytes() for p in example.rglob("*") if p.is_file()}
    assert after == snapshot

    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[:3]] == ["code", "docs", "docstrings"]
    for line, (name, rows) in zip(lines, before.items(), strict=False):
        assert line.split()[:3] == [name, str(rows), "rows"]
        assert "MB" in line
