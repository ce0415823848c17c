"""The command line, through click's CliRunner: exit codes, summaries and one-line errors."""

from __future__ import annotations

import atexit
import concurrent.futures
import gc
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from auditing import read_arrays
from clirun import assert_ok, assert_one_line_error, run, run_process
from conftest import (
    CODE_SCHEMA,
    CODE_SIZES,
    DEFAULT_MIX,
    Data,
    Shared,
    SpecWriter,
    code_rows,
    not_an_index,
    spec_dict,
    write_parquet,
)
from planning import drops_three_times, step_weights, toggles_every_block, written_off_owed
from sameindex import assert_same_index

import mixindex

N = DEFAULT_MIX["num_examples"]
NAMES = ["code", "notes", "docs"]


def shares(path: Path) -> dict[str, float]:
    """The realised share of every source, counted from the index with the library."""
    ds = mixindex.open(path)
    source, _, _ = ds.lookup(np.arange(len(ds)))
    counts = np.bincount(source, minlength=len(NAMES))
    return {name: counts[i] / len(ds) for i, name in enumerate(NAMES)}


TARGET = {"code": 3 / 6, "notes": 2 / 6, "docs": 1 / 6}


# ---- build -----------------------------------------------------------------------------------


def test_build_prints_a_summary(data: Data, write_spec: SpecWriter, tmp_path: Path) -> None:
    out = tmp_path / "mix.mixindex"
    result = run("build", write_spec(), "-o", out)
    assert_ok(result)
    assert result.stderr == ""
    realised = shares(out)
    # The partial last block makes a realised share differ from its target in the 4th digit, so
    # the columns below are told apart.
    assert any(f"{realised[n]:.4f}" != f"{TARGET[n]:.4f}" for n in NAMES), realised
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{out}: {N:,} examples in 10 blocks of 100")
    for name in NAMES:
        (line,) = [ln for ln in lines if ln.split()[0] == name]
        cells = line.split()
        assert f"{TARGET[name]:.4f}" == cells[2]
        assert f"{realised[name]:.4f}" == cells[3]
    assert lines[-1] == f"digest {mixindex.open(out).digest}"


def test_build_quiet_prints_nothing(data: Data, write_spec: SpecWriter, tmp_path: Path) -> None:
    out = tmp_path / "mix.mixindex"
    result = run("build", write_spec(), "-o", out, "--quiet")
    assert_ok(result)
    assert result.output == ""
    assert len(mixindex.open(out)) == N


def test_build_json(data: Data, write_spec: SpecWriter, tmp_path: Path) -> None:
    out = tmp_path / "mix.mixindex"
    result = run("build", write_spec(), "-o", out, "--json")
    assert_ok(result)
    summary = json.loads(result.stdout)
    assert summary["digest"] == mixindex.open(out).digest
    assert [s["name"] for s in summary["sources"]] == NAMES


