"""MixedShardedSource: a true len, stop strategies that end, checked names, O(1) resume for
sources with rows by number, data-parallel shards, and the built index's sequence."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import mixindex
from mixindex import (
    HFDatasetShardedSource,
    MixedShardedSource,
    ParquetShardedSource,
    PipelineConfig,
    PlanError,
    ShardedDataSource,
    ShardingError,
    SpecError,
    WeightSchedulePoint,
    WeightScheduler,
)
from mixindex.mixing.mixed import MixedShardedSource as Mixed

datasets.disable_progress_bars()

SHARD = "mixed_shard_0"
SIZES = {"a": 29, "b": 17}


class Stored(ShardedDataSource):
    """A user's source of unknown length that yields the same dict objects every pass."""

    def __init__(self, name: str, n: int) -> None:
        self.rows = [{"n": i, "from": name} for i in range(n)]

    @property
    def shard_names(self) -> list[str]:
        return ["first", "second"]

    def open_shard(self, shard_name: str) -> Iterator[dict[str, Any]]:
        half = len(self.rows) // 2
        return iter(self.rows[:half] if shard_name == "first" else self.rows[half:])


def hf(name: str, n: int) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"n": list(range(n)), "from": [name] * n})


def kinds() -> dict[str, dict[str, Any]]:
    """The same data as map-style sources (rows by number), as streams of known length (a
    lazy map hides the rows by number) and as streams of unknown length."""
    return {
        "maps": {k: HFDatasetShardedSource(hf(k, n)) for k, n in SIZES.items()},
        "mapped": {k: HFDatasetShardedSource(hf(k, n)).map(dict) for k, n in SIZES.items()},
        "streams": {k: Stored(k, n) for k, n in SIZES.items()},
    }


def pairs(it: Any) -> list[tuple[str, int]]:
    return [(ex["__source__"], ex["n"]) for ex in it]


def mixed(sources: dict[str, Any], stop: str, **kw: Any) -> MixedShardedSource:
    kw.setdefault("weights", {"a": 2, "b": 1})
    return MixedShardedSource(sources, block_size=6, seed=9, stop_strategy=stop, **kw)


@pytest.mark.parametrize("stop", ["first_exhausted", "all_exhausted"])
def test_len_is_the_mix_length_and_both_kinds_agree(stop: str) -> None:
    out = {}
    for kind, sources in kinds().items():
        m = mixed(sources, stop)
        assert m.mixer.indexed == (kind == "maps")
        out[kind] = pairs(m.open_shard(SHARD))
        if kind == "streams":
            with pytest.raises(TypeError, match="no len"):
                len(m)
        else:
            assert len(out[kind]) == len(m)  # EasyDeL: the sum of the sources' lengths
    assert out["maps"] == out["mapped"] == out["streams"]
    assert len(out["maps"]) != sum(SIZES.values())


def test_restart_has_no_len_unless_capped() -> None:
    sources = kinds()["maps"]
    with pytest.raises(TypeError, match="never ends"):
        len(mixed(sources, "restart"))
    assert len(mixed(sources, "restart", num_examples=100)) == 100
    assert len(pairs(mixed(sources, "restart", num_examples=100).open_shard(SHARD))) == 100


def test_all_exhausted_ends_for_streams_of_unknown_length() -> None:
    # EasyDeL's all_exhausted restarts exhausted sources and never ends.
    m = mixed(kinds()["streams"], "all_exhausted")
    with pytest.raises(TypeError):
        len(m)
    out = pairs(m.open_shard(SHARD))
    assert {n for s, n in out if s == "a"} == set(range(29))
    assert {n for s, n in out if s == "b"} == set(range(17))


def test_examples_are_new_dicts() -> None:
    sources = kinds()["streams"]
    out = list(mixed(sources, "first_exhausted").open_shard(SHARD))
    assert all("__source__" not in row for src in sources.values() for row in src.rows)
    assert all(ex["__source__"] == ex["from"] for ex in out)


def test_names_are_checked() -> None:
    sources = kinds()["maps"]
    wrong = WeightScheduler(
        [WeightSchedulePoint(0, {"a": 1, "c": 1}), WeightSchedulePoint(10, {"a": 1, "c": 2})]
    )
    # EasyDeL looks weights up by name with a default of 0 and stalls on NaN weights.
    with pytest.raises(SpecError, match="'c'"):
        mixed(sources, "restart", weight_scheduler=wrong)
    good = WeightScheduler([WeightSchedulePoint(0, {"a": 1, "b": 1})])
    with pytest.raises(SpecError, match="'x'"):
        mixed(sources, "restart", weights={"a": 1, "x": 1}, weight_scheduler=good)
    with pytest.raises(SpecError, match="stop_strategy"):
        mixed(sources, "all")
    with pytest.raises(PlanError, match="'b'"):
        mixed(sources, "all_exhausted", weights={"a": 1, "b": 0})


