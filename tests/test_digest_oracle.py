"""The content digest, recomputed from the files of a built index with hashlib and json alone.

The rule (the docstring of the module that computes it): one sha256 over each whole array's
sha256 and a canonical JSON of the attributes that change what is served or reported: the
spec's ``mix`` and dataset names; each source's name, row count, type and fingerprint (those of
its original files when it is read through an Arrow cache); block size, lengths, dtypes and
format version. Where the data lives (``data_files``, cache folders), build facts and the
chunking are left out. The oracle below reads the chunk files itself and calls no digest code
of mixindex; the library is only what it is compared against.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import make_data, spec_dict, to_toml

import mixindex
from mixindex.builder import build
from mixindex.errors import IndexFormatError
from mixindex.store.meta import IndexMeta, content_digest

ARRAY_NAMES = ("source", "row", "epoch", "counts", "cursors")


# ---- the oracle ------------------------------------------------------------------------------


def read_meta(index: Path) -> dict[str, Any]:
    return json.loads((index / "zarr.json").read_text())["attributes"]["mixindex"]


def array_bytes(index: Path, name: str) -> tuple[bytes, str]:
    """An array's little-endian bytes in C order, joined from its chunk files, and its dtype.

    Chunks run along the first axis only (the other axes are whole), each chunk file holds a
    whole chunk (the last one padded), keyed ``c/i`` or ``c/i/0``.
    """
    doc = json.loads((index / name / "zarr.json").read_text())
    codecs = doc["codecs"]
    assert [c["name"] for c in codecs] == ["bytes"], f"{name}: not stored raw"
    assert codecs[0].get("configuration", {}).get("endian", "little") == "little"
    shape = doc["shape"]
    chunk = doc["chunk_grid"]["configuration"]["chunk_shape"]
    assert chunk[1:] == shape[1:], f"{name}: chunked along more than one axis"
    row = np.dtype(doc["data_type"]).itemsize * int(np.prod(shape[1:], dtype=np.int64))
    nchunks = -(-shape[0] // chunk[0])
    tail = "/0" * (len(shape) - 1)
    parts = []
    for i in range(nchunks):
        raw = (index / name / f"c/{i}{tail}").read_bytes()
        assert len(raw) == chunk[0] * row, f"{name}: chunk {i} is {len(raw)} bytes"
        parts.append(raw)
    return b"".join(parts)[: shape[0] * row], doc["data_type"]


def oracle_digest(
    index: Path, meta: dict[str, Any] | None = None, dtypes: dict[str, str] | None = None
) -> str:
    """The content digest of ``index`` from its files (``meta`` and ``dtypes`` replace what
    its documents say)."""
    meta = read_meta(index) if meta is None else meta
    hashes, stored = {}, {}
    for name in ARRAY_NAMES:
        data, stored[name] = array_bytes(index, name)
        hashes[name] = hashlib.sha256(data).hexdigest()
    if dtypes is not None:
        stored.update(dtypes)

    def identity(rec: dict[str, Any]) -> dict[str, Any]:
        origin = rec["cache"]["source"] if "cache" in rec else rec
        return {
            "name": rec["name"],
            "num_rows": rec["num_rows"],
            "type": origin["type"],
            "fingerprint": origin["fingerprint"],
        }

    facts = {
        "format_version": meta["format_version"],
        "num_examples": meta["num_examples"],
        "num_blocks": meta["num_blocks"],
        "block_size": meta["block_size"],
        "num_sources": len(meta["sources"]),
        "dtypes": stored,
        "mix": meta["spec"]["mix"],
        "datasets": [d["name"] for d in meta["spec"]["datasets"]],
        "sources": [identity(rec) for rec in meta["sources"]],
    }
    doc = json.dumps({"arrays": hashes, "facts": facts}, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(doc.encode()).hexdigest()


def library_digest(index: Path, meta: dict[str, Any]) -> str:
    """What mixindex computes for ``meta`` over the index's recorded arrays."""
    dtypes = {n: array_bytes(index, n)[1] for n in ARRAY_NAMES}
    return content_digest(IndexMeta.from_dict(meta), meta["array_digests"], dtypes)


# ---- indexes -------------------------------------------------------------------------------

