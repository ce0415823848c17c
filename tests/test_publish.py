"""Publishing an index with real processes: builds killed (SIGKILL, SIGTERM, a crash at each step
of the final move), builds racing for one output, and the leftovers a later build removes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from clirun import ENV, PATIENCE, assert_ok, run, start
from conftest import Data, SpecWriter, spec_dict

import mixindex
from mixindex.builder import build

# Long enough to be caught mid-way (a few seconds here), and stopped or killed long before the end.
SLOW = 20_000_000
# Long enough to be stopped with SIGSTOP before it ends; it then runs to the end.
HELD = 3_000_000


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=PATIENCE)
    return proc.returncode, out, err


def leftovers(out: Path) -> list[str]:
    """Everything a build may leave beside ``out``: temporary folders, old indexes, its lock."""
    return sorted(p.name for p in out.parent.glob(f".{out.name}.*"))


def temporaries(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f".{out.name}.tmp-*"))


def wait_for(what: Callable[[], Any], proc: subprocess.Popen[str]) -> Any:
    """Poll until ``what()`` is true; fail if ``proc`` ended first (or after a long wait)."""
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        if proc.poll() is not None:
            pytest.fail(f"the build ended before the test could catch it: {proc.communicate()}")
        time.sleep(0.01)
    proc.kill()
    pytest.fail("the build never got there")


def writing(out: Path) -> Callable[[], Path | None]:
    """A temporary folder of ``out`` with at least one chunk of positions written."""

    def check() -> Path | None:
        for tmp in temporaries(out):
            if (tmp / "source" / "c" / "0").is_file():
                return tmp
        return None

    return check


def digest(path: Path) -> str:
    ds = mixindex.open(path)
    try:
        return ds.digest
    finally:
        ds.close()


def seed_of(path: Path) -> int:
    ds = mixindex.open(path)
    try:
        return ds.index.meta.mix.seed
    finally:
        ds.close()


def dead_pid() -> int:
    """The id of a process that has ended (and been reaped)."""
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(proc.stdout)


# ---- killed builds ---------------------------------------------------------------------------


def test_sigkill_leaves_a_folder_that_the_next_build_removes(
    data: Data, write_spec: SpecWriter, tmp_path: Path
) -> None:
    out = tmp_path / "mix.mixindex"
    proc = start(
        "build", write_spec(spec_dict(num_examples=SLOW)), "-o", out, "--quiet", cwd=tmp_path
    )
    tmp = wait_for(writing(out), proc)
    proc.send_signal(signal.SIGKILL)
    finish(proc)
    assert tmp.is_dir(), "a killed build cannot clean up: its folder stays until the next build"
    assert not out.exists()

    result = run("build", write_spec(), "-o", out, "--quiet")
    assert_ok(result)
    assert result.stderr.splitlines() == [
        f"mixindex: removed {str(tmp)!r}, left by build process {proc.pid}, which is no longer "
        "running"
    ]
    assert leftovers(out) == []
    assert len(mixindex.open(out)) == spec_dict()["mix"]["num_examples"]


def test_sigterm_cleans_up_and_keeps_the_old_index(
    data: Data, write_spec: SpecWriter, tmp_path: Path
) -> None:
    out = build(write_spec(), tmp_path / "mix.mixindex")
    before = digest(out)
    spec = write_spec(spec_dict(num_examples=SLOW, seed=3), "slow.toml")
    proc = start("build", spec, "-o", out, "--force", "--quiet", cwd=tmp_path)
    wait_for(writing(out), proc)
    proc.send_signal(signal.SIGTERM)
    rc, _, stderr = finish(proc)
    assert rc == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr
    assert stderr.splitlines() == [
        f"error: the build was stopped by SIGTERM; {str(out)!r} was left as it was and the "
        "build's temporary files were removed"
    ]
    assert leftovers(out) == []
    assert digest(out) == before


def test_failed_writer_setup_leaves_nothing(
    data: Data, write_spec: SpecWriter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mixindex.store import writer

    real = writer.write_doc

    def write_doc(path: Path, doc: Any, **kwargs: Any) -> None:
        if path.parent.name == "epoch":
            raise OSError(28, "No space left on device")
        real(path, doc, **kwargs)

    monkeypatch.setattr(writer, "write_doc", write_doc)
    out = tmp_path / "mix.mixindex"
    with pytest.raises(OSError, match="No space left"):
        build(write_spec(), out)
    assert not out.exists()
    assert leftovers(out) == []


# ---- a crash at each step of publishing ------------------------------------------------------

# Runs the CLI and kills itself (SIGKILL) just before the K-th change to the folder holding OUT
# that concerns OUT's names: a rename (os.rename / renameat2 raise the same audit event), a
# removal. "fallback" publishes without renameat2, as on systems that lack it.
CRASH_AT = r"""
import os, signal, sys
from pathlib import Path

