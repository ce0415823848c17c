"""Damaged chunk files (mixindex/chunks.py): a missing, short or over-long chunk, or a source id
byte that names no source, is one clear error naming the file, never zeros or a traceback; in
the reader and in every command that reads chunks."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from auditing import read_arrays
from clirun import assert_one_line_error, run
from conftest import DEFAULT_MIX, spec_dict, to_toml

import mixindex
from mixindex.builder import build
from mixindex.errors import IndexFormatError, IndexReplacedError

N = DEFAULT_MIX["num_examples"]
B = DEFAULT_MIX["block_size"]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The default mix in chunks of 2 blocks (200 positions), raw and zstd-compressed."""
    from conftest import make_data

    root = tmp_path_factory.mktemp("chunks")
    make_data(root / "data")
    spec = root / "mix.toml"
    spec.write_text(to_toml(spec_dict()), encoding="utf-8")
    return {
        "raw": build(spec, root / "raw.mixindex", chunk_blocks=2),
        "zstd": build(spec, root / "zstd.mixindex", chunk_blocks=2, compress=True),
    }


def copy_of(pristine: dict[str, Path], kind: str, tmp_path: Path) -> Path:
    # Beside the pristine copy, so that the spec's relative data paths still hold.
    out = pristine[kind].with_name(f"{tmp_path.name}-{kind}.mixindex")
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(pristine[kind], out)
    return out


DAMAGES = {
    "missing": lambda p: p.unlink(),
    "short": lambda p: p.write_bytes(p.read_bytes()[:-1]),
    "long": lambda p: p.write_bytes(p.read_bytes() + b"\0"),
}


@pytest.mark.parametrize("damage", ["missing", "short", "long"])
@pytest.mark.parametrize("name", ["source", "row", "epoch"])
def test_the_reader_refuses_a_damaged_chunk(
    pristine: dict[str, Path], tmp_path: Path, name: str, damage: str
) -> None:
    index = copy_of(pristine, "raw", tmp_path)
    ref = read_arrays(pristine["raw"])
    DAMAGES[damage](index / name / "c" / "2")
    ds = mixindex.open(index)
    # Chunks 0, 1, 3, 4 serve as before; chunk 2 (positions 400-599) is an error, never zeros.
    for p in (0, 399, 600, N - 1):
        assert ds[p]["__source__"] == ["code", "notes", "docs"][ref.source[p]]
    for p in (400, 599):
        with pytest.raises(IndexFormatError, match=f"{name}/c/2") as excinfo:
            ds.lookup([p])
        assert not isinstance(excinfo.value, IndexReplacedError)
        assert ("is missing" if damage == "missing" else "bytes, expected") in str(excinfo.value)
    if name != "epoch":  # an example is read from its source and row only
        with pytest.raises(IndexFormatError, match=f"{name}/c/2"):
            ds[450]


@pytest.mark.parametrize("damage", ["missing", "long"])
def test_a_compressed_index_refuses_a_damaged_chunk(
    pristine: dict[str, Path], tmp_path: Path, damage: str
) -> None:
    index = copy_of(pristine, "zstd", tmp_path)
    path = index / "row" / "c" / "2"
    if damage == "missing":
        path.unlink()  # zarr itself would read the fill value: zeros
    else:
        path.write_bytes(path.read_bytes() + b"junk")
    ds = mixindex.open(index)
    assert ds.lookup([0])[1].tolist() == read_arrays(pristine["zstd"]).row[:1].tolist()
    with pytest.raises(IndexFormatError, match="row/c/2"):
        ds.lookup([400])


@pytest.mark.parametrize("damage", ["missing", "short", "long"])
def test_commands_refuse_a_damaged_chunk(
    pristine: dict[str, Path], tmp_path: Path, damage: str
) -> None:
    index = copy_of(pristine, "raw", tmp_path)
    DAMAGES[damage](index / "source" / "c" / "2")
    DAMAGES[damage](index / "counts" / "c" / "1" / "0")
    sql = "SELECT source, count(*) FROM mix GROUP BY ALL"
    assert_one_line_error(run("audit", index, sql), "source/c/2")
    assert_one_line_error(run("report", index), "counts/c/1/0")  # read first, for the shares
    assert_one_line_error(run("show", index, "450"), "source/c/2")
    assert_one_line_error(run("inspect", index), "counts/c/1/0")
    assert_one_line_error(run("where", index, "--source", "code", "--row", "1"), "source/c/2")
    result = run("verify", index)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("source/c/2: chunk ")
    assert lines[1].startswith("counts/c/1/0: chunk ")


def set_source_byte(index: Path, position: int, value: int) -> None:
    chunk = index / "source" / "c" / str(position // (2 * B))
    data = bytearray(chunk.read_bytes())
    data[position % (2 * B)] = value
    chunk.write_bytes(bytes(data))


def test_a_source_id_past_the_sources_is_named(pristine: dict[str, Path], tmp_path: Path) -> None:
    index = copy_of(pristine, "raw", tmp_path)
    set_source_byte(index, 457, 7)
    ds = mixindex.open(index)
    assert len(ds[400:457]) == 57
    for read in (lambda: ds[457], lambda: ds.lookup([3, 457]), lambda: ds.read_batch([457])):
        with pytest.raises(IndexFormatError, match=r"source/c/2.*position 457 has source id 7"):
            read()
    assert_one_line_error(run("show", index, "450", "--count", "10"), "source/c/2", "457")
    sql = "SELECT source, count(*) FROM mix GROUP BY ALL"
    assert_one_line_error(run("audit", index, sql), "source/c/2", "457")
    assert_one_line_error(run("report", index), "source/c/2", "457")
    assert_one_line_error(run("diff", index, pristine["raw"]), "source/c/2", "457")
    result = run("verify", index)
    assert result.exit_code == 1
    assert result.stdout.startswith("source/c/2: bytes do not match the recorded digest")


def test_zeros_are_never_served(pristine: dict[str, Path], tmp_path: Path) -> None:
    """What the old reader did with a missing chunk: position after position 'source 0, row 0'."""
    index = copy_of(pristine, "raw", tmp_path)
    for name in ("source", "row", "epoch"):
        (index / name / "c" / "4").unlink()
    ds = mixindex.open(index)
    with pytest.raises(IndexFormatError):
        ds.lookup(np.arange(800, N))
