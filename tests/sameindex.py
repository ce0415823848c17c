"""Whether two indexes are the same: every array file byte for byte, and the same attributes
(the digest included) but for the build's own facts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def array_files(index: Path) -> dict[str, bytes]:
    """Every file of the index but the group's ``zarr.json``, by relative path."""
    return {
        str(p.relative_to(index)): p.read_bytes()
        for p in sorted(index.rglob("*"))
        if p.is_file() and p.relative_to(index) != Path("zarr.json")
    }


def attributes(index: Path) -> dict[str, Any]:
    doc = json.loads((index / "zarr.json").read_text())["attributes"]["mixindex"]
    doc.pop("build", None)
    return dict(doc)


def assert_same_index(a: Path, b: Path) -> None:
    assert attributes(a) == attributes(b)
    files_a, files_b = array_files(a), array_files(b)
    assert sorted(files_a) == sorted(files_b)
    differ = [name for name in files_a if files_a[name] != files_b[name]]
    assert differ == [], f"files that differ: {differ[:5]}"
