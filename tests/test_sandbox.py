"""The audit connection's guarantees (mixindex.audit.sandbox through mixindex.audit.sql.connect): a
private temporary folder that goes away, no file of the user's reachable from SQL (not even
``.tmp`` of the working directory), settings SQL cannot change, limits that DuckDB applies, and
queries that a timeout or Ctrl-C stops.
"""

from __future__ import annotations

import _thread
import gc
import os
import stat
import threading
from pathlib import Path

import pytest
from conftest import DEFAULT_MIX, Shared

from mixindex.audit.sandbox import QueryTimeout, Sandbox
from mixindex.audit.sql import connect, query
from mixindex.errors import QueryError

N = DEFAULT_MIX["num_examples"]
# Runs for hours: only an interrupt ends it.
ENDLESS = "SELECT count(*) FROM range(1000000000000) a, range(1000) b WHERE a.range + b.range = 3"


def setting(con: Sandbox, name: str) -> str:
    return str(con.sql(f"SELECT current_setting('{name}')").fetchall()[0][0])


def test_temp_folder_is_private_and_removed(
    shared: Shared, private_tmp: Path, user_dir: Path
) -> None:
    con = connect(shared.index)
    folder = con.temp_dir
    assert folder.parent == private_tmp and folder.name.startswith("mixindex-audit-")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert setting(con, "temp_directory") == str(folder)
    assert not folder.is_relative_to(user_dir)
    con.close()
    assert list(private_tmp.iterdir()) == []
    with connect(shared.index) as con:
        assert query(con, "SELECT count(*) AS n FROM mix").read_all()["n"].to_pylist() == [N]
    assert list(private_tmp.iterdir()) == []


def test_temp_folder_goes_with_the_last_reference(shared: Shared, private_tmp: Path) -> None:
    # A relation keeps DuckDB's connection, and so its folder, alive; dropping both removes it.
    rel = connect(shared.index).sql("SELECT count(*) FROM mix")
    gc.collect()
    assert rel.fetchall() == [(N,)]
    assert len(list(private_tmp.iterdir())) == 1
    del rel
    gc.collect()
    assert list(private_tmp.iterdir()) == []


@pytest.mark.parametrize(
    "sql",
    [
        "COPY (SELECT * FROM mix) TO '{tmp}/x.csv'",
        "COPY (SELECT 1) TO '.tmp/x.csv'",
        "COPY (SELECT 1) TO '{tmp}/duckdb_temp_storage-0.tmp'",
        "EXPLAIN ANALYZE COPY (SELECT 1) TO '{tmp}/x.csv'",
        "EXPLAIN /* a comment */ (ANALYZE, FORMAT json) COPY (SELECT 1) TO '{tmp}/x.csv'",
        "SELECT 1; COPY (SELECT 1) TO '{tmp}/x.csv'",
        "PREPARE p AS COPY (SELECT 1) TO '{tmp}/x.csv'",
        "ATTACH '{tmp}/x.db' AS other",
        "ATTACH '.tmp/x.db' AS other",
        "EXPORT DATABASE '{tmp}/export'",
        "COPY FROM DATABASE memory TO other",
        "PRAGMA import_database('{tmp}')",
        "SELECT * FROM read_text('{tmp}/../../' || '{user}/.tmp/x.csv')",
        "SELECT * FROM read_text('.tmp/x.csv')",
        "SELECT * FROM glob('{tmp}*')",
    ],
)
def test_no_path_of_the_user_is_reachable(
    shared: Shared, private_tmp: Path, user_dir: Path, sql: str
) -> None:
    with connect(shared.index) as con:
        with pytest.raises(QueryError):
            query(con, sql.format(tmp=con.temp_dir, user=user_dir)).read_all()
        assert list(con.temp_dir.iterdir()) == []
        assert query(con, "SELECT count(*) AS n FROM mix").read_all()["n"].to_pylist() == [N]
    assert [p.name for p in user_dir.rglob("*")] == [".tmp", "x.csv"]
    assert (user_dir / ".tmp" / "x.csv").read_text(encoding="utf-8") == "precious\n"
    assert list(private_tmp.iterdir()) == []


