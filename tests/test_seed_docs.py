"""Every snippet of the mixing part of EasyDeL's "Dataset Mixing" page, run against mixindex.

Users come with that page in hand. Each test below runs one of its snippets as written, with
``from mixindex import ...`` in place of ``from easydel.data import ...`` and local data in place
of the hub (``load_dataset("parquet", data_files=local, streaming=True)``,
``Dataset.from_dict(...)``), then checks what the page promises and what mixindex adds: exact
counts, ``__source__``, stop strategies that end, same and different seeds, the same sequence as
a built index, and resume in the middle. The Pipeline API and legacy ``DatasetMixture`` snippets
tokenize with a tokenizer built locally (``tests/tokenizing.py``) in place of the hub's.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections import Counter
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import mixindex

datasets.disable_progress_bars()

SIZES = {"code": 700, "text": 900, "math": 150}


def rows(name: str, n: int) -> dict[str, list[Any]]:
    return {"text": [f"{name} example {i}" for i in range(n)], "n": list(range(n))}


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Local stand-ins for the page's hub datasets, as Parquet files."""
    root = tmp_path_factory.mktemp("hub")
    for name, n in SIZES.items():
        (root / name).mkdir()
        half = n // 2
        for part, (lo, hi) in enumerate(((0, half), (half, n))):
            table = pa.table({k: v[lo:hi] for k, v in rows(name, n).items()})
            pq.write_table(table, root / name / f"part-{part}.parquet", row_group_size=100)
    return root


def sources_of(examples: list[dict[str, Any]]) -> list[str]:
    return [ex["__source__"] for ex in examples]


def pairs(examples: Any) -> list[tuple[str, int]]:
    return [(ex["__source__"], ex["n"]) for ex in examples]


def ds(name: str) -> datasets.Dataset:
    return datasets.Dataset.from_dict(rows(name, SIZES[name]))


# ---- Quick Start -------------------------------------------------------------------------------


def test_quick_start(hub: Path, tmp_path: Path) -> None:
    from datasets import load_dataset

    from mixindex import block_mixture_interleave

    def local(name: str, **kw: Any) -> Any:
        files = sorted(str(p) for p in (hub / name).glob("*.parquet"))
        return load_dataset("parquet", data_files=files, cache_dir=str(tmp_path), **kw)

    # Load datasets
    code_ds = local("code", split="train", streaming=True)
    text_ds = local("text", split="train", streaming=True)
    math_ds = local("math", split="train")

    # Mix with weights using dict (recommended - explicit mapping)
    mixed = block_mixture_interleave(
        datasets={"code": code_ds, "text": text_ds, "math": math_ds},
        weights={"code": 0.4, "text": 0.5, "math": 0.1},
        block_size=1000,
        seed=42,
        stop="restart",
    )

    assert isinstance(mixed, datasets.IterableDataset)
    head = list(itertools.islice(mixed, 3000))
    # Exact counts in every block, not floors with the remainder handed to one source.
    for block in range(3):
        counts = Counter(sources_of(head[block * 1000 : (block + 1) * 1000]))
        assert counts == {"code": 400, "text": 500, "math": 100}
    # Each dataset is read in its own order; math (150 rows) starts its next pass.
    by = {name: [ex["n"] for ex in head if ex["__source__"] == name] for name in SIZES}
    assert by["code"] == list(range(700)) + list(range(500))
    assert by["math"] == list(range(150)) * 2
    # Resume in the middle: the state is small and plain, the rest is the same.
    again = block_mixture_interleave(
        datasets={"code": code_ds, "text": text_ds, "math": math_ds},
        weights={"code": 0.4, "text": 0.5, "math": 0.1},
        block_size=1000,
        seed=42,
        stop="restart",
    )
    it = iter(again)
    assert pairs(itertools.islice(it, 1234)) == pairs(head[:1234])
    state = json.loads(json.dumps(again.state_dict()))
    later = block_mixture_interleave(
        datasets={"code": code_ds, "text": text_ds, "math": math_ds},
        weights={"code": 0.4, "text": 0.5, "math": 0.1},
        block_size=1000,
        seed=42,
        stop="restart",
    )
    later.load_state_dict(state)
    assert pairs(itertools.islice(later, 3000 - 1234)) == pairs(head[1234:])


