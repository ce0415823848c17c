"""Sources an index reopens by itself: JSON, CSV and text files, in-memory datasets and streams
are converted into the Arrow cache when the index is built."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import pytest
from clirun import assert_ok, assert_one_line_error, run
from conftest import to_toml

import mixindex
from mixindex import DatasetConfig, MixStageConfig, PipelineConfig, SourceChangedError

datasets.disable_progress_bars()

RECORDS = [{"text": f"line {i}", "n": i} for i in range(23)]


def write_files(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS[:15]))
    (root / "b.json").write_text(json.dumps(RECORDS[15:]))
    (root / "t.csv").write_text("text,n\n" + "".join(f"{r['text']},{r['n']}\n" for r in RECORDS))
    (root / "t.tsv").write_text("text\tn\n" + "".join(f"{r['text']}\t{r['n']}\n" for r in RECORDS))
    (root / "t.txt").write_text("".join(f"{r['text']}\n" for r in RECORDS))


def spec(**datasets: Any) -> dict[str, Any]:
    return {
        "datasets": [{"name": k, **v} for k, v in datasets.items()],
        "mix": {"seed": 3, "block_size": 10, "stop_strategy": "all_exhausted"},
    }


def served(index: Any) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for ex in index:
        out.setdefault(ex.pop("__source__"), []).append(ex)
    return out


def test_text_formats_in_a_spec_are_built_and_reopened_by_themselves(tmp_path: Path) -> None:
    write_files(tmp_path / "data")
    path = tmp_path / "mix.toml"
    path.write_text(
        to_toml(
            spec(
                json={"data_files": ["data/a.jsonl", "data/b.json"]},
                csv={"data_files": "data/t.csv"},
                tsv={"data_files": "data/t.tsv", "type": "csv"},
                text={"data_files": "data/*.txt"},
            )
        )
    )
    assert_ok(run("build", path, "-o", tmp_path / "mix.mixindex"))
    # No data_files, no datasets: the index reads its cache.
    out = served(mixindex.open(tmp_path / "mix.mixindex"))
    # Rows in stored order; sources that ran out first started another pass.
    assert out["json"][:23] == RECORDS
    assert out["csv"][:23] == out["tsv"][:23] == RECORDS
    assert out["text"][:23] == [{"text": r["text"]} for r in RECORDS]
    shown = run("show", tmp_path / "mix.mixindex", "0", "--json")
    assert_ok(shown)
    first = json.loads(shown.stdout.splitlines()[0])
    assert first["example"] == {**out[first["source"]][0], "__source__": first["source"]}


def test_the_cache_is_reused_until_the_file_changes(tmp_path: Path) -> None:
    write_files(tmp_path / "data")
    cache = tmp_path / "cache"
    config = PipelineConfig.from_dict(spec(json={"data_files": "data/a.jsonl"}), base_dir=tmp_path)
    mixindex.build(config, tmp_path / "one.mixindex", cache_dir=cache)
    (folder,) = cache.iterdir()
    made = (folder / "cache.json").stat().st_mtime_ns
    mixindex.build(config, tmp_path / "two.mixindex", cache_dir=cache)
    assert [p.name for p in cache.iterdir()] == [folder.name]
    assert (folder / "cache.json").stat().st_mtime_ns == made
    with open(tmp_path / "data" / "a.jsonl", "a") as f:
        f.write(json.dumps({"text": "new", "n": 99}) + "\n")
    mixindex.build(config, tmp_path / "three.mixindex", cache_dir=cache)
    assert len(list(cache.iterdir())) == 2
    assert served(mixindex.open(tmp_path / "three.mixindex"))["json"][-1] == {
        "text": "new",
        "n": 99,
    }
    assert len(served(mixindex.open(tmp_path / "one.mixindex"))["json"]) == 15


def test_bad_json_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "bad.jsonl").write_text('{"text": "ok"}\n{"text": \n')
    path = tmp_path / "mix.toml"
    path.write_text(to_toml(spec(bad={"data_files": "data/bad.jsonl"})))
    assert_one_line_error(run("build", path, "-o", tmp_path / "m.mixindex"), "bad.jsonl", "json")
    assert not (tmp_path / "m.mixindex").exists()


def make_mix(ds: Any, tmp_path: Path, name: str = "mix.mixindex", **kw: Any) -> Path:
    config = PipelineConfig(
        datasets=[DatasetConfig(name="mem", data_files=ds, **kw)],
        mix=MixStageConfig(seed=1, block_size=8, stop_strategy="all_exhausted"),
    )
    return mixindex.build(config, tmp_path / name)


def test_an_in_memory_dataset_is_cached_and_can_still_be_passed_again(tmp_path: Path) -> None:
    ds = datasets.Dataset.from_list(RECORDS)
    path = make_mix(ds, tmp_path)
    assert served(mixindex.open(path))["mem"] == RECORDS
    assert served(mixindex.open(path, datasets={"mem": ds}))["mem"] == RECORDS
    other = datasets.Dataset.from_list(RECORDS[::-1])
    with pytest.raises(SourceChangedError, match="'mem'"):
        mixindex.open(path, datasets={"mem": other})


def test_a_stream_is_read_into_the_cache_up_to_num_rows(tmp_path: Path) -> None:
    def endless() -> Any:
        i = 0
        while True:
            yield {"n": i}
            i += 1

    stream = datasets.IterableDataset.from_generator(endless)
    path = make_mix(stream, tmp_path, num_rows=30)
    assert served(mixindex.open(path))["mem"] == [{"n": i} for i in range(30)]
    again = make_mix(stream, tmp_path, "again.mixindex", num_rows=30)
    assert mixindex.open(again).digest == mixindex.open(path).digest
