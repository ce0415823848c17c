"""Sources behind URLs, end to end against a real S3 endpoint (moto's server on 127.0.0.1).

The test data (``conftest.make_data``) is uploaded to a fresh bucket; the docs source goes up as
JSON Lines. The same spec built from the local copies is the reference: the plan depends only on
the row counts and the mix, so the remote index must serve exactly the local index's examples.
"""

from __future__ import annotations

import functools
import io
import json
import multiprocessing
import os
import pickle
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mixindex
from mixindex.errors import MixIndexError, SourceChangedError, SpecError
from mixindex.sources.blocks import BlockCache, block_cache
from mixindex.spec.config import PipelineConfig
from tests.clirun import ENV, assert_ok, assert_one_line_error, run
from tests.conftest import DEFAULT_MIX, Data, to_toml
from tests.s3server import Bucket

MIX = {**DEFAULT_MIX, "num_examples": 300}


def _write_jsonl(data: Data, path: Path) -> None:
    rows = data.reference()["docs"]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _upload(data: Data, s3: Bucket) -> None:
    fs = s3.filesystem()
    for f in data.code_files:
        fs.put_file(str(f), s3.url(f"code/{f.name}"))
    fs.put_file(str(data.notes_file), s3.url("notes.arrow"))
    jsonl = data.root / "docs.jsonl"
    _write_jsonl(data, jsonl)
    fs.put_file(str(jsonl), s3.url("docs/docs.jsonl"))


def _specs(data: Data, s3: Bucket, tmp_path: Path, **options: Any) -> tuple[Path, Path]:
    """A spec of the uploaded objects and the same spec of the local files."""
    remote = [
        {"name": "code", "data_files": s3.url("code/*.parquet"), **options},
        {"name": "notes", "data_files": [s3.url("notes.arrow")], **options},
        {"name": "docs", "data_files": s3.url("docs/"), "type": "json", **options},
    ]
    local = [
        {"name": "code", "data_files": "data/code/*.parquet"},
        {"name": "notes", "data_files": "data/notes.arrow"},
        {"name": "docs", "data_files": "data/docs.jsonl"},
    ]
    paths = []
    for name, datasets in (("remote.toml", remote), ("local.toml", local)):
        path = tmp_path / name
        path.write_text(to_toml({"datasets": datasets, "mix": MIX}), encoding="utf-8")
        paths.append(path)
    return paths[0], paths[1]


@pytest.fixture
def built(
    data: Data, s3: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, Path]:
    """``(remote index, local index)`` built through the command line from the same mix."""
    monkeypatch.setenv("MIXINDEX_CACHE_DIR", str(tmp_path / "cache"))
    _upload(data, s3)
    remote_spec, local_spec = _specs(data, s3, tmp_path)
    remote, local = tmp_path / "remote.mixindex", tmp_path / "local.mixindex"
    assert_ok(run("build", remote_spec, "-o", remote))
    assert_ok(run("build", local_spec, "-o", local))
    return remote, local


def test_build_open_read_shard_resume_and_verify_with_sources_on_s3(
    built: tuple[Path, Path], s3: Bucket
) -> None:
    remote_path, local_path = built
    remote, local = mixindex.open(remote_path), mixindex.open(local_path)
    recorded = {r.name: list(r.data_files) for r in remote.index.sources}
    assert recorded["code"] == [s3.url("code/part-0.parquet"), s3.url("code/part-1.parquet")]
    assert recorded["notes"] == [s3.url("notes.arrow")]
    # JSON Lines went through the conversion into the local Arrow cache.
    assert remote.index.sources[2].origin.data_files == (s3.url("docs/docs.jsonl"),)
    assert len(remote) == len(local) == 300
    assert list(remote) == list(local)
    positions = np.random.default_rng(0).integers(0, 300, 64)
    assert remote.read_batch(positions).equals(local.read_batch(positions))
    assert remote.__getitems__(positions.tolist()) == local.__getitems__(positions.tolist())

    rank, local_rank = (d.shard(1, 2, global_batch_size=4) for d in (remote, local))
    it = iter(rank)
    head = [next(it) for _ in range(11)]
    state = it.state_dict()
    resumed = iter(rank)
    resumed.load_state_dict(state)
    assert head + list(resumed) == list(local_rank)

    result = run("verify", remote_path)
    assert_ok(result)
    assert "3 sources match" in result.output
    audit = run("audit", remote_path, "SELECT count(*) AS n FROM mix WHERE source = 'code'")
    assert_ok(audit)
    assert str(sum(e["__source__"] == "code" for e in local)) in audit.output