# ---- block_mixture_interleave --------------------------------------------------------------------


def test_block_mixture_interleave(tmp_path: Path) -> None:
    from mixindex import block_mixture_interleave

    ds1, ds2, ds3 = ds("code"), ds("text"), ds("math")

    # Dict format with explicit name-to-dataset mapping
    mixed = block_mixture_interleave(
        datasets={"code": ds1, "text": ds2, "math": ds3},
        weights={"code": 0.5, "text": 0.3, "math": 0.2},
        block_size=1000,
        seed=42,
        stop="restart",
    )

    head = list(itertools.islice(mixed, 4000))
    for block in range(4):
        counts = Counter(sources_of(head[block * 1000 : (block + 1) * 1000]))
        assert counts == {"code": 500, "text": 300, "math": 200}
    # The same sequence as `mixindex build` of the same spec, so moving to a precomputed
    # index changes nothing the model sees.
    spec = mixindex.PipelineConfig.from_dict(
        {
            "datasets": [
                {"name": "code", "data_files": ds1},
                {"name": "text", "data_files": ds2},
                {"name": "math", "data_files": ds3},
            ],
            "mix": {
                "weights": {"code": 0.5, "text": 0.3, "math": 0.2},
                "block_size": 1000,
                "seed": 42,
                "stop_strategy": "restart",
                "num_examples": 4000,
            },
        }
    )
    index = mixindex.open(
        mixindex.build(spec, tmp_path / "mix.mixindex"),
        datasets={"code": ds1, "text": ds2, "math": ds3},
    )
    assert pairs(index) == pairs(head)

    # Equal weights
    mixed = block_mixture_interleave(
        datasets={"code": ds1, "text": ds2},
        weights=None,  # Equal 50/50
    )

    head = list(itertools.islice(mixed, 2000))
    assert Counter(sources_of(head[:1000])) == {"code": 500, "text": 500}
    assert all("__source__" not in row for row in ds1.select(range(5)))


# ---- MixedShardedSource ----------------------------------------------------------------------


def test_mixed_sharded_source(capsys: pytest.CaptureFixture[str]) -> None:
    from mixindex import HFDatasetShardedSource, MixedShardedSource

    dataset1, dataset2 = ds("code"), ds("text").to_iterable_dataset(num_shards=3)

    # Wrap datasets as ShardedDataSource
    source1 = HFDatasetShardedSource(dataset1)
    source2 = HFDatasetShardedSource(dataset2)

    # Mix with static weights
    mixed = MixedShardedSource(
        sources={"code": source1, "text": source2},
        weights={"code": 0.3, "text": 0.7},
        block_size=1000,
        seed=42,
        stop_strategy="restart",
    )

    # Iterate (the mix is endless under "restart": the page's loop, stopped after 2000)
    for example in itertools.islice(mixed.open_shard(mixed.shard_names[0]), 2000):
        print(example["__source__"])  # Shows which dataset

    printed = capsys.readouterr().out.split()
    assert mixed.shard_names == ["mixed_shard_0"]
    assert Counter(printed[:1000]) == Counter(printed[1000:]) == {"code": 300, "text": 700}
    head = list(itertools.islice(mixed.open_shard("mixed_shard_0"), 2000))
    assert sources_of(head) == printed
    # Resume in the middle, and one data-parallel rank's part of every global batch.
    assert pairs(itertools.islice(mixed.open_shard_at_row("mixed_shard_0", 1500), 500)) == pairs(
        head[1500:]
    )
    rank1 = mixed.shard(1, 4, global_batch_size=400)
    mine = list(itertools.islice(rank1.open_shard("mixed_shard_0"), 200))
    assert pairs(mine) == pairs(head[100:200] + head[500:600])


# ---- Dynamic Weight Scheduling -------------------------------------------------------------