@pytest.mark.parametrize(
    "sql",
    [
        "SET memory_limit = '100GB'",
        "SET max_temp_directory_size = '1TB'",
        "SET temp_directory = '.tmp'",
        "RESET temp_directory",
        "SET enable_external_access = true",
        "SET allowed_directories = ['/']",
        "SET lock_configuration = false",
        "SET threads = 64",
    ],
)
def test_settings_are_locked(shared: Shared, sql: str) -> None:
    names = ["memory_limit", "max_temp_directory_size", "temp_directory", "threads"]
    with connect(shared.index, memory_limit="300MB", temp_limit="1GB") as con:
        before = {name: setting(con, name) for name in names}
        assert before["memory_limit"] == "286.1 MiB"  # DuckDB's MB is 10^6 bytes
        assert before["max_temp_directory_size"] == "953.6 MiB"
        with pytest.raises(QueryError):
            query(con, sql)
        assert {name: setting(con, name) for name in names} == before
        assert setting(con, "enable_external_access") == "False"


@pytest.mark.parametrize(
    ("sql", "rows"),
    [
        ("SELECT count(*) FROM mix", [(N,)]),
        ("FROM mix SELECT count(DISTINCT source)", [(3,)]),
        ("CREATE TABLE t AS SELECT 1 AS a; INSERT INTO t VALUES (2); SELECT sum(a) FROM t", [(3,)]),
        ("SET VARIABLE k = 7; SELECT getvariable('k')", [(7,)]),
        ("WITH s AS (SELECT DISTINCT source FROM mix) SELECT count(*) FROM s", [(3,)]),
        ("SELECT count(*) FROM (DESCRIBE mix)", [(6,)]),
        ("SELECT count(*) FROM (PIVOT (SELECT source FROM mix) ON source)", [(1,)]),
    ],
)
def test_reading_statements_still_run(shared: Shared, sql: str, rows: list[tuple[int]]) -> None:
    with connect(shared.index) as con:
        table = query(con, sql).read_all()
        assert [tuple(r.values()) for r in table.to_pylist()] == rows


@pytest.mark.parametrize("sql", ["EXPLAIN SELECT * FROM mix", "EXPLAIN ANALYZE SELECT * FROM mix"])
def test_explain_of_a_query_runs(shared: Shared, sql: str) -> None:
    with connect(shared.index) as con:
        assert query(con, sql).read_all().num_rows == 1


@pytest.mark.parametrize(
    ("kwargs", "mentions"),
    [
        ({"memory_limit": "lots"}, "memory_limit 'lots' is not a size"),
        ({"memory_limit": "0GB"}, "memory_limit '0GB'"),
        ({"temp_limit": "-1GB"}, "temp_limit '-1GB'"),
        ({"timeout": 0}, "timeout 0 is not a number of seconds"),
    ],
)
def test_bad_limits(
    shared: Shared, private_tmp: Path, kwargs: dict[str, object], mentions: str
) -> None:
    with pytest.raises(QueryError, match=mentions):
        connect(shared.index, **kwargs)  # type: ignore[arg-type]
    assert list(private_tmp.iterdir()) == []


def test_timeout_stops_a_query(shared: Shared, private_tmp: Path) -> None:
    with connect(shared.index) as con:
        with pytest.raises(QueryTimeout, match=r"query stopped after 0\.3 s \(--timeout 0\.3\)"):
            query(con, ENDLESS, timeout=0.3)
        # The connection is usable again at once.
        assert query(con, "SELECT count(*) AS n FROM mix").read_all()["n"].to_pylist() == [N]
    assert list(private_tmp.iterdir()) == []