def test_a_replaced_object_is_refused_at_open_naming_it(
    built: tuple[Path, Path], data: Data, s3: Bucket
) -> None:
    remote_path, _ = built
    # Same rows and the same size, other bytes: only the object's version (ETag) tells.
    raw = bytearray(data.notes_file.read_bytes())
    at = raw.index(b"note 3: yyy")
    raw[at : at + 4] = b"NOTE"
    s3.filesystem().pipe(s3.url("notes.arrow"), bytes(raw))
    with pytest.raises(SourceChangedError) as err:
        mixindex.open(remote_path)
    assert s3.url("notes.arrow") in str(err.value) and "replaced" in str(err.value)
    assert "\n" not in str(err.value)
    result = run("verify", remote_path)
    assert result.exit_code != 0 and s3.url("notes.arrow") in result.output + result.stderr
    # Asked to, a reader still opens it (and reads the new bytes).
    assert len(mixindex.open(remote_path, verify=False)) == 300


def test_a_reader_that_loses_its_connection_fails_in_one_line_never_with_wrong_rows(
    built: tuple[Path, Path], s3: Bucket
) -> None:
    remote_path, local_path = built
    expected = list(mixindex.open(local_path))
    block_cache().clear()
    ds = mixindex.open(remote_path)
    got = []
    it = ds.iter(batch_size=8)
    got.extend(next(it) for _ in range(8))
    s3.server.stop()
    try:
        with pytest.raises(MixIndexError) as err:
            for example in it:
                got.append(example)
    finally:
        s3.server.start()
    message = str(err.value)
    assert "\n" not in message and "s3://" in message and "connection" in message
    assert got == expected[: len(got)] and len(got) < len(expected)


def test_storage_options_in_the_spec_are_used_and_never_written_into_the_index(
    data: Data, s3: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIXINDEX_CACHE_DIR", str(tmp_path / "cache"))
    _upload(data, s3)
    secret = "wJalrXUtnFEMI-K7MDENG-SECRET-4242"
    options = {"endpoint_url": s3.endpoint, "key": "AKIA-TEST-KEY-4242", "secret": secret}
    remote_spec, _ = _specs(data, s3, tmp_path, storage_options=options)
    # Without the spec's endpoint, the build would go to AWS (unreachable from here).
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    out = tmp_path / "remote.mixindex"
    assert_ok(run("build", remote_spec, "-o", out))
    text = (out / "zarr.json").read_text(encoding="utf-8")
    for value in (secret, "AKIA-TEST-KEY-4242", s3.endpoint):
        assert value not in text
    recorded = mixindex.open(out, storage_options={"endpoint_url": s3.endpoint}).index.meta
    assert all("storage_options" not in d.to_dict() for d in recorded.spec.datasets)
    everything = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())
    assert secret.encode() not in everything
    ds = mixindex.open(out, storage_options={"endpoint_url": s3.endpoint})
    assert len(ds) == 300 and ds[0]["__source__"] in ("code", "notes", "docs")
    assert secret not in repr(mixindex.spec.config.load_spec(remote_spec))


def test_reads_fetch_only_the_row_groups_and_batches_they_need(data: Data, s3: Bucket) -> None:
    from mixindex.sources import open_source
    from mixindex.spec.config import DatasetConfig

    _upload(data, s3)
    code = open_source(DatasetConfig(name="code", data_files=s3.url("code/*.parquet")), ".")
    notes = open_source(DatasetConfig(name="notes", data_files=s3.url("notes.arrow")), ".")
    cache = block_cache()
    cache.clear()
    assert code.take(np.array([9, 10]), columns=["text"]).column("text").to_pylist() == [
        data.reference()["code"][i]["text"] for i in (9, 10)
    ]
    # Rows 9 and 10 are in row group 1 (groups of 8 rows): one range, that group's text column.
    assert cache.misses == 1 and 0 < cache.nbytes < data.code_files[0].stat().st_size // 4
    cache.clear()
    rows = np.array([25, 3, 21])  # batches of 10 rows: batches 2 and 0, fetched at once
    assert notes.take(rows).to_pylist() == [data.reference()["notes"][i] for i in rows]
    assert cache.misses == 2
    assert notes.take(rows).to_pylist() == [data.reference()["notes"][i] for i in rows]
    assert cache.misses == 2 and cache.hits == 2
    # A pickled source (a DataLoader worker's) reads the same rows.
    assert pickle.loads(pickle.dumps(code)).take(np.array([40])).to_pylist() == [
        data.reference()["code"][40]
    ]


def _read_in_child(src: Any, rows: list[int], queue: Any) -> None:
    queue.put(src.take(np.array(rows)).to_pylist())


