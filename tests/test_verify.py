"""``mixindex verify``: damaged chunks are found and named, changed sources are reported, and a
missing or unreadable index is one line with exit status 2."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from clirun import assert_ok, assert_one_line_error, run
from conftest import NOTES_BATCH, NOTES_SCHEMA, Data, SpecWriter

from mixindex.audit.verify import verify
from mixindex.builder import build
from mixindex.store.index import StoredIndex
from mixindex.store.layout import ARRAYS


@pytest.fixture
def chunked(data: Data, write_spec: SpecWriter, tmp_path: Path) -> Path:
    """The default mix in chunks of 2 blocks: row/c/0 .. row/c/4, counts/c/0/0 .. counts/c/4/0."""
    return build(write_spec(), tmp_path / "mix.mixindex", chunk_blocks=2)


def problems(result_stdout: str) -> list[str]:
    return [ln for ln in result_stdout.splitlines() if not ln.startswith("note: ")]


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_intact_index(chunked: Path) -> None:
    result = run("verify", chunked)
    assert_ok(result)
    assert result.stdout.splitlines() == [
        f"ok: {chunked}: 25 chunks match their digests, the tables agree with the positions, "
        "3 sources match their fingerprints"
    ]


@pytest.mark.parametrize(
    ("key", "offset"),
    [("row/c/3", 4 * 7), ("source/c/0", 0), ("epoch/c/4", 3), ("counts/c/1/0", 2)],
)
def test_flipped_byte_names_the_chunk(chunked: Path, key: str, offset: int) -> None:
    flip_byte(chunked / key, offset)
    result = run("verify", chunked)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    (line,) = problems(result.stdout)
    assert line.startswith(f"{key}: bytes do not match the recorded digest")


def test_missing_and_truncated_chunks(chunked: Path) -> None:
    (chunked / "row" / "c" / "2").unlink()
    (chunked / "epoch" / "c" / "1").write_bytes(b"\0" * 3)
    result = run("verify", chunked)
    assert result.exit_code == 1
    lines = problems(result.stdout)
    assert len(lines) == 2
    assert lines[0].startswith("row/c/2: chunk file is missing")
    assert lines[1].startswith("epoch/c/1: chunk cannot be read")


def test_edited_digest(chunked: Path) -> None:
    meta_path = chunked / "zarr.json"
    doc = json.loads(meta_path.read_text())
    doc["attributes"]["mixindex"]["digest"] = "sha256:" + "0" * 64
    meta_path.write_text(json.dumps(doc))
    result = verify(chunked)
    assert len(result.problems) == 1
    assert result.problems[0].startswith("index digest: recorded sha256:000")


def rewrite_chunk(index: Path, name: str, chunk: int, change: Callable[[np.ndarray], None]) -> None:
    """Change a table chunk and recompute every digest to match: a consistent-looking lie."""
    path = index / name / "c" / str(chunk) / "0"
    table = np.fromfile(path, dtype=StoredIndex(index).arrays[name].dtype).reshape(-1, 3)
    change(table)
    table.tofile(path)
    # Its row of chunk_digests (one stored chunk here: a row per chunk, 32 bytes per array).
    digests = index / "chunk_digests" / "c" / "0" / "0" / "0"
    raw = bytearray(digests.read_bytes())
    at = (chunk * len(ARRAYS) + ARRAYS.index(name)) * 32
    raw[at : at + 32] = hashlib.sha256(table.tobytes()).digest()
    digests.write_bytes(bytes(raw))
    stored = StoredIndex(index, check_digest=False)
    whole = {}
    for n, arr in stored.arrays.items():
        h = hashlib.sha256()
        for part in arr.iter_chunks():
            h.update(np.ascontiguousarray(part).data)
        whole[n] = h.hexdigest()
    doc = json.loads((index / "zarr.json").read_text())
    meta = doc["attributes"]["mixindex"]
    meta["array_digests"] = whole
    meta["digest"] = stored.recomputed_digest(whole)
    (index / "zarr.json").write_text(json.dumps(doc))


def test_tables_that_disagree_with_the_positions(chunked: Path) -> None:
    def swap(table: np.ndarray) -> None:  # block 3: code and notes swapped
        assert table[1, 0] != table[1, 1]
        table[1] = table[1][[1, 0, 2]]

    def bump(table: np.ndarray) -> None:  # block 6: one more docs example before it
        table[0, 2] += 1

    rewrite_chunk(chunked, "counts", 1, swap)
    rewrite_chunk(chunked, "cursors", 3, bump)
    result = verify(chunked)
    assert len(result.problems) == 2, result.problems
    assert result.problems[0].startswith("counts/c/1/0: block 3 records counts")
    assert result.problems[1].startswith("cursors/c/3/0: block 6 records cursors")


def test_changed_sources(chunked: Path, data: Data) -> None:
    notes = pa.Table.from_pylist(
        [{"topic": f"t{i}", "text": "x"} for i in range(30)], schema=NOTES_SCHEMA
    )
    with pa.OSFile(str(data.notes_file), "wb") as f, pa.ipc.new_file(f, NOTES_SCHEMA) as w:
        w.write_table(notes, max_chunksize=NOTES_BATCH)
    data.code_files[1].unlink()
    result = run("verify", chunked)
    assert result.exit_code == 1
    lines = problems(result.stdout)
    assert len(lines) == 2
    assert lines[0].startswith("source 'code': ")
    assert str(data.code_files[1]) in lines[0] and "does not exist" in lines[0]
    assert lines[1].startswith("source 'notes': row count changed from 29 to 30")


def rewrite_notes_same_sizes(data: Data) -> None:
    """Change one letter of every note: the same sizes, batches and buffers, other bytes."""
    with pa.memory_map(str(data.notes_file)) as mm:
        table = pa.ipc.open_file(mm).read_all()
    rows = table.to_pylist()
    for r in rows:
        r["text"] = r["text"].replace("note", "nota")
    changed = pa.Table.from_pylist(rows, schema=NOTES_SCHEMA)
    with pa.OSFile(str(data.notes_file), "wb") as f, pa.ipc.new_file(f, NOTES_SCHEMA) as w:
        w.write_table(changed, max_chunksize=NOTES_BATCH)


def test_deep(data: Data, write_spec: SpecWriter, tmp_path: Path) -> None:
    out = build(write_spec(), tmp_path / "deep.mixindex", deep_fingerprint=True)
    plain = build(write_spec(), tmp_path / "plain.mixindex")
    assert_ok(run("verify", out, "--deep"))
    result = run("verify", plain, "--deep")
    assert_ok(result)
    notes = [ln for ln in result.stdout.splitlines() if ln.startswith("note: ")]
    assert len(notes) == 3 and all("no content hash was recorded" in n for n in notes)
    size = data.notes_file.stat().st_size
    rewrite_notes_same_sizes(data)
    assert data.notes_file.stat().st_size == size
    assert_ok(run("verify", out))  # the cheap fingerprint cannot see it...
    result = run("verify", out, "--deep")  # ...the content hash does
    assert result.exit_code == 1
    (line,) = problems(result.stdout)
    assert line.startswith("source 'notes': content hash changed")


def test_missing_or_corrupt_index(chunked: Path, tmp_path: Path) -> None:
    assert_one_line_error(run("verify", tmp_path / "nope.mixindex"), "nope.mixindex")
    broken = tmp_path / "broken.mixindex"
    shutil.copytree(chunked, broken)
    (broken / "zarr.json").write_text("[]", encoding="utf-8")
    assert_one_line_error(run("verify", broken), "zarr.json")
    shutil.rmtree(broken / "row")
    (broken / "zarr.json").write_bytes((chunked / "zarr.json").read_bytes())
    assert_one_line_error(run("verify", broken), "row", "not a mixindex index")
