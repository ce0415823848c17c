"""The Pipeline API: stage order, tokenization, mixing (in memory and by an index), batches,
resume, and each EasyDeL defect the pipeline must not repeat."""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import mixindex
from mixindex import (
    DatasetConfig,
    LoadStageConfig,
    MixStageConfig,
    PackStageConfig,
    Pipeline,
    PipelineConfig,
    SaveStageConfig,
    SourceError,
    SpecError,
    StageError,
    StateError,
    TokenizerConfig,
    TokenizeStageConfig,
)
from mixindex.pipeline import load as load_module
from tests.tokenizing import make_tokenizer

SIZES = {"code": 60, "text": 90}


def sentence(name: str, i: int) -> str:
    # Lengths 1..17 words; words w0..w199 (each its own token).
    return " ".join(f"w{(i * 7 + j + len(name)) % 200}" for j in range(i % 17 + 1))


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pipe")
    make_tokenizer(root / "tok")
    for name, n in SIZES.items():
        (root / name).mkdir()
        rows = {"text": [sentence(name, i) for i in range(n)], "n": list(range(n))}
        half = n // 2
        for part, (lo, hi) in enumerate(((0, half), (half, n))):
            pq.write_table(
                pa.table({k: v[lo:hi] for k, v in rows.items()}), root / name / f"p{part}.parquet"
            )
    return root


def config(root: Path, **kw: Any) -> PipelineConfig:
    tok = str(root / "tok" / "tokenizer.json")
    mix = kw.pop("mix", MixStageConfig(weights={"code": 0.4, "text": 0.6}, block_size=10, seed=3))
    return PipelineConfig(
        datasets=[
            DatasetConfig(
                name=n,
                data_files=str(root / n / "*.parquet"),
                tokenizer=tok,
                additional_fields=["n"],
            )
            for n in SIZES
        ],
        mix=mix,
        load=kw.pop("load", LoadStageConfig(batch_size=4)),
        **kw,
    )


def ids(batch: dict[str, np.ndarray]) -> list[Any]:
    return [np.asarray(x).tolist() for x in batch["input_ids"]]


def take(loader: Any, k: int) -> list[dict[str, np.ndarray]]:
    return list(itertools.islice(iter(loader), k))


def tokenizer(root: Path) -> Any:
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_file=str(root / "tok" / "tokenizer.json"))


# ---- stage order ---------------------------------------------------------------------------------


def test_stage_order_errors_are_errors(root: Path) -> None:
    p = Pipeline.from_config(config(root))
    with pytest.raises(StageError, match="before source"):
        p.tokenize()
    p.source()
    with pytest.raises(StageError, match="tokenize\\(\\) before pack"):
        p.pack()
    with pytest.raises(StageError, match="already called"):
        p.source()
    p.tokenize().pack()
    with pytest.raises(StageError, match="before pack"):
        p.mix()
    p.load()
    with pytest.raises(StageError, match="after load"):
        p.save()
    with pytest.raises(StageError, match="before source"):
        Pipeline.from_config(config(root)).build()


def test_tokenize_after_mix_tokenizes(root: Path) -> None:
    # EasyDeL's tokenize() after mix() passes the examples through untokenized.
    p = Pipeline.from_config(config(root)).source().mix().tokenize()
    after = list(itertools.islice(iter(p.build()), 50))
    before = list(
        itertools.islice(
            iter(Pipeline.from_config(config(root)).source().tokenize().mix().build()), 50
        )
    )
    tok = tokenizer(root)
    assert after == before
    raw = list(
        itertools.islice(iter(Pipeline.from_config(config(root)).source().mix().build()), 50)
    )
    for ex, src in zip(after, raw, strict=True):
        assert ex["input_ids"] == tok(src["text"])["input_ids"]
        assert ex["__source__"] == src["__source__"] and ex["n"] == src["n"]
        assert "text" not in ex