def test_a_forked_worker_reads_a_source_its_parent_used(data: Data, s3: Bucket) -> None:
    from mixindex.sources import open_source
    from mixindex.spec.config import DatasetConfig

    _upload(data, s3)
    src = open_source(DatasetConfig(name="code", data_files=s3.url("code/")), ".")
    assert src.take(np.array([0])).to_pylist() == [data.reference()["code"][0]]
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_read_in_child, args=(src, [50, 1, 33], queue))
    child.start()
    try:
        got = queue.get(timeout=120)
    finally:
        child.join(timeout=30)
        if child.is_alive():
            child.kill()
    assert got == [data.reference()["code"][i] for i in (50, 1, 33)]


def test_bad_remote_data_files_fail_in_one_line(
    data: Data, s3: Bucket, tmp_path: Path, write_spec: Any
) -> None:
    _upload(data, s3)
    cases = [
        ([s3.url("nothing/*.parquet")], ["matched no object", "nothing"]),
        ([s3.url("code/part-0.parquet"), "data/notes.arrow"], ["mixes URLs", "local path"]),
        (["s3://user:hunter2@bucket/x.parquet"], ["password", "storage_options"]),
        ([s3.url("code/part-0.parquet"), s3.url("code/*.parquet")], ["listed twice"]),
    ]
    for files, words in cases:
        mix = {"seed": 1, "num_examples": 10}
        spec = write_spec({"datasets": [{"name": "x", "data_files": files}], "mix": mix})
        line = assert_one_line_error(run("build", spec, "-o", tmp_path / "o.mixindex"), *words)
        assert "hunter2" not in line
        assert not (tmp_path / "o.mixindex").exists()
    with pytest.raises(SpecError) as err:
        mixindex.spec.config.DatasetConfig(name="x", data_files="s3://b/x", storage_options=["k"])  # type: ignore[arg-type]
    assert "storage_options" in str(err.value)


def test_the_block_cache_keeps_the_most_recent_blocks_within_its_bound() -> None:
    cache = BlockCache(100)
    fetched: list[Any] = []

    def fetch(keys: list[Any]) -> list[tuple[Any, int]]:
        fetched.append(list(keys))
        return [(f"v{k}", 40) for k in keys]

    assert cache.get_many([1, 2, 1], fetch) == ["v1", "v2", "v1"]
    assert fetched == [[1, 2]]  # the missing keys in one fetch, each once
    cache.get_many([1], fetch)  # 1 is now the most recent
    cache.get_many([3], fetch)  # 120 bytes > 100: 2, the least recent, goes
    assert cache.nbytes == 80
    cache.get_many([1, 3], fetch)
    cache.get_many([2], fetch)
    assert fetched == [[1, 2], [3], [2]]


def test_a_local_index_opens_without_loading_fsspec_or_s3fs(tmp_path: Path, data: Data) -> None:
    from tests.conftest import spec_dict

    spec = tmp_path / "mix.toml"
    spec.write_text(to_toml(spec_dict()), encoding="utf-8")
    assert_ok(run("build", spec, "-o", tmp_path / "mix.mixindex"))
    code = (
        "import sys, mixindex; ds = mixindex.open(sys.argv[1]); ds[0]; ds.read_batch([1, 2]); "
        "print(sorted(m for m in ('fsspec', 's3fs', 'aiobotocore', 'botocore', 'gcsfs') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "mix.mixindex")],
        capture_output=True,
        text=True,
        check=True,
        env=ENV,
        timeout=120,
    )
    assert out.stdout.strip() == "[]", out.stderr


