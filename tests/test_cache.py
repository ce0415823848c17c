"""Parquet -> Arrow IPC cache at build time, the inspect warning, and sequential Parquet reads."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from clirun import assert_ok, run
from conftest import (
    CODE_ROW_GROUP,
    CODE_SCHEMA,
    CODE_SIZES,
    Data,
    Shared,
    SpecWriter,
    code_rows,
    write_parquet,
)

import mixindex
from mixindex.builder import build
from mixindex.sources.parquet import ParquetSource

CODE_ROWS = sum(CODE_SIZES)


def with_cache(spec: Callable[..., dict[str, Any]], **mix: Any) -> dict[str, Any]:
    s = spec(**mix)
    s["datasets"][0]["cache"] = "arrow"
    return s


def test_cache_arrow_on_a_dataset(
    shared: Shared,
    data: Data,
    write_spec: SpecWriter,
    spec: Callable[..., dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("MIXINDEX_CACHE_DIR", str(cache))
    out = build(write_spec(with_cache(spec)), tmp_path / "c.mixindex")
    ds = mixindex.open(out)
    plain = mixindex.open(shared.index)
    # Same plan (S6: the cache changes where rows are read, not which), same examples.
    assert ds.digest == plain.digest
    assert ds[0:] == plain[0:]
    rec = ds.index.sources[0]
    assert rec.type == "arrow" and rec.num_rows == CODE_ROWS
    (folder,) = cache.iterdir()
    assert folder.name.startswith("code-")
    assert list(rec.data_files) == [
        str(folder / "part-00000.arrow"),
        str(folder / "part-00001.arrow"),
    ]
    assert rec.cache is not None and rec.cache.kind == "arrow"
    assert rec.cache.folder == str(folder)
    # The Parquet source is recorded as it was: files and fingerprint.
    parquet = ParquetSource("code", [str(f) for f in data.code_files]).describe()
    assert rec.cache.source.to_dict() == parquet
    assert folder.name.endswith(parquet["fingerprint"][7:31])
    manifest = json.loads((folder / "cache.json").read_text())
    assert manifest["source"]["fingerprint"] == parquet["fingerprint"]
    # The other sources are not cached.
    assert [r.cache for r in ds.index.sources[1:]] == [None, None]
    assert type(ds.sources[0]).__name__ == "ArrowSource"


def test_cache_is_reused_and_follows_the_parquet(
    data: Data, write_spec: SpecWriter, spec: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    path = write_spec(spec())
    build(path, tmp_path / "a.mixindex", cache_dir=cache)
    (folder,) = cache.iterdir()
    stamp = (folder / "part-00000.arrow").stat().st_mtime_ns
    build(path, tmp_path / "b.mixindex", cache_dir=cache)
    assert [p.name for p in cache.iterdir()] == [folder.name]
    assert (folder / "part-00000.arrow").stat().st_mtime_ns == stamp
    # A changed Parquet file gets a cache of its own, with the new rows.
    rows = code_rows(0, CODE_SIZES[0])
    rows[3] = {**rows[3], "text": "changed"}
    write_parquet(data.code_files[0], rows, CODE_SCHEMA)
    out = build(path, tmp_path / "c.mixindex", cache_dir=cache)
    assert len(list(cache.iterdir())) == 2
    ds = mixindex.open(out)
    source, row, _ = ds.lookup(np.arange(len(ds)))
    hits = np.flatnonzero((source == 0) & (row == 3))
    assert ds[int(hits[0])]["text"] == "changed"
    want = ds[0:]
    ds.close()
    # A damaged cache is rebuilt, not trusted.
    (new,) = [p for p in cache.iterdir() if p != folder]
    (new / "cache.json").write_text("{}")
    (new / "part-00000.arrow").write_bytes(b"not arrow")
    build(path, tmp_path / "a.mixindex", cache_dir=cache, force=True)
    assert json.loads((new / "cache.json").read_text())["cache_version"] == 1
    assert mixindex.open(tmp_path / "a.mixindex")[0:] == want


def test_cached_rows_equal_the_parquet_rows(data: Data, tmp_path: Path) -> None:
    from mixindex.sources.cache import cached_source

    src = ParquetSource("code", [str(f) for f in data.code_files])
    cached, _ = cached_source(src, tmp_path / "cache")
    rows = np.array([59, 0, 8, 7, 37, 36, 3, 3])
    assert cached.take(rows).to_pylist() == src.take(rows).to_pylist()
    assert cached.schema.equals(src.schema, check_metadata=False)
    ref = [r for f in data.code_files for r in pq.read_table(f).to_pylist()]
    assert cached.take(np.arange(CODE_ROWS)).to_pylist() == ref


def test_cli_cache_dir_and_inspect_warning(
    data: Data, write_spec: SpecWriter, tmp_path: Path
) -> None:
    path = write_spec()
    plain, cached = tmp_path / "plain.mixindex", tmp_path / "cached.mixindex"
    assert_ok(run("build", path, "-o", plain, "--quiet"))
    result = run("inspect", plain)
    assert_ok(result)
    (warning,) = [ln for ln in result.stdout.splitlines() if ln.startswith("warning:")]
    assert "'code'" in warning and "--cache-dir" in warning and 'cache = "arrow"' in warning
    summary = json.loads(run("inspect", plain, "--json").stdout)
    assert len(summary["warnings"]) == 1

    assert_ok(run("build", path, "-o", cached, "--cache-dir", tmp_path / "c", "--quiet"))
    assert (tmp_path / "c").is_dir()
    result = run("inspect", cached)
    assert "warning:" not in result.stdout
    assert json.loads(run("inspect", cached, "--json").stdout)["warnings"] == []
    assert mixindex.open(cached)[0:] == mixindex.open(plain)[0:]


def test_sequential_parquet_does_not_warn_and_decodes_each_group_once_per_pass(
    data: Data,
    write_spec: SpecWriter,
    spec: Callable[..., dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = spec(row_order="sequential", weights={"code": 1, "notes": 1, "docs": 1})
    out = build(write_spec(s), tmp_path / "seq.mixindex")
    assert json.loads(run("inspect", out, "--json").stdout)["warnings"] == []
    decoded: list[int] = []
    real = pq.ParquetFile.read_row_group

    def counting(self: pq.ParquetFile, i: int, *args: Any, **kwargs: Any) -> Any:
        decoded.append(i)
        return real(self, i, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", counting)
    ds = mixindex.open(out)
    everything = list(ds)
    code = sum(ex["__source__"] == "code" for ex in everything)
    groups = sum(-(-n // CODE_ROW_GROUP) for n in CODE_SIZES)  # 5 + 3
    passes = -(-code // CODE_ROWS)
    # The row groups are read in order through the LRU: each once per pass over the source.
    assert len(decoded) <= groups * passes
    assert len(decoded) >= groups