SCHEDULE = [
    {"step": 0, "weights": {"code": 1, "notes": 0, "docs": 2}},
    {"step": 50, "weights": {"code": 1, "notes": 3, "docs": 0}},
    {"step": 120, "weights": {"code": 1, "notes": 1, "docs": 1}},
]
SPECS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # name: (mix keys, build arguments)
    "cached": ({}, {"chunk_blocks": 3, "cache": True}),
    "plain": ({}, {"chunk_blocks": 5, "compress": True}),
    "all_exhausted": (
        {
            "weights": None,
            "num_examples": None,
            "weight_schedule": SCHEDULE,
            "weight_schedule_type": "linear",
            "stop_strategy": "all_exhausted",
            "block_size": 7,
            "seed": 2**64 - 1,
            "row_order": "sequential",
        },
        {"chunk_blocks": 4},
    ),
    "first_exhausted": (
        {
            "weights": None,
            "num_examples": None,
            "weight_schedule": SCHEDULE,
            "weight_schedule_type": "cosine",
            "stop_strategy": "first_exhausted",
            "block_size": 3,
            "seed": 0,
        },
        {},
    ),
}


@pytest.fixture(scope="module")
def indexes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("digest")
    make_data(root / "data")
    out = {}
    for name, (mix, args) in SPECS.items():
        spec = root / f"{name}.toml"
        spec.write_text(to_toml(spec_dict(**mix)), encoding="utf-8")
        kwargs = dict(args)
        if kwargs.pop("cache", False):
            kwargs["cache_dir"] = root / "cache"
        out[name] = build(spec, root / f"{name}.mixindex", **kwargs)
    return out


RAW = ("cached", "all_exhausted", "first_exhausted")


@pytest.mark.parametrize("name", RAW)
def test_the_stored_digest_follows_the_documented_rule(indexes: dict[str, Path], name: str) -> None:
    index = indexes[name]
    meta = read_meta(index)
    assert oracle_digest(index) == meta["digest"]
    # The recorded whole-array digests are those of the bytes on disk.
    for array in ARRAY_NAMES:
        assert (
            meta["array_digests"][array] == hashlib.sha256(array_bytes(index, array)[0]).hexdigest()
        )
    assert mixindex.open(index).digest == meta["digest"]


def test_cache_chunking_and_compression_leave_the_digest_alone(indexes: dict[str, Path]) -> None:
    # The same spec, read once through an Arrow cache in chunks of 3 blocks, once from its
    # Parquet files in zstd chunks of 5 blocks: one mix, one digest.
    cached, plain = read_meta(indexes["cached"]), read_meta(indexes["plain"])
    assert "cache" in cached["sources"][0] and "cache" not in plain["sources"][0]
    assert cached["sources"][0]["data_files"] != plain["sources"][0]["data_files"]
    assert cached["chunk_blocks"] != plain["chunk_blocks"]
    assert plain["digest"] == cached["digest"] == oracle_digest(indexes["cached"])


Edit = Callable[[dict[str, Any]], None]


def set_key(*path: Any, value: Any) -> Edit:
    def change(meta: dict[str, Any]) -> None:
        doc = meta
        for key in path[:-1]:
            doc = doc[key]
        doc[path[-1]] = value

    return change


# Source 0 (code) is read through the Arrow cache in the "cached" index: its own type and
# fingerprint are the cache copy's, and the digest takes those of its original files.
COVERED: dict[str, Edit] = {
    "format_version": set_key("format_version", value=99),
    "num_examples": set_key("num_examples", value=949),
    "num_blocks": set_key("num_blocks", value=11),
    "block_size": set_key("block_size", value=95),
    "mix weights": set_key("spec", "mix", "weight_schedule", 0, "weights", "docs", value=0.2),
    "mix step": set_key("spec", "mix", "weight_schedule", 0, "step", value=1),
    "mix point": lambda m: m["spec"]["mix"]["weight_schedule"].append(
        {"step": 500, "weights": {"code": 0.0, "notes": 0.5, "docs": 0.5}}
    ),
    "mix interpolation": set_key("spec", "mix", "weight_schedule_type", value="cosine"),
    "mix block_size": set_key("spec", "mix", "block_size", value=50),
    "mix stop": set_key("spec", "mix", "stop_strategy", value="all_exhausted"),
    "mix seed": set_key("spec", "mix", "seed", value=8),
    "mix seed 2^64-1": set_key("spec", "mix", "seed", value=2**64 - 1),
    "mix num_examples": set_key("spec", "mix", "num_examples", value=951),
    "mix row_order": set_key("spec", "mix", "row_order", value="sequential"),
    "dataset name": set_key("spec", "datasets", 2, "name", value="pages"),
    "dataset order": lambda m: m["spec"]["datasets"].reverse(),
    "source name": set_key("sources", 1, "name", value="renamed"),
    "source num_rows": set_key("sources", 2, "num_rows", value=18),
    "source type": set_key("sources", 1, "type", value="parquet"),
    "source fingerprint": set_key("sources", 2, "fingerprint", value="sha256:" + "1" * 64),
    "origin type": set_key("sources", 0, "cache", "source", "type", value="json"),
    "origin fingerprint": set_key(
        "sources", 0, "cache", "source", "fingerprint", value="sha256:" + "2" * 64
    ),
    "source order": lambda m: m["sources"].insert(0, m["sources"].pop()),
}

