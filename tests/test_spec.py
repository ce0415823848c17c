"""The spec: strict config objects, normalisation, loading from TOML/YAML/JSON."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from clirun import assert_ok, assert_one_line_error, run, run_process

import mixindex
from mixindex.errors import SpecError
from mixindex.spec.config import (
    MAX_BLOCK_SIZE,
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


# ---- whole numbers, huge or odd values, YAML aliases ------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "shown"),
    [
        ("seed", 42.0, "42.0"),
        ("block_size", 1000.0, "1000.0"),
        ("num_examples", 1e4, "10000.0"),
        ("seed", True, "True"),
        ("block_size", True, "True"),
        ("num_examples", False, "False"),
        ("seed", "42", "'42'"),
    ],
)
def test_a_float_or_bool_where_an_integer_belongs_is_refused(
    key: str, value: object, shown: str
) -> None:
    d = json.loads(json.dumps(SPEC))
    d["mix"][key] = value
    with pytest.raises(SpecError, match=rf"mix\.{key} = {shown} is not an integer"):
        PipelineConfig.from_dict(d)
    # Python config objects are as strict as files.
    with pytest.raises(SpecError, match=rf"mix\.{key} = {shown} is not an integer"):
        MixStageConfig(**{**d["mix"], "weight_schedule": None})


@pytest.mark.parametrize("step", [100.0, True])
def test_a_schedule_step_must_be_an_integer(step: object) -> None:
    d = json.loads(json.dumps(SPEC))
    d["mix"]["weight_schedule"][1]["step"] = step
    with pytest.raises(
        SpecError, match=rf"weight_schedule\[1\]\.step = {step!r} is not an integer"
    ):
        PipelineConfig.from_dict(d)


def test_numpy_integers_are_integers_and_stored_as_int() -> None:
    import numpy as np

    mix = MixStageConfig(seed=np.uint64(7), block_size=np.int32(10), num_examples=np.int64(50))
    assert (mix.seed, mix.block_size, mix.num_examples) == (7, 10, 50)
    assert all(type(v) is int for v in (mix.seed, mix.block_size, mix.num_examples))


def test_block_size_is_capped() -> None:
    assert MixStageConfig(seed=0, num_examples=1, block_size=MAX_BLOCK_SIZE).block_size == 2**24
    with pytest.raises(SpecError, match=r"block_size = 16777217 is out of range.*<= 16777216"):
        MixStageConfig(seed=0, num_examples=1, block_size=MAX_BLOCK_SIZE + 1)


def test_weights_near_the_largest_float_normalise() -> None:
    d = json.loads(json.dumps(SPEC))
    d["mix"]["weight_schedule"][0]["weights"] = {"code": 1e308, "text": 1e308}
    d["mix"]["weight_schedule"][1]["weights"] = {"code": 1.5e308, "text": 0.5e308}
    points = PipelineConfig.from_dict(d).to_dict()["mix"]["weight_schedule"]
    assert points[0]["weights"] == {"code": 0.5, "text": 0.5}
    assert points[1]["weights"] == {"code": 0.75, "text": 0.25}


@pytest.mark.parametrize("weight", [float("nan"), float("inf"), 10**400])
def test_weights_that_are_not_finite_are_refused(weight: object) -> None:
    d = json.loads(json.dumps(SPEC))
    d["mix"]["weight_schedule"][0]["weights"]["text"] = weight
    with pytest.raises(SpecError, match=r"\['text'\] = .* must be a finite number >= 0"):
        PipelineConfig.from_dict(d)


def test_python_configs_are_checked_like_files() -> None:
    ds = [DatasetConfig(name="a", data_files="a.arrow"), DatasetConfig(name="b", data_files="b")]
    mix = MixStageConfig(
        seed=1, num_examples=5, weight_schedule=[{"step": 0, "weights": {"a": 1, "b": 3}}]
    )
    assert PipelineConfig(datasets=ds, mix=mix).scheduler().get_weights(0) == {"a": 0.25, "b": 0.75}
    with pytest.raises(SpecError, match=r"weight_schedule\[0\] = 5 must have exactly the keys"):
        MixStageConfig(seed=1, num_examples=5, weight_schedule=[5])
    with pytest.raises(SpecError, match="weights of the schedule point at step 0 = 3 must be a"):
        MixStageConfig(seed=1, num_examples=5, weight_schedule=[{"step": 0, "weights": 3}])
    with pytest.raises(SpecError, match=r"mix must be a MixStageConfig, got \{\}"):
        PipelineConfig(datasets=ds, mix={})  # type: ignore[arg-type]


def test_messages_quote_huge_values_shortly() -> None:
    d = json.loads(json.dumps(SPEC))
    d["mix"]["seed"] = "9" * 1_000_000
    with pytest.raises(SpecError) as e:
        PipelineConfig.from_dict(d)
    assert "mix.seed = '999" in str(e.value) and len(str(e.value)) < 500
    d["mix"]["seed"] = 1
    d["mix"]["weight_schedule"][0]["weights"] = [list(range(1000))] * 1000
    with pytest.raises(SpecError, match=r"step 0 = \[\[0, 1, 2, 3, \.\.\.\], ") as e:
        PipelineConfig.from_dict(d)
    assert len(str(e.value)) < 500


YAML_BOMB = "\n".join(
    ["a: &a [x, x, x, x, x, x, x, x, x]"]
    + [
        f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    ]
    + ["datasets: *i", "mix: {seed: *i}"]
)


def test_a_yaml_alias_bomb_fails_fast_with_one_short_line(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(YAML_BOMB + "\n")
    line = assert_one_line_error(
        run_process("build", path, "-o", tmp_path / "out.mixindex", timeout=60),
        "bomb.yaml",
        "YAML alias",
        "line 2",
    )
    assert len(line) < 500
    assert not (tmp_path / "out.mixindex").exists()


def test_any_yaml_alias_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(
        "datasets: [{name: a, data_files: a.arrow}]\nmix: {seed: &s 1, num_examples: *s}\n"
    )
    with pytest.raises(SpecError, match="uses a YAML alias at line 2; YAML aliases"):
        load_spec(path)


@pytest.mark.parametrize(
    ("line", "mentions"),
    [
        ("seed = 42.0", ["mix.seed = 42.0 is not an integer", "(here 42)"]),
        ("seed = true", ["mix.seed = True is not an integer"]),
        ("block_size = 1000.0", ["mix.block_size = 1000.0", "(here 1000)"]),
        ("num_examples = 1e4", ["mix.num_examples = 10000.0", "(here 10000)"]),
        ("block_size = 134217728", ["mix.block_size = 134217728 is out of range", "16777216"]),
        ("weights = { a = nan, b = 1 }", ["mix.weights['a'] = nan", "finite"]),
        ("weights = { a = inf, b = 1 }", ["mix.weights['a'] = inf", "finite"]),
        ("weight_schedule = [ { step = 0.0, weights = { a = 1, b = 1 } } ]", ["step = 0.0"]),
    ],
)
def test_bad_numbers_in_a_spec_file_get_one_line(
    tmp_path: Path, line: str, mentions: list[str]
) -> None:
    key = line.split(" = ")[0]
    mix = {"seed": "7", "num_examples": "100", key: line.split(" = ", 1)[1]}
    path = tmp_path / "mix.toml"
    path.write_text(
        '[[datasets]]\nname = "a"\ndata_files = "a.arrow"\n'
        '[[datasets]]\nname = "b"\ndata_files = "b.arrow"\n'
        "[mix]\n" + "".join(f"{k} = {v}\n" for k, v in mix.items())
    )
    out = tmp_path / "out.mixindex"
    assert_one_line_error(run("build", path, "-o", out), *mentions)
    assert not out.exists()


def test_huge_weights_in_a_spec_file_build(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.feather as feather

    for name in ("a", "b"):
        feather.write_feather(pa.table({"x": list(range(10))}), str(tmp_path / f"{name}.arrow"))
    path = tmp_path / "mix.toml"
    path.write_text(
        '[[datasets]]\nname = "a"\ndata_files = "a.arrow"\n'
        '[[datasets]]\nname = "b"\ndata_files = "b.arrow"\n'
        "[mix]\nseed = 1\nnum_examples = 20\nblock_size = 10\nweights = { a = 1e308, b = 1e308 }\n"
    )
    assert_ok(run("build", path, "-o", tmp_path / "o.mixindex"))
    assert len(mixindex.open(tmp_path / "o.mixindex")) == 20


def test_a_spec_that_is_a_fifo_is_refused_without_waiting(tmp_path: Path) -> None:
    fifo = tmp_path / "mix.toml"
    os.mkfifo(fifo)
    assert_one_line_error(
        run_process("build", fifo, "-o", tmp_path / "out.mixindex", timeout=60),
        "mix.toml",
        "not a regular file",
    )


def _holds(value: object, annotation: object) -> bool:
    """Whether ``value`` is of the annotated type (the few forms MixStageConfig uses)."""
    import types
    import typing

    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return isinstance(value, str) and value in typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_holds(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    base = origin or annotation  # Mapping[str, float] -> collections.abc.Mapping
    if base is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, base)


@pytest.mark.parametrize("stop", ["restart", "first_exhausted", StopStrategy.ALL_EXHAUSTED])
@pytest.mark.parametrize("kind", ["step", "linear", "cosine"])
def test_mix_fields_hold_their_annotated_types(stop: object, kind: str) -> None:
    import typing

    hints = typing.get_type_hints(MixStageConfig)
    # Parsed once on construction: nothing downstream sees a plain string strategy or a free
    # string interpolation.
    assert hints["stop_strategy"] is StopStrategy
    assert typing.get_args(hints["weight_schedule_type"]) == ("step", "linear", "cosine")
    assert typing.get_args(hints["row_order"]) == ("sequential", "shuffled", "grouped")
    mix = MixStageConfig.from_dict(
        {**SPEC["mix"], "stop_strategy": stop, "weight_schedule_type": kind, "num_examples": 5}
    )
    for name, annotation in hints.items():
        assert _holds(getattr(mix, name), annotation), (name, getattr(mix, name), annotation)
    assert mix.stop_strategy is StopStrategy(stop)
    with pytest.raises(SpecError, match=r"weight_schedule_type = \['step'\] is unknown"):
        MixStageConfig(seed=1, weight_schedule_type=["step"])  # type: ignore[arg-type]


def test_a_far_schedule_step_is_kept_exactly(tmp_path: Path) -> None:
    far = 2**60 + 1  # a float64 would store 2^60
    spec = tmp_path / "mix.toml"
    spec.write_text(
        '[[datasets]]\nname = "a"\ndata_files = "a.arrow"\n[[datasets]]\nname = "b"\n'
        'data_files = "b.arrow"\n[mix]\nseed = 1\nnum_examples = 10\n'
        "weight_schedule = [{ step = 0, weights = { a = 1, b = 0 } }, "
        f"{{ step = {far}, weights = {{ a = 0, b = 1 }} }}]\n"
    )
    config = load_spec(spec)
    assert config.to_dict()["mix"]["weight_schedule"][1]["step"] == far
    sched = config.scheduler()
    assert sched.get_weights(far - 1) == {"a": 1.0, "b": 0.0}
    assert sched.get_weights(far) == {"a": 0.0, "b": 1.0}
