"""The stage configs and the pipeline fields of DatasetConfig: EasyDeL's names and defaults,
loose input refused with the bad value, and every source type read by a pipeline."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import datasets
import pytest

from mixindex import (
    DatasetConfig,
    LoadStageConfig,
    PackStageConfig,
    Pipeline,
    PipelineConfig,
    SaveStageConfig,
    SpecError,
    TokenizerConfig,
    TokenizeStageConfig,
)


def test_easydel_defaults() -> None:
    assert TokenizerConfig(name_or_path="t").max_length == 2048
    t = TokenizerConfig(name_or_path="t")
    assert (t.truncation, t.padding, t.add_special_tokens, t.return_attention_mask) == (
        True, False, True, True,
    )  # fmt: skip
    s = TokenizeStageConfig()
    assert (s.default_tokenizer, s.max_length, s.batch_size) == (None, 2048, 1000)
    p = PackStageConfig()
    assert (p.enabled, p.seq_length, p.eos_token_id, p.pad_token_id, p.strategy) == (
        False, 2048, 2, 0, "greedy",
    )  # fmt: skip
    assert p.include_segment_ids and p.shuffle_packed
    lo = LoadStageConfig()
    assert (lo.batch_size, lo.prefetch_enabled, lo.prefetch_workers, lo.prefetch_buffer_size) == (
        8, True, 2, 4,
    )  # fmt: skip
    assert lo.shuffle_buffer_size is None and lo.drop_last
    sv = SaveStageConfig()
    assert (sv.enabled, sv.format, sv.max_bytes) == (False, "parquet", 500 * 10**6)
    d = DatasetConfig(data_files="x.parquet")
    assert (d.name, d.split, d.tokenizer, d.content_field, d.additional_fields) == (
        None, "train", None, "text", None,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: PackStageConfig(strategy="best"), "'best'"),
        (lambda: PackStageConfig(seq_length=0), "seq_length = 0"),
        (lambda: PackStageConfig(enabled="yes"), "'yes'"),
        (lambda: LoadStageConfig(batch_size=2.0), "2.0"),
        (lambda: LoadStageConfig(shuffle_buffer_size=0), "shuffle_buffer_size = 0"),
        (lambda: SaveStageConfig(max_shard_size="lots"), "'lots'"),
        (lambda: SaveStageConfig(format="csv"), "'csv'"),
        (lambda: TokenizerConfig(name_or_path=""), "name_or_path"),
        (lambda: TokenizerConfig(name_or_path="t", padding="left"), "'left'"),
        (lambda: TokenizeStageConfig(remove_columns="text"), "remove_columns"),
        (lambda: DatasetConfig(data_files="x", additional_fields="n"), "additional_fields"),
        (lambda: DatasetConfig(data_files="x", tokenizer=3), "tokenizer = 3"),
        (lambda: DatasetConfig(data_files="x", type="xml"), "'xml'"),
        (
            lambda: PipelineConfig.from_dict(
                {"datasets": [{"data_files": "x"}], "mix": {"seed": 1}, "pack": {"size": 3}}
            ),
            "'size'",
        ),
    ],
)
def test_bad_stage_values_are_refused(make: Any, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        make()


def test_from_config_reads_stage_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("a.jsonl").write_text("".join(json.dumps({"text": f"a {i}"}) + "\n" for i in range(9)))
    spec = {
        "datasets": [
            {"data_files": "a.jsonl", "type": "jsonl", "tokenizer": {"name_or_path": "t"}}
        ],
        "mix": {"seed": 1, "stop_strategy": "first_exhausted"},
        "pack": {"enabled": True, "seq_length": 64, "strategy": "pool"},
        "load": {"batch_size": 2, "drop_last": False},
    }
    p = Pipeline.from_config(spec)
    c = p.config
    assert c.datasets[0].name == "dataset_0" and c.datasets[0].type == "json"
    assert c.datasets[0].tokenizer == TokenizerConfig(name_or_path="t")
    assert c.pack.strategy == "pool" and c.load.batch_size == 2
    batches = list(p.source().mix().load().build())
    assert [len(b["text"]) for b in batches] == [2, 2, 2, 2, 1]


def test_every_source_type(tmp_path: Path) -> None:
    (tmp_path / "l.txt").write_text("t 0\nt 1\nt 2\n")
    (tmp_path / "c.csv").write_text("text,n\nc 0,0\nc 1,1\n")
    (tmp_path / "j.json").write_text(json.dumps([{"text": "j 0"}, {"text": "j 1"}]))
    ds = datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict({"text": ["h 0"]}),
         "test": datasets.Dataset.from_dict({"text": ["x"]})}
    )  # fmt: skip
    c = PipelineConfig(
        datasets=[
            DatasetConfig(name="txt", data_files=str(tmp_path / "l.txt"), type="txt"),
            DatasetConfig(name="csv", data_files=str(tmp_path / "c.csv")),
            DatasetConfig(name="json", data_files=str(tmp_path / "j.json")),
            DatasetConfig(name="hf", data_files=ds, type="huggingface"),
        ],
    )
    assert c.datasets[0].type == "text" and c.datasets[3].type is None
    out = [ex["text"] for ex in Pipeline.from_config(c).source().build()]
    assert out == ["t 0", "t 1", "t 2", "c 0", "c 1", "j 0", "j 1", "h 0"]
    # Without mix() the datasets are read one after another, from any position.
    p = Pipeline.from_config(c).source()
    head = list(itertools.islice(iter(p.build()), 4))
    assert [ex["text"] for ex in head] == out[:4]
    assert [ex["text"] for ex in p.build()] == out[4:]
    with pytest.raises(SpecError, match="'valid'"):
        DatasetConfig(name="hf", data_files=ds, split="valid")
