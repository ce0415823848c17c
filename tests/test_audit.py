"""SQL over an index (mixindex.audit.sql, ``mixindex audit``): every answer is checked against the
arrays as zarr reads them, or against the source files read with pyarrow and datasets."""

from __future__ import annotations

import csv
import io
import json
import signal
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from auditing import read_arrays
from clirun import ENV, assert_ok, assert_one_line_error, run, start
from conftest import DEFAULT_MIX, Data, Shared, SpecWriter, spec_dict

from mixindex.audit.sql import connect, format_table, query
from mixindex.builder import build
from mixindex.errors import QueryError

N = DEFAULT_MIX["num_examples"]
B = DEFAULT_MIX["block_size"]
NAMES = ["code", "notes", "docs"]
TARGET = {"code": 3 / 6, "notes": 2 / 6, "docs": 1 / 6}


@pytest.fixture(scope="module")
def indexes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The default spec built three ways: one chunk, chunks of 2 blocks, zstd-compressed."""
    from conftest import make_data, to_toml

    root = tmp_path_factory.mktemp("audit")
    make_data(root / "data")
    spec = root / "mix.toml"
    spec.write_text(to_toml(spec_dict()), encoding="utf-8")
    return {
        "one": build(spec, root / "one.mixindex"),
        "chunked": build(spec, root / "chunked.mixindex", chunk_blocks=2),
        "compressed": build(spec, root / "zstd.mixindex", chunk_blocks=3, compress=True),
    }


@pytest.mark.parametrize("kind", ["one", "chunked", "compressed"])
def test_mix_is_the_index(indexes: dict[str, Path], kind: str) -> None:
    ref = read_arrays(indexes[kind])
    t = connect(indexes[kind]).sql("SELECT * FROM mix ORDER BY position").to_arrow_table()
    assert t.column_names == ["position", "block", "source", "source_id", "row", "epoch"]
    assert t["position"].to_pylist() == list(range(N))
    assert t["block"].to_pylist() == [p // B for p in range(N)]
    assert t["source_id"].to_pylist() == ref.source.tolist()
    assert t["source"].to_pylist() == [NAMES[s] for s in ref.source]
    assert t["row"].to_pylist() == ref.row.tolist()
    assert t["epoch"].to_pylist() == ref.epoch.tolist()


def test_view_types(shared: Shared) -> None:
    con = connect(shared.index)
    types = {
        view: dict(con.sql(f"SELECT column_name, column_type FROM (DESCRIBE {view})").fetchall())
        for view in ("mix", "sources", "blocks", "schedule")
    }
    assert types["mix"] == {
        "position": "BIGINT",
        "block": "BIGINT",
        "source": "VARCHAR",
        "source_id": "INTEGER",
        "row": "BIGINT",
        "epoch": "INTEGER",
    }
    assert list(types["sources"]) == [
        "source_id",
        "name",
        "type",
        "data_files",
        "num_rows",
        "fingerprint",
    ]
    assert types["sources"]["data_files"] == "VARCHAR[]"
    assert types["blocks"] == {
        "block": "BIGINT",
        "source": "VARCHAR",
        "count": "BIGINT",
        "target_weight": "DOUBLE",
    }
    assert types["schedule"] == {"step": "BIGINT", "source": "VARCHAR", "weight": "DOUBLE"}


def test_counts_per_source(indexes: dict[str, Path]) -> None:
    ref = read_arrays(indexes["chunked"])
    con = connect(indexes["chunked"])
    sql = "SELECT source, count(*), count(DISTINCT row), max(epoch) FROM mix GROUP BY 1"
    # The views scan again on every query: the same answer each time.
    answers = [dict((r[0], r[1:]) for r in con.sql(sql).fetchall()) for _ in range(3)]
    assert answers[0] == answers[1] == answers[2]
    for i, name in enumerate(NAMES):
        mine = ref.source == i
        assert answers[0][name] == (
            int(mine.sum()),
            len(np.unique(ref.row[mine])),
            int(ref.epoch[mine].max()),
        )


def test_rows_served_per_window(shared: Shared) -> None:
    ref = read_arrays(shared.index)
    got = connect(shared.index).sql(
        "SELECT position // 250 AS w, source_id, count(*) FROM mix GROUP BY ALL ORDER BY ALL"
    )
    expected = np.zeros((4, 3), dtype=np.int64)
    np.add.at(expected, (np.arange(N) // 250, ref.source), 1)
    assert got.fetchall() == [
        (w, s, int(expected[w, s])) for w in range(4) for s in range(3) if expected[w, s]
    ]


def test_sources_view(shared: Shared) -> None:
    rows = connect(shared.index).sql("SELECT * FROM sources ORDER BY source_id").fetchall()
    reference = shared.reference  # read with pyarrow / datasets, not mixindex
    data = shared.data
    files = {
        "code": [str(f) for f in data.code_files],
        "notes": [str(data.notes_file)],
        "docs": [str(p) for p in sorted(data.docs_dir.glob("*.arrow"))],
    }
    assert [r[0] for r in rows] == [0, 1, 2]
    assert [r[1] for r in rows] == NAMES
    assert [r[2] for r in rows] == ["parquet", "arrow", "arrow"]
    for r in rows:
        assert r[3] == files[r[1]]
        assert r[4] == len(reference[r[1]])
        assert r[5].startswith("sha256:")


def test_blocks_view(shared: Shared) -> None:
    ref = read_arrays(shared.index)
    rows = connect(shared.index).sql("SELECT * FROM blocks ORDER BY block, source").fetchall()
    per_block = np.zeros((10, 3), dtype=np.int64)
    np.add.at(per_block, (np.arange(N) // B, ref.source), 1)
    expected = sorted(
        (b, name, int(per_block[b, i]), TARGET[name])
        for b in range(10)
        for i, name in enumerate(NAMES)
    )
    assert len(rows) == len(expected)
    for got, want in zip(rows, expected, strict=True):
        assert got[:3] == want[:3]
        assert got[3] == pytest.approx(want[3])


def test_schedule_view(data: Data, write_spec: SpecWriter, tmp_path: Path) -> None:
    schedule = [
        {"step": 0, "weights": {"code": 2, "notes": 1, "docs": 1}},
        {"step": 400, "weights": {"code": 0, "notes": 1, "docs": 3}},
    ]
    spec = spec_dict(weights=None, weight_schedule=schedule, weight_schedule_type="linear")
    out = build(write_spec(spec), tmp_path / "s.mixindex")
    con = connect(out)
    assert con.sql("SELECT * FROM schedule ORDER BY step, source").fetchall() == [
        (0, "code", 0.5),
        (0, "docs", 0.25),
        (0, "notes", 0.25),
        (400, "code", 0.0),
        (400, "docs", 0.75),
        (400, "notes", 0.25),
    ]
    # Block 2 starts at position 200, half-way: code's target weight is (0.5 + 0) / 2.
    sql = "SELECT target_weight FROM blocks WHERE block = 2 AND source = 'code'"
    assert con.sql(sql).fetchall()[0][0] == pytest.approx(0.25)


@pytest.mark.parametrize(
    "sql",
    [
        "COPY (SELECT * FROM mix) TO '{dir}/out.csv'",
        "COPY (SELECT 1) TO '{dir}/out.parquet' (FORMAT parquet)",
        "ATTACH '{dir}/out.db' AS other",
        "EXPORT DATABASE '{dir}/export'",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "SELECT * FROM read_csv('{dir}/out.csv')",
    ],
)
def test_queries_can_only_read(shared: Shared, tmp_path: Path, sql: str) -> None:
    con = connect(shared.index)
    with pytest.raises(QueryError):
        query(con, sql.format(dir=tmp_path))
    assert list(tmp_path.iterdir()) == []
    # The connection still works after a refused statement.
    assert con.sql("SELECT count(*) FROM mix").fetchall() == [(N,)]


def test_tables_in_memory_are_fine(shared: Shared) -> None:
    con = connect(shared.index)
    query(con, "CREATE TABLE t AS SELECT source, count(*) AS n FROM mix GROUP BY 1")
    assert format_table(query(con, "SELECT sum(n) AS total FROM t")).splitlines()[2] == f"{N:>5}"


# ---- the command -----------------------------------------------------------------------------


def test_cli_table(shared: Shared) -> None:
    ref = read_arrays(shared.index)
    result = run(
        "audit", shared.index, "SELECT source, count(*) AS n FROM mix GROUP BY 1 ORDER BY 1"
    )
    assert_ok(result)
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["source", "n"]
    assert set(lines[1]) <= {"-", " "}
    got = dict(line.split() for line in lines[2:5])
    assert got == {name: str(int((ref.source == i).sum())) for i, name in enumerate(NAMES)}
    assert lines[5] == "(3 rows)"


def test_cli_table_is_cut_at_max_rows(shared: Shared) -> None:
    result = run("audit", shared.index, "SELECT * FROM mix", "--max-rows", 5)
    assert_ok(result)
    lines = result.stdout.splitlines()
    assert len(lines) == 2 + 5 + 1
    assert lines[-1].startswith(f"... {N - 5} more rows ({N} in all)")


def test_cli_csv(shared: Shared, tmp_path: Path) -> None:
    ref = read_arrays(shared.index)
    out = tmp_path / "mix.csv"
    result = run("audit", shared.index, "SELECT * FROM mix", "--format", "csv", "-o", out)
    assert_ok(result)
    assert result.stdout == ""
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == N
    assert [int(r["row"]) for r in rows] == ref.row.tolist()
    assert [r["source"] for r in rows] == [NAMES[s] for s in ref.source]


def test_cli_csv_and_json_to_stdout(shared: Shared) -> None:
    ref = read_arrays(shared.index)
    sql = "SELECT position, source, row FROM mix WHERE position < 4 ORDER BY position"
    result = run("audit", shared.index, sql, "--format", "csv")
    assert_ok(result)
    assert result.stdout.splitlines() == ['"position","source","row"'] + [
        f'{p},"{NAMES[ref.source[p]]}",{ref.row[p]}' for p in range(4)
    ]
    result = run("audit", shared.index, sql, "--format", "json")
    assert_ok(result)
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        {"position": p, "source": NAMES[ref.source[p]], "row": int(ref.row[p])} for p in range(4)
    ]


def test_cli_json_of_big_sums(shared: Shared) -> None:
    # sum() over BIGINT is HUGEINT, which reaches Arrow as a decimal: still a JSON number.
    result = run("audit", shared.index, "SELECT sum(count) AS n FROM blocks", "--format", "json")
    assert_ok(result)
    assert json.loads(result.stdout) == {"n": N}


def test_cli_parquet(shared: Shared, tmp_path: Path) -> None:
    ref = read_arrays(shared.index)
    out = tmp_path / "mix.parquet"
    result = run("audit", shared.index, "SELECT * FROM mix", "--format", "parquet", "-o", out)
    assert_ok(result)
    t = pq.read_table(out)
    assert t.num_rows == N
    assert t["epoch"].to_pylist() == ref.epoch.tolist()
    assert_one_line_error(run("audit", shared.index, "SELECT 1", "--format", "parquet"), "-o FILE")


def test_cli_sql_from_stdin(shared: Shared) -> None:
    result = run("audit", shared.index, "-", input="SELECT count(*) AS n FROM mix")
    assert_ok(result)
    assert result.stdout.splitlines()[2].strip() == str(N)


@pytest.mark.parametrize(
    ("sql", "mentions"),
    [
        ("SELECT * FORM mix", ["Parser Error", "FORM"]),
        ("SELECT nope FROM mix", ["Binder Error", "nope"]),
        ("SELECT * FROM nowhere", ["nowhere"]),
        ("COPY (SELECT 1) TO 'x.csv'", ["COPY statements are refused", "can only read"]),
    ],
)
def test_cli_sql_errors_are_one_line(shared: Shared, sql: str, mentions: list[str]) -> None:
    assert_one_line_error(run("audit", shared.index, sql), *mentions)


def test_cli_missing_or_corrupt_index(shared: Shared, tmp_path: Path) -> None:
    missing = tmp_path / "missing.mixindex"
    assert_one_line_error(run("audit", missing, "SELECT 1"), str(missing), "not a mixindex")
    import shutil

    broken = tmp_path / "broken.mixindex"
    shutil.copytree(shared.index, broken)
    (broken / "zarr.json").write_text("{ not json", encoding="utf-8")
    assert_one_line_error(run("audit", broken, "SELECT 1"), "zarr.json", "cannot be read")
    truncated = tmp_path / "truncated.mixindex"
    shutil.copytree(shared.index, truncated)
    (truncated / "row" / "c" / "0").write_bytes(b"\0" * 10)
    assert_one_line_error(run("audit", truncated, "SELECT sum(row) FROM mix"), "row/c/0", "damaged")


# ---- limits, timeout, Ctrl-C -----------------------------------------------------------------

# Runs for hours: only an interrupt ends it.
ENDLESS = "SELECT count(*) FROM range(1000000000000) a, range(1000) b WHERE a.range + b.range = 3"


@pytest.mark.parametrize(
    ("signum", "code", "said"),
    [
        (signal.SIGINT, 130, "interrupted (Ctrl-C)"),
        (signal.SIGTERM, 143, "stopped by SIGTERM"),
    ],
)
def test_cli_ctrl_c_stops_a_query(
    shared: Shared, tmp_path: Path, signum: int, code: int, said: str
) -> None:
    system_tmp, work = tmp_path / "system-tmp", tmp_path / "work"
    system_tmp.mkdir()
    work.mkdir()
    proc = start("audit", shared.index, ENDLESS, cwd=work, env={**ENV, "TMPDIR": str(system_tmp)})
    try:
        # The private folder appears when the connection opens; give the query a moment more.
        for _ in range(600):
            if list(system_tmp.iterdir()) or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert proc.poll() is None and list(system_tmp.iterdir()), proc.communicate()
        time.sleep(1)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, err
    assert out == ""
    assert err.splitlines() == [
        f"error: {said}: the query was stopped and its temporary files removed"
    ]
    assert list(system_tmp.iterdir()) == []
    assert list(work.iterdir()) == []


def test_cli_timeout(shared: Shared, private_tmp: Path) -> None:
    line = assert_one_line_error(run("audit", shared.index, ENDLESS, "--timeout", "0.5"))
    assert line.startswith("error: query stopped after 0.5 s (--timeout 0.5);")
    assert list(private_tmp.iterdir()) == []


def test_cli_memory_limit(shared: Shared, private_tmp: Path) -> None:
    # One string of 33 MB: an aggregate state DuckDB cannot spill.
    sql = "SELECT length(string_agg(md5(i::VARCHAR), ',')) AS n FROM range(1000000) t(i)"
    result = run("audit", shared.index, sql, "--memory-limit", "20MB")
    assert_one_line_error(result, "memory_limit=20MB", "--memory-limit")
    assert list(private_tmp.iterdir()) == []
    result = run("audit", shared.index, sql, "--format", "json")
    assert_ok(result)
    assert json.loads(result.stdout) == {"n": 33 * 1_000_000 - 1}


def test_cli_temp_limit(shared: Shared, private_tmp: Path, user_dir: Path) -> None:
    sql = "SELECT count(*) FROM (SELECT md5(i::VARCHAR) s FROM range(2000000) t(i) ORDER BY s)"
    result = run("audit", shared.index, sql, "--memory-limit", "50MB", "--temp-limit", "1MB")
    assert_one_line_error(result, "temp_limit=1MB", "--temp-limit")
    assert list(private_tmp.iterdir()) == []
    assert sorted(p.name for p in user_dir.rglob("*")) == [".tmp", "x.csv"]


def test_cli_copy_cannot_overwrite_a_file_in_dot_tmp(shared: Shared, user_dir: Path) -> None:
    result = run("audit", shared.index, "COPY (SELECT * FROM mix) TO '.tmp/x.csv'")
    assert_one_line_error(result, "COPY statements are refused")
    assert (user_dir / ".tmp" / "x.csv").read_text(encoding="utf-8") == "precious\n"


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--memory-limit", "lots"),
        ("--memory-limit", "0MB"),
        ("--memory-limit", "2 GB RAM"),
        ("--temp-limit", "-5GB"),
        ("--timeout", "soon"),
        ("--timeout", "0"),
        ("--timeout", "nan"),
    ],
)
def test_cli_bad_limits(shared: Shared, private_tmp: Path, flag: str, value: str) -> None:
    assert_one_line_error(run("audit", shared.index, "SELECT 1", flag, value), flag, repr(value))
    assert list(private_tmp.iterdir()) == []


def test_cli_limits_in_help() -> None:
    result = run("audit", "--help")
    assert_ok(result)
    text = " ".join(result.stdout.split())
    for part in ("--memory-limit", "[default: 2GB]", "--temp-limit", "[default: 10GB]"):
        assert part in text
    assert "--timeout SECONDS" in text and "[default: no limit]" in text
