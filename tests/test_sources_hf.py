"""A ``datasets.Dataset`` read from one cache file is opened as that file, as one of several is."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

import mixindex
from mixindex.sources.arrow import ArrowSource
from mixindex.sources.hf import DatasetSource, open_hf_dataset

datasets.disable_progress_bars()

ROWS = [{"t": f"row {i}", "n": i} for i in range(40)]


def single_file_datasets(tmp_path: Path) -> dict[str, datasets.Dataset]:
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    datasets.Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "saved"))
    return {
        "load_dataset": datasets.load_dataset(
            "json", data_files=str(jsonl), split="train", cache_dir=str(tmp_path / "c1")
        ),
        "from_json": datasets.Dataset.from_json(str(jsonl), cache_dir=str(tmp_path / "c2")),
        "load_from_disk": datasets.load_from_disk(str(tmp_path / "saved")),
    }


@pytest.mark.parametrize("how", ["load_dataset", "from_json", "load_from_disk"])
def test_a_single_cache_file_is_opened_and_reopened_by_path(tmp_path: Path, how: str) -> None:
    ds = single_file_datasets(tmp_path)[how]
    assert len(ds.cache_files) == 1
    src = open_hf_dataset("rows", ds)
    assert isinstance(src, ArrowSource)
    assert src.data_files == [str(Path(ds.cache_files[0]["filename"]).resolve())]
    # An index built from it reopens by itself: no datasets= argument.
    spec = mixindex.PipelineConfig(
        datasets=[mixindex.DatasetConfig(name="rows", data_files=ds)],
        mix=mixindex.MixStageConfig(seed=1, block_size=8, num_examples=50),
    )
    index = mixindex.open(mixindex.build(spec, tmp_path / "mix.mixindex"))
    assert [ex["n"] for ex in index] == [i % 40 for i in range(50)]


def test_a_changed_single_file_dataset_is_still_read_as_it_is(tmp_path: Path) -> None:
    ds = single_file_datasets(tmp_path)["load_from_disk"]
    renamed = ds.rename_column("n", "k")
    src = open_hf_dataset("rows", renamed)
    assert isinstance(src, DatasetSource)
    assert src.take([3]).to_pylist() == [{"t": "row 3", "k": 3}]
