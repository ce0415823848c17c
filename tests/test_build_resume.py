"""``mixindex build --resume``: a build killed mid-way goes on from its last complete chunk, and
the result is the fresh build's, byte for byte."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from clirun import ENV, PATIENCE, assert_ok, run, run_process
from conftest import Data, SpecWriter, spec_dict
from sameindex import assert_same_index

from mixindex.builder import build
from mixindex.store import publish
from mixindex.store.resume import adopt_leftover
from mixindex.store.writer import RegionWriter

CHUNKS = 300
# The chunk at which the killed build stalls (see kill_stalled).
STALL = 200
STALLED = Path(__file__).with_name("stalled.py")


def temporaries(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f".{out.name}.tmp-*"))


def done_chunks(out: Path) -> int:
    return sum(len(list((t / "resume").glob("done-*.json"))) for t in temporaries(out))


def kill_stalled(out: Path, spec: Path) -> None:
    """Run ``mixindex build`` in a real process whose worker of chunk STALL never writes it (see
    ``stalled.py``), and SIGKILL it once the chunks before are journalled as done: the kill lands
    mid-build, at the same point whatever the machine's speed."""
    flag = out.with_name("stalled")
    args = [STALL * 1000, flag, "build", spec, "-o", out, "--chunk-blocks", 1, "--quiet"]
    proc = subprocess.Popen(
        [sys.executable, str(STALLED), *(str(a) for a in args)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + PATIENCE
    try:
        while not flag.exists() or done_chunks(out) < STALL:
            assert proc.poll() is None, "the build ended before it was killed"
            assert time.monotonic() < deadline, "the build never reached the chunk it stalls at"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        _, err = proc.communicate(timeout=PATIENCE)
    assert proc.returncode == -signal.SIGKILL, err
    assert not out.exists()


@pytest.fixture
def big_spec(data: Data, write_spec: SpecWriter) -> Path:
    return write_spec(spec_dict(block_size=1000, num_examples=CHUNKS * 1000 - 321))


def test_a_killed_build_resumes_to_the_fresh_bytes(big_spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "mix.mixindex"
    kill_stalled(out, big_spec)
    [left] = temporaries(out)
    # The journal stops where the build stalled: done files form a prefix.
    assert done_chunks(out) == STALL
    assert (left / "resume" / f"state-{STALL:08d}.json").is_file()
    kept = [Path(name, "c", str(i)) for name in ("source", "row") for i in (0, STALL - 1)]
    before = [((left / p).stat().st_ino, (left / p).stat().st_mtime_ns) for p in kept]
    # A plain build would remove the leftover; --resume takes it over and keeps its chunks.
    proc = run_process("build", big_spec, "-o", out, "--chunk-blocks", 1, "--resume")
    assert proc.returncode == 0, proc.stderr
    said = [line for line in proc.stderr.splitlines() if "resuming" in line]
    assert len(said) == 1, proc.stderr
    assert f": {STALL * 1000:,} positions kept" in said[0], said
    assert temporaries(out) == []
    # The kept chunks' files were not written again: they moved into the index as they were.
    after = [((out / p).stat().st_ino, (out / p).stat().st_mtime_ns) for p in kept]
    assert after == before
    fresh = build(big_spec, tmp_path / "fresh.mixindex", chunk_blocks=1)
    assert_same_index(out, fresh)


def dead_leftover(
    spec: Path, out: Path, monkeypatch: pytest.MonkeyPatch, fail_at: int, **options: Any
) -> Path:
    """The temporary folder of a build that died after writing chunks before ``fail_at``
    (the build runs here; its folder is then renamed as a dead process's)."""
    real = RegionWriter.write

    def write(self: RegionWriter, start: int, first_block: int, arrays: Any) -> Any:
        if start >= fail_at:
            raise RuntimeError("power cut")
        return real(self, start, first_block, arrays)

    with monkeypatch.context() as m:
        m.setattr(RegionWriter, "write", write)
        m.setattr(publish, "discard", lambda tmp: None)
        with pytest.raises(RuntimeError, match="power cut"):
            build(spec, out, executor=None, **options)
    [mine] = temporaries(out)
    # A process id that cannot be running (above the kernel's limit).
    dead = mine.with_name(f".{out.name}.tmp-{2**22 + 1}-1-{publish._host()}")
    mine.rename(dead)
    return dead


@pytest.mark.parametrize("stop", ["restart", "all_exhausted", "first_exhausted"])
def test_resume_for_every_stop_strategy(
    data: Data, write_spec: SpecWriter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop: str
) -> None:
    num = 950 if stop == "restart" else None
    spec = write_spec(spec_dict(block_size=5, stop_strategy=stop, num_examples=num))
    out = tmp_path / "mix.mixindex"
    dead_leftover(spec, out, monkeypatch, 30, chunk_blocks=2)
    result = run("build", spec, "-o", out, "--chunk-blocks", 2, "--resume")
    assert_ok(result)
    assert "resuming" in result.stderr
    assert_same_index(out, build(spec, tmp_path / "fresh.mixindex", chunk_blocks=2))


def test_resume_rewrites_a_damaged_chunk(
    big_spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "mix.mixindex"
    left = dead_leftover(big_spec, out, monkeypatch, 20_000, chunk_blocks=1)
    chunk = left / "row" / "c" / "5"
    data = bytearray(chunk.read_bytes())
    data[3] ^= 0xFF
    chunk.write_bytes(bytes(data))
    result = run("build", big_spec, "-o", out, "--chunk-blocks", 1, "--resume")
    assert_ok(result)
    # Chunks 0 to 4 check out; from the damaged one on, the build plans again.
    assert "5,000 positions kept" in result.stderr
    assert_same_index(out, build(big_spec, tmp_path / "fresh.mixindex", chunk_blocks=1))


def test_resume_of_another_spec_builds_from_the_start(
    data: Data, write_spec: SpecWriter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "mix.mixindex"
    dead_leftover(write_spec(spec_dict(seed=1, block_size=5)), out, monkeypatch, 30, chunk_blocks=2)
    spec = write_spec(spec_dict(seed=2, block_size=5), "other.toml")
    result = run("build", spec, "-o", out, "--resume")
    assert_ok(result)
    assert "was of another spec" in result.stderr
    assert temporaries(out) == []
    assert_same_index(out, build(spec, tmp_path / "fresh.mixindex"))


def test_resume_without_a_leftover_is_a_fresh_build(
    data: Data, write_spec: SpecWriter, tmp_path: Path
) -> None:
    out = tmp_path / "mix.mixindex"
    result = run("build", write_spec(), "-o", out, "--resume")
    assert_ok(result)
    assert "resuming" not in result.stderr
    assert_same_index(out, build(write_spec(), tmp_path / "fresh.mixindex"))


def test_a_plain_build_removes_a_resumable_leftover(
    data: Data, write_spec: SpecWriter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = write_spec(spec_dict(block_size=5))
    out = tmp_path / "mix.mixindex"
    left = dead_leftover(spec, out, monkeypatch, 30, chunk_blocks=2)
    result = run("build", spec, "-o", out)
    assert_ok(result)
    assert f"removed {str(left)!r}" in result.stderr
    assert temporaries(out) == []


def test_a_live_build_is_never_adopted(tmp_path: Path) -> None:
    """Only the folder of a build whose process is gone is taken over."""
    out = tmp_path / "mix.mixindex"
    live = publish.tmp_path(out)  # this process's: alive
    (live / "resume").mkdir(parents=True)
    (live / "resume" / "plan.json").write_text("{}")
    assert adopt_leftover(out) is None
    dead = live.with_name(f".{out.name}.tmp-{2**22 + 1}-1-{publish._host()}")
    live.rename(dead)
    assert adopt_leftover(out) == publish.tmp_path(out)
    assert not dead.exists()
