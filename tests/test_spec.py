"""The spec: strict config objects, normalisation, loading from TOML/YAML/JSON."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from mixindex.errors import SpecError
from mixindex.spec import (
    DatasetConfig,
    MixStageConfig,
    PipelineConfig,
    StopStrategy,
    load_spec,
)

SPEC = {
    "datasets": [
        {"name": "code", "data_files": "data/code/*.parquet", "type": "parquet"},
        {"name": "text", "data_files": ["a.arrow", "b.arrow"]},
    ],
    "mix": {
        "weight_schedule": [
            {"step": 0, "weights": {"code": 2, "text": 8}},
            {"step": 100, "weights": {"code": 1, "text": 1}},
        ],
        "weight_schedule_type": "cosine",
        "block_size": 10,
        "stop_strategy": "all_exhausted",
        "seed": 0,
    },
}


def test_normalised_spec_spells_out_everything() -> None:
    config = PipelineConfig.from_dict(SPEC, base_dir="/data")
    d = config.to_dict()
    assert d["mix"] == {
        "weight_schedule": [
            {"step": 0, "weights": {"code": 0.2, "text": 0.8}},
            {"step": 100, "weights": {"code": 0.5, "text": 0.5}},
        ],
        "weight_schedule_type": "cosine",
        "block_size": 10,
        "stop_strategy": "all_exhausted",
        "seed": 0,
        "num_examples": None,
        "row_order": "sequential",
    }
    assert d["datasets"][0]["data_files"] == ["data/code/*.parquet"]
    assert d["datasets"][1] == {"name": "text", "data_files": ["a.arrow", "b.arrow"], "type": None}
    assert config.mix.stop_strategy is StopStrategy.ALL_EXHAUSTED
    assert config.base_dir == Path("/data")


def test_plain_weights_become_a_one_point_schedule_and_none_means_equal() -> None:
    ds = [DatasetConfig(name=n, data_files=f"{n}.arrow") for n in ("a", "b", "c", "d")]
    config = PipelineConfig(datasets=ds, mix=MixStageConfig(seed=1, num_examples=5))
    assert config.to_dict()["mix"]["weight_schedule"] == [
        {"step": 0, "weights": dict.fromkeys("abcd", 0.25)}
    ]


def test_seed_zero_is_a_seed() -> None:
    # `seed or default` elsewhere treats 0 as unset; here 0 is kept.
    assert MixStageConfig(seed=0, num_examples=1).seed == 0


def test_seed_none_draws_a_seed_once_logs_and_records_it(caplog: pytest.LogCaptureFixture) -> None:
    # EasyDeL's default seed is None; a run must still be repeatable after the fact.
    with caplog.at_level(logging.WARNING, logger="mixindex"):
        mix = MixStageConfig(seed=None, num_examples=5)
    assert isinstance(mix.seed, int) and f"seed = {mix.seed}" in caplog.text
    ds = [DatasetConfig(name=n, data_files=f"{n}.arrow") for n in ("a", "b")]
    config = PipelineConfig(datasets=ds, mix=mix)
    assert config.to_dict()["mix"]["seed"] == mix.seed  # what the index records
    assert MixStageConfig(seed=None, num_examples=5).seed != mix.seed


@pytest.mark.parametrize("suffix", [".toml", ".yaml", ".json"])
def test_the_three_formats_load_the_same_spec(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"spec{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(SPEC))
    elif suffix == ".yaml":
        import yaml

        path.write_text(yaml.safe_dump(SPEC))
    else:
        path.write_text(
            '[[datasets]]\nname = "code"\ndata_files = "data/code/*.parquet"\ntype = "parquet"\n'
            '[[datasets]]\nname = "text"\ndata_files = ["a.arrow", "b.arrow"]\n'
            "[mix]\n"
            "weight_schedule = [ { step = 0, weights = { code = 2, text = 8 } },\n"
            "                    { step = 100, weights = { code = 1, text = 1 } } ]\n"
            'weight_schedule_type = "cosine"\nblock_size = 10\nstop_strategy = "all_exhausted"\n'
            "seed = 0\n"
        )
    config = load_spec(path)
    assert config.to_dict() == PipelineConfig.from_dict(SPEC).to_dict()
    assert config.base_dir == tmp_path.resolve()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["mix"].pop("seed"), "seed is missing"),
        (lambda d: d["mix"].update(seed=-1), "-1"),
        (lambda d: d["mix"].update(seed=True), "True"),
        (lambda d: d["mix"].update(sed=1), "'sed'"),
        (lambda d: d["datasets"][0].update(weight=1), "'weight'"),
        (lambda d: d.update(extra=1), "'extra'"),
        (lambda d: d["mix"].update(block_size=0), "block_size = 0"),
        (lambda d: d["mix"].update(stop_strategy="first"), "'first'"),
        (lambda d: d["mix"].update(stop_strategy="restart"), "num_examples is missing"),
        (lambda d: d["mix"].update(row_order="random"), "'random'"),
        # With a schedule, the weights are still checked (the schedule wins).
        (lambda d: d["mix"].update(weights={"code": 1, "txt": 1}), "'txt'"),
        (lambda d: d["mix"].update(weights={"code": -2, "text": 1}), "-2"),
        (lambda d: d["datasets"][1].update(name="code"), "two datasets are named 'code'"),
        (lambda d: d["datasets"][1].update(type="xml"), "'xml'"),
        (lambda d: d["datasets"][1].update(data_files=[]), "data_files"),
        (lambda d: d["datasets"][1].update(name="__x"), "'__x'"),
        (lambda d: d.update(datasets=[]), "datasets is empty"),
        (lambda d: d["mix"]["weight_schedule"][1].update(extra=1), "exactly the keys"),
    ],
)
def test_bad_specs_are_refused_with_the_bad_value(change, message: str) -> None:  # type: ignore[no-untyped-def]
    d = json.loads(json.dumps(SPEC))
    change(d)
    with pytest.raises(SpecError, match=message):
        PipelineConfig.from_dict(d)


def test_unreadable_spec_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[mix\nseed = 1")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(bad)
    txt = tmp_path / "spec.txt"
    txt.write_text("{}")
    with pytest.raises(SpecError, match=r"'\.txt'"):
        load_spec(txt)
