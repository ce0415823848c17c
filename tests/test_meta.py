"""The index's attributes (mixindex/meta.py): the digest covers every attribute that changes what
is served or reported, ``open`` refuses attributes edited by hand or contradicting the arrays,
and damaged attributes are one line naming the key, in the library and in every command."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from clirun import assert_ok, assert_one_line_error, run
from conftest import DEFAULT_MIX, spec_dict, to_toml

import mixindex
from mixindex.audit.verify import verify
from mixindex.builder import build
from mixindex.errors import IndexFormatError
from mixindex.store.layout import ARRAYS, FORMAT_VERSION

N = DEFAULT_MIX["num_examples"]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default mix in chunks of 2 blocks, built once; tests edit copies of it."""
    from conftest import make_data

    root = tmp_path_factory.mktemp("meta")
    make_data(root / "data")
    spec = root / "mix.toml"
    spec.write_text(to_toml(spec_dict()), encoding="utf-8")
    return build(spec, root / "mix.mixindex", chunk_blocks=2)


Edit = Callable[[dict[str, Any]], None]


def edited(pristine: Path, tmp_path: Path, change: Edit, doc: str = "zarr.json") -> Path:
    """A copy of the index whose JSON document ``doc`` went through ``change``."""
    out = pristine.with_name(f"{tmp_path.name}.mixindex")
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(pristine, out)
    meta_path = out / doc
    data = json.loads(meta_path.read_text())
    change(data["attributes"]["mixindex"] if doc == "zarr.json" else data)
    meta_path.write_text(json.dumps(data))
    return out


def rename_source(meta: dict[str, Any]) -> None:
    meta["sources"][1]["name"] = "renamed"


def set_key(*path: Any, value: Any) -> Edit:
    def change(meta: dict[str, Any]) -> None:
        doc = meta
        for key in path[:-1]:
            doc = doc[key]
        doc[path[-1]] = value

    return change


# Each edit changes what is served or reported, and none touches a length: only the digest
# can tell. (Renaming a source changed __source__ of every one of its positions.)
SILENT_EDITS = {
    "source name": rename_source,
    "num_rows": set_key("sources", 2, "num_rows", value=18),
    "fingerprint": set_key("sources", 0, "fingerprint", value="sha256:" + "1" * 64),
    "type": set_key("sources", 0, "type", value="arrow"),
    "weights": set_key("spec", "mix", "weight_schedule", 0, "weights", "code", value=0.6),
    "seed": set_key("spec", "mix", "seed", value=8),
    "stop strategy": set_key("spec", "mix", "stop_strategy", value="first_exhausted"),
    "dataset name": set_key("spec", "datasets", 1, "name", value="renamed"),
    "array digest": set_key("array_digests", "row", value="0" * 64),
}


@pytest.mark.parametrize("what", list(SILENT_EDITS))
def test_an_edited_attribute_is_refused_and_verify_names_it(
    pristine: Path, tmp_path: Path, what: str
) -> None:
    index = edited(pristine, tmp_path, SILENT_EDITS[what])
    with pytest.raises(IndexFormatError, match="attributes do not match its digest"):
        mixindex.open(index, verify=False)
    assert_one_line_error(run("inspect", index), "do not match its digest")
    result = verify(index)
    assert not result.ok
    assert any(p.startswith(("index digest: recorded", "row: its bytes")) for p in result.problems)
    assert run("verify", index).exit_code == 1


def test_where_the_data_lives_is_not_in_the_digest(pristine: Path, tmp_path: Path) -> None:
    """data_files may point elsewhere (moved data): the same mix, the same digest."""
    moved = tmp_path / "moved" / "notes.arrow"
    moved.parent.mkdir()
    record = json.loads((pristine / "zarr.json").read_text())["attributes"]["mixindex"]
    shutil.copy(record["sources"][1]["data_files"][0], moved)
    index = edited(pristine, tmp_path, set_key("sources", 1, "data_files", value=[str(moved)]))
    ds = mixindex.open(index)
    assert ds.digest == mixindex.open(pristine).digest
    assert_ok(run("verify", index))


def contradict(what: str) -> tuple[Edit, str, str]:
    """An edit that contradicts the arrays, the document it edits, and the words that say so."""
    return {
        "block_size": (set_key("block_size", value=50), "zarr.json", "num_blocks"),
        "num_examples": (set_key("num_examples", value=N - 1), "zarr.json", "shape of 'source'"),
        "num_blocks": (set_key("num_blocks", value=9), "zarr.json", "num_blocks"),
        "chunk_blocks": (set_key("chunk_blocks", value=3), "zarr.json", "chunk_positions"),
        "sources": (
            lambda m: m["sources"].append(dict(m["sources"][0], name="extra")),
            "zarr.json",
            "shape of 'counts'",
        ),
        "row chunks": (
            set_key("chunk_grid", "configuration", "chunk_shape", value=[100]),
            "row/zarr.json",
            "chunks of 'row'",
        ),
        "row dtype": (set_key("data_type", value="uint16"), "row/zarr.json", "digest"),
        "epoch dtype": (set_key("data_type", value="float32"), "epoch/zarr.json", "dtype"),
        "row endian": (
            set_key("codecs", 0, "configuration", value={"endian": "big"}),
            "row/zarr.json",
            "big-endian",
        ),
    }[what]