UNCOVERED: dict[str, Edit] = {
    "source data_files": set_key("sources", 1, "data_files", value=["/elsewhere/notes.arrow"]),
    "dataset data_files": set_key("spec", "datasets", 0, "data_files", value=["moved/*.parquet"]),
    "cache folder": set_key("sources", 0, "cache", "folder", value="/elsewhere/cache"),
    "origin data_files": set_key("sources", 0, "cache", "source", "data_files", value=["x"]),
    "cache copy type": set_key("sources", 0, "type", value="parquet"),
    "cache copy fingerprint": set_key("sources", 0, "fingerprint", value="sha256:" + "3" * 64),
    "build facts": set_key("build", value={"created": "yesterday"}),
    "chunk_blocks": set_key("chunk_blocks", value=2),
    "chunk_positions": set_key("chunk_positions", value=200),
}


@pytest.mark.parametrize("what", list(COVERED))
def test_a_covered_attribute_changes_the_digest(indexes: dict[str, Path], what: str) -> None:
    index = indexes["cached"]
    meta = read_meta(index)
    edited = copy.deepcopy(meta)
    COVERED[what](edited)
    assert edited != meta
    assert oracle_digest(index, edited) != meta["digest"]
    if what == "format_version":
        # The library reads no other format version, so it has no digest to give for one.
        with pytest.raises(IndexFormatError, match="format version 99"):
            library_digest(index, edited)
        return
    assert library_digest(index, edited) == oracle_digest(index, edited)


@pytest.mark.parametrize("what", list(UNCOVERED))
def test_where_data_lives_and_build_facts_leave_the_digest_alone(
    indexes: dict[str, Path], what: str
) -> None:
    index = indexes["cached"]
    meta = read_meta(index)
    edited = copy.deepcopy(meta)
    UNCOVERED[what](edited)
    assert edited != meta
    assert oracle_digest(index, edited) == meta["digest"]
    assert library_digest(index, edited) == meta["digest"]


@pytest.mark.parametrize("what", ["source data_files", "cache folder", "build facts"])
def test_an_index_with_an_uncovered_edit_still_opens(
    indexes: dict[str, Path], tmp_path: Path, what: str
) -> None:
    copy_ = tmp_path / "edited.mixindex"
    shutil.copytree(indexes["cached"], copy_)
    doc = json.loads((copy_ / "zarr.json").read_text())
    meta = doc["attributes"]["mixindex"]
    if what == "source data_files":
        # Moved data: a copy of the notes file somewhere else.
        moved = tmp_path / "elsewhere" / "notes.arrow"
        moved.parent.mkdir()
        shutil.copy(meta["sources"][1]["data_files"][0], moved)
        meta["sources"][1]["data_files"] = [str(moved)]
    else:
        UNCOVERED[what](meta)
    (copy_ / "zarr.json").write_text(json.dumps(doc))
    ds = mixindex.open(copy_, verify=False)
    try:
        assert ds.digest == read_meta(indexes["cached"])["digest"] == oracle_digest(copy_)
    finally:
        ds.close()


def test_an_array_dtype_changes_the_digest(indexes: dict[str, Path]) -> None:
    index = indexes["all_exhausted"]
    meta = read_meta(index)
    for name in ARRAY_NAMES:
        assert oracle_digest(index, dtypes={name: "uint64"}) != meta["digest"], name


@pytest.mark.parametrize("name", RAW)
def test_any_changed_array_byte_changes_the_digest(
    indexes: dict[str, Path], tmp_path: Path, name: str
) -> None:
    # A flipped byte in the middle of each array (the oracle reads the files, not the recorded
    # array digests), and mixindex verify finds the same flip.
    from mixindex.audit.verify import verify

    for array in ARRAY_NAMES:
        out = tmp_path / f"{array}.mixindex"
        shutil.copytree(indexes[name], out)
        size = len(array_bytes(out, array)[0])
        path = out / array / ("c/0" if array in ARRAY_NAMES[:3] else "c/0/0")
        raw = bytearray(path.read_bytes())
        raw[min(len(raw), size) // 2] ^= 1  # inside the array, not the last chunk's padding
        path.write_bytes(bytes(raw))
        assert oracle_digest(out) != read_meta(out)["digest"], array
        assert not verify(out).ok, array
