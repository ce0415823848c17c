"""A build's journal, so that a build that was killed can go on where it stopped.

Every build keeps, in ``resume/`` inside its temporary folder, what it would need for that:

- ``plan.json``: what decides the arrays' bytes (the mix, the sources' lengths, dtypes, chunking,
  compression, the mixindex version); a journal for anything else is not resumed;
- ``state-N.json``: planning's state at the start of chunk N, written before the chunk is
  handed to a worker;
- ``done-N.json``: the sha256 of each of chunk N's arrays, written once the chunk is on disk and
  every chunk before it is too (so done files always form a prefix).

The journal is removed before the index is published. A build run with ``resume`` adopts the
folder of a dead build of the same OUT (:func:`adopt_leftover`: renamed to its own name, so that
no other build removes or adopts it meanwhile), re-reads the chunks the journal lists as done,
checks each against its recorded digests, and plans on from the first chunk it does not keep.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mixindex.store.layout import ARRAYS
from mixindex.store.publish import dead_temp_folders, tmp_path

__all__ = ["RESUME", "Journal", "adopt_leftover"]

RESUME = "resume"


def _write(path: Path, doc: Any) -> None:
    """Write JSON whole or not at all: a file cut by a kill must not read as a record."""
    part = path.with_name(path.name + ".part")
    part.write_text(json.dumps(doc, separators=(",", ":")), encoding="utf-8")
    os.replace(part, path)


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


class Journal:
    """The ``resume/`` folder of one temporary index folder."""

    def __init__(self, folder: Path) -> None:
        self.dir = folder / RESUME

    def start(self, identity: Mapping[str, Any]) -> None:
        self.dir.mkdir(exist_ok=True)
        _write(self.dir / "plan.json", identity)

    def identity(self) -> Any:
        """What the journalled build was building (None if unreadable)."""
        return _read(self.dir / "plan.json")

    def begin(self, chunk: int, state: Mapping[str, Any]) -> None:
        _write(self.dir / f"state-{chunk:08d}.json", state)

    def done(self, chunk: int, digests: Mapping[str, bytes]) -> None:
        _write(self.dir / f"done-{chunk:08d}.json", {n: d.hex() for n, d in digests.items()})

    def state(self, chunk: int) -> Any:
        return _read(self.dir / f"state-{chunk:08d}.json")

    def kept(self) -> list[dict[str, bytes]]:
        """The digests of the chunks recorded as done, from chunk 0 to the first gap."""
        out: list[dict[str, bytes]] = []
        while True:
            doc = _read(self.dir / f"done-{len(out):08d}.json")
            try:
                out.append({n: bytes.fromhex(doc[n]) for n in ARRAYS})
            except (TypeError, KeyError, ValueError):
                return out

    def forget_from(self, chunk: int) -> None:
        """Drop the records of chunk ``chunk`` and later (they are written again)."""
        for path in self.dir.glob("*-*.json*"):
            stem = path.name.split(".", 1)[0]
            number = stem.rsplit("-", 1)[-1]
            if number.isdigit() and int(number) >= chunk:
                path.unlink(missing_ok=True)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def adopt_leftover(out: Path) -> Path | None:
    """Take over the most recent temporary folder that a dead build of ``out`` left with a
    journal: it is renamed to this process's temporary name, which is returned (None: none)."""
    found = [p for p in dead_temp_folders(out) if (p / RESUME / "plan.json").is_file()]
    found.sort(key=lambda p: (p / RESUME).stat().st_mtime, reverse=True)
    mine = tmp_path(out)
    for path in found:
        try:
            os.rename(path, mine)
        except OSError:
            continue  # taken by another build meanwhile
        return mine
    return None