@pytest.mark.parametrize(
    "what",
    [
        "block_size",
        "num_examples",
        "num_blocks",
        "chunk_blocks",
        "sources",
        "row chunks",
        "row dtype",
        "epoch dtype",
        "row endian",
    ],
)
def test_attributes_that_contradict_the_arrays(pristine: Path, tmp_path: Path, what: str) -> None:
    change, doc, words = contradict(what)
    index = edited(pristine, tmp_path, change, doc)
    with pytest.raises(IndexFormatError, match=words):
        mixindex.open(index, verify=False)
    for command in ("inspect", "audit", "report", "verify"):
        args = [command, index] + (["SELECT 1"] if command == "audit" else [])
        if command == "verify" and what == "row dtype":
            # verify opens what it can and reports the chunks: 800 bytes, expected 400.
            result = run(*args)
            assert result.exit_code == 1 and "row/c/0: chunk cannot be read" in result.stdout
            continue
        assert_one_line_error(run(*args), index.name)


DAMAGED = {
    "num_examples": (set_key("num_examples", value="abc"), "'num_examples' is 'abc'"),
    "sources": (set_key("sources", value=None), "'sources' is None"),
    "no sources": (set_key("sources", value=[]), "'sources' is []"),
    "source record": (set_key("sources", 1, value="notes"), "'sources[1]' is 'notes'"),
    "num_rows": (set_key("sources", 0, "num_rows", value=-3), "'sources[0].num_rows' is -3"),
    "block_size": (lambda m: m.pop("block_size"), "'block_size' is missing"),
    "spec": (set_key("spec", value=[]), "'spec' is []"),
    "weights": (
        set_key("spec", "mix", "weight_schedule", 0, value=None),
        "'spec.mix.weight_schedule[0]' is None",
    ),
    "seed": (set_key("spec", "mix", "seed", value=True), "'spec.mix.seed' is True"),
    "build": (set_key("build", value="yesterday"), "'build' is 'yesterday'"),
    # Read by inspect (formatted as a number) and by the reader's warnings.
    "build seconds": (set_key("build", "seconds", value="slow"), "'build.seconds' is 'slow'"),
    "row order": (
        set_key("spec", "mix", "row_order", value="random"),
        "'spec.mix.row_order' is 'random', expected one of sequential, shuffled, grouped",
    ),
    "dataset files": (
        set_key("spec", "datasets", 0, "data_files", value=3),
        "'spec.datasets[0].data_files' is 3",
    ),
    "array digest": (
        lambda m: m["array_digests"].pop("row"),
        "'array_digests.row' is missing",
    ),
}


@pytest.mark.parametrize("what", list(DAMAGED))
def test_damaged_attributes_are_one_line(pristine: Path, tmp_path: Path, what: str) -> None:
    change, words = DAMAGED[what]
    index = edited(pristine, tmp_path, change)
    with pytest.raises(IndexFormatError, match=re.escape(f"attribute {words}")):
        mixindex.open(index)
    for args in (
        ["show", index, "0"],
        ["inspect", index],
        ["audit", index, "SELECT count(*) FROM mix"],
        ["report", index],
        ["verify", index],
    ):
        assert_one_line_error(run(*args), "attribute", words)


def test_an_index_of_format_1_says_to_rebuild(pristine: Path, tmp_path: Path) -> None:
    index = edited(pristine, tmp_path, set_key("format_version", value=1))
    line = assert_one_line_error(run("show", index, "0"), "format version 1", "rebuild")
    assert f"reads version {FORMAT_VERSION}" in line and "mixindex build" in line


def test_chunk_digests_are_an_array_not_attributes(pristine: Path) -> None:
    meta = json.loads((pristine / "zarr.json").read_text())["attributes"]["mixindex"]
    assert "chunk_digests" not in meta
    group = zarr.open_group(str(pristine), mode="r")
    table = np.asarray(group["chunk_digests"][:])
    assert table.shape == (5, len(ARRAYS), 32) and table.dtype == np.uint8
    # Row c, column a: sha256 of chunk c of array a, as zarr reads it (little-endian bytes).
    for a, name in enumerate(ARRAYS):
        arr = group[name]
        step = arr.chunks[0]
        for c in range(5):
            part = np.ascontiguousarray(arr[c * step : (c + 1) * step])
            assert table[c, a].tobytes() == hashlib.sha256(part.tobytes()).digest(), (name, c)
    # The whole arrays' digests, which the content digest covers, are in the attributes.
    for name in ARRAYS:
        whole = np.ascontiguousarray(group[name][:]).tobytes()
        assert meta["array_digests"][name] == hashlib.sha256(whole).hexdigest()


def test_verify_finds_a_damaged_chunk_digest(pristine: Path, tmp_path: Path) -> None:
    index = pristine.with_name(f"{tmp_path.name}.mixindex")
    shutil.copytree(pristine, index)
    path = index / "chunk_digests" / "c" / "0" / "0" / "0"
    raw = bytearray(path.read_bytes())
    raw[(3 * len(ARRAYS) + 1) * 32] ^= 1  # chunk 3 of row
    path.write_bytes(bytes(raw))
    result = run("verify", index)
    assert result.exit_code == 1
    assert result.stdout.startswith("row/c/3: bytes do not match the recorded digest")