def test_dynamic_weight_scheduling() -> None:
    from mixindex import (
        HFDatasetShardedSource,
        MixedShardedSource,
        WeightSchedulePoint,
        WeightScheduler,
    )

    code_dataset, text_dataset = ds("code"), ds("text")

    # Define schedule
    scheduler = WeightScheduler(
        schedule=[
            WeightSchedulePoint(step=0, weights={"code": 0.2, "text": 0.8}),
            WeightSchedulePoint(step=10000, weights={"code": 0.5, "text": 0.5}),
            WeightSchedulePoint(step=50000, weights={"code": 0.8, "text": 0.2}),
        ],
        interpolation="linear",  # "step", "linear", or "cosine"
    )

    # Create sources
    code_source = HFDatasetShardedSource(code_dataset)
    text_source = HFDatasetShardedSource(text_dataset)

    # Mix with scheduler
    mixed = MixedShardedSource(
        sources={"code": code_source, "text": text_source},
        weight_scheduler=scheduler,
        block_size=1000,
    )

    out = sources_of(list(itertools.islice(mixed.open_shard("mixed_shard_0"), 20000)))
    assert Counter(out[:1000]) == {"code": 200, "text": 800}
    assert Counter(out[10000:11000]) == {"code": 500, "text": 500}
    # The step is the position in the mix: every block boundary stays within one example of
    # the schedule's cumulative target.
    target = 0.0
    for block in range(20):
        target += 1000 * scheduler.get_weights(block * 1000)["code"]
        assert abs(out[: (block + 1) * 1000].count("code") - target) < 1
    # seed=None (the default here) drew a seed, which repeats the mix.
    again = MixedShardedSource(
        sources={"code": code_source, "text": text_source},
        weight_scheduler=scheduler,
        block_size=1000,
        seed=mixed.seed,
    )
    assert sources_of(list(itertools.islice(again.open_shard("mixed_shard_0"), 20000))) == out


def test_visualizing_schedule(capsys: pytest.CaptureFixture[str]) -> None:
    from mixindex import WeightSchedulePoint, WeightScheduler

    scheduler = WeightScheduler(
        schedule=[
            WeightSchedulePoint(step=0, weights={"code": 0.2, "text": 0.8}),
            WeightSchedulePoint(step=10000, weights={"code": 0.5, "text": 0.5}),
            WeightSchedulePoint(step=50000, weights={"code": 0.8, "text": 0.2}),
        ],
        interpolation="linear",
    )

    # Check weights at any step
    print(scheduler.get_weights(0))  # {"code": 0.2, "text": 0.8}
    print(scheduler.get_weights(5000))  # {"code": 0.35, "text": 0.65}
    print(scheduler.get_weights(10000))  # {"code": 0.5, "text": 0.5}
    print(scheduler.get_weights(30000))  # {"code": 0.65, "text": 0.35}

    assert capsys.readouterr().out.count("code") == 4
    documented = {0: 0.2, 5000: 0.35, 10000: 0.5, 30000: 0.65}
    for step, code in documented.items():
        assert scheduler.get_weights(step) == pytest.approx({"code": code, "text": 1 - code})
    assert scheduler.dataset_names == ["code", "text"]


# ---- Stop Strategies -------------------------------------------------------------------------


@pytest.fixture
def sources() -> dict[str, Any]:
    from mixindex import HFDatasetShardedSource

    small = {"code": 70, "text": 90, "math": 15}
    return {
        "code": HFDatasetShardedSource(datasets.Dataset.from_dict(rows("code", small["code"]))),
        "text": HFDatasetShardedSource(
            datasets.Dataset.from_dict(rows("text", small["text"])).to_iterable_dataset()
        ),
        "math": HFDatasetShardedSource(datasets.Dataset.from_dict(rows("math", small["math"]))),
    }