k, out, mode = int(sys.argv[1]), Path(sys.argv[2]).absolute(), sys.argv[3]
seen = 0

def hook(event, args):
    global seen
    if event not in ("os.rename", "shutil.rmtree", "os.remove", "os.rmdir"):
        return
    for a in args:
        if isinstance(a, (str, bytes, os.PathLike)):
            p = Path(os.fsdecode(a)).absolute()
            ours = p.name == out.name or p.name.startswith(f".{out.name}.")
            if p.parent == out.parent and ours:
                seen += 1
                if seen == k:
                    os.kill(os.getpid(), signal.SIGKILL)
                return

sys.addaudithook(hook)
if mode == "fallback":
    import mixindex.store.publish
    mixindex.store.publish._renameat2 = None
from mixindex.cli import main
main(sys.argv[4:], prog_name="mixindex")
"""


@pytest.mark.parametrize("mode", ["renameat2", "fallback"])
def test_a_crash_at_any_step_of_replacing_leaves_a_whole_index(
    data: Data, write_spec: SpecWriter, tmp_path: Path, mode: str
) -> None:
    if mode == "renameat2" and not sys.platform.startswith("linux"):
        pytest.skip("renameat2 is Linux's")
    pristine = build(write_spec(), tmp_path / "old.mixindex")
    spec = write_spec(spec_dict(seed=5), "new.toml")
    names = {digest(pristine): "old", digest(build(spec, tmp_path / "new.mixindex")): "new"}
    out = tmp_path / "mix.mixindex"
    after_crash: list[str] = []  # what OUT held after a crash before step k (k = 1, 2, ...)
    after_next: list[tuple[str, list[str], bool]] = []  # OUT, leftovers, said "restored"
    for k in range(1, 20):
        shutil.copytree(pristine, out)
        proc = subprocess.run(
            [sys.executable, "-c", CRASH_AT, str(k), str(out), mode,
             "build", str(spec), "-o", str(out), "--force", "--quiet"],
            cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=PATIENCE,
        )  # fmt: skip
        assert proc.returncode in (0, -signal.SIGKILL), proc.stderr
        if out.exists():
            after_crash.append(names.get(digest(out), "another index"))
        else:
            saved = list(out.parent.glob(f".{out.name}.old-*"))
            beside = len(saved) == 1 and names.get(digest(saved[0])) == "old"
            after_crash.append("nothing, the old index beside" if beside else "nothing")
        # The next build cleans up whatever the crash left (putting a set-aside index back
        # first), and replaces the index.
        result = run("build", spec, "-o", out, "--force", "--quiet")
        assert_ok(result)
        restored = "restored the index" in result.stderr
        after_next.append((names.get(digest(out), "?"), leftovers(out), restored))
        shutil.rmtree(out)
        if proc.returncode == 0:
            break  # k passed the last step: every step has been crashed at
    else:
        pytest.fail("publishing never finished")
    assert len(after_crash) > 3, "the crash points were not reached"
    whole = {"old", "new"}
    if mode == "fallback":
        # Two renames leave a moment without OUT; the old index then waits beside it.
        whole.add("nothing, the old index beside")
    assert [state for state in after_crash if state not in whole] == []
    assert after_next == [
        ("new", [], state == "nothing, the old index beside") for state in after_crash
    ]


# ---- racing builds ---------------------------------------------------------------------------


def test_a_build_never_removes_its_own_folder_once_made(
    data: Data, write_spec: SpecWriter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # When the builder wrote through zarr, its mode "w" removed the folder it had just made and
    # made it again: for that moment a live build's folder was missing, and a build held there
    # (the test below) seemed to lose it.
    out = tmp_path / "mix.mixindex"
    removed: list[Path] = []
    real = shutil.rmtree

    def watched(path: Any, *args: Any, **kwargs: Any) -> None:
        removed.append(Path(path))
        real(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", watched)
    build(write_spec(spec_dict(), "spec.toml"), out)
    assert not [p for p in removed if p.name.startswith(f".{out.name}.tmp-")]
    assert leftovers(out) == []


def test_of_two_builds_to_a_new_output_exactly_one_wins(
    data: Data, write_spec: SpecWriter, tmp_path: Path
) -> None:
    out = tmp_path / "mix.mixindex"
    first = start(
        "build",
        write_spec(spec_dict(num_examples=HELD, seed=1), "first.toml"),
        "-o",
        out,
        "--quiet",
        cwd=tmp_path,
    )
    (tmp,) = wait_for(lambda: temporaries(out), first)
    # Hold the first build while a second one, started after it, finishes first.
    first.send_signal(signal.SIGSTOP)
    try:
        rc, _, stderr = finish(
            start(
                "build",
                write_spec(spec_dict(seed=2), "second.toml"),
                "-o",
                out,
                "--quiet",
                cwd=tmp_path,
            )
        )
        assert rc == 0, stderr
        assert stderr == "", "a live build's folder is not a leftover"
        if not tmp.is_dir():
            first.send_signal(signal.SIGCONT)
            pytest.fail(f"the held build's folder is gone; that build: {finish(first)}")
    finally:
        first.send_signal(signal.SIGCONT)
    rc, stdout, stderr = finish(first)
    assert rc == 2
    assert stdout == ""
    assert stderr.splitlines() == [
        f"error: {str(out)!r} appeared while this build was running (another build wrote it); "
        "it was left as it is and this build's files were removed; pass --force to replace it"
    ]
    assert seed_of(out) == 2
    assert leftovers(out) == []


def test_of_builds_started_together_exactly_one_wins(
    data: Data, write_spec: SpecWriter, tmp_path: Path
) -> None:
    out = tmp_path / "mix.mixindex"
    specs = [write_spec(spec_dict(num_examples=100_000, seed=s), f"s{s}.toml") for s in range(3)]
    procs = [start("build", spec, "-o", out, "--quiet", cwd=tmp_path) for spec in specs]
    results = [finish(p) for p in procs]
    winners = [s for s, (rc, _, _) in enumerate(results) if rc == 0]
    assert len(winners) == 1, results
    for rc, _, stderr in results:
        if rc:
            assert rc == 2
            assert len(stderr.splitlines()) == 1
            assert "already exists" in stderr or "appeared while this build was running" in stderr
    assert seed_of(out) == winners[0]
    assert leftovers(out) == []


def test_with_force_the_last_build_wins_whole(
    data: Data, write_spec: SpecWriter, tmp_path: Path
) -> None:
    out = build(write_spec(), tmp_path / "mix.mixindex")
    first = start(
        "build",
        write_spec(spec_dict(num_examples=HELD, seed=1), "first.toml"),
        "-o",
        out,
        "--force",
        "--quiet",
        cwd=tmp_path,
    )
    wait_for(lambda: temporaries(out), first)
    first.send_signal(signal.SIGSTOP)
    try:
        rc, _, stderr = finish(
            start(
                "build",
                write_spec(spec_dict(seed=2), "second.toml"),
                "-o",
                out,
                "--force",
                "--quiet",
                cwd=tmp_path,
            )
        )
        assert rc == 0, stderr
        assert seed_of(out) == 2
    finally:
        first.send_signal(signal.SIGCONT)
    rc, _, stderr = finish(first)
    assert rc == 0, stderr
    assert seed_of(out) == 1
    assert len(mixindex.open(out)) == HELD
    assert_ok(run("verify", out))
    assert leftovers(out) == []


# ---- which leftovers are removed -------------------------------------------------------------


def fake_leftover(path: Path, extra: str | None = None) -> Path:
    """A folder laid out like a build's temporary folder (and optionally one foreign file)."""
    (path / "source").mkdir(parents=True)
    (path / "zarr.json").write_text("{}")
    if extra:
        (path / extra).write_text("mine")
    return path