def test_build_from_another_directory(
    data: Data, write_spec: SpecWriter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = write_spec()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = run("build", Path("..") / spec.name, "-o", "out.mixindex", "--quiet")
    assert_ok(result)
    ds = mixindex.open(elsewhere / "out.mixindex")
    assert ds.sources[0].data_files[0] == str(data.code_files[0])


def test_force(data: Data, write_spec: SpecWriter, tmp_path: Path) -> None:
    out = tmp_path / "mix.mixindex"
    assert_ok(run("build", write_spec(), "-o", out, "--quiet"))
    before = (out / "zarr.json").read_bytes()
    other = write_spec(spec_dict(seed=99), "other.toml")
    assert_one_line_error(run("build", other, "-o", out), "already exists", str(out), "--force")
    assert (out / "zarr.json").read_bytes() == before
    assert_ok(run("build", other, "-o", out, "--force", "--quiet"))
    assert mixindex.open(out).index.meta.mix.seed == 99
    assert sorted(p.name for p in tmp_path.glob(".mix.mixindex*")) == []


@pytest.mark.parametrize("workers", [1, 3])
def test_workers_choose_the_threads_not_the_bytes(
    data: Data,
    write_spec: SpecWriter,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    workers: int,
) -> None:
    made: list[int] = []
    pool_type = concurrent.futures.ThreadPoolExecutor

    class Counted(pool_type):  # type: ignore[valid-type,misc]
        def __init__(self, max_workers: int, **kw: Any) -> None:
            made.append(max_workers)
            super().__init__(max_workers, **kw)

    spec = write_spec()
    fresh = tmp_path / "default.mixindex"
    assert_ok(run("build", spec, "-o", fresh, "--quiet", "--chunk-blocks", 1))
    # Counted from here on (the library's own pools are made by a name it imported already).
    monkeypatch.setattr(concurrent.futures, "ThreadPoolExecutor", Counted)
    out = tmp_path / "mix.mixindex"
    assert_ok(run("build", spec, "-o", out, "--quiet", "--chunk-blocks", 1, "--workers", workers))
    assert made == [workers]
    assert_same_index(out, fresh)


@pytest.mark.parametrize("command", ["build", "extend"])
@pytest.mark.parametrize("workers", ["0", "-2"])
def test_workers_must_be_a_number_of_threads(
    data: Data, write_spec: SpecWriter, tmp_path: Path, command: str, workers: str
) -> None:
    out = tmp_path / "mix.mixindex"
    if command == "build":
        args: list[Any] = ["build", write_spec(), "-o", out]
    else:
        assert_ok(run("build", write_spec(), "-o", out, "--quiet"))
        args = ["extend", out, "-n", 2 * N]
    before = sorted(p.name for p in tmp_path.iterdir())
    line = assert_one_line_error(run(*args, "--workers", workers), f"--workers {workers}")
    assert "1 or more" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_commands_skip_the_last_collection(
    shared: Shared,
    write_spec: SpecWriter,
    data: Data,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mixindex.cli import group

    registered: list[Any] = []
    group._skip_the_last_collection.cache_clear()  # as in a fresh process
    monkeypatch.setattr(atexit, "register", registered.append)
    assert_ok(run("show", shared.index, 0))
    assert_ok(run("inspect", shared.index))
    assert registered == [gc.freeze]  # once, however many commands the process runs
    # A real process still says all it has to say, and leaves a whole index behind; this mix is
    # big enough for the compiled planner, which the frozen objects mostly are.
    out = tmp_path / "big.mixindex"
    spec = write_spec(spec_dict(num_examples=300_000), "big.toml")
    proc = run_process("build", spec, "-o", out, "--json", "--workers", 2, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["num_examples"] == 300_000
    assert len(mixindex.open(out)) == 300_000


# ---- inspect and show ------------------------------------------------------------------------


def test_inspect(shared: Shared) -> None:
    result = run("inspect", shared.index)
    assert_ok(result)
    text = result.stdout
    assert f"{N:,} examples" in text
    realised = shares(shared.index)
    for name in NAMES:
        assert f"{TARGET[name]:.4f}" in text and f"{realised[name]:.4f}" in text


def test_inspect_json(shared: Shared) -> None:
    result = run("inspect", shared.index, "--json")
    assert_ok(result)
    summary = json.loads(result.stdout)
    assert summary["num_examples"] == N
    assert summary["block_size"] == DEFAULT_MIX["block_size"]
    assert summary["num_blocks"] == 10
    assert summary["seed"] == DEFAULT_MIX["seed"]
    assert summary["digest"] == mixindex.open(shared.index).digest
    realised = shares(shared.index)
    assert [s["name"] for s in summary["sources"]] == NAMES
    assert sum(s["realised_share"] for s in summary["sources"]) == pytest.approx(1.0)
    assert sum(s["examples"] for s in summary["sources"]) == N
    for s in summary["sources"]:
        assert s["realised_share"] == pytest.approx(realised[s["name"]])
        assert s["target_share"] == pytest.approx(TARGET[s["name"]])
        # Exact apportionment (S2): within one example of the target at every block boundary.
        assert s["max_deviation"] <= 1.0


@pytest.mark.parametrize("case", ["drops_three_times", "toggles_every_block"])
def test_max_dev_counts_write_offs(
    data: Data, write_spec: SpecWriter, tmp_path: Path, case: str
) -> None:
    # Code's weight drops to 0 and comes back: each time, the fraction of an example it was still
    # owed is written off. Against the schedule alone the drift adds up (2.8 and 30 examples
    # here); against the target with write-offs, the one the planner keeps, it stays below one.
    blocks = 40 if case == "drops_three_times" else 100
    schedule = drops_three_times() if case == "drops_three_times" else toggles_every_block(blocks)
    spec = spec_dict(
        weights=None,
        weight_schedule=schedule,
        weight_schedule_type="step",
        block_size=10,
        num_examples=10 * blocks,
    )
    out = tmp_path / "zero.mixindex"
    built = run("build", write_spec(spec), "-o", out)
    assert_ok(built)
    result = run("inspect", out, "--json")
    assert_ok(result)
    summary = json.loads(result.stdout)
    counts = read_arrays(out).counts
    weights = step_weights(schedule, 10, blocks)
    owed = np.abs(written_off_owed(weights, counts, [10] * blocks)).max(axis=0)
    raw = np.abs(np.cumsum(counts, axis=0) - np.cumsum(10 * weights, axis=0)).max(axis=0)
    assert raw.max() > 2
    for i, s in enumerate(summary["sources"]):
        assert s["max_deviation"] == pytest.approx(owed[i], abs=1e-9)
        assert s["max_deviation"] < 1
        # build's closing summary prints the same figure
        (line,) = [ln for ln in built.stdout.splitlines() if ln.split()[:1] == [s["name"]]]
        assert line.split()[-1] == f"{s['max_deviation']:.3f}"


def test_show(shared: Shared) -> None:
    result = run("show", shared.index, 0, "--count", 3)
    assert_ok(result)
    ds = mixindex.open(shared.index)
    source, row, epoch = ds.lookup([0, 1, 2])
    heads = [ln for ln in result.stdout.splitlines() if ln.startswith("position ")]
    assert heads == [
        f"position {p}: {NAMES[source[p]]} row {row[p]} epoch {epoch[p]}" for p in range(3)
    ]
    for p in range(3):
        # Values are shown on one line, whitespace squashed.
        text = " ".join(ds[p]["text"].split())
        assert f"  text: {text}" in result.stdout.splitlines()


def test_show_json(shared: Shared) -> None:
    result = run("show", shared.index, -4, "--count", 10, "--json")
    assert_ok(result)
    lines = result.stdout.splitlines()
    assert len(lines) == 4  # cut at the end of the mix
    ds = mixindex.open(shared.index)
    positions = list(range(N - 4, N))
    source, row, epoch = ds.lookup(positions)
    for i, line in enumerate(lines):
        doc = json.loads(line)
        assert doc["position"] == positions[i]
        assert doc["source"] == NAMES[source[i]]
        assert doc["row"] == row[i]
        assert doc["epoch"] == epoch[i]
        assert doc["example"] == ds[positions[i]]
        assert doc["example"] == {
            **shared.reference[doc["source"]][doc["row"]],
            "__source__": doc["source"],
        }


@pytest.mark.parametrize("position", [N, -N - 1, 10**6])
def test_show_out_of_range(shared: Shared, position: int) -> None:
    assert_one_line_error(run("show", shared.index, position), f"position {position}", str(N))


def test_show_changed_source(data: Data, built: Path) -> None:
    # Three rows appended to the last file: every recorded row still exists.
    write_parquet(data.code_files[1], code_rows(CODE_SIZES[0], CODE_SIZES[1] + 3), CODE_SCHEMA)
    assert_one_line_error(run("show", built, 0), "'code'", "changed", "60 to 63")
    result = run("show", built, 0, "--count", N, "--no-verify", "--json")
    assert_ok(result)
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(docs) == N
    ref = data.reference()
    for doc in docs:
        assert doc["example"] == {**ref[doc["source"]][doc["row"]], "__source__": doc["source"]}


@pytest.mark.parametrize("kind", ["missing", "empty_dir", "file", "plain_zarr"])
@pytest.mark.parametrize("command", [["inspect"], ["inspect", "--json"], ["show", "0"]])
def test_not_an_index(tmp_path: Path, kind: str, command: list[str]) -> None:
    path = not_an_index(tmp_path, kind)
    cmd, *rest = command
    assert_one_line_error(run(cmd, path, *rest), str(path), "not a mixindex index")


# ---- bad input: exit 2, one line, nothing written --------------------------------------------


def sched(*points: tuple[int, dict[str, float]]) -> list[dict[str, Any]]:
    return [{"step": s, "weights": w} for s, w in points]


EQUAL = {"code": 1, "notes": 1, "docs": 1}

# id -> (spec, or a function of the data folder returning one; what the error line must name)
BAD_SPECS: dict[str, tuple[Any, list[str]]] = {
    "missing_file": (
        spec_dict(
            [
                *spec_dict()["datasets"][:1],
                {"name": "notes", "data_files": "data/nope.arrow"},
                spec_dict()["datasets"][2],
            ]
        ),
        ["'notes'", "nope.arrow"],
    ),
    "glob_matches_nothing": (
        spec_dict(
            [{"name": "code", "data_files": "data/code/*.parq"}, *spec_dict()["datasets"][1:]]
        ),
        ["'code'", "*.parq"],
    ),
    "unknown_weight": (
        spec_dict(weights={**EQUAL, "txt": 1}),
        ["'txt'"],
    ),
    "missing_weight": (
        spec_dict(weights={"code": 1, "notes": 1}),
        ["'docs'"],
    ),
    "negative_weight": (
        spec_dict(weights={**EQUAL, "notes": -1}),
        ["'notes'", "-1"],
    ),
    "all_zero_weights": (
        spec_dict(weights={"code": 0, "notes": 0, "docs": 0}),
        ["mix.weights", "all zero"],
    ),
    "unsorted_steps": (
        spec_dict(weights=None, weight_schedule=sched((0, EQUAL), (500, EQUAL), (200, EQUAL))),
        ["step 200 after step 500"],
    ),
    "duplicate_steps": (
        spec_dict(weights=None, weight_schedule=sched((0, EQUAL), (300, EQUAL), (300, EQUAL))),
        ["step 300 after step 300"],
    ),
    "unknown_schedule_type": (
        spec_dict(weight_schedule_type="cubic"),
        ["'cubic'", "linear"],
    ),
    "unknown_stop_strategy": (
        spec_dict(stop_strategy="never"),
        ["'never'", "first_exhausted"],
    ),
    "restart_without_length": (
        spec_dict(num_examples=None),
        ["num_examples", "restart"],
    ),
    "block_size_zero": (
        spec_dict(block_size=0),
        ["block_size = 0"],
    ),
    "missing_seed": (
        spec_dict(seed=None),
        ["mix.seed"],
    ),
    "unknown_mix_key": (
        {**spec_dict(), "mix": {**spec_dict()["mix"], "sed": 1}},
        ["'sed'"],
    ),
    "unknown_dataset_key": (
        spec_dict([{**spec_dict()["datasets"][0], "weight": 2}, *spec_dict()["datasets"][1:]]),
        ["'weight'", "datasets[0]"],
    ),
    "all_exhausted_never_ends": (
        # docs (17 rows) gets about 2 of the first 100 positions, then weight 0 forever.
        spec_dict(
            weights=None,
            weight_schedule=sched((0, {**EQUAL, "docs": 0.05}), (100, {**EQUAL, "docs": 0})),
            stop_strategy="all_exhausted",
            num_examples=None,
        ),
        ["all_exhausted", "'docs'"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_bad_spec(data: Data, write_spec: SpecWriter, tmp_path: Path, case: str) -> None:
    spec, mentions = BAD_SPECS[case]
    out = tmp_path / "mix.mixindex"
    assert_one_line_error(run("build", write_spec(spec), "-o", out), *mentions)
    assert not out.exists()
    assert list(tmp_path.glob(".mix.mixindex*")) == []


def test_empty_source(data: Data, write_spec: SpecWriter, tmp_path: Path) -> None:
    write_parquet(data.root / "empty.parquet", [], CODE_SCHEMA)
    spec = spec_dict(
        [*spec_dict()["datasets"], {"name": "empty", "data_files": "data/empty.parquet"}],
        weights={**TARGET, "empty": 1},
    )
    out = tmp_path / "mix.mixindex"
    assert_one_line_error(run("build", write_spec(spec), "-o", out), "'empty'", "no rows")
    assert not out.exists()


@pytest.mark.parametrize(
    ("name", "text", "mentions"),
    [
        ("mix.toml", "[mix\nseed = 1\n", ["mix.toml", "not valid TOML"]),
        ("mix.yaml", "mix: [seed: 1\n", ["mix.yaml", "not valid YAML"]),
        ("mix.json", '{"mix": {"seed": 1,}}', ["mix.json", "not valid JSON"]),
        ("mix.txt", "[mix]\nseed = 1\n", ["mix.txt", "'.txt'"]),
        (None, None, ["nope.toml", "does not exist"]),
    ],
)
def test_unreadable_spec(
    tmp_path: Path, name: str | None, text: str | None, mentions: list[str]
) -> None:
    path = tmp_path / (name or "nope.toml")
    if text is not None:
        path.write_text(text)
    out = tmp_path / "mix.mixindex"
    assert_one_line_error(run("build", path, "-o", out), *mentions)
    assert not out.exists()
