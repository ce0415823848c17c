"""``python stalled.py START FLAG ARGS...`` runs ``mixindex ARGS...`` as ``python -m mixindex.cli``
does, except that the worker given the chunk from position START creates the file FLAG and waits
there for ever, before writing anything; the other workers go on. The build's journal then stops
at that chunk, so a test can kill the process at a known point, on a fast machine or a loaded one.
"""

from __future__ import annotations

import runpy
import sys
import threading
from pathlib import Path
from typing import Any

from mixindex.store.writer import RegionWriter


def stall_at(position: int, flag: Path) -> None:
    real = RegionWriter.write

    def write(self: RegionWriter, start: int, first_block: int, arrays: Any) -> Any:
        if start == position:
            flag.touch()
            threading.Event().wait()
        return real(self, start, first_block, arrays)

    RegionWriter.write = write  # type: ignore[method-assign]


if __name__ == "__main__":
    stall_at(int(sys.argv[1]), Path(sys.argv[2]))
    sys.argv = ["mixindex", *sys.argv[3:]]
    runpy.run_module("mixindex.cli", run_name="__main__", alter_sys=True)
