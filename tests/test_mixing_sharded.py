"""The sharded-source family: the base class users subclass, lazy wrappers, files and datasets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mixindex import (
    ArrowShardedSource,
    CompositeShardedSource,
    CsvShardedSource,
    HFDatasetShardedSource,
    JsonShardedSource,
    LimitedShardedSource,
    ParquetShardedSource,
    ShardedDataSource,
    ShuffledShardedSource,
    SourceError,
    SpecError,
    TextShardedSource,
)

datasets.disable_progress_bars()


class Numbers(ShardedDataSource):
    """A user's source: only shard_names and open_shard; it counts what it reads."""

    def __init__(self, sizes: dict[str, int]) -> None:
        self.sizes = sizes
        self.opened: list[str] = []
        self.read = 0

    @property
    def shard_names(self) -> list[str]:
        return list(self.sizes)

    def open_shard(self, shard_name: str) -> Iterator[dict[str, Any]]:
        self.opened.append(shard_name)
        for i in range(self.sizes[shard_name]):
            self.read += 1
            yield {"shard": shard_name, "i": i}


def rows(it: Any) -> list[tuple[str, int]]:
    return [(ex["shard"], ex["i"]) for ex in it]


def test_a_subclass_gets_the_defaults() -> None:
    src = Numbers({"s0": 3, "s1": 4})
    assert src.num_shards() == 2
    assert rows(src.open_shard_at_row("s1", 2)) == [("s1", 2), ("s1", 3)]
    assert rows(src.iter_shards()) == [("s0", 0), ("s0", 1), ("s0", 2)] + [
        ("s1", i) for i in range(4)
    ]
    assert rows(src.iter_shards(start_shard=1, start_row=3)) == [("s1", 3)]
    assert rows(src.iter_shards(shard_indices=[1], start_row=1)) == [("s1", i) for i in (1, 2, 3)]
    with pytest.raises(TypeError, match="no len"):
        len(src)


def test_map_and_filter_are_lazy_and_keep_the_shards() -> None:
    src = Numbers({"s0": 5, "s1": 5})
    calls: list[int] = []
    mapped = src.map(lambda ex: calls.append(ex["i"]) or {**ex, "sq": ex["i"] ** 2})
    kept = mapped.filter(lambda ex: ex["i"] % 2 == 0)
    assert calls == [] and src.read == 0
    assert kept.shard_names == ["s0", "s1"]
    assert [ex["sq"] for ex in kept.open_shard("s1")] == [0, 4, 16]
    assert [ex["sq"] for ex in mapped.open_shard_at_row("s0", 3)] == [9, 16]
    with pytest.raises(TypeError):
        len(kept)


def test_shuffle_is_a_seeded_permutation_with_an_exact_tail() -> None:
    src = Numbers({"s0": 30, "s1": 25})
    shuffled = src.shuffle(buffer_size=8, seed=1)
    assert isinstance(shuffled, ShuffledShardedSource)
    assert shuffled.shard_names == ["shuffled_shard_0"]
    out = rows(shuffled.open_shard("shuffled_shard_0"))
    assert sorted(out) == sorted(rows(src.iter_shards())) and out != rows(src.iter_shards())
    assert out == rows(src.shuffle(8, seed=1).open_shard("shuffled_shard_0"))
    assert out != rows(src.shuffle(8, seed=2).open_shard("shuffled_shard_0"))
    for k in (0, 1, 20, 54, 55):
        assert rows(shuffled.open_shard_at_row("shuffled_shard_0", k)) == out[k:]
    for bad in (0, -3, 1.5):
        with pytest.raises(ValueError, match="buffer_size"):
            src.shuffle(buffer_size=bad, seed=1)  # type: ignore[arg-type]


def test_limit_carries_the_budget_across_shards_without_reading_ahead() -> None:
    src = Numbers({"s0": 3, "s1": 4, "s2": 5})
    limited = LimitedShardedSource(src, 5)
    assert src.opened == []  # nothing read up front
    it = limited.iter_shards()
    assert rows([next(it), next(it), next(it)]) == [("s0", 0), ("s0", 1), ("s0", 2)]
    assert src.opened == ["s0"]
    assert rows(it) == [("s1", 0), ("s1", 1)]
    assert "s2" not in src.opened
    assert rows(limited.open_shard("s1")) == [("s1", 0), ("s1", 1)]
    assert rows(limited.open_shard("s2")) == []
    assert rows(limited.open_shard_at_row("s1", 1)) == [("s1", 1)]