def test_stop_strategies(sources: dict[str, Any]) -> None:
    from mixindex import MixedShardedSource

    # Infinite training - datasets loop
    mixed = MixedShardedSource(sources, stop_strategy="restart")
    endless = list(itertools.islice(mixed.open_shard("mixed_shard_0"), 3000))
    assert len(endless) == 3000
    with pytest.raises(TypeError, match="never ends"):
        len(mixed)

    # Stop at smallest dataset
    mixed = MixedShardedSource(sources, stop_strategy="first_exhausted")
    first = pairs(mixed.open_shard("mixed_shard_0"))
    assert len(set(first)) == len(first)  # no row repeats
    assert {n for s, n in first if s == "math"} == set(range(15))
    assert (
        pairs(mixed.open_shard_at_row("mixed_shard_0", len(first) // 2)) == first[len(first) // 2 :]
    )

    # Train until all data seen at least once
    mixed = MixedShardedSource(sources, stop_strategy="all_exhausted")
    every = pairs(mixed.open_shard("mixed_shard_0"))
    seen = {name: {n for s, n in every if s == name} for name in sources}
    assert [len(v) for v in seen.values()] == [70, 90, 15]
    assert (
        pairs(mixed.open_shard_at_row("mixed_shard_0", len(every) // 2)) == every[len(every) // 2 :]
    )


# ---- MixStageConfig --------------------------------------------------------------------------


def test_mix_stage_config() -> None:
    from mixindex import MixStageConfig, WeightSchedulePoint

    config = MixStageConfig(
        weights={"code": 0.3, "text": 0.7},  # Static weights
        weight_schedule=[  # Or dynamic schedule
            WeightSchedulePoint(step=0, weights={"code": 0.2, "text": 0.8}),
            WeightSchedulePoint(step=10000, weights={"code": 0.5, "text": 0.5}),
        ],
        weight_schedule_type="linear",  # "step", "linear", "cosine"
        block_size=1000,
        stop_strategy="restart",
        seed=42,
    )

    # The schedule wins; the static weights are still checked against the datasets. (An
    # index of a "restart" mix needs its length.)
    spec = mixindex.PipelineConfig(
        datasets=[
            mixindex.DatasetConfig(name="code", data_files=ds("code")),
            mixindex.DatasetConfig(name="text", data_files=ds("text")),
        ],
        mix=dataclasses.replace(config, num_examples=20_000),
    )
    assert spec.scheduler().get_weights(5000) == pytest.approx({"code": 0.35, "text": 0.65})
    with pytest.raises(mixindex.SpecError, match="'txt'"):
        mixindex.PipelineConfig(
            datasets=spec.datasets,
            mix=MixStageConfig(
                weights={"code": 0.3, "txt": 0.7},
                weight_schedule=list(config.weight_schedule or []),
                seed=42,
                num_examples=10,
            ),
        )


# ---- CompositeShardedSource ------------------------------------------------------------------


def test_composite_sharded_source(hub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(hub)
    (hub / "data1").symlink_to(hub / "code")
    (hub / "data2").symlink_to(hub / "text")
    seen: list[dict[str, Any]] = []
    process = seen.append

    from mixindex import CompositeShardedSource, ParquetShardedSource

    source1 = ParquetShardedSource("data1/*.parquet")
    source2 = ParquetShardedSource("data2/*.parquet")

    # Simple concatenation (no mixing)
    combined = CompositeShardedSource([source1, source2])

    # All shards from both sources
    for shard in combined.shard_names:
        for example in combined.open_shard(shard):
            process(example)

    assert len(combined.shard_names) == 4 and len(combined) == 1600
    expected = [
        r for name in ("code", "text") for r in datasets.Dataset.from_dict(rows(name, SIZES[name]))
    ]
    assert seen == expected


# ---- Best Practices --------------------------------------------------------------------------


def test_choose_block_size() -> None:
    from mixindex import block_mixture_interleave

    data = {"code": ds("code"), "text": ds("text")}
    kw: dict[str, Any] = {"datasets": data, "weights": {"code": 0.25, "text": 0.75}}

    # Smaller blocks = more interleaving but more overhead
    mixed = block_mixture_interleave(**kw, block_size=100)
    assert Counter(sources_of(list(itertools.islice(mixed, 100)))) == {"code": 25, "text": 75}

    # Larger blocks = less overhead but more bursty
    mixed = block_mixture_interleave(**kw, block_size=10000)
    assert Counter(sources_of(list(itertools.islice(mixed, 10000)))) == {"code": 2500, "text": 7500}

    # Recommended: 1000-2000 for good balance
    mixed = block_mixture_interleave(**kw, block_size=1000)
    assert Counter(sources_of(list(itertools.islice(mixed, 1000)))) == {"code": 250, "text": 750}


def test_curriculum_and_imbalanced_schedules() -> None:
    from mixindex import WeightSchedulePoint, WeightScheduler

    # Start with easier data, gradually increase difficulty
    scheduler = WeightScheduler(
        schedule=[
            WeightSchedulePoint(step=0, weights={"easy": 0.9, "hard": 0.1}),
            WeightSchedulePoint(step=50000, weights={"easy": 0.5, "hard": 0.5}),
            WeightSchedulePoint(step=100000, weights={"easy": 0.1, "hard": 0.9}),
        ],
        interpolation="cosine",  # Smooth transition
    )
    assert scheduler.get_weights(25000)["hard"] == pytest.approx(0.1 + 0.4 * 0.5)

    # Small dataset with important data
    scheduler = WeightScheduler(
        schedule=[
            # High weight initially to ensure exposure
            WeightSchedulePoint(step=0, weights={"small_important": 0.5, "large": 0.5}),
            # Reduce after sufficient exposure
            WeightSchedulePoint(step=10000, weights={"small_important": 0.1, "large": 0.9}),
        ],
    )
    assert scheduler.interpolation == "step"
    assert scheduler.get_weights(9999)["small_important"] == pytest.approx(0.5)
    assert scheduler.get_weights(10000)["small_important"] == pytest.approx(0.1)


def test_track_data_source(sources: dict[str, Any]) -> None:
    from mixindex import MixedShardedSource

    counts: Counter[str] = Counter()

    mixed = MixedShardedSource(sources, seed=1, block_size=10)

    for example in itertools.islice(mixed.open_shard(mixed.shard_names[0]), 300):
        source_name = example.get("__source__")  # Added automatically
        if source_name == "code":
            # Apply code-specific processing
            pass
        counts[source_name] += 1

    assert counts == {"code": 100, "text": 100, "math": 100}


# ---- Reproducibility -------------------------------------------------------------------------


def test_reproducibility(sources: dict[str, Any]) -> None:
    from mixindex import MixedShardedSource, block_mixture_interleave

    datasets = {"code": ds("code"), "text": ds("text"), "math": ds("math")}

    # Same seed = same sequence
    mixed1 = block_mixture_interleave(datasets, seed=42)
    mixed2 = block_mixture_interleave(datasets, seed=42)

    # Different seeds = different sequences
    mixed3 = block_mixture_interleave(datasets, seed=123)

    first = pairs(itertools.islice(mixed1, 3000))
    assert first == pairs(itertools.islice(mixed2, 3000))
    other = pairs(itertools.islice(mixed3, 3000))
    assert other != first
    # Not the same blocks shifted (EasyDeL seeds block b with seed + b).
    shifted = block_mixture_interleave(datasets, seed=43)
    assert pairs(itertools.islice(shifted, 2000)) != first[1000:3000]

    # All workers use same seed for consistent global ordering
    mixed = MixedShardedSource(
        sources=sources,
        seed=42,  # Same across all workers
    )

    workers = [MixedShardedSource(sources=sources, seed=42) for _ in range(2)]
    heads = [pairs(itertools.islice(w.open_shard("mixed_shard_0"), 500)) for w in workers]
    assert heads[0] == heads[1] == pairs(itertools.islice(mixed.open_shard("mixed_shard_0"), 500))


# ---- Pipeline API Mixing -----------------------------------------------------------------------


class Trained(Exception):
    """Ends the page's endless training loop ("restart" never runs out)."""


def test_pipeline_api_mixing(hub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.tokenizing import make_tokenizer

    _, llama = make_tokenizer(tmp_path / "tok")  # stands for "meta-llama/Llama-2-7b"
    monkeypatch.chdir(tmp_path)
    Path("code_data").mkdir()
    Path("text_data").mkdir()
    for name, folder in (("code", "code_data"), ("text", "text_data")):
        for f in (hub / name).glob("*.parquet"):
            Path(folder, f.name).symlink_to(f)
    batches: list[dict[str, Any]] = []

    def train_step(batch: dict[str, Any]) -> None:
        batches.append(batch)
        if len(batches) == 250:
            raise Trained

    from mixindex import (
        DatasetConfig,
        MixStageConfig,
        Pipeline,
        PipelineConfig,
    )

    config = PipelineConfig(
        datasets=[
            DatasetConfig(
                name="code",
                data_files="code_data/*.parquet",
                tokenizer=str(llama),
            ),
            DatasetConfig(
                name="text",
                data_files="text_data/*.parquet",
                tokenizer=str(llama),
            ),
        ],
        mix=MixStageConfig(
            weights={"code": 0.3, "text": 0.7},
            block_size=1000,
            stop_strategy="restart",
        ),
    )

    pipeline = Pipeline.from_config(config)
    with pytest.raises(Trained):
        for batch in pipeline.source().tokenize().mix().load().build():
            train_step(batch)

    # LoadStageConfig's default batch of 8: stacked numpy arrays, one row per example.
    for batch in batches:
        assert set(batch) == {"input_ids", "attention_mask", "__source__"}
        assert batch["input_ids"].shape == batch["__source__"].shape == (8,)
        assert batch["__source__"].dtype.kind == "U"
    sources = [s for b in batches for s in b["__source__"]]
    assert Counter(sources[:1000]) == Counter(sources[1000:]) == {"code": 300, "text": 700}
    tok = batches[0]["input_ids"][0]
    assert tok.ndim == 1 and len(tok) > 0 and tok.dtype.kind == "i"
    # The loop can stop and go on: the state after the last batch resumes at the next one.
    state = json.loads(json.dumps(pipeline.state_dict()))
    again = Pipeline.from_config(config).source().tokenize().mix().load()
    again.load_state_dict(state)
    following = next(iter(again.build()))
    whole = Pipeline.from_config(config).source().tokenize().mix().load().build()
    expected = next(itertools.islice(iter(whole), 250, None))
    assert following["__source__"].tolist() == expected["__source__"].tolist()
    assert [x.tolist() for x in following["input_ids"]] == [
        x.tolist() for x in expected["input_ids"]
    ]


# ---- Legacy DatasetMixture API -----------------------------------------------------------------


def test_legacy_dataset_mixture(hub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("data1").mkdir()
    for f in (hub / "code").glob("*.parquet"):
        Path("data1", f.name).symlink_to(f)
    Path("data2").mkdir()
    with open("data2/part-0.json", "w", encoding="utf-8") as f:
        for i in range(400):
            f.write(json.dumps({"content": f"doc {i}", "n": i}) + "\n")

    from mixindex import DatasetMixture, TextDatasetInform, build_dataset

    mixture = DatasetMixture(
        informs=[
            TextDatasetInform(
                type="parquet",
                data_files="data1/*.parquet",
                content_field="text",
            ),
            TextDatasetInform(
                type="json",
                data_files="data2/*.json",
                content_field="content",
            ),
        ],
        mixture_weights={"ds1": 0.7, "ds2": 0.3},
        block_mixture=True,
        mixture_block_size=2048,
        streaming=True,
        seed=42,
    )

    dataset = build_dataset(mixture)

    assert isinstance(dataset, datasets.IterableDataset)
    head = list(itertools.islice(dataset, 4096))
    assert all(set(ex) == {"text"} for ex in head)
    # "ds1" and "ds2" name no inform: the weights are taken in inform order, and every block
    # of 2048 holds its exact share (1433.6 and 614.4 examples).
    for block in (head[:2048], head[2048:]):
        code = sum(ex["text"].startswith("code example") for ex in block)
        assert (
            code in (1433, 1434)
            and sum(ex["text"].startswith("doc") for ex in block) == 2048 - code
        )
    # Each source is read in order and restarts when it runs out (700 code rows).
    codes = [ex["text"] for ex in head if ex["text"].startswith("code")]
    assert codes[:700] == [f"code example {i}" for i in range(700)] and codes[700] == codes[0]