def test_a_dataset_without_a_tokenizer_is_an_error(root: Path) -> None:
    c = config(root, mix=MixStageConfig(seed=1, block_size=10))
    bare = PipelineConfig(
        datasets=[DatasetConfig(name="code", data_files=str(root / "code" / "*.parquet"))],
        mix=c.mix,
    )
    with pytest.raises(SpecError, match="'code' has no tokenizer"):
        Pipeline.from_config(bare).source().tokenize().build()
    wrong = PipelineConfig(
        datasets=[
            DatasetConfig(
                name="code",
                data_files=str(root / "code" / "*.parquet"),
                content_field="body",
                tokenizer=str(root / "tok" / "tokenizer.json"),
            )
        ],
        mix=c.mix,
    )
    with pytest.raises(SourceError, match="no field 'body'"):
        next(iter(Pipeline.from_config(wrong).source().tokenize().build()))


def test_tokenizer_from_a_folder_and_from_tokenizer_json_agree(root: Path) -> None:
    def first(tok: Any) -> list[Any]:
        c = config(root, default_tokenizer=tok)
        c = PipelineConfig(
            datasets=[DatasetConfig(name=d.name, data_files=d.data_files) for d in c.datasets],
            mix=c.mix,
            tokenize=TokenizeStageConfig(default_tokenizer=tok, batch_size=7),
        )
        return [
            ex["input_ids"]
            for ex in itertools.islice(
                iter(Pipeline.from_config(c).source().mix().tokenize().build()), 30
            )
        ]

    a = first(str(root / "tok" / "hf"))
    b = first(str(root / "tok" / "tokenizer.json"))
    assert a == b and all(len(x) > 0 for x in a)


def test_unnamed_datasets_are_named_dataset_i(root: Path) -> None:
    c = PipelineConfig(
        datasets=[DatasetConfig(data_files=str(root / n / "*.parquet")) for n in SIZES],
        mix=MixStageConfig(seed=1, block_size=10),
    )
    assert c.names == ("dataset_0", "dataset_1")
    head = list(itertools.islice(iter(Pipeline.from_config(c).source().mix().build()), 20))
    assert Counter(ex["__source__"] for ex in head) == {"dataset_0": 10, "dataset_1": 10}


# ---- mixing ------------------------------------------------------------------------------------


