"""A reader never serves positions from two indexes (mixindex/folder.py): when the index at its
path is replaced, it keeps serving the index it opened, whole, or raises IndexReplacedError
naming the digest it opened and what the path holds now. Tested in one process and with real
processes: a reader loop while another process runs ``mixindex build --force`` again and again."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from clirun import ENV
from conftest import Data, SpecWriter, spec_dict

import mixindex
from mixindex.builder import build
from mixindex.errors import IndexFormatError, IndexReplacedError

# 200 chunks of one block each: a sequential reader opens a new chunk file every 10 positions.
MIX = {"block_size": 10, "num_examples": 2000}


def all_positions(path: Path) -> np.ndarray:
    ds = mixindex.open(path)
    try:
        return np.stack(ds.lookup(np.arange(len(ds))), axis=1).astype(np.int64)
    finally:
        ds.close()


@pytest.fixture
def original(data: Data, write_spec: SpecWriter, tmp_path: Path) -> Path:
    return build(write_spec(spec_dict(**MIX)), tmp_path / "mix.mixindex", chunk_blocks=1)


def rebuild(write_spec: SpecWriter, out: Path, seed: int) -> None:
    build(write_spec(spec_dict(seed=seed, **MIX), f"seed{seed}.toml"), out, force=True)


def test_an_index_moved_aside_is_served_whole(
    original: Path, write_spec: SpecWriter, tmp_path: Path
) -> None:
    want = all_positions(original)
    ds = mixindex.open(original)
    digest = ds.digest
    assert ds.lookup([0])[0].tolist() == [want[0, 0]]  # chunk 0 mapped, the others not yet
    os.rename(original, tmp_path / "aside.mixindex")
    rebuild(write_spec, original, seed=99)
    assert not np.array_equal(all_positions(original), want)
    got = np.stack(ds.lookup(np.arange(len(ds))), axis=1)
    np.testing.assert_array_equal(got, want)
    assert ds.digest == ds.state_dict()["digest"] == digest


def test_an_index_replaced_by_force_is_an_error_never_a_mix(
    original: Path, write_spec: SpecWriter
) -> None:
    want = all_positions(original)
    ds = mixindex.open(original)
    opened = ds.digest
    ds.lookup(np.arange(10))
    rebuild(write_spec, original, seed=99)
    now = mixindex.open(original).digest
    assert now != opened
    np.testing.assert_array_equal(np.stack(ds.lookup(np.arange(10)), axis=1), want[:10])
    with pytest.raises(IndexReplacedError) as excinfo:
        ds.lookup([10])
    message = str(excinfo.value)
    assert opened in message and now in message and str(original) in message
    with pytest.raises(IndexReplacedError):
        ds[1999]


def test_reopening_after_close_checks_the_index(
    original: Path, write_spec: SpecWriter, tmp_path: Path
) -> None:
    ds = mixindex.open(original)
    ds.lookup([5])
    ds.close()
    assert ds.lookup([1995])[0].size == 1  # the same index: reopened
    ds.close()
    os.rename(original, tmp_path / "aside.mixindex")
    rebuild(write_spec, original, seed=99)
    with pytest.raises(IndexReplacedError, match="replaced or removed"):
        ds.lookup([5])
    shutil.rmtree(original)
    with pytest.raises(IndexReplacedError, match="nothing is there now"):
        ds.lookup([5])


def test_a_missing_chunk_of_an_index_in_place_is_damage(original: Path) -> None:
    ds = mixindex.open(original)
    (original / "row" / "c" / "7").unlink()
    with pytest.raises(IndexFormatError, match="row/c/7") as excinfo:
        ds.lookup([75])
    assert not isinstance(excinfo.value, IndexReplacedError)


READER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import mixindex
    from mixindex.errors import IndexReplacedError

    ds = mixindex.open(sys.argv[1])
    ds.lookup(np.arange(10))  # chunk 0 only
    print(json.dumps({"digest": ds.digest}), flush=True)
    sys.stdin.readline()  # go: the index has been replaced at least once
    served, error = [], None
    try:
        for lo in range(0, len(ds), 10):
            s, r, e = ds.lookup(np.arange(lo, lo + 10))
            served.extend(zip(s.tolist(), r.tolist(), e.tolist()))
    except IndexReplacedError as exc:
        error = str(exc)
    print(json.dumps({"served": served, "error": error, "state": ds.state_dict()}), flush=True)
    """
)

REBUILDER = textwrap.dedent(
    """
    import subprocess, sys
    out, specs = sys.argv[1], sys.argv[2:]
    sys.stdin.readline()
    for spec in specs:
        cmd = [sys.executable, "-m", "mixindex.cli", "build", spec, "-o", out, "--force", "--quiet"]
        subprocess.run(cmd, check=True)
        print("published", flush=True)
    """
)


def test_a_reader_process_while_another_process_rebuilds(
    original: Path, write_spec: SpecWriter, tmp_path: Path
) -> None:
    want = all_positions(original)
    specs = [str(write_spec(spec_dict(seed=s, **MIX), f"seed{s}.toml")) for s in (101, 102, 103)]
    script = tmp_path / "reader.py"
    script.write_text(READER)
    rebuilder = tmp_path / "rebuilder.py"
    rebuilder.write_text(REBUILDER)
    with (
        subprocess.Popen(
            [sys.executable, str(script), str(original)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=ENV,
        ) as reader,
        subprocess.Popen(
            [sys.executable, str(rebuilder), str(original), *specs],
            stdin=subprocess.PIPE,  # it waits for the reader to have opened the index
            stdout=subprocess.PIPE,
            text=True,
            env=ENV,
        ) as builds,
    ):
        try:
            assert reader.stdout and reader.stdin and builds.stdout and builds.stdin
            opened = json.loads(reader.stdout.readline())["digest"]
            builds.stdin.write("start\n")
            builds.stdin.close()
            assert builds.stdout.readline().strip() == "published"
            # The reader goes on while the next builds publish over its path.
            reader.stdin.write("go\n")
            reader.stdin.close()
            out = json.loads(reader.stdout.readline())
            assert reader.wait(timeout=300) == 0
            assert builds.wait(timeout=300) == 0
        finally:
            for proc in (reader, builds):
                if proc.poll() is None:
                    proc.kill()
    served = np.array(out["served"], dtype=np.int64).reshape(-1, 3)
    # Every position served is the original index's, never one of a rebuilt index: either it
    # was served whole, or (the original deleted under it, chunk 0 only open) the reader said
    # so, naming the digest it opened. Its state names that digest all along.
    np.testing.assert_array_equal(served, want[: len(served)])
    if out["error"] is None:
        assert len(served) == len(want)
    else:
        assert opened in out["error"] and "replaced or removed" in out["error"]
    assert out["state"]["digest"] == opened
    assert mixindex.open(original).digest != opened