def test_only_leftovers_of_gone_processes_are_removed(
    data: Data, write_spec: SpecWriter, tmp_path: Path
) -> None:
    from mixindex.store.publish import process_token

    out = tmp_path / "mix.mixindex"
    gone = dead_pid()
    host = process_token().rsplit("-", 1)[1]
    elsewhere = "f" * 8 if host != "f" * 8 else "e" * 8
    removed = [
        fake_leftover(tmp_path / f".mix.mixindex.tmp-{gone}-123-{host}"),
        fake_leftover(tmp_path / f".mix.mixindex.tmp-{gone}"),  # older mixindex's name
    ]
    kept = [
        # a live process
        fake_leftover(tmp_path / f".mix.mixindex.tmp-{os.getppid()}-0-{host}"),
        # the same process id on another machine sharing the folder
        fake_leftover(tmp_path / f".mix.mixindex.tmp-{gone}-123-{elsewhere}"),
        # a user's folder that happens to have the name
        fake_leftover(tmp_path / f".mix.mixindex.tmp-{gone}-1-{host}-x", "notes.txt"),
        fake_leftover(tmp_path / f".mix.mixindex.old-{gone}", "notes.txt"),
        # another output's leftover
        fake_leftover(tmp_path / f".other.mixindex.tmp-{gone}"),
    ]
    result = run("build", write_spec(), "-o", out, "--quiet")
    assert_ok(result)
    assert sorted(result.stderr.splitlines()) == sorted(
        f"mixindex: removed {str(p)!r}, left by build process {gone}, which is no longer running"
        for p in removed
    )
    assert not any(p.exists() for p in removed)
    assert all(p.is_dir() for p in kept)
    assert (kept[3] / "notes.txt").read_text() == "mine"


