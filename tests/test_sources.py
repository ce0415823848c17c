"""mixindex.sources: real Parquet, Arrow IPC and datasets files read back by row number."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
from clirun import assert_one_line_error, run_process
from hypothesis import given, settings
from hypothesis import strategies as st

from mixindex.errors import SourceError
from mixindex.sources import Source, open_source, reopen_source
from mixindex.sources.arrow import ArrowSource
from mixindex.sources.parquet import ParquetSource
from mixindex.spec.config import DatasetConfig

# File sizes chosen so that files, row groups and batches all have different, odd lengths;
# the 0 makes an empty file in the middle, which row lookups must skip.
SIZES = (10, 0, 7, 13)
TOTAL = sum(SIZES)


def row(i: int) -> dict[str, Any]:
    # Strings of varying length, so that a wrong row also has a wrong size.
    return {"id": i, "text": f"t{i}-" + "x" * (i % 7), "score": i * 0.5}


REFERENCE = [row(i) for i in range(TOTAL)]


def table(start: int, n: int) -> pa.Table:
    rows = [row(i) for i in range(start, start + n)]
    return pa.Table.from_pylist(rows, schema=SCHEMA)


SCHEMA = pa.schema([("id", pa.int64()), ("text", pa.string()), ("score", pa.float64())])


def write_files(folder: Path, writer: Callable[[pa.Table, Path], None], suffix: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths, start = [], 0
    for k, n in enumerate(SIZES):
        path = folder / f"part-{k}{suffix}"
        writer(table(start, n), path)
        paths.append(path)
        start += n
    return paths


def write_parquet(t: pa.Table, path: Path) -> None:
    pq.write_table(t, path, row_group_size=4)


def write_ipc_file(t: pa.Table, path: Path) -> None:
    with pa.OSFile(str(path), "wb") as f, pa.ipc.new_file(f, t.schema) as w:
        w.write_table(t, max_chunksize=3)


def write_ipc_stream(t: pa.Table, path: Path) -> None:
    with pa.OSFile(str(path), "wb") as f, pa.ipc.new_stream(f, t.schema) as w:
        w.write_table(t, max_chunksize=5)
        w.write_batch(pa.RecordBatch.from_pylist([], schema=t.schema))  # an empty batch


def expected(rows: Any, columns: list[str] | None = None) -> list[dict[str, Any]]:
    out = [REFERENCE[int(r)] for r in rows]
    return out if columns is None else [{c: r[c] for c in columns} for r in out]


def open_dir(folder: Path, data_files: Any, type: Any = None, name: str = "d") -> Source:
    return open_source(DatasetConfig(name=name, data_files=data_files, type=type), folder)


RNG_ROWS = np.random.default_rng(7).integers(0, TOTAL, 200)
# Duplicates, reverse order, both ends and runs of consecutive rows.
ROWS = np.concatenate([RNG_ROWS, [0, 0, TOTAL - 1, 5, 5, 4], np.arange(8, 20), [3, 2, 1]])


@pytest.fixture(params=["parquet", "ipc_file", "ipc_stream", "save_to_disk"])
def source(request: pytest.FixtureRequest, tmp_path: Path) -> Source:
    kind = request.param
    if kind == "parquet":
        write_files(tmp_path / "data", write_parquet, ".parquet")
        return open_dir(tmp_path, "data/*.parquet")
    if kind == "ipc_file":
        write_files(tmp_path / "data", write_ipc_file, ".arrow")
        return open_dir(tmp_path, "data")
    if kind == "ipc_stream":
        write_files(tmp_path / "data", write_ipc_stream, ".arrow")
        return open_dir(tmp_path, ["data/part-0.arrow", "data/part-[123].arrow"])
    import datasets

    datasets.Dataset.from_list(REFERENCE).save_to_disk(str(tmp_path / "saved"), num_shards=3)
    return open_dir(tmp_path, "saved")


# -- reading -------------------------------------------------------------------------------


def test_take_returns_requested_rows_in_order(source: Source) -> None:
    assert len(source) == TOTAL
    assert source.take(ROWS).to_pylist() == expected(ROWS)
    assert isinstance(source, Source)
    assert source.type == ("parquet" if isinstance(source, ParquetSource) else "arrow")


def test_take_projects_columns_in_requested_order(source: Source) -> None:
    got = source.take(ROWS, columns=["text", "id"])
    assert got.column_names == ["text", "id"]
    assert got.to_pylist() == expected(ROWS, ["text", "id"])


def test_take_edge_shapes(source: Source) -> None:
    assert source.take(np.arange(TOTAL)).to_pylist() == REFERENCE
    assert source.take(np.arange(TOTAL)[::-1]).to_pylist() == REFERENCE[::-1]
    assert source.take(np.array([], dtype=np.int64)).num_rows == 0
    assert source.take(np.array([], dtype=np.int64), columns=["id"]).column_names == ["id"]
    assert source.take(np.array([9, 9, 9], dtype=np.uint32)).column("id").to_pylist() == [9] * 3


def test_take_out_of_range_is_index_error(source: Source) -> None:
    for bad in ([TOTAL], [0, -1], [2**63 + 5]):
        dtype = np.uint64 if bad[0] > 2**62 else np.int64
        with pytest.raises(IndexError, match=str(bad[-1])):
            source.take(np.array(bad, dtype=dtype))


def test_unknown_column_names_it(source: Source) -> None:
    with pytest.raises(SourceError, match="no column 'nope'"):
        source.take(ROWS, columns=["nope"])


def test_len_comes_from_metadata(tmp_path: Path) -> None:
    paths = write_files(tmp_path, write_parquet, ".parquet")
    src = open_dir(tmp_path, [p.name for p in paths])
    assert isinstance(src, ParquetSource)
    assert len(src) == sum(pq.read_table(p).num_rows for p in paths) == TOTAL
    assert src.data_files == [str(p) for p in paths]
    assert src.describe() == {
        "name": "d",
        "type": "parquet",
        "data_files": [str(p) for p in paths],
        "num_rows": TOTAL,
        "fingerprint": src.fingerprint(),
    }


def test_parquet_cache_is_bounded_and_projection_uses_full_decode(tmp_path: Path) -> None:
    write_files(tmp_path, write_parquet, ".parquet")
    src = ParquetSource("d", [str(p) for p in sorted(tmp_path.glob("*.parquet"))], cache_size=2)
    assert src.take(ROWS).to_pylist() == expected(ROWS)
    assert len(src._cache) == 2
    no_cache = ParquetSource("d", src.data_files, cache_size=0)
    assert no_cache.take(ROWS, columns=["score"]).to_pylist() == expected(ROWS, ["score"])


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.integers(0, TOTAL - 1), max_size=80), sort=st.booleans())
def test_take_matches_reference_for_any_rows(
    rows: list[int], sort: bool, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.getbasetemp() / "hypothesis"
    if not folder.exists():
        write_files(folder / "p", write_parquet, ".parquet")
        write_files(folder / "a", write_ipc_stream, ".arrow")
    arr = np.sort(rows) if sort else np.array(rows, dtype=np.int64)
    for sub in ("p", "a"):
        src = open_dir(folder, sub)
        assert src.take(arr).to_pylist() == expected(arr)


def test_feather_and_ipc_suffixes_are_arrow(tmp_path: Path) -> None:
    feather.write_feather(table(0, 10), tmp_path / "a.feather")
    write_ipc_file(table(10, 5), tmp_path / "b.ipc")
    src = open_dir(tmp_path, ["a.feather", "b.ipc"])
    assert isinstance(src, ArrowSource)
    assert src.take(np.array([14, 0, 10])).to_pylist() == expected([14, 0, 10])


# -- datasets.Dataset objects ----------------------------------------------------------------


def test_in_memory_dataset_is_wrapped() -> None:
    import datasets

    ds = datasets.Dataset.from_list(REFERENCE)
    src = open_source(DatasetConfig(name="mem", data_files=ds), Path("."))
    assert (src.type, src.data_files, len(src)) == ("arrow", [], TOTAL)
    assert src.take(ROWS).to_pylist() == expected(ROWS)
    assert src.describe()["data_files"] == []
    with pytest.raises(SourceError, match=r"dataset 'mem' was an in-memory datasets\.Dataset"):
        reopen_source(src.describe())
    again = reopen_source(src.describe(), ds)
    assert again.fingerprint() == src.fingerprint()


@pytest.mark.parametrize("how", ["shuffle", "select", "filter"])
def test_dataset_with_indices_mapping_takes_mapped_rows(how: str, tmp_path: Path) -> None:
    import datasets

    datasets.Dataset.from_list(REFERENCE).save_to_disk(str(tmp_path / "saved"), num_shards=2)
    ds = datasets.load_from_disk(str(tmp_path / "saved"))
    if how == "shuffle":
        mapped = ds.shuffle(seed=0)
    elif how == "select":
        mapped = ds.select([5, 3, 3, 29, 0, 17])
    else:
        mapped = ds.filter(lambda r: r["id"] % 3 == 1)
    assert mapped._indices is not None
    src = open_source(DatasetConfig(name="m", data_files=mapped), tmp_path)
    assert src.data_files == [] and len(src) == len(mapped)
    rows = np.array([len(mapped) - 1, 0, 2, 2, 1])
    assert src.take(rows).to_pylist() == [mapped[int(r)] for r in rows]
    assert src.take(rows, columns=["id"]).column("id").to_pylist() == [
        mapped[int(r)]["id"] for r in rows
    ]


def test_dataset_on_cache_files_opens_them(tmp_path: Path) -> None:
    import datasets

    datasets.Dataset.from_list(REFERENCE).save_to_disk(str(tmp_path / "saved"), num_shards=3)
    ds = datasets.load_from_disk(str(tmp_path / "saved"))
    src = open_source(DatasetConfig(name="c", data_files=ds), tmp_path)
    assert isinstance(src, ArrowSource)
    assert src.data_files == [f["filename"] for f in ds.cache_files]
    assert src.take(ROWS).to_pylist() == expected(ROWS)
    # The same files opened as a folder give the same fingerprint.
    assert open_dir(tmp_path, "saved").fingerprint() == src.fingerprint()
    # A contiguous select slices the table without an indices mapping: still the right rows.
    part = ds.select(range(4, 12))
    sub = open_source(DatasetConfig(name="c", data_files=part), tmp_path)
    assert len(sub) == 8 and sub.data_files == []
    assert sub.take(np.array([0, 7])).to_pylist() == expected([4, 11])
    # A renamed column changes the table but not the cache files: wrapped, read as renamed.
    renamed = ds.rename_column("id", "k")
    src = open_source(DatasetConfig(name="r", data_files=renamed), tmp_path)
    assert src.data_files == []
    assert src.take(np.array([3])).to_pylist() == [{"k": 3, "text": "t3-xxx", "score": 1.5}]


def test_dataset_with_other_type_is_refused() -> None:
    import datasets

    ds = datasets.Dataset.from_list(REFERENCE)
    with pytest.raises(SourceError, match=r"dataset 'x' is a datasets\.Dataset"):
        open_source(DatasetConfig(name="x", data_files=ds, type="parquet"), Path("."))


def test_importing_sources_does_not_import_datasets() -> None:
    code = "import sys, mixindex.sources; print('datasets' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- fingerprints --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["parquet", "arrow"])
def test_fingerprint_stable_and_moves_with_the_files(kind: str, tmp_path: Path) -> None:
    writer, suffix = (
        (write_parquet, ".parquet") if kind == "parquet" else (write_ipc_file, ".arrow")
    )
    write_files(tmp_path / "a" / "data", writer, suffix)
    first = open_dir(tmp_path / "a", "data")
    assert first.fingerprint().startswith("sha256:") and len(first.fingerprint()) == 71
    assert open_dir(tmp_path / "a", "data").fingerprint() == first.fingerprint()
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    moved = open_dir(tmp_path / "b", "data")
    assert moved.data_files != first.data_files
    assert moved.fingerprint() == first.fingerprint()
    assert moved.fingerprint(deep=True) == first.fingerprint(deep=True) != first.fingerprint()
    # Another file in the folder is another dataset.
    writer(table(0, 3), tmp_path / "b" / "data" / f"part-9{suffix}")
    assert open_dir(tmp_path / "b", "data").fingerprint() != first.fingerprint()


def test_parquet_fingerprint_sees_a_changed_value(tmp_path: Path) -> None:
    # Plain encoding, no compression: a changed number leaves the file size as it was.
    options: dict[str, Any] = {"row_group_size": 4, "compression": "none", "use_dictionary": False}
    path = tmp_path / "a.parquet"
    t = table(0, 10)
    pq.write_table(t, path, **options)
    size = os.path.getsize(path)
    before = open_dir(tmp_path, "a.parquet")
    cheap, deep = before.fingerprint(), before.fingerprint(deep=True)
    # id 9 -> 99 changes the last row group's max statistic, which the footer holds.
    pq.write_table(t.set_column(0, "id", pa.array([*range(9), 99], pa.int64())), path, **options)
    after = open_dir(tmp_path, "a.parquet")
    assert os.path.getsize(path) == size
    assert after.take(np.array([9])).column("id").to_pylist() == [99]
    assert after.fingerprint() != cheap and after.fingerprint(deep=True) != deep
    # score of row 5 (group 4..7 holds 2.0..3.5) 2.5 -> 2.75 stays inside the statistics: only
    # the content hash can see it, since the cheap fingerprint reads footers, not data.
    scores = [i * 0.5 for i in range(10)]
    scores[5] = 2.75
    pq.write_table(t.set_column(2, "score", pa.array(scores)), path, **options)
    inner = open_dir(tmp_path, "a.parquet")
    assert os.path.getsize(path) == size
    assert inner.take(np.array([5])).column("score").to_pylist() == [2.75]
    assert inner.fingerprint(deep=True) != deep


def test_arrow_fingerprint_sees_a_changed_value(tmp_path: Path) -> None:
    write_ipc_file(table(0, 10), tmp_path / "a.arrow")
    base = open_dir(tmp_path, "a.arrow")
    cheap, deep = base.fingerprint(), base.fingerprint(deep=True)
    base.close()
    rows = [row(i) for i in range(10)]
    rows[4]["text"] = "longer text than before"  # another length: buffer sizes change
    write_ipc_file(pa.Table.from_pylist(rows, schema=SCHEMA), tmp_path / "a.arrow")
    assert open_dir(tmp_path, "a.arrow").fingerprint() != cheap
    rows[4]["text"] = row(4)["text"].replace("t", "T")  # same length: only bytes differ
    write_ipc_file(pa.Table.from_pylist(rows, schema=SCHEMA), tmp_path / "a.arrow")
    same_size = open_dir(tmp_path, "a.arrow")
    assert same_size.take(np.array([4])).column("text").to_pylist() == ["T4-xxxx"]
    assert same_size.fingerprint(deep=True) != deep


# -- errors --------------------------------------------------------------------------------


def test_glob_and_path_that_match_nothing(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"data_files 'data/\*.parquet' matched no file") as e:
        open_dir(tmp_path, "data/*.parquet", name="code")
    assert str(tmp_path / "data") in str(e.value) and "dataset 'code'" in str(e.value)
    with pytest.raises(SourceError, match=r"'missing\.arrow' matched no file"):
        open_dir(tmp_path, "missing.arrow")


@pytest.mark.parametrize("suffix, type", [(".parquet", None), (".arrow", None), (".bin", "arrow")])
def test_file_that_is_not_data(suffix: str, type: Any, tmp_path: Path) -> None:
    bad = tmp_path / f"bad{suffix}"
    bad.write_bytes(b"this is not a data file at all" * 10)
    with pytest.raises(SourceError, match="is not a readable") as e:
        open_dir(tmp_path, bad.name, type=type)
    assert str(bad) in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("suffix", [".parquet", ".arrow"])
def test_source_without_rows(suffix: str, tmp_path: Path) -> None:
    (write_parquet if suffix == ".parquet" else write_ipc_stream)(
        table(0, 0), tmp_path / f"e{suffix}"
    )
    with pytest.raises(SourceError, match="dataset 'empty' has no rows") as e:
        open_dir(tmp_path, f"e{suffix}", name="empty")
    assert str(tmp_path / f"e{suffix}") in str(e.value)


def test_dataset_without_rows() -> None:
    import datasets

    ds = datasets.Dataset.from_list(REFERENCE).select([])
    with pytest.raises(SourceError, match="dataset 'none' has no rows"):
        open_source(DatasetConfig(name="none", data_files=ds), Path("."))


@pytest.mark.parametrize("suffix", [".parquet", ".arrow"])
def test_files_with_different_schemas(suffix: str, tmp_path: Path) -> None:
    writer = write_parquet if suffix == ".parquet" else write_ipc_file
    writer(table(0, 3), tmp_path / f"a{suffix}")
    writer(table(3, 3).drop_columns(["score"]), tmp_path / f"b{suffix}")
    with pytest.raises(SourceError, match=r"only in the first file: \['score'\]") as e:
        open_dir(tmp_path, f"*{suffix}")
    assert str(tmp_path / f"b{suffix}") in str(e.value)
    writer(table(3, 3).set_column(0, "id", pa.array(range(3), pa.int32())), tmp_path / f"b{suffix}")
    with pytest.raises(SourceError, match="column 'id' is int32 here but int64 in the first file"):
        open_dir(tmp_path, f"*{suffix}")


def test_type_cannot_be_inferred(tmp_path: Path) -> None:
    write_parquet(table(0, 3), tmp_path / "a.parquet")
    write_ipc_file(table(3, 3), tmp_path / "b.arrow")
    (tmp_path / "c.xyz").write_text("id\n1\n")  # (.csv is a type of its own)
    with pytest.raises(SourceError, match=r"mixes Parquet .*a\.parquet.* and Arrow .*; set type"):
        open_dir(tmp_path, ["a.parquet", "b.arrow"])
    with pytest.raises(SourceError, match=r"type of '.*c\.xyz' from its suffix; set type"):
        open_dir(tmp_path, "c.xyz")
    with pytest.raises(SourceError, match="mixes Parquet"):
        open_dir(tmp_path, ".")  # a folder holding both kinds


def test_folder_and_list_mistakes(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match=r"folder '.*empty' has no \.parquet"):
        open_dir(tmp_path, "empty")
    write_parquet(table(0, 3), tmp_path / "a.parquet")
    with pytest.raises(SourceError, match=r"file '.*a\.parquet' is listed twice"):
        open_dir(tmp_path, ["a.parquet", "*.parquet"])
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "state.json").write_text('{"nothing": 1}')
    with pytest.raises(SourceError, match=r"state\.json' is not a datasets save_to_disk state"):
        open_dir(tmp_path, "s")


def test_reopen(tmp_path: Path) -> None:
    write_files(tmp_path / "data", write_ipc_stream, ".arrow")
    src = open_dir(tmp_path, "data", name="text")
    record = src.describe()
    again = reopen_source(record)
    assert again.fingerprint() == record["fingerprint"]
    assert again.take(ROWS).to_pylist() == expected(ROWS)
    shutil.move(tmp_path / "data", tmp_path / "moved")
    with pytest.raises(SourceError, match=r"dataset 'text': file '.*part-0\.arrow' recorded"):
        reopen_source(record)
    moved = reopen_source(record, [str(tmp_path / "moved")])
    assert moved.fingerprint() == record["fingerprint"]
    assert moved.take(ROWS).to_pylist() == expected(ROWS)
    with pytest.raises(SourceError, match="needs a name and a type"):
        reopen_source({"name": "x", "type": "csv", "data_files": []})


# -- processes -----------------------------------------------------------------------------


def test_pickle_round_trip_then_take(source: Source) -> None:
    source.take(ROWS)  # open handles and fill caches before pickling
    clone = pickle.loads(pickle.dumps(source))
    assert clone.take(ROWS).to_pylist() == expected(ROWS)
    assert clone.fingerprint() == source.fingerprint()
    source.close()
    assert source.take(ROWS[:5]).to_pylist() == expected(ROWS[:5])  # reopens lazily


def test_in_memory_dataset_pickles() -> None:
    import datasets

    ds = datasets.Dataset.from_list(REFERENCE).select([3, 1, 2])
    src = open_source(DatasetConfig(name="m", data_files=ds), Path("."))
    clone = pickle.loads(pickle.dumps(src))
    assert clone.take(np.array([2, 0])).to_pylist() == expected([2, 3])


def test_take_after_fork(source: Source) -> None:
    assert source.take(ROWS).to_pylist() == expected(ROWS)  # the parent has opened everything
    with warnings.catch_warnings():
        # Python 3.12+ warns about fork() in a process with threads (pyarrow has a pool); the
        # child here only reads files and exits.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        status = 1
        try:
            got = source.take(ROWS).to_pylist()
            # The child must have reopened its own handles, not used the parent's.
            status = 0 if got == expected(ROWS) and source._pid == os.getpid() else 3  # type: ignore[attr-defined]
        except BaseException:
            status = 2
        finally:
            os._exit(status)
    _, wait_status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(wait_status) == 0
    assert source.take(ROWS[:10]).to_pylist() == expected(ROWS[:10])


# -- what data_files may name: real files, each once ----------------------------------------


class Hung(Exception):
    """Not an OSError (TimeoutError is one, and glob swallows OSErrors)."""


class _Alarm:
    """Fail instead of hanging: raise Hung after ``seconds`` (pure-Python loops only)."""

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds

    def __enter__(self) -> None:
        import signal

        def fire(signum: int, frame: object) -> None:
            raise Hung(f"still running after {self.seconds} s")

        self.old = signal.signal(signal.SIGALRM, fire)
        signal.alarm(self.seconds)

    def __exit__(self, *exc: object) -> None:
        import signal

        signal.alarm(0)
        signal.signal(signal.SIGALRM, self.old)


def test_a_glob_through_symlink_loops_counts_each_file_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    write_parquet(table(0, 10), data / "a.parquet")
    write_parquet(table(10, 7), data / "sub" / "b.parquet")
    # Two loops: glob.glob walks 2^40 paths through them before the names get too long.
    (data / "sub" / "up").symlink_to("..")
    (data / "sub" / "up2").symlink_to("..")
    with _Alarm(60):
        src = open_dir(tmp_path, "data/**/*.parquet")
    assert src.data_files == [str(data / "a.parquet"), str(data / "sub" / "b.parquet")]
    assert len(src) == 17
    assert src.take(np.arange(17)).to_pylist() == REFERENCE[:17]


def test_a_file_reached_through_a_symlink_counts_once(tmp_path: Path) -> None:
    write_parquet(table(0, 10), tmp_path / "a.parquet")
    (tmp_path / "latest.parquet").symlink_to("a.parquet")
    src = open_dir(tmp_path, "*.parquet")
    assert src.data_files == [str(tmp_path / "a.parquet")] and len(src) == 10
    with pytest.raises(SourceError, match=r"latest\.parquet' \(the same file as .*a\.parquet'\) "):
        open_dir(tmp_path, ["a.parquet", "latest.parquet"])


def test_a_broken_symlink_is_named(tmp_path: Path) -> None:
    (tmp_path / "gone.parquet").symlink_to("nowhere.parquet")
    with pytest.raises(SourceError, match=r"gone\.parquet' cannot be opened .*broken symlink"):
        open_dir(tmp_path, "*.parquet")


@pytest.mark.parametrize("data_files", ["data/*.parquet", "data/pipe.parquet"])
def test_a_fifo_among_the_data_files_is_refused_without_waiting(
    tmp_path: Path, data_files: str
) -> None:
    (tmp_path / "data").mkdir()
    write_parquet(table(0, 10), tmp_path / "data" / "a.parquet")
    os.mkfifo(tmp_path / "data" / "pipe.parquet")
    spec = tmp_path / "mix.toml"
    spec.write_text(
        f'[[datasets]]\nname = "d"\ndata_files = "{data_files}"\n'
        "[mix]\nseed = 1\nnum_examples = 10\n"
    )
    out = tmp_path / "out.mixindex"
    assert_one_line_error(
        run_process("build", spec, "-o", out, timeout=120),
        "pipe.parquet' is not a regular file",
        "dataset 'd'",
    )
    assert not out.exists()
