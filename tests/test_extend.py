"""``mixindex extend``: a restart index grown to M positions is the fresh build of M, byte for
byte, without planning its first chunks again; bad input changes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from clirun import assert_ok, assert_one_line_error, run
from conftest import Data, SpecWriter, spec_dict
from sameindex import array_files, assert_same_index

import mixindex
from mixindex.builder import build
from mixindex.extender import extend
from mixindex.plan.planner import Planner
from mixindex.store.writer import RegionWriter


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.glob(f".{out.name}*"))


@pytest.mark.parametrize(
    ("n", "m", "chunk_blocks"),
    [
        pytest.param(950, 2000, 1, id="many-chunks"),
        pytest.param(950, 5000, None, id="one-chunk"),
        # 250 positions store cursors and epochs as uint8; 70,000 need uint32 and uint16.
        pytest.param(250, 70_000, 1, id="wider-dtypes"),
    ],
)
def test_extend_gives_the_fresh_build(
    data: Data,
    write_spec: SpecWriter,
    tmp_path: Path,
    n: int,
    m: int,
    chunk_blocks: int | None,
) -> None:
    options: dict[str, Any] = {"chunk_blocks": chunk_blocks} if chunk_blocks else {}
    out = build(write_spec(spec_dict(num_examples=n)), tmp_path / "mix.mixindex", **options)
    before = len(mixindex.open(out))
    # Two threads (the default would be one per core): the bytes are the same either way.
    result = run("extend", out, "--num-examples", m, "--quiet", "--workers", 2)
    assert_ok(result)
    fresh = build(
        write_spec(spec_dict(num_examples=m), "long.toml"), tmp_path / "fresh.mixindex", **options
    )
    assert_same_index(out, fresh)
    assert (before, len(mixindex.open(out))) == (n, m)
    assert leftovers(out) == []


def test_extend_does_not_plan_the_kept_chunks_again(
    data: Data, write_spec: SpecWriter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = build(write_spec(spec_dict(num_examples=950)), tmp_path / "mix.mixindex", chunk_blocks=1)
    planned: list[int] = []
    real = Planner.materialize

    def materialize(self: Planner, task: Any) -> Any:
        planned.append(task.start)
        return real(self, task)

    monkeypatch.setattr(Planner, "materialize", materialize)
    extend(out, 1500)
    # 950 positions are chunks 0..9 (the last cut): only chunk 9 and the new ones are planned.
    assert sorted(planned) == list(range(900, 1500, 100))


def test_extend_twice_is_one_extend(data: Data, write_spec: SpecWriter, tmp_path: Path) -> None:
    out = build(write_spec(spec_dict(num_examples=300)), tmp_path / "mix.mixindex", chunk_blocks=1)
    extend(out, 777)
    extend(out, 1234)
    fresh = build(
        write_spec(spec_dict(num_examples=1234), "long.toml"),
        tmp_path / "fresh.mixindex",
        chunk_blocks=1,
    )
    assert_same_index(out, fresh)


def test_a_failed_extend_keeps_the_index(
    data: Data, write_spec: SpecWriter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = build(write_spec(spec_dict(num_examples=950)), tmp_path / "mix.mixindex", chunk_blocks=1)
    files = array_files(out)
    zarr_json = (out / "zarr.json").read_bytes()

    def write(self: RegionWriter, *args: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(RegionWriter, "write", write)
    with pytest.raises(RuntimeError, match="disk on fire"):
        extend(out, 2000)
    assert array_files(out) == files
    assert (out / "zarr.json").read_bytes() == zarr_json
    assert leftovers(out) == []


@pytest.mark.parametrize(
    ("mix", "m", "mentions"),
    [
        pytest.param(
            {"stop_strategy": "all_exhausted", "num_examples": None},
            5000,
            ("all_exhausted", "only a restart mix"),
            id="not-restart",
        ),
        pytest.param({"num_examples": 950}, 950, ("950", "larger"), id="not-longer"),
        pytest.param({"num_examples": 950}, 10, ("10", "larger"), id="shorter"),
    ],
)
def test_extend_refuses_bad_input(
    data: Data,
    write_spec: SpecWriter,
    tmp_path: Path,
    mix: dict[str, Any],
    m: int,
    mentions: tuple[str, ...],
) -> None:
    out = build(write_spec(spec_dict(**mix)), tmp_path / "mix.mixindex")
    files = array_files(out)
    zarr_json = (out / "zarr.json").read_bytes()
    assert_one_line_error(run("extend", out, "--num-examples", m), *mentions)
    assert array_files(out) == files
    assert (out / "zarr.json").read_bytes() == zarr_json
    assert leftovers(out) == []


def test_extend_refuses_what_is_not_an_index(tmp_path: Path) -> None:
    missing = tmp_path / "none.mixindex"
    assert_one_line_error(run("extend", missing, "-n", 100), "does not exist")
    assert not missing.exists()
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    assert_one_line_error(run("extend", folder, "-n", 100), str(folder))
    assert [p.name for p in folder.iterdir()] == ["keep.txt"]
    assert leftovers(folder) == []


def test_extend_refuses_an_index_without_a_plan_state(
    data: Data, write_spec: SpecWriter, tmp_path: Path
) -> None:
    """An index written before plan states were recorded cannot be continued."""
    import json

    from mixindex.store.index import StoredIndex
    from mixindex.store.meta import content_digest

    out = build(write_spec(), tmp_path / "mix.mixindex")
    doc = json.loads((out / "zarr.json").read_text())
    doc["attributes"]["mixindex"].pop("plan_state")
    (out / "zarr.json").write_text(json.dumps(doc))
    index = StoredIndex(out)  # still a valid index: the state is not part of the digest
    assert content_digest(index.meta, index.meta.array_digests, index.dtypes) == index.digest
    index.close()
    assert_one_line_error(run("extend", out, "-n", 5000), "does not record", "5000")
