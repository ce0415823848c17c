"""The index's attributes (``attributes["mixindex"]`` of the group's ``zarr.json``): their
types, checked when an index is opened, and the content digest that covers them.

The digest is one sha256 over each whole array's sha256 and a canonical JSON of every attribute
that changes what is served or reported: the spec's ``mix`` section and dataset names; each
source's name, row count, type and fingerprint (those of its original files when it is read
through an Arrow cache, so that the cache changes where rows are read, not the digest); the
block size, the lengths and the dtypes; and the format version. Hand-editing any of them is
refused at open. Left out, because they say where things are or how a build went rather than
what is served: ``data_files`` (moved data opens with ``data_files=``), cache folders, build
facts, content hashes (``verify --deep`` checks those against the data), and the chunking (a mix
has one digest whatever ``chunk_blocks``; ``open`` checks the chunking against the arrays).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mixindex.errors import IndexFormatError
from mixindex.store.layout import ARRAYS

__all__ = ["check_meta", "content_digest"]

_MISSING = object()


def _bad(path: Path, key: str, value: Any, want: str) -> IndexFormatError:
    shown = "missing" if value is _MISSING else f"{value!r}"[:60]
    return IndexFormatError(
        f"{str(path)!r} is damaged: attribute {key!r} is {shown}, expected {want}; "
        "rebuild the index"
    )


def _int(doc: Mapping[str, Any], key: str, path: Path, where: str = "", low: int = 0) -> int:
    value = doc.get(key, _MISSING)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise _bad(path, where + key, value, f"a whole number >= {low}")
    return value


def _str(doc: Mapping[str, Any], key: str, path: Path, where: str = "") -> str:
    value = doc.get(key, _MISSING)
    if not isinstance(value, str):
        raise _bad(path, where + key, value, "a string")
    return value


def _dict(doc: Mapping[str, Any], key: str, path: Path, where: str = "") -> dict[str, Any]:
    value = doc.get(key, _MISSING)
    if not isinstance(value, dict):
        raise _bad(path, where + key, value, "an object")
    return value


def _list(doc: Mapping[str, Any], key: str, path: Path, where: str = "") -> list[Any]:
    value = doc.get(key, _MISSING)
    if not isinstance(value, list):
        raise _bad(path, where + key, value, "a list")
    return value


def check_meta(meta: dict[str, Any], path: Path) -> None:
    """Every attribute mixindex reads has its type (``format_version`` is checked before)."""
    for key in ("num_examples", "num_blocks"):
        _int(meta, key, path)
    for key in ("block_size", "chunk_positions", "chunk_blocks"):
        _int(meta, key, path, low=1)
    _str(meta, "digest", path)
    digests = _dict(meta, "array_digests", path)
    for name in ARRAYS:
        _str(digests, name, path, "array_digests.")
    if "build" in meta:
        _dict(meta, "build", path)
    spec = _dict(meta, "spec", path)
    mix = _dict(spec, "mix", path, "spec.")
    for key in ("weight_schedule_type", "stop_strategy", "row_order"):
        _str(mix, key, path, "spec.mix.")
    _int(mix, "seed", path, "spec.mix.")
    for i, point in enumerate(_list(mix, "weight_schedule", path, "spec.mix.")):
        if not isinstance(point, dict):
            raise _bad(path, f"spec.mix.weight_schedule[{i}]", point, "an object")
        _int(point, "step", path, f"spec.mix.weight_schedule[{i}].")
        _dict(point, "weights", path, f"spec.mix.weight_schedule[{i}].")
    for i, rec in enumerate(_list(spec, "datasets", path, "spec.")):
        if not isinstance(rec, dict):
            raise _bad(path, f"spec.datasets[{i}]", rec, "an object")
        _str(rec, "name", path, f"spec.datasets[{i}].")
    sources = _list(meta, "sources", path)
    if not sources:
        raise _bad(path, "sources", sources, "at least one source")
    for i, rec in enumerate(sources):
        where = f"sources[{i}]."
        if not isinstance(rec, dict):
            raise _bad(path, f"sources[{i}]", rec, "an object")
        for key in ("name", "type", "fingerprint"):
            _str(rec, key, path, where)
        _int(rec, "num_rows", path, where)
        files = _list(rec, "data_files", path, where)
        if not all(isinstance(f, str) for f in files):
            raise _bad(path, where + "data_files", files, "a list of paths")
        if "cache" in rec:
            origin = _dict(_dict(rec, "cache", path, where), "source", path, where + "cache.")
            for key in ("type", "fingerprint"):
                _str(origin, key, path, where + "cache.source.")


def _identity(rec: Mapping[str, Any]) -> dict[str, Any]:
    """What a source is, whichever copy of its rows is read."""
    origin = rec["cache"]["source"] if "cache" in rec else rec
    return {
        "name": rec["name"],
        "num_rows": rec["num_rows"],
        "type": origin["type"],
        "fingerprint": origin["fingerprint"],
    }


def content_digest(
    meta: Mapping[str, Any], array_digests: Mapping[str, str], dtypes: Mapping[str, Any]
) -> str:
    """The index's content digest: the arrays' whole-array sha256s and the attributes that
    change what is served or reported (see the module's docstring)."""
    spec = meta["spec"]
    facts = {
        "format_version": meta["format_version"],
        "num_examples": meta["num_examples"],
        "num_blocks": meta["num_blocks"],
        "block_size": meta["block_size"],
        "num_sources": len(meta["sources"]),
        "dtypes": {n: np.dtype(d).name for n, d in dtypes.items()},
        "mix": spec["mix"],
        "datasets": [d["name"] for d in spec["datasets"]],
        "sources": [_identity(rec) for rec in meta["sources"]],
    }
    doc = json.dumps(
        {"arrays": dict(array_digests), "facts": facts}, sort_keys=True, separators=(",", ":")
    )
    return "sha256:" + hashlib.sha256(doc.encode()).hexdigest()
