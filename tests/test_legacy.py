"""The legacy ``DatasetMixture`` / ``TextDatasetInform`` / ``build_dataset`` API: it runs with its
defaults, mixes for real (streaming or not), and its weights name something."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mixindex import DatasetMixture, SpecError, TextDatasetInform, build_dataset

datasets.disable_progress_bars()


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    pq.write_table(
        pa.table({"content": [f"a {i}" for i in range(50)], "lang": ["py"] * 50}),
        tmp_path / "a.parquet",
    )
    with open(tmp_path / "b.jsonl", "w", encoding="utf-8") as f:
        for i in range(30):
            f.write(json.dumps({"content": f"b {i}", "lang": "md"}) + "\n")
    (tmp_path / "c.txt").write_text("".join(f"c {i}\n" for i in range(20)))
    return {k: str(tmp_path / n) for k, n in (("a", "a.parquet"), ("b", "b.jsonl"), ("c", "c.txt"))}


def source(ex: dict[str, Any]) -> str:
    return str(ex["text"]).split()[0]


def test_the_defaults_run(files: dict[str, str]) -> None:
    # EasyDeL's build_dataset raises TypeError with its defaults.
    mixture = DatasetMixture(
        informs=[TextDatasetInform(data_files=files["a"]), TextDatasetInform(data_files=files["b"])]
    )
    assert [i.type for i in mixture.informs] == ["parquet", "json"]  # guessed from the suffix
    dataset = build_dataset(mixture)
    assert isinstance(dataset, datasets.IterableDataset)
    head = list(itertools.islice(dataset, 2048))
    # Equal weights, exact in the first block of 2048, and each source restarts.
    assert Counter(map(source, head)) == {"a": 1024, "b": 1024}
    assert all(set(ex) == {"text"} for ex in head)


def test_weights_by_name_in_order_or_as_a_list(files: dict[str, str]) -> None:
    def counts(weights: Any, **kw: Any) -> Counter[str]:
        mixture = DatasetMixture(
            informs=[
                TextDatasetInform(data_files=files["a"], name="a"),
                TextDatasetInform(data_files=files["b"], name="b"),
            ],
            mixture_weights=weights,
            mixture_block_size=100,
            **kw,
        )
        return Counter(map(source, itertools.islice(build_dataset(mixture), 100)))

    assert counts({"a": 0.8, "b": 0.2}) == {"a": 80, "b": 20}
    assert counts({"b": 0.8, "a": 0.2}) == {"a": 20, "b": 80}  # by name, not by position
    assert counts({"ds1": 0.8, "ds2": 0.2}) == {"a": 80, "b": 20}  # no name matches: in order
    assert counts([0.3, 0.7]) == {"a": 30, "b": 70}
    with pytest.raises(SpecError, match="'c'"):
        counts({"a": 0.5, "c": 0.5})
    with pytest.raises(SpecError, match="one weight per inform"):
        counts([1.0])


def test_map_style_is_mixed_not_concatenated(files: dict[str, str]) -> None:
    # EasyDeL's streaming=False returns the datasets one after another.
    mixture = DatasetMixture(
        informs=[
            TextDatasetInform(data_files=files["a"], additional_fields=["lang"]),
            TextDatasetInform(data_files=files["c"], content_field="text"),
        ],
        mixture_weights=[0.5, 0.5],
        mixture_block_size=10,
        streaming=False,
        text_target_field="body",
    )
    dataset = build_dataset(mixture)
    assert isinstance(dataset, datasets.Dataset)
    assert len(dataset) == 70  # a restart mix as long as all the rows
    first = dataset.select(range(10))
    assert Counter(str(x).split()[0] for x in first["body"]) == {"a": 5, "c": 5}
    langs = {str(r["body"]).split()[0]: r["lang"] for r in first}
    assert langs == {"a": "py", "c": None}


def test_block_mixture_off_mixes_example_by_example(files: dict[str, str]) -> None:
    mixture = DatasetMixture(
        informs=[
            TextDatasetInform(data_files=files["a"]),
            TextDatasetInform(data_files=files["b"]),
        ],
        mixture_weights=[0.5, 0.5],
        block_mixture=False,
    )
    head = [source(ex) for ex in itertools.islice(build_dataset(mixture), 20)]
    # Every prefix is within one example of half and half.
    assert all(abs(head[:k].count("a") - k / 2) <= 1 for k in range(1, 21))


def test_pack_tokens(tmp_path: Path) -> None:
    tokens = [list(range(1, 1 + n)) for n in (3, 30, 5, 7)]
    pq.write_table(pa.table({"tokens": tokens, "content": ["x"] * 4}), tmp_path / "t.parquet")
    mixture = DatasetMixture(
        informs=[TextDatasetInform(data_files=str(tmp_path / "t.parquet"))],
        pack_tokens=True,
        pack_seq_length=8,
        pack_eos_token_id=99,
        pack_shuffle=False,
        stop_strategy="first_exhausted",
    )
    rows = list(build_dataset(mixture))
    assert all(len(r["input_ids"]) == 8 for r in rows)
    kept = [t for r in rows for t, s in zip(r["input_ids"], r["segment_ids"], strict=True) if s]
    assert kept == [t for doc in tokens for t in [*doc, 99]]
    with pytest.raises(SpecError, match="pack_seq_length"):
        DatasetMixture(informs=mixture.informs, pack_tokens=True)


def test_an_unknown_suffix_asks_for_the_type(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot tell the type"):
        TextDatasetInform(data_files=str(tmp_path / "x.xml"))
