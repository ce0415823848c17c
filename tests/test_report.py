"""``mixindex report``, ``where``, ``diff`` and ``plot``: numbers checked against the arrays as
zarr reads them, and against the source files' row counts read with pyarrow and datasets."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from auditing import read_arrays
from clirun import assert_ok, assert_one_line_error, run
from conftest import DEFAULT_DATASETS, DEFAULT_MIX, Data, Shared, SpecWriter, spec_dict
from planning import step_weights, toggles_every_block, written_off_owed

from mixindex.audit.diff import diff
from mixindex.audit.report import report
from mixindex.audit.where import where
from mixindex.builder import build
from mixindex.errors import QueryError, SourceError
from mixindex.store.index import StoredIndex

N = DEFAULT_MIX["num_examples"]
B = DEFAULT_MIX["block_size"]
NAMES = ["code", "notes", "docs"]
TARGET = np.array([3, 2, 1]) / 6


def per_block(source: np.ndarray, k: int = 3) -> np.ndarray:
    counts = np.zeros((-(-len(source) // B), k), dtype=np.int64)
    np.add.at(counts, (np.arange(len(source)) // B, source), 1)
    return counts


def test_report_per_source(shared: Shared) -> None:
    ref = read_arrays(shared.index)
    r = report(StoredIndex(shared.index))
    rows = {name: len(shared.reference[name]) for name in NAMES}  # read without mixindex
    counts = per_block(ref.source)
    whole = N // B
    deviation = np.abs(
        np.cumsum(counts[:whole], axis=0) - np.cumsum(np.tile(TARGET * B, (whole, 1)), axis=0)
    ).max(axis=0)
    assert [s["name"] for s in r["sources"]] == NAMES
    for i, s in enumerate(r["sources"]):
        mine = np.flatnonzero(ref.source == i)
        served = np.bincount(ref.row[mine], minlength=rows[s["name"]])
        assert s["num_rows"] == rows[s["name"]]
        assert s["examples"] == len(mine)
        assert s["realised_share"] == pytest.approx(len(mine) / N)
        assert s["target_share"] == pytest.approx(TARGET[i])
        assert s["epochs"] == pytest.approx(len(mine) / rows[s["name"]])
        assert s["distinct_rows"] == np.count_nonzero(served)
        assert s["coverage"] == pytest.approx(np.count_nonzero(served) / rows[s["name"]])
        assert s["max_repeats"] == served.max()
        assert s["first_position"] == mine[0]
        assert s["last_position"] == mine[-1]
        assert s["max_deviation"] == pytest.approx(deviation[i])
        assert s["max_deviation"] <= 1.0  # S2


def test_report_windows_follow_a_schedule(
    data: Data, write_spec: SpecWriter, tmp_path: Path
) -> None:
    schedule = [
        {"step": 0, "weights": {"code": 1, "notes": 1, "docs": 0}},
        {"step": 500, "weights": {"code": 0, "notes": 1, "docs": 3}},
    ]
    spec = spec_dict(weights=None, weight_schedule=schedule, weight_schedule_type="linear")
    out = build(write_spec(spec), tmp_path / "s.mixindex")
    ref = read_arrays(out)
    r = report(StoredIndex(out), window=250)  # rounded up to 3 blocks
    assert r["window"] == 300
    # The target by hand: linear between the points at each block's first position.
    start, end = np.array([0.5, 0.5, 0.0]), np.array([0.0, 0.25, 0.75])
    t = np.clip(np.arange(10) * B / 500, 0, 1)[:, None]
    weights = start + (end - start) * t
    lengths = np.minimum(N - np.arange(10) * B, B)
    counts = per_block(ref.source)
    bounds = [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert [(w["start"], w["stop"]) for w in r["windows"]] == [
        (a * B, min(b * B, N)) for a, b in bounds
    ]
    for w, (a, b) in zip(r["windows"], bounds, strict=True):
        total = lengths[a:b].sum()
        want_target = (weights[a:b] * lengths[a:b, None]).sum(axis=0) / total
        want_real = counts[a:b].sum(axis=0) / total
        for i, name in enumerate(NAMES):
            assert w["target"][name] == pytest.approx(want_target[i])
            assert w["realised"][name] == pytest.approx(want_real[i])
        assert w["max_error"] == pytest.approx(np.abs(want_target - want_real).max())


def test_report_measures_against_the_written_off_target(
    data: Data, write_spec: SpecWriter, tmp_path: Path
) -> None:
    # Code toggles between 0.37 and 0 every block: each drop writes off what it was still owed.
    # max dev and the window targets follow the target with write-offs, Q' (the schedule alone
    # drifts by 30 examples here, 0.06 of a window of 500).
    blocks = 100
    schedule = toggles_every_block(blocks)
    spec = spec_dict(
        weights=None,
        weight_schedule=schedule,
        weight_schedule_type="step",
        block_size=10,
        num_examples=10 * blocks,
    )
    out = build(write_spec(spec), tmp_path / "toggle.mixindex")
    result = run("report", out, "--json", "--window", 500)
    assert_ok(result)
    r = json.loads(result.stdout)
    counts = read_arrays(out).counts
    weights = step_weights(schedule, 10, blocks)
    owed = written_off_owed(weights, counts, [10] * blocks)
    q = np.cumsum(counts, axis=0) + owed  # Q' at the end of every block
    for i, s in enumerate(r["sources"]):
        assert s["max_deviation"] == pytest.approx(np.abs(owed[:, i]).max(), abs=1e-9)
        assert s["max_deviation"] < 1
    assert [(w["start"], w["stop"]) for w in r["windows"]] == [(0, 500), (500, 1000)]
    for w, (a, b) in zip(r["windows"], [(0, 50), (50, 100)], strict=True):
        want = (q[b - 1] - (q[a - 1] if a else 0)) / 500
        for i, name in enumerate(NAMES):
            assert w["target"][name] == pytest.approx(want[i], abs=1e-12)
            assert w["realised"][name] == counts[a:b, i].sum() / 500
        # realised - target is the change in what is owed over the window: under 2 examples.
        assert w["max_error"] < 2 / 500


def test_report_cli(shared: Shared) -> None:
    result = run("report", shared.index, "--json")
    assert_ok(result)
    doc = json.loads(result.stdout)
    assert doc["num_examples"] == N
    assert len(doc["windows"]) == 10  # default: about a tenth of the mix per window
    result = run("report", shared.index, "--window", 500)
    assert_ok(result)
    text = result.stdout
    for s in doc["sources"]:
        line = next(ln for ln in text.splitlines() if ln.split()[:1] == [s["name"]])
        cells = line.split()
        assert cells[7] == f"{s['max_repeats']:,}"
        assert cells[6] == f"{s['coverage']:.4f}"
    assert "realised / target per window of 500 positions" in text
    assert "0-499" in text and "500-949" in text


def test_report_cli_bad_input(shared: Shared, tmp_path: Path) -> None:
    assert_one_line_error(run("report", tmp_path / "nope"), "not a mixindex")
    for bad in (0, -5):
        result = run("report", shared.index, "--window", bad)
        assert_one_line_error(result, f"window = {bad} is not a number of positions >= 1")


@pytest.mark.parametrize("window", [0, -1])
def test_a_bad_window_is_a_query_error(shared: Shared, window: int) -> None:
    # The index and its sources are fine: what is wrong is the request.
    with pytest.raises(QueryError, match=f"window = {window} ") as info:
        report(StoredIndex(shared.index), window=window)
    assert not isinstance(info.value, SourceError)
    with pytest.raises(QueryError, match="global batch size 0") as info:
        where(StoredIndex(shared.index), "notes", 3, global_batch_size=0)
    assert not isinstance(info.value, SourceError)


def test_report_cli_limits(shared: Shared, private_tmp: Path) -> None:
    # The report's DuckDB query runs under the same limits as audit's, in a folder that goes.
    result = run("report", shared.index, "--json", "--memory-limit", "100MB", "--timeout", "60")
    assert_ok(result)
    assert json.loads(result.stdout) == json.loads(run("report", shared.index, "--json").stdout)
    result = run("report", shared.index, "--memory-limit", "1KB")
    assert_one_line_error(result, "memory_limit=1KB", "--memory-limit")
    # A deadline already past when the query starts: it is stopped, not run.
    result = run("report", shared.index, "--timeout", "0.000001")
    assert_one_line_error(result, "query stopped after 1e-06 s (--timeout 1e-06)")
    for flag, value in [("--memory-limit", "lots"), ("--temp-limit", "1XB"), ("--timeout", "x")]:
        assert_one_line_error(run("report", shared.index, flag, value), flag, repr(value))
    assert list(private_tmp.iterdir()) == []


# ---- where -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "row"), [("code", 0), ("notes", 28), ("docs", 5)])
def test_where(shared: Shared, name: str, row: int) -> None:
    ref = read_arrays(shared.index)
    i = NAMES.index(name)
    expected = np.flatnonzero((ref.source == i) & (ref.row == row))
    assert len(expected)  # every row is served at least once in this mix
    w = where(StoredIndex(shared.index), name, row, global_batch_size=64)
    assert w["count"] == len(expected)
    assert [h["position"] for h in w["positions"]] == expected.tolist()
    assert [h["epoch"] for h in w["positions"]] == ref.epoch[expected].tolist()
    assert [h["batch"] for h in w["positions"]] == (expected // 64).tolist()
    assert [h["in_batch"] for h in w["positions"]] == (expected % 64).tolist()


def test_where_cli(shared: Shared) -> None:
    ref = read_arrays(shared.index)
    expected = np.flatnonzero((ref.source == 1) & (ref.row == 3))
    result = run("where", shared.index, "--source", "notes", "--row", 3)
    assert_ok(result)
    lines = result.stdout.splitlines()
    assert lines[0] == f"notes row 3: served {len(expected)} times"
    assert lines[1].split() == ["position", "epoch"]
    assert [int(ln.split()[0]) for ln in lines[2:]] == expected.tolist()
    result = run("where", shared.index, "--source", "notes", "--row", 3, "--global-batch-size", 100)
    assert_ok(result)
    lines = result.stdout.splitlines()
    assert lines[1].split() == ["position", "epoch", "batch", "in", "batch"]
    assert [int(ln.split()[2]) for ln in lines[2:]] == (expected // 100).tolist()
    doc = json.loads(run("where", shared.index, "--source", "notes", "--row", 3, "--json").stdout)
    assert [h["position"] for h in doc["positions"]] == expected.tolist()


def test_where_bad_input(shared: Shared) -> None:
    assert_one_line_error(
        run("where", shared.index, "--source", "text", "--row", 0),
        "'text'",
        "code, notes, docs",
    )
    assert_one_line_error(
        run("where", shared.index, "--source", "docs", "--row", 17), "row 17", "0 to 16"
    )
    assert_one_line_error(
        run("where", shared.index, "--source", "docs", "--row", -1), "row -1", "0 to 16"
    )


# ---- diff ------------------------------------------------------------------------------------


def test_diff_equal(shared: Shared, data: Data, write_spec: SpecWriter, tmp_path: Path) -> None:
    again = build(write_spec(), tmp_path / "again.mixindex", chunk_blocks=3)
    d = diff(StoredIndex(shared.index), StoredIndex(again))
    assert d["equal"] and d["first_difference"] is None and d["differing_positions"] == 0
    assert all(s["change"] == 0 for s in d["sources"])
    result = run("diff", shared.index, again)
    assert_ok(result)
    assert "equal: every position serves the same source, row and epoch" in result.stdout


def test_diff_after_a_spec_change(
    shared: Shared, data: Data, write_spec: SpecWriter, tmp_path: Path
) -> None:
    # Mid-project change: from position 500 on, docs get more weight.
    schedule = [
        {"step": 0, "weights": {"code": 3, "notes": 2, "docs": 1}},
        {"step": 500, "weights": {"code": 1, "notes": 1, "docs": 4}},
    ]
    spec = spec_dict(weights=None, weight_schedule=schedule)
    changed = build(write_spec(spec), tmp_path / "changed.mixindex")
    a, b = read_arrays(shared.index), read_arrays(changed)
    bad = (a.source != b.source) | (a.row != b.row) | (a.epoch != b.epoch)
    first = int(np.argmax(bad))
    d = diff(StoredIndex(shared.index), StoredIndex(changed))
    assert not d["equal"]
    assert d["first_difference"]["position"] == first
    assert d["first_difference"]["a"] == {
        "source": NAMES[a.source[first]],
        "row": int(a.row[first]),
        "epoch": int(a.epoch[first]),
    }
    assert d["differing_positions"] == int(bad.sum())
    for i, s in enumerate(d["sources"]):
        assert s["name"] == NAMES[i]
        assert s["change"] == pytest.approx(
            (np.count_nonzero(b.source == i) - np.count_nonzero(a.source == i)) / N
        )
    result = run("diff", shared.index, changed)
    assert result.exit_code == 1
    assert f"different: first at position {first:,}" in result.stdout
    docs = next(ln for ln in result.stdout.splitlines() if ln.split()[:1] == ["docs"])
    assert docs.split()[-1] == f"{d['sources'][2]['change']:+.4f}"


def test_diff_matches_sources_by_name(
    shared: Shared, data: Data, write_spec: SpecWriter, tmp_path: Path
) -> None:
    # b lists docs first and has no notes: ids differ, names decide what is the same source.
    datasets = [d for d in DEFAULT_DATASETS if d["name"] != "notes"][::-1]
    spec = spec_dict(datasets, weights={"docs": 1, "code": 3})
    other = build(write_spec(spec), tmp_path / "other.mixindex")
    a, b = read_arrays(shared.index), read_arrays(other)
    names_b = ["docs", "code"]
    same_source = np.array(NAMES)[a.source] == np.array(names_b)[b.source]
    bad = ~same_source | (a.row != b.row) | (a.epoch != b.epoch)
    d = diff(StoredIndex(shared.index), StoredIndex(other))
    assert d["differing_positions"] == int(bad.sum()) > 0
    assert d["first_difference"]["position"] == int(np.argmax(bad))
    assert [s["name"] for s in d["sources"]] == NAMES  # a's names, then any new in b
    notes = d["sources"][1]
    assert notes["share_b"] == 0.0 and notes["change"] == -notes["share_a"] < 0
    docs = d["sources"][2]
    assert docs["share_b"] == pytest.approx(np.count_nonzero(b.source == 0) / N)


def test_diff_of_a_longer_mix(
    shared: Shared, data: Data, write_spec: SpecWriter, tmp_path: Path
) -> None:
    # Raising num_examples never changes what came before: the mixes part at the old end.
    longer = build(write_spec(spec_dict(num_examples=1200)), tmp_path / "longer.mixindex")
    d = diff(StoredIndex(shared.index), StoredIndex(longer))
    assert d["first_difference"]["position"] == N
    assert d["first_difference"]["a"] is None
    assert d["differing_positions"] == 1200 - N


def test_diff_bad_input(shared: Shared, tmp_path: Path) -> None:
    assert_one_line_error(run("diff", shared.index, tmp_path / "nope"), "nope")


# ---- plot ------------------------------------------------------------------------------------


def test_plot(shared: Shared, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "mix.png"
    result = run("plot", shared.index, "-o", out, "--global-batch-size", 64)
    assert_ok(result)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 800 and height > 600


def test_plot_without_matplotlib(
    shared: Shared, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert_one_line_error(
        run("plot", shared.index, "-o", tmp_path / "mix.png"), "matplotlib", "mixindex[plot]"
    )


def test_summary_streams_over_count_chunks(
    data: Data, write_spec: SpecWriter, tmp_path: Path
) -> None:
    from mixindex.audit.summary import summarize

    one = summarize(StoredIndex(build(write_spec(), tmp_path / "one.mixindex")))
    many_path = build(write_spec(), tmp_path / "many.mixindex", chunk_blocks=2)
    assert StoredIndex(many_path).arrays["counts"].num_chunks > 2
    many = summarize(StoredIndex(many_path))
    ref = read_arrays(many_path)
    counts = per_block(ref.source)
    whole = N // B
    deviation = np.abs(
        np.cumsum(counts[:whole], axis=0) - np.cumsum(np.tile(TARGET * B, (whole, 1)), axis=0)
    ).max(axis=0)
    for a, b, dev, got in zip(
        one["sources"], many["sources"], deviation, counts.sum(0), strict=True
    ):
        assert a == pytest.approx(b)  # sums in another order: equal to the last bits
        assert b["max_deviation"] == pytest.approx(dev)
        assert b["examples"] == got