def test_ctrl_c_stops_a_query(shared: Shared, private_tmp: Path) -> None:
    with connect(shared.index) as con:
        with pytest.raises(KeyboardInterrupt):
            # What Ctrl-C does: KeyboardInterrupt in the main thread while DuckDB works.
            threading.Timer(0.3, _thread.interrupt_main).start()
            query(con, ENDLESS).read_all()
        assert query(con, "SELECT count(*) AS n FROM mix").read_all()["n"].to_pylist() == [N]
    assert list(private_tmp.iterdir()) == []


def test_a_later_query_ends_an_unread_result(shared: Shared) -> None:
    with connect(shared.index) as con:
        first = query(con, "SELECT * FROM mix CROSS JOIN range(100)", batch_rows=1000)
        assert query(con, "SELECT 1 AS one").read_all()["one"].to_pylist() == [1]
        with pytest.raises(QueryError, match="cut short by a later query"):
            first.read_all()


def test_no_spill_into_the_working_directory(
    shared: Shared, private_tmp: Path, user_dir: Path
) -> None:
    # A sort far beyond the memory limit spills; before, DuckDB spilled into ./.tmp.
    sql = "SELECT count(*) AS n FROM (SELECT md5(i::VARCHAR) s FROM range(2000000) t(i) ORDER BY s)"
    with connect(shared.index, memory_limit="50MB", temp_limit="1MB") as con:
        with pytest.raises(QueryError, match=r"temp_limit=1MB.*--temp-limit"):
            query(con, sql).read_all()
        assert query(con, "SELECT 1 AS one").read_all().num_rows == 1
    with connect(shared.index, memory_limit="50MB", temp_limit="1GB") as con:
        assert query(con, sql).read_all()["n"].to_pylist() == [2_000_000]
    assert sorted(os.listdir(user_dir / ".tmp")) == ["x.csv"]
    assert list(private_tmp.iterdir()) == []


def test_sql_and_execute_are_checked_too(shared: Shared, private_tmp: Path) -> None:
    with connect(shared.index) as con:
        for call in (con.sql, con.execute):
            with pytest.raises(QueryError, match="COPY statements are refused"):
                call(f"COPY (SELECT 1) TO '{con.temp_dir}/x.csv'")
        assert list(con.temp_dir.iterdir()) == []
        assert con.execute("SELECT count(*) FROM mix").fetchall() == [(N,)]


def test_a_bare_sandbox_locks_itself_before_its_first_query(private_tmp: Path) -> None:
    with Sandbox(memory_limit="1GB") as box:
        sql = "SELECT current_setting('lock_configuration') a, current_setting('memory_limit') b"
        assert box.run(sql).read_all().to_pylist() == [{"a": True, "b": "953.6 MiB"}]
        with pytest.raises(QueryError):
            box.run("SET memory_limit = '4GB'")
    assert list(private_tmp.iterdir()) == []


def test_a_dropped_result_frees_its_worker(shared: Shared) -> None:
    def workers() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "mixindex-query"]

    with connect(shared.index) as con:
        result = query(con, "SELECT * FROM range(1000000000000)", timeout=600)
        assert len(workers()) == 1
        del result
        gc.collect()
        for _ in range(600):  # generous: only to avoid a hang
            if not workers():
                break
            threading.Event().wait(0.1)
        assert workers() == []


def test_limits_hit_while_setting_up_the_views_are_one_query_error(
    shared: Shared, private_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Where a tiny memory limit strikes depends on DuckDB's allocations (older DuckDB: while the
    # views are set up, before any query). That is the same one-line QueryError as in a query,
    # naming the limit and its flag, and the folder goes.
    import duckdb

    def out_of_memory(self: Sandbox) -> None:
        raise duckdb.OutOfMemoryException("Out of Memory Error: could not allocate block\nmore")

    monkeypatch.setattr(Sandbox, "lock", out_of_memory)
    with pytest.raises(QueryError, match=r"^the query needs more than memory_limit=1KB ") as info:
        connect(shared.index, memory_limit="1KB")
    assert "--memory-limit" in str(info.value) and "\n" not in str(info.value)
    assert list(private_tmp.iterdir()) == []
