"""An index in object storage, end to end against a real S3 endpoint (moto's server, see
``tests/s3server.py``): build to ``s3://``, open, read, shard, resume, audit, report, verify;
publishing that no reader sees half done or mixed; a lost connection and a tampered object."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from clirun import assert_ok, assert_one_line_error, command, run
from conftest import Data, SpecWriter, spec_dict

import mixindex
from mixindex.audit.verify import verify
from mixindex.builder import build
from mixindex.errors import IndexExistsError, IndexFormatError, IndexReplacedError, StorageError
from tests.s3server import Bucket

# 10 chunks of 100 positions (10 blocks of 10 each).
MIX = {"block_size": 10, "num_examples": 1000}
CHUNK = 100


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache folder of this test's own: what a reader fetches is what it did not have."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("MIXINDEX_CACHE_DIR", str(folder))
    return folder


def env() -> dict[str, str]:
    """A real process's environment: this checkout's package, the S3 endpoint of the test."""
    return {**os.environ, "PYTHONPATH": str(Path(mixindex.__file__).resolve().parents[1])}


def all_positions(ds: mixindex.MixedDataset) -> np.ndarray:
    return np.stack(ds.lookup(np.arange(len(ds))), axis=1).astype(np.int64)


def rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 9)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


def keys(s3: Bucket) -> list[str]:
    found = s3.client().list_objects_v2(Bucket=s3.name).get("Contents", [])
    return sorted(o["Key"] for o in found)


@pytest.fixture
def spec(data: Data, write_spec: SpecWriter) -> Path:
    return write_spec(spec_dict(**MIX))


@pytest.fixture
def local(spec: Path, tmp_path: Path) -> Path:
    return Path(build(spec, tmp_path / "local.mixindex", chunk_blocks=10))


@pytest.fixture
def remote(spec: Path, s3: Bucket) -> str:
    return str(build(spec, s3.url("mix.mixindex"), chunk_blocks=10))


def test_a_remote_index_serves_what_a_local_build_serves(local: Path, remote: str) -> None:
    ds, want = mixindex.open(remote), mixindex.open(local)
    assert ds.digest == want.digest and len(ds) == len(want) == 1000
    np.testing.assert_array_equal(all_positions(ds), all_positions(want))
    assert ds[:] == want[:]
    assert ds.read_batch([5, 999, 0]).equals(want.read_batch([5, 999, 0]))


def test_the_layout_is_one_version_under_its_digest_and_a_pointer(remote: str, s3: Bucket) -> None:
    ds = mixindex.open(remote)
    version = "v-" + ds.digest.split(":")[1][:32]
    found = keys(s3)
    assert found[0] == "mix.mixindex/mixindex.json"
    assert all(k.startswith(f"mix.mixindex/{version}/") for k in found[1:])
    assert f"mix.mixindex/{version}/row/c/9" in found
    pointer = json.loads(s3.client().get_object(Bucket=s3.name, Key=found[0])["Body"].read())
    assert pointer == {
        "mixindex_index": 1, "version": version, "digest": ds.digest, "previous": None,
    }  # fmt: skip


def test_a_reader_fetches_only_the_chunks_it_reads_and_keeps_them(remote: str) -> None:
    ds = mixindex.open(remote)
    folder = ds.index.folder
    opened = list(folder.fetched)
    assert not any("/c/" in k for k in opened)  # opening reads metadata only
    assert "chunk_digests/zarr.json" in opened
    ds[250]
    assert set(folder.fetched[len(opened) :]) == {
        "source/c/2", "row/c/2", "chunk_digests/c/0/0/0",
    }  # fmt: skip
    ds[260]
    ds[299]
    assert len(folder.fetched) == len(opened) + 3  # served from the chunks already fetched
    again = mixindex.open(remote)  # another reader on this host: the local cache serves it
    again[250]
    assert again.index.folder.fetched == []


def test_each_rank_fetches_only_its_own_chunks(remote: str) -> None:
    ds = mixindex.open(remote)
    for rank in range(4):
        mine = ds.shard(rank, 4, global_batch_size=4 * CHUNK)
        examples = list(mine.iter(0))[: 2 * CHUNK]  # its part of the first two global batches
        assert len(examples) == 2 * CHUNK
        fetched = {k for k in mine.index.folder.fetched if not k.startswith("chunk_digests")}
        assert fetched == {f"{a}/c/{c}" for a in ("source", "row") for c in (rank, rank + 4)}


def test_resuming_at_the_last_position_fetches_one_chunk(remote: str, local: Path) -> None:
    state = mixindex.open(local).iter(999).state_dict()  # a checkpoint at the last position
    ds = mixindex.open(remote)
    folder = ds.index.folder
    before = len(folder.fetched)
    resumed = iter(ds)
    resumed.load_state_dict(state)
    assert next(resumed) == mixindex.open(local)[999]
    new = folder.fetched[before:]
    assert sorted(k for k in new if not k.startswith("chunk_digests")) == ["row/c/9", "source/c/9"]
    assert len(new) == 3  # and the one chunk of digests that checks them


def test_the_cache_stays_within_its_bound(
    remote: str, local: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = 3 * CHUNK * 8 + 4096  # about three row chunks
    monkeypatch.setenv("MIXINDEX_INDEX_CACHE_BYTES", str(limit))
    ds = mixindex.open(remote)
    np.testing.assert_array_equal(all_positions(ds), all_positions(mixindex.open(local)))
    held = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file())
    assert 0 < held <= limit


def test_through_the_cli_build_show_inspect_audit_report_verify(
    spec: Path, local: Path, s3: Bucket
) -> None:
    url = s3.url("cli.mixindex")
    assert_ok(run("build", spec, "-o", url, "--quiet"))
    assert_ok(r := run("show", url, "999", "--json"))
    assert_ok(w := run("show", local, "999", "--json"))
    assert r.stdout == w.stdout
    assert json.loads(run("inspect", url, "--json").stdout)["digest"] == mixindex.open(local).digest
    sql = "SELECT source, count(*), max(row) FROM mix GROUP BY 1 ORDER BY 1"
    assert_ok(r := run("audit", url, sql, "--format", "json"))
    assert r.stdout == run("audit", local, sql, "--format", "json").stdout
    assert_ok(r := run("report", url, "--json"))
    got, want = json.loads(r.stdout), json.loads(run("report", local, "--json").stdout)
    for key in ("path", "build_seconds"):
        got.pop(key), want.pop(key)
    assert rounded(got) == rounded(want)  # DuckDB sums floats in no fixed order
    assert_ok(r := run("verify", url))
    assert r.stdout.startswith(f"ok: {url}")
    assert_one_line_error(run("build", spec, "-o", url), "already exists", "--force")


def test_force_rebuild_keeps_an_open_reader_on_its_version_until_the_next_one(
    write_spec: SpecWriter,
    remote: str,
    s3: Bucket,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    want = all_positions(mixindex.open(remote))
    ds = mixindex.open(remote)
    ds[0]  # chunk 0 fetched, the others not yet
    monkeypatch.setenv("MIXINDEX_CACHE_DIR", str(tmp_path / "other-host"))
    elsewhere = mixindex.open(remote)  # a reader on another host: a cache of its own
    elsewhere[0]
    rebuild = write_spec(spec_dict(seed=99, **MIX), "seed99.toml")
    build(rebuild, remote, force=True, chunk_blocks=10)
    fresh = mixindex.open(remote)
    assert fresh.digest != ds.digest
    assert not np.array_equal(all_positions(fresh), want)
    # The reader opened before still serves its own version, whole: it was kept.
    np.testing.assert_array_equal(all_positions(ds), want)
    # A second rebuild removes the version two back: its readers are told, never served a mix.
    again = write_spec(spec_dict(seed=123, **MIX), "seed123.toml")
    assert_ok(run("build", again, "-o", remote, "--force", "--quiet"))
    with pytest.raises(IndexReplacedError, match="replaced or removed"):
        elsewhere.lookup(np.arange(1000))
    newest = mixindex.open(remote)
    assert newest.digest not in (ds.digest, fresh.digest)
    versions = {k.split("/")[1] for k in keys(s3) if k.count("/") > 1}
    assert versions == {fresh.index.folder.version, newest.index.folder.version}


def test_a_build_refuses_a_prefix_that_holds_other_objects(spec: Path, s3: Bucket) -> None:
    s3.client().put_object(Bucket=s3.name, Key="mine/notes.txt", Body=b"keep me")
    with pytest.raises(IndexExistsError, match="did not write"):
        build(spec, s3.url("mine"), force=True)
    assert keys(s3) == ["mine/notes.txt"]
    assert_one_line_error(run("build", spec, "-o", s3.url("mine"), "--force"), "did not write")
    assert keys(s3) == ["mine/notes.txt"]


def test_a_missing_bucket_is_one_line(spec: Path, s3: Bucket) -> None:
    assert_one_line_error(run("build", spec, "-o", "s3://no-such-bucket-here/x"), "bucket")
    assert_one_line_error(run("show", s3.url("nothing"), "0"), "not a mixindex index")


def test_a_tampered_or_missing_remote_chunk_is_refused(
    remote: str, s3: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = s3.client()
    version = next(k for k in keys(s3) if "/v-" in k).split("/")[1]
    key = f"mix.mixindex/{version}/row/c/3"
    body = bytearray(client.get_object(Bucket=s3.name, Key=key)["Body"].read())
    body[0] ^= 1  # same size, one bit changed
    client.put_object(Bucket=s3.name, Key=key, Body=bytes(body))
    ds = mixindex.open(remote)
    assert ds[0] is not None
    with pytest.raises(IndexFormatError, match=r"row/c/3.*does not match its recorded digest"):
        ds[350]
    result = verify(remote)
    assert not result.ok and any("row/c/3" in p for p in result.problems)
    assert run("verify", remote).exit_code == 1
    client.delete_object(Bucket=s3.name, Key=f"mix.mixindex/{version}/source/c/5")
    monkeypatch.setenv("MIXINDEX_CACHE_DIR", str(tmp_path / "other-host"))  # verify cached it
    with pytest.raises(IndexFormatError, match=r"source/c/5.*is missing"):
        mixindex.open(remote)[550]


def test_a_lost_connection_is_one_clear_error_never_wrong_data(
    remote: str, local: Path, s3: Bucket
) -> None:
    want = mixindex.open(local)
    ds = mixindex.open(remote)
    assert ds[10] == want[10]
    s3.server.stop()
    try:
        assert ds[20] == want[20]  # chunk 0 is cached: served
        with pytest.raises(StorageError, match=r"cannot read .*/c/5"):
            ds[550]
        proc = subprocess.run(
            command("show", remote, "550"), capture_output=True, text=True, env=env(), timeout=300
        )
        assert_one_line_error(proc, "cannot read", "check the connection")
    finally:
        s3.server.start()
    s3.client().create_bucket(Bucket=s3.name)  # moto forgets everything on a restart


def test_a_build_killed_mid_upload_leaves_the_old_index_whole(
    data: Data, write_spec: SpecWriter, s3: Bucket, tmp_path: Path
) -> None:
    url = s3.url("big.mixindex")
    small = write_spec(spec_dict(**MIX), "small.toml")
    assert_ok(run("build", small, "-o", url, "--quiet"))
    old = mixindex.open(url).digest
    big = write_spec(spec_dict(block_size=1000, num_examples=3_000_000, seed=5), "big.toml")
    proc = subprocess.Popen(
        command("build", big, "-o", url, "--force", "--quiet"),
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = s3.client()
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            versions = {k.split("/")[1] for k in keys(s3) if k.count("/") > 1}
            if len(versions) > 1:  # the new version's first objects are there
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the build ended before it could be killed"
    pointer = json.loads(
        client.get_object(Bucket=s3.name, Key="big.mixindex/mixindex.json")["Body"].read()
    )
    assert pointer["digest"] == old
    ds = mixindex.open(url)
    assert ds.digest == old and len(ds) == 1000
    assert verify(url).ok


def test_opening_a_local_index_loads_no_object_storage_library(local: Path) -> None:
    code = (
        "import mixindex, sys; ds = mixindex.open(sys.argv[1]); ds[0]; "
        "print([m for m in ('fsspec', 's3fs', 'botocore', 'aiobotocore') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(local)], capture_output=True, text=True, env=env()
    )
    assert out.stdout.strip() == "[]", out.stderr


def test_storage_options_reach_the_filesystem_and_are_never_stored(
    spec: Path, s3: Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = s3.url("opts.mixindex")
    endpoint = s3.endpoint
    monkeypatch.delenv("AWS_ENDPOINT_URL")  # only the option says where the server is
    option = f"endpoint_url={endpoint}"
    assert_ok(run("build", spec, "-o", url, "--quiet", "--storage-option", option))
    assert_ok(run("show", url, "0", "--storage-option", option))
    assert mixindex.open(url, storage_options={"endpoint_url": endpoint})[0]
    client = s3.client()
    for key in keys(s3):
        body = client.get_object(Bucket=s3.name, Key=key)["Body"].read()
        assert endpoint.encode() not in body and b"endpoint_url" not in body
    assert_one_line_error(run("show", url, "0", "--storage-option", "oops"), "KEY=VALUE")


def test_a_sibling_prefix_is_neither_foreign_nor_touched(spec: Path, s3: Bucket) -> None:
    s3.client().put_object(Bucket=s3.name, Key="mix.mixindex2/keep.txt", Body=b"mine")
    url = str(build(spec, s3.url("mix.mixindex"), chunk_blocks=10))
    build(spec, url, force=True, chunk_blocks=10)
    assert "mix.mixindex2/keep.txt" in keys(s3)
    assert len(mixindex.open(url)) == 1000


def test_a_remote_dataset_travels_to_other_processes(remote: str, local: Path) -> None:
    import multiprocessing
    import pickle

    want = mixindex.open(local)
    ds = mixindex.open(remote)
    ds[0]
    copy = pickle.loads(pickle.dumps(ds))
    assert copy.digest == ds.digest and copy[750] == want[750]
    # A forked worker (a DataLoader's) inherits the dataset, not a pickle of it, and reads
    # chunks its parent never fetched.
    _INHERITED.append(ds)
    try:
        with multiprocessing.get_context("fork").Pool(1) as pool:
            got = pool.apply(_read_at, (850,))
    finally:
        _INHERITED.clear()
    assert got == want[850]


_INHERITED: list[mixindex.MixedDataset] = []


def _read_at(position: int) -> dict[str, Any]:
    return dict(_INHERITED[0][position])


def test_an_index_copied_up_by_hand_is_read_in_place_and_checked(local: Path, s3: Bucket) -> None:
    fs = s3.filesystem()
    fs.put(str(local), f"{s3.name}/copied.mixindex", recursive=True)
    ds = mixindex.open(s3.url("copied.mixindex"))
    np.testing.assert_array_equal(all_positions(ds), all_positions(mixindex.open(local)))
    assert verify(s3.url("copied.mixindex")).ok


def test_a_compressed_remote_index_reads_and_verifies(spec: Path, local: Path, s3: Bucket) -> None:
    url = str(build(spec, s3.url("zstd.mixindex"), chunk_blocks=10, compress=True))
    ds = mixindex.open(url)
    np.testing.assert_array_equal(all_positions(ds), all_positions(mixindex.open(local)))
    assert verify(url).ok