class _RangeHandler(SimpleHTTPRequestHandler):
    """A static file server that answers range requests (http.server's own does not)."""

    def send_head(self) -> Any:
        spec = self.headers.get("Range")
        if not spec:
            return super().send_head()
        try:
            f = open(self.translate_path(self.path), "rb")  # noqa: SIM115
        except OSError:
            self.send_error(404)
            return None
        with f:
            size = os.fstat(f.fileno()).st_size
            first, last = spec.removeprefix("bytes=").split("-")
            start = size - int(last) if first == "" else int(first)
            end = min(size - 1, int(last) if first != "" and last else size - 1)
            f.seek(start)
            body = f.read(end - start + 1)
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return io.BytesIO(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_sources_over_https_style_urls_read_like_local_files(data: Data, tmp_path: Path) -> None:
    """Any filesystem fsspec knows: here plain HTTP from a local server (no listing, no ETag)."""
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_RangeHandler, directory=str(data.root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        datasets = [
            {"name": "code", "data_files": [f"{base}/code/{f.name}" for f in data.code_files]},
            {"name": "notes", "data_files": f"{base}/notes.arrow"},
        ]
        local = [
            {"name": "code", "data_files": [str(f) for f in data.code_files]},
            {"name": "notes", "data_files": str(data.notes_file)},
        ]
        mix = {"seed": 3, "num_examples": 120, "row_order": "shuffled", "block_size": 20}
        out = []
        for name, spec in (("http", datasets), ("local", local)):
            config = PipelineConfig.from_dict({"datasets": spec, "mix": mix}, base_dir=tmp_path)
            out.append(mixindex.build(config, tmp_path / f"{name}.mixindex"))
        remote, here = (mixindex.open(p) for p in out)
        assert list(remote) == list(here)
        assert remote.index.sources[1].data_files == (f"{base}/notes.arrow",)
    finally:
        server.shutdown()
        server.server_close()


def test_remote_parquet_through_the_arrow_cache_and_objects_moved_to_another_prefix(
    data: Data, s3: Bucket, tmp_path: Path
) -> None:
    _upload(data, s3)
    datasets = [{"name": "code", "data_files": s3.url("code/")}]
    mix = {"seed": 5, "num_examples": 90, "row_order": "shuffled", "block_size": 30}
    config = PipelineConfig.from_dict({"datasets": datasets, "mix": mix}, base_dir=tmp_path)
    plain = mixindex.open(mixindex.build(config, tmp_path / "plain.mixindex"))
    cached_path = mixindex.build(config, tmp_path / "cached.mixindex", cache_dir=tmp_path / "c")
    cached = mixindex.open(cached_path)
    record = cached.index.sources[0]
    assert record.type == "arrow" and record.origin.data_files == plain.index.sources[0].data_files
    assert list(cached) == list(plain)
    # Objects copied elsewhere (same bytes, so the same sizes and ETags) open with data_files=.
    fs = s3.filesystem()
    for f in data.code_files:
        fs.copy(s3.url(f"code/{f.name}"), s3.url(f"moved/{f.name}"))
    moved = mixindex.open(
        tmp_path / "plain.mixindex", data_files={"code": [s3.url("moved/*.parquet")]}
    )
    assert moved.sources[0].data_files[0].startswith(s3.url("moved/"))
    assert list(moved) == list(plain)


def test_neighbouring_ranges_of_one_object_are_fetched_in_one_request() -> None:
    from mixindex.sources.remote import fetch_coalesced

    class Recording:
        """A filesystem without an async API whose objects hold byte i at offset i."""

        async_impl = False

        def __init__(self) -> None:
            self.calls: list[tuple[str, int, int]] = []

        def _strip_protocol(self, url: str) -> str:
            return url

        def cat_file(self, path: str, start: int, end: int) -> bytes:
            self.calls.append((path, start, end))
            return bytes(range(start, end))

    fs = Recording()
    wanted = [("a", 10, 20), ("a", 0, 10), ("b", 0, 5), ("a", 30, 40), ("a", 20, 30)]
    got = fetch_coalesced("x", fs, wanted)
    assert [g.to_pybytes() for g in got] == [bytes(range(s, e)) for _, s, e in wanted]
    assert sorted(fs.calls) == [("a", 0, 40), ("b", 0, 5)]
    fs.calls.clear()
    fetch_coalesced("x", fs, wanted, limit=20)  # no request longer than the limit
    assert sorted(fs.calls) == [("a", 0, 20), ("a", 20, 40), ("b", 0, 5)]


@pytest.mark.parametrize("fmt", ["file", "stream"])
def test_arrow_objects_with_dictionary_columns_read_like_local_ones(
    s3: Bucket, tmp_path: Path, fmt: str
) -> None:
    import pyarrow as pa

    from mixindex.sources import open_source
    from mixindex.spec.config import DatasetConfig

    table = pa.table(
        {
            "id": list(range(45)),
            "tag": pa.array([f"tag-{i % 4}" for i in range(45)]).dictionary_encode(),
        }
    )
    path = tmp_path / "d.arrow"
    writer = pa.ipc.new_file if fmt == "file" else pa.ipc.new_stream
    with pa.OSFile(str(path), "wb") as f, writer(f, table.schema) as w:
        w.write_table(table, max_chunksize=10)
    s3.filesystem().put_file(str(path), s3.url("d.arrow"))
    src = open_source(DatasetConfig(name="d", data_files=s3.url("d.arrow")), ".")
    block_cache().clear()
    rows = np.array([44, 0, 17, 17, 31])
    assert len(src) == 45
    assert src.take(rows).to_pylist() == table.take(pa.array(rows)).to_pylist()