def test_the_scheduler_wins_and_its_step_is_the_position() -> None:
    sources = kinds()["maps"]
    schedule = WeightScheduler(
        [WeightSchedulePoint(0, {"a": 1, "b": 0}), WeightSchedulePoint(12, {"a": 0, "b": 1})]
    )
    m = mixed(sources, "restart", weights={"a": 1, "b": 1}, weight_scheduler=schedule)
    out = pairs(islice(m.open_shard(SHARD), 40))
    first = [s for s, _ in out]
    assert first[:12] == ["a"] * 12 and set(first[12:]) == {"b"}
    # Resuming at position 20 evaluates the schedule at 20 (EasyDeL restarts its step count).
    assert pairs(islice(m.open_shard_at_row(SHARD, 20), 20)) == out[20:]


@pytest.mark.parametrize("stop", ["restart", "first_exhausted", "all_exhausted"])
@pytest.mark.parametrize("kind", ["maps", "mapped", "streams"])
def test_open_shard_at_row_is_the_tail(kind: str, stop: str) -> None:
    m = mixed(kinds()[kind], stop, num_examples=120 if stop == "restart" else None)
    full = pairs(m.open_shard(SHARD))
    for row in (1, 7, len(full) // 2, len(full) - 1, len(full), len(full) + 5):
        assert pairs(m.open_shard_at_row(SHARD, row)) == full[row:], row


@pytest.fixture
def parquet(tmp_path: Path) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for name, n in SIZES.items():
        out[name] = []
        for part, (lo, hi) in enumerate(((0, n // 2), (n // 2, n))):
            path = tmp_path / name / f"part-{part}.parquet"
            path.parent.mkdir(exist_ok=True)
            rows = [{"n": i, "from": name} for i in range(lo, hi)]
            pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=4)
            out[name].append(path)
    return out


@pytest.mark.parametrize("stop", ["restart", "first_exhausted", "all_exhausted"])
def test_parquet_mix_is_the_built_index_and_resumes_without_reading_before(
    parquet: dict[str, list[Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop: str
) -> None:
    cap = 150 if stop == "restart" else None
    sources = {k: ParquetShardedSource([str(p) for p in v]) for k, v in parquet.items()}
    m = mixed(sources, stop, num_examples=cap)
    spec = {
        "datasets": [{"name": k, "data_files": [str(p) for p in v]} for k, v in parquet.items()],
        "mix": {**m.settings.spec_mix(), "num_examples": cap},
    }
    index = mixindex.open(mixindex.build(PipelineConfig.from_dict(spec), tmp_path / "i.mixindex"))
    source, row, _ = index.lookup(range(len(index)))
    expected = [(index.names[s], int(r)) for s, r in zip(source, row, strict=True)]
    assert pairs(m.open_shard(SHARD)) == expected
    assert len(m) == len(expected)

    # Rows by number: resuming reads no file sequentially (the plan says where each row is).
    def no_scan(*args: Any) -> None:
        raise AssertionError("a sequential read while resuming")

    monkeypatch.setattr(ParquetShardedSource, "_rows", no_scan)
    at = len(expected) - 3
    assert pairs(m.open_shard_at_row(SHARD, at)) == expected[at:]


@pytest.mark.parametrize("kind", ["maps", "mapped", "streams"])
@pytest.mark.parametrize("drop_last", [True, False])
def test_shards_split_every_global_batch(kind: str, drop_last: bool) -> None:
    m = mixed(kinds()[kind], "all_exhausted")
    full = pairs(m.open_shard(SHARD))
    g, w = 8, 2
    ranks = [m.shard(r, w, global_batch_size=g, drop_last=drop_last) for r in range(w)]
    got = [pairs(r.open_shard(SHARD)) for r in ranks]
    whole = len(full) // g
    for b in range(whole):
        assert got[0][b * 4 : b * 4 + 4] + got[1][b * 4 : b * 4 + 4] == full[b * g : (b + 1) * g]
    if drop_last:
        assert [len(x) for x in got] == [whole * 4] * 2
        if kind != "streams":
            assert [len(r) for r in ranks] == [whole * 4] * 2
    else:
        assert got[0][whole * 4 :] + got[1][whole * 4 :] == full[whole * g :]
    for r, mine in zip(ranks, got, strict=True):
        for row in (1, 5, len(mine) - 1):
            assert pairs(r.open_shard_at_row(SHARD, row)) == mine[row:]
    with pytest.raises(ShardingError, match="divisible"):
        m.shard(0, 3, global_batch_size=8)
    with pytest.raises(ShardingError, match="already one rank's shard"):
        ranks[0].shard(0, 2, global_batch_size=8)


def test_seed_none_draws_logs_and_keeps_a_seed(caplog: pytest.LogCaptureFixture) -> None:
    sources = kinds()["maps"]
    with caplog.at_level(logging.WARNING, logger="mixindex"):
        m = Mixed(sources, stop_strategy="first_exhausted", block_size=6)
    assert str(m.seed) in caplog.text
    again = Mixed(sources, stop_strategy="first_exhausted", block_size=6, seed=m.seed)
    assert pairs(m.open_shard(SHARD)) == pairs(again.open_shard(SHARD))
    zero = Mixed(sources, stop_strategy="first_exhausted", block_size=6, seed=0)
    assert zero.seed == 0