def test_seed_zero_is_a_seed(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    # EasyDeL's mix() treats seed=0 as "no seed" and draws one.
    def run() -> list[tuple[str, int]]:
        c = config(
            root, mix=MixStageConfig(weights={"code": 0.5, "text": 0.5}, block_size=10, seed=0)
        )
        return [
            (ex["__source__"], ex["n"])
            for ex in itertools.islice(iter(Pipeline.from_config(c).source().mix().build()), 100)
        ]

    first = run()
    assert run() == first
    assert "drew seed" not in caplog.text
    other = config(
        root, mix=MixStageConfig(weights={"code": 0.5, "text": 0.5}, block_size=10, seed=1)
    )
    assert [
        (ex["__source__"], ex["n"])
        for ex in itertools.islice(iter(Pipeline.from_config(other).source().mix().build()), 100)
    ] != first


def test_mix_from_an_index_is_the_in_memory_mix_and_is_built_once(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mix = MixStageConfig(
        weights={"code": 0.4, "text": 0.6}, block_size=10, seed=3, num_examples=300
    )
    c = config(root, mix=mix)
    index = tmp_path / "mix.mixindex"
    memory = [(e["__source__"], e["n"]) for e in Pipeline.from_config(c).source().mix().build()]
    stored = Pipeline.from_config(c).source().mix(index=index).build()
    assert [(e["__source__"], e["n"]) for e in stored] == memory
    assert len(memory) == 300

    import mixindex.builder

    builds: list[Any] = []
    real = mixindex.builder.build
    monkeypatch.setattr(
        mixindex.builder, "build", lambda *a, **k: builds.append(a) or real(*a, **k)
    )
    list(Pipeline.from_config(c).source().mix(index=index).build())
    assert builds == []  # same spec, same files: reused
    other = config(
        root,
        mix=MixStageConfig(
            weights={"code": 0.5, "text": 0.5}, block_size=10, seed=3, num_examples=300
        ),
    )
    again = [
        (e["__source__"], e["n"])
        for e in Pipeline.from_config(other).source().mix(index=index).build()
    ]
    assert len(builds) == 1 and Counter(s for s, _ in again[:10]) == {"code": 5, "text": 5}


def test_an_index_needs_a_length_a_stream_does_not(root: Path, tmp_path: Path) -> None:
    c = config(root)  # restart, no num_examples
    with pytest.raises(SpecError, match="num_examples is missing"):
        mixindex.build(c, tmp_path / "x.mixindex")
    assert not (tmp_path / "x.mixindex").exists()
    loader = Pipeline.from_config(c).source().tokenize().mix().load().build()
    assert len(take(loader, 100)) == 100  # past every source's end: it restarts


# ---- batches -------------------------------------------------------------------------------------


def test_packed_and_padded_batches_are_2d_int_arrays(root: Path) -> None:
    c = config(root, pack=PackStageConfig(seq_length=32), load=LoadStageConfig(batch_size=3))
    batch = take(Pipeline.from_config(c).source().tokenize().mix().pack().load().build(), 1)[0]
    assert set(batch) == {"input_ids", "attention_mask", "segment_ids"}
    assert all(v.shape == (3, 32) and v.dtype == np.int32 for v in batch.values())
    padded = TokenizerConfig(
        name_or_path=str(root / "tok" / "hf"), padding="max_length", max_length=24
    )
    c = config(root, default_tokenizer=padded)
    c = PipelineConfig(
        datasets=[DatasetConfig(name=d.name, data_files=d.data_files) for d in c.datasets],
        mix=c.mix,
        default_tokenizer=padded,
        load=LoadStageConfig(batch_size=5),
    )
    batch = take(Pipeline.from_config(c).source().tokenize().mix().load().build(), 1)[0]
    assert batch["input_ids"].shape == (5, 24) and batch["input_ids"].dtype.kind == "i"
    assert batch["attention_mask"].shape == (5, 24)
    assert batch["__source__"].dtype.kind == "U" and set(batch["__source__"]) <= set(SIZES)


def test_drop_last(root: Path) -> None:
    mix = MixStageConfig(
        weights={"code": 0.5, "text": 0.5}, seed=1, block_size=10, stop_strategy="first_exhausted"
    )
    sizes = {}
    for drop in (True, False):
        c = config(root, mix=mix, load=LoadStageConfig(batch_size=7, drop_last=drop))
        p = Pipeline.from_config(c).source().tokenize().mix().load()
        sizes[drop] = [len(b["input_ids"]) for b in p.build()]
    total = 120  # code's 60 rows run out first, at position 120
    assert sizes[True] == [7] * (total // 7)
    assert sizes[False] == [7] * (total // 7) + [total % 7]


def test_the_shuffle_buffer_is_seeded_and_leaves_the_global_rng_alone(root: Path) -> None:
    # EasyDeL's loader shuffles with the global ``random`` module.
    def run(shuffle: int | None) -> list[Any]:
        c = config(root, seed=11, load=LoadStageConfig(batch_size=5, shuffle_buffer_size=shuffle))
        return [
            x
            for b in take(Pipeline.from_config(c).source().tokenize().mix().load().build(), 10)
            for x in ids(b)
        ]

    random.seed(1)
    before = random.getstate()
    first = run(16)
    assert random.getstate() == before
    random.seed(2)
    np.random.seed(2)
    assert run(16) == first
    plain = run(None)
    assert first != plain and sorted(map(str, first[:48])) == sorted(map(str, plain[:48]))


def test_prefetch_raises_the_error_it_met(root: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    pq.write_table(pa.table({"text": ["w1 w2"] * 5 + [None] * 5}), bad / "a.parquet")  # type: ignore[list-item]
    c = PipelineConfig(
        datasets=[
            DatasetConfig(
                name="bad",
                data_files=str(bad / "a.parquet"),
                tokenizer=str(root / "tok" / "tokenizer.json"),
            )
        ],
        mix=MixStageConfig(seed=1, block_size=5, stop_strategy="first_exhausted"),
        tokenize=TokenizeStageConfig(batch_size=5),
        load=LoadStageConfig(batch_size=5, prefetch_enabled=True),
    )
    loader = Pipeline.from_config(c).source().tokenize().mix().load().build()
    it = iter(loader)
    assert len(next(it)["input_ids"]) == 5
    with pytest.raises(SourceError, match="holds a NoneType, not text"):
        next(it)


def test_a_slow_source_is_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    # EasyDeL's loader ends silently when no batch comes for 60 s; ours waits (here the poll
    # interval is made short, and each batch takes several intervals).
    monkeypatch.setattr(load_module, "_POLL_S", 0.01)

    def slow(state: Any) -> Iterator[tuple[Any, Any]]:
        for i in range(4):
            time.sleep(0.05)
            yield {"x": np.array([i])}, {"position": i + 1}

    state: list[Any] = [None]
    loader = load_module.Loader(
        slow, LoadStageConfig(), lambda: state[0], lambda s: state.__setitem__(0, s)
    )
    assert [int(b["x"][0]) for b in loader] == [0, 1, 2, 3]
    assert state[0] == {"position": 4}
    assert not [t for t in threading.enumerate() if t.name == "mixindex-prefetch" and t.is_alive()]


def test_torch_dataloader(root: Path) -> None:
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    c = config(root, pack=PackStageConfig(seq_length=16), load=LoadStageConfig(batch_size=2))
    numpy_batches = take(Pipeline.from_config(c).source().tokenize().mix().pack().load().build(), 3)
    loader = Pipeline.from_config(c).source().tokenize().mix().pack().load().build()
    torch_batches = list(itertools.islice(DataLoader(loader.torch(), batch_size=None), 3))
    for a, b in zip(numpy_batches, torch_batches, strict=True):
        assert isinstance(b["input_ids"], torch.Tensor)
        assert (b["input_ids"].numpy() == a["input_ids"]).all()


# ---- resume --------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["greedy", "first_fit", "pool"])
@pytest.mark.parametrize("index", [False, True])
def test_a_packed_pipeline_resumes_mid_stream(
    root: Path, tmp_path: Path, strategy: str, index: bool
) -> None:
    mix = MixStageConfig(
        weights={"code": 0.4, "text": 0.6}, block_size=10, seed=3, num_examples=400
    )
    c = config(
        root,
        mix=mix,
        pack=PackStageConfig(
            seq_length=24, strategy=strategy, num_packers=2, shuffle_buffer_factor=3
        ),
        load=LoadStageConfig(batch_size=3, shuffle_buffer_size=5),
    )

    def pipeline() -> Pipeline:
        p = Pipeline.from_config(c).source().tokenize()
        return p.mix(index=tmp_path / "m.mixindex" if index else None).pack().load()

    whole = [ids(b) for b in pipeline().build()]
    assert len(whole) > 20
    for stop in (1, 7, len(whole) // 2, len(whole) - 1):
        first = pipeline()
        it = iter(first.build())
        got = [ids(next(it)) for _ in range(stop)]
        state = json.loads(json.dumps(first.state_dict()))
        later = pipeline()
        later.load_state_dict(state)
        assert got + [ids(b) for b in later.build()] == whole, stop


def test_a_state_of_another_pipeline_is_refused(root: Path) -> None:
    p = Pipeline.from_config(config(root)).source().tokenize().mix().load()
    take(p.build(), 2)
    state = p.state_dict()
    other = Pipeline.from_config(config(root, seed=5)).source().tokenize().mix().load()
    with pytest.raises(StateError, match="another pipeline"):
        other.load_state_dict(state)
    with pytest.raises(StateError, match="not a state"):
        p.load_state_dict({"version": 99})
    # A state loaded before the stages is checked when the pipeline is built.
    early = Pipeline.from_config(config(root))
    early.load_state_dict(state)
    with pytest.raises(StateError, match="another pipeline"):
        early.source().tokenize().mix().build()
    ok = Pipeline.from_config(config(root))
    ok.load_state_dict(state)
    resumed = take(ok.source().tokenize().mix().load().build(), 1)[0]
    whole = take(Pipeline.from_config(config(root)).source().tokenize().mix().load().build(), 3)
    assert ids(resumed) == ids(whole[2])


def test_enabled_stages_run_without_being_called(root: Path, tmp_path: Path) -> None:
    mix = MixStageConfig(
        weights={"code": 0.4, "text": 0.6}, block_size=10, seed=3, num_examples=100
    )
    out = tmp_path / "saved"
    c = config(
        root,
        mix=mix,
        pack=PackStageConfig(enabled=True, seq_length=16),
        save=SaveStageConfig(enabled=True, output_dir=str(out)),
    )
    p = Pipeline.from_config(c).source().tokenize().mix().load()
    assert p.stages == ["source", "tokenize", "mix", "pack", "load"]
    assert p.saved_paths and all(f.parent == out for f in p.saved_paths)
    rows = pa.concat_tables([pq.read_table(f) for f in p.saved_paths]).num_rows
    batches = list(p.build())
    assert all(b["input_ids"].shape == (4, 16) for b in batches)
    assert rows // 4 == len(batches)


# ---- save ----------------------------------------------------------------------------------------


def test_save_writes_parquet_shards(root: Path, tmp_path: Path) -> None:
    mix = MixStageConfig(
        weights={"code": 0.4, "text": 0.6}, block_size=10, seed=3, num_examples=200
    )
    c = config(
        root,
        mix=mix,
        pack=PackStageConfig(seq_length=16, shuffle_packed=False),
        save=SaveStageConfig(max_shard_size="8KB"),
    )
    out = tmp_path / "out"
    p = Pipeline.from_config(c).source().tokenize().mix().pack().save(out)
    assert len(p.saved_paths) > 1 and all(f.name.startswith("data-") for f in p.saved_paths)
    table = pa.concat_tables([pq.read_table(f) for f in p.saved_paths])
    expected = list(Pipeline.from_config(c).source().tokenize().mix().pack().build())
    assert table.column("input_ids").to_pylist() == [e["input_ids"].tolist() for e in expected]
    assert sorted(x.name for x in out.iterdir() if x.name[0] != ".") == [
        f.name for f in p.saved_paths
    ]
    with pytest.raises(mixindex.OutputError, match="not empty"):
        Pipeline.from_config(c).source().save(out)


def test_overwrite_replaces_only_the_shards_a_save_wrote(root: Path, tmp_path: Path) -> None:
    mix = MixStageConfig(weights={"code": 0.4, "text": 0.6}, block_size=10, seed=3, num_examples=50)
    out = tmp_path / "out"
    again = SaveStageConfig(overwrite=True)
    first = Pipeline.from_config(config(root, mix=mix)).source().tokenize().mix().save(out)
    (out / "notes.txt").write_text("mine")
    p = Pipeline.from_config(config(root, mix=mix, save=again)).source().tokenize().mix()
    p.save(out)
    assert (out / "notes.txt").read_text() == "mine"
    assert [f.name for f in p.saved_paths] == [f.name for f in first.saved_paths]
    # A shard-like file that no save wrote is someone else's: refused, left as it was.
    (out / "data-00007.parquet").write_bytes(b"user data")
    with pytest.raises(mixindex.OutputError, match=r"data-00007\.parquet"):
        Pipeline.from_config(config(root, mix=mix, save=again)).source().tokenize().mix().save(out)
    assert (out / "data-00007.parquet").read_bytes() == b"user data"
    assert all((out / f.name).exists() for f in first.saved_paths)


def test_save_refuses_an_endless_mix(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "never"
    with pytest.raises(SpecError, match="never end"):
        Pipeline.from_config(config(root)).source().tokenize().mix().save(out)
    assert not out.exists()
