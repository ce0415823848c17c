"""Where ``mixindex build`` may write, through the CLI: ``--force`` replaces only an index, an
output overlapping the build's inputs or the current folder is refused, and so is an index that
would not fit on its disk. Each refusal is one line and exit status 2, and changes nothing."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections import namedtuple
from pathlib import Path

import pytest
import zarr
from clirun import assert_ok, assert_one_line_error, run, run_process
from conftest import Data, SpecWriter, spec_dict

import mixindex
from mixindex.builder import build


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root``: folders, links and files with a hash of their bytes."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            key = str(path.relative_to(root))
            if path.is_symlink():
                out[key] = "link to " + os.readlink(path)
            elif path.is_dir():
                out[key] = "folder"
            else:
                out[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


# ---- --force replaces only an index ----------------------------------------------------------


def make_thing(tmp_path: Path, kind: str) -> Path:
    """Something at ``mix.mixindex`` that is not a mixindex index."""
    path = tmp_path / "mix.mixindex"
    if kind == "user folder":
        path.mkdir()
        (path / "thesis.tex").write_text("years of work")
        (path / "figures").mkdir()
        (path / "figures" / "plot.png").write_bytes(b"\x89PNG")
    elif kind == "empty folder":
        path.mkdir()
    elif kind == "file":
        path.write_text("not an index")
    elif kind == "plain zarr group":
        zarr.open_group(str(path), mode="w", zarr_format=3).attrs["other"] = 1
    elif kind == "link to an index":
        target = build(tmp_path / "mix.toml", tmp_path / "target.mixindex")
        path.symlink_to(target)
    return path


@pytest.mark.parametrize(
    "kind", ["user folder", "empty folder", "file", "plain zarr group", "link to an index"]
)
@pytest.mark.parametrize("force", [False, True])
def test_only_an_index_is_ever_replaced(
    data: Data, write_spec: SpecWriter, tmp_path: Path, kind: str, force: bool
) -> None:
    spec = write_spec()
    out = make_thing(tmp_path, kind)
    before = snapshot(tmp_path)
    result = run("build", spec, "-o", out, "--quiet", *(["--force"] if force else []))
    line = assert_one_line_error(result, str(out), "not a mixindex index", "--force replaces only")
    assert "pass --force" not in line
    assert snapshot(tmp_path) == before


def test_force_replaces_an_index(data: Data, write_spec: SpecWriter, tmp_path: Path) -> None:
    out = build(write_spec(), tmp_path / "mix.mixindex")
    result = run("build", write_spec(spec_dict(seed=99), "other.toml"), "-o", out, "--force")
    assert_ok(result)
    assert mixindex.open(out).index.meta.mix.seed == 99
    assert sorted(p.name for p in tmp_path.glob(".mix.mixindex*")) == []


# ---- outputs that overlap the build's inputs -------------------------------------------------

# (output relative to tmp_path, its relation to, the path named in the message)
OVERLAPS = {
    "the Parquet folder": ("data/code", "contains dataset 'code'", "data/code/part-0.parquet"),
    "the data folder": ("data", "contains dataset 'code'", "data/code/part-0.parquet"),
    "a Parquet file": ("data/code/part-1.parquet", "is dataset 'code'", "part-1.parquet"),
    "the Arrow file": ("data/notes.arrow", "is dataset 'notes'", "data/notes.arrow"),
    "a save_to_disk folder": ("data/docs", "is dataset 'docs'", "data/docs"),
    "inside a save_to_disk folder": ("data/docs/mix.mixindex", "lies inside dataset", "data/docs"),
    "the spec's folder": (".", "contains the spec", "mix.toml"),
    "the spec": ("mix.toml", "is the spec", "mix.toml"),
    "the cache folder": ("cache", "is the Arrow cache folder", "cache"),
    "inside the cache folder": ("cache/mix.mixindex", "lies inside the Arrow cache", "cache"),
    "the folder above": ("..", "contains the spec", "mix.toml"),
}


@pytest.mark.parametrize("case", sorted(OVERLAPS))
@pytest.mark.parametrize("force", [False, True])
def test_output_overlapping_the_inputs_is_refused(
    data: Data, write_spec: SpecWriter, tmp_path: Path, case: str, force: bool
) -> None:
    spec = write_spec()
    relative, relation, named = OVERLAPS[case]
    (tmp_path / "cache").mkdir()
    out = tmp_path / relative
    before = snapshot(tmp_path)
    flags = ["--cache-dir", tmp_path / "cache", "--quiet", *(["--force"] if force else [])]
    result = run("build", spec, "-o", out, *flags)
    assert_one_line_error(result, f"output {str(out)!r} {relation}", named)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("out", [".", "..", "/"])
@pytest.mark.parametrize("force", [False, True])
def test_output_around_the_current_folder_is_refused(
    data: Data,
    write_spec: SpecWriter,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    out: str,
    force: bool,
) -> None:
    spec = write_spec()
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("keep me")
    monkeypatch.chdir(work)
    before = snapshot(tmp_path)
    result = run("build", spec, "-o", out, "--quiet", *(["--force"] if force else []))
    relation = "is" if out == "." else "contains"
    assert_one_line_error(result, f"output {out!r} {relation} the current folder {str(work)!r}")
    assert snapshot(tmp_path) == before


def test_output_beside_the_inputs_is_fine(
    data: Data, write_spec: SpecWriter, tmp_path: Path
) -> None:
    # Beside the spec, beside the data files, inside the folder of a glob's files: all allowed.
    spec = write_spec()
    for out in ["mix.mixindex", "data/mix.mixindex", "data/code/mix.mixindex"]:
        assert_ok(run("build", spec, "-o", tmp_path / out, "--quiet"))


# ---- free space ------------------------------------------------------------------------------


def test_an_index_larger_than_the_free_space_is_refused_at_once(
    data: Data, write_spec: SpecWriter, tmp_path: Path
) -> None:
    out = tmp_path / "mix.mixindex"
    spec = write_spec(spec_dict(num_examples=10**15))
    # A real process: the old behaviour was to start writing petabytes.
    proc = run_process("build", spec, "-o", out, "--cache-dir", tmp_path / "cache", timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert line.startswith("error: the index would take about ")
    assert "1,000,000,000,000,000 positions" in line
    assert "lower mix.num_examples" in line
    assert sorted(p.name for p in tmp_path.glob("*mix.mixindex*")) == []
    assert not (tmp_path / "cache").exists(), "refused before converting anything"


def test_a_short_mix_with_a_far_schedule_point_is_not_sized_by_the_far_point(
    data: Data, write_spec: SpecWriter, tmp_path: Path
) -> None:
    # first_exhausted ends after a few hundred positions, but its loose length bound reaches past
    # the schedule's last point (10^12): sized by that bound, the index would need terabytes.
    far = {"code": 1, "notes": 1, "docs": 2}
    spec = write_spec(
        spec_dict(
            stop_strategy="first_exhausted",
            num_examples=None,
            weights=None,
            weight_schedule=[
                {"step": 0, "weights": {"code": 1, "notes": 1, "docs": 1}},
                {"step": 10**12, "weights": far},
            ],
        )
    )
    out = tmp_path / "mix.mixindex"
    assert_ok(run("build", spec, "-o", out, "--quiet"))
    assert mixindex.open(out).num_examples < 1000


def test_the_estimate_bounds_the_size_written(
    data: Data, write_spec: SpecWriter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = write_spec(spec_dict(num_examples=3_000_000, block_size=1000))
    out = tmp_path / "mix.mixindex"
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(1 << 40, 1 << 40, 1 << 20))
    line = assert_one_line_error(run("build", spec, "-o", out), "more than the 1.0 MiB free")
    estimate = float(re.search(r"about ([\d.,]+) MiB", line)[1].replace(",", "")) * 2**20
    monkeypatch.undo()
    assert_ok(run("build", spec, "-o", out, "--quiet"))
    written = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    assert written <= estimate <= 1.05 * written + 2**20


# ---- a missing output folder -----------------------------------------------------------------


@pytest.mark.parametrize("force", [False, True])
def test_a_missing_output_folder_is_an_output_error(
    data: Data, write_spec: SpecWriter, tmp_path: Path, force: bool
) -> None:
    spec = write_spec()
    out = tmp_path / "missing" / "mix.mixindex"
    before = snapshot(tmp_path)
    with pytest.raises(mixindex.OutputError, match="does not exist; create it first") as info:
        build(spec, out, force=force)
    # Nothing exists there: not IndexExistsError, and not a FileExistsError to a caller either.
    assert not isinstance(info.value, FileExistsError)
    result = run("build", spec, "-o", out, "--quiet", *(["--force"] if force else []))
    assert_one_line_error(result, str(out), "does not exist; create it first")
    assert snapshot(tmp_path) == before