# ---- what happens at OUT while a build runs (in-process; both ways of publishing) -----------


@pytest.fixture(params=["renameat2", "fallback"])
def publishing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Publish with renameat2 where the system has it, or with the lock-and-rename fallback."""
    from mixindex.store import publish

    if request.param == "renameat2" and publish._renameat2 is None:
        pytest.skip("renameat2 is not available here")
    if request.param == "fallback":
        monkeypatch.setattr(publish, "_renameat2", None)
    return str(request.param)


def meanwhile(monkeypatch: pytest.MonkeyPatch, action: Callable[[], None]) -> None:
    """Run ``action`` once, while the build writes its first chunk."""
    from mixindex.store.writer import RegionWriter

    real = RegionWriter.write
    done: list[bool] = []

    def write(self: RegionWriter, *args: Any) -> Any:
        if not done:
            done.append(True)
            action()
        return real(self, *args)

    monkeypatch.setattr(RegionWriter, "write", write)


def test_an_index_that_appears_meanwhile_is_kept(
    data: Data,
    write_spec: SpecWriter,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    publishing: str,
) -> None:
    other = build(write_spec(spec_dict(seed=2), "other.toml"), tmp_path / "other.mixindex")
    out = tmp_path / "mix.mixindex"
    meanwhile(monkeypatch, lambda: shutil.copytree(other, out))
    result = run("build", write_spec(), "-o", out, "--quiet")
    assert "appeared while this build was running" in result.stderr
    assert result.exit_code == 2
    assert seed_of(out) == 2
    assert leftovers(out) == []


def test_force_keeps_what_replaced_the_index_meanwhile(
    data: Data,
    write_spec: SpecWriter,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    publishing: str,
) -> None:
    out = build(write_spec(spec_dict(seed=2), "other.toml"), tmp_path / "mix.mixindex")

    meanwhile(monkeypatch, lambda: swap_in_user_folder(out))
    result = run("build", write_spec(), "-o", out, "--force", "--quiet")
    assert result.exit_code == 2
    assert "became a folder with 1 entry while this build was running" in result.stderr
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]
    assert leftovers(out) == []


def test_force_swaps_back_what_replaced_the_index_after_the_last_look(
    data: Data, write_spec: SpecWriter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The user's folder arrives between publish's look at OUT and the exchange: the exchange
    # happens, the check after it finds no index, and the exchange is undone.
    from mixindex.store import output, publish

    if publish._renameat2 is None:
        pytest.skip("renameat2 is not available here")
    out = build(write_spec(spec_dict(seed=2), "other.toml"), tmp_path / "mix.mixindex")
    looks: list[Path] = []

    def is_index(path: Path) -> bool:
        looks.append(Path(path))
        if Path(path) == out and len(looks) == 1:
            real = output.is_index(path)
            swap_in_user_folder(out)
            return real
        return output.is_index(path)

    monkeypatch.setattr(publish, "is_index", is_index)
    result = run("build", write_spec(), "-o", out, "--force", "--quiet")
    assert result.exit_code == 2
    assert "became a folder with 1 entry while this build was running" in result.stderr
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]
    assert leftovers(out) == []
    assert len(looks) == 2, "the folder swapped out was checked once more"


def swap_in_user_folder(out: Path) -> None:
    shutil.rmtree(out)
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")


def test_force_replaces_an_index_both_ways(
    data: Data, write_spec: SpecWriter, tmp_path: Path, publishing: str
) -> None:
    out = build(write_spec(spec_dict(seed=2), "other.toml"), tmp_path / "mix.mixindex")
    assert_ok(run("build", write_spec(), "-o", out, "--force", "--quiet"))
    assert seed_of(out) == spec_dict()["mix"]["seed"]
    assert leftovers(out) == []