def test_composite_names_every_shard_once() -> None:
    one, two = Numbers({"s0": 2, "x": 1}), Numbers({"s0": 3})
    combined = CompositeShardedSource([one, two])
    assert combined.shard_names == ["s0#0", "x", "s0#1"]
    assert [len(list(combined.open_shard(n))) for n in combined.shard_names] == [2, 1, 3]
    assert rows(combined.open_shard_at_row("s0#1", 2)) == [("s0", 2)]
    with pytest.raises(KeyError):
        list(combined.open_shard("s0"))
    with pytest.raises(SpecError, match="ShardedDataSource"):
        CompositeShardedSource([[1, 2]])  # type: ignore[list-item]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {
        k: [] for k in ("parquet", "json", "jsonarr", "arrow", "csv", "txt")
    }
    for f, n in enumerate((7, 5)):
        recs = [{"text": f"f{f} row {i}", "n": i} for i in range(n)]
        table = pa.Table.from_pylist(recs)
        p = tmp_path / f"part-{f}.parquet"
        pq.write_table(table, p, row_group_size=3)
        out["parquet"].append(p)
        p = tmp_path / f"part-{f}.jsonl"
        p.write_text("".join(json.dumps(r) + "\n" for r in recs) + "\n")
        out["json"].append(p)
        p = tmp_path / f"part-{f}.json"
        p.write_text(json.dumps(recs))
        out["jsonarr"].append(p)
        p = tmp_path / f"part-{f}.arrow"
        with pa.OSFile(str(p), "wb") as sink:
            # The first file in IPC file format, the second in stream format (as datasets writes).
            writer = pa.ipc.new_file if f == 0 else pa.ipc.new_stream
            with writer(sink, table.schema) as w:
                w.write_table(table, max_chunksize=2)
        out["arrow"].append(p)
        p = tmp_path / f"part-{f}.csv"
        p.write_text("text;n\n" + "".join(f"{r['text']};{r['n']}\n" for r in recs))
        out["csv"].append(p)
        p = tmp_path / f"part-{f}.txt"
        p.write_text("".join(f"{r['text']}\n" for r in recs))
        out["txt"].append(p)
    return out


def expected(n_files: int = 2) -> list[dict[str, Any]]:
    return [
        {"text": f"f{f} row {i}", "n": i} for f, n in enumerate((7, 5)[:n_files]) for i in range(n)
    ]


def test_file_sources_have_one_shard_per_file(files: dict[str, list[Path]], tmp_path: Path) -> None:
    sources = {
        "parquet": ParquetShardedSource(str(tmp_path / "*.parquet")),
        "json": JsonShardedSource([str(p) for p in files["json"]]),
        "jsonarr": JsonShardedSource([str(p) for p in files["jsonarr"]], jsonl=False),
        "arrow": ArrowShardedSource(str(tmp_path / "*.arrow")),
        "csv": CsvShardedSource(str(tmp_path / "*.csv"), delimiter=";"),
    }
    for kind, src in sources.items():
        assert src.shard_names == [str(p) for p in files[kind]], kind
        assert list(src.iter_shards()) == expected(), kind
        second = src.shard_names[1]
        assert list(src.open_shard_at_row(second, 3)) == expected()[7 + 3 :], kind
    assert len(sources["parquet"]) == len(sources["arrow"]) == 12
    with pytest.raises(TypeError):
        len(sources["json"])
    text = TextShardedSource(str(tmp_path / "*.txt"), text_field="body")
    assert [ex["body"] for ex in text.iter_shards()] == [r["text"] for r in expected()]
    projected = ParquetShardedSource(str(files["parquet"][0]), columns=["n"])
    assert list(projected.open_shard_at_row(projected.shard_names[0], 5)) == [{"n": 5}, {"n": 6}]


def test_file_source_errors(tmp_path: Path, files: dict[str, list[Path]]) -> None:
    with pytest.raises(SourceError, match="matched no file"):
        ParquetShardedSource(str(tmp_path / "nothing*.parquet"))
    with pytest.raises(SourceError, match="jsonl=False"):
        list(JsonShardedSource(str(files["jsonarr"][0])).iter_shards())
    with pytest.raises(SourceError, match="jsonl=True"):
        list(JsonShardedSource(str(files["json"][0]), jsonl=False).iter_shards())
    with pytest.raises(SourceError, match="Parquet"):
        list(ParquetShardedSource(str(files["csv"][0])).iter_shards())
    with pytest.raises(SourceError, match="one character"):
        CsvShardedSource(str(files["csv"][0]), delimiter=";;")


def test_hf_dataset_source_is_one_shard() -> None:
    ds = datasets.Dataset.from_dict({"n": list(range(9))})
    src = HFDatasetShardedSource(ds, name="numbers")
    assert src.shard_names == ["numbers"] and src.num_shards() == 1 and len(src) == 9
    assert [ex["n"] for ex in src.open_shard_at_row("numbers", 6)] == [6, 7, 8]
    stream = HFDatasetShardedSource(ds.to_iterable_dataset(num_shards=2))
    assert stream.shard_names == ["hf_dataset"]
    assert [ex["n"] for ex in stream.open_shard_at_row("hf_dataset", 4)] == list(range(4, 9))
    with pytest.raises(TypeError):
        len(stream)
    with pytest.raises(SourceError, match="wraps a datasets"):
        HFDatasetShardedSource([{"n": 1}])
