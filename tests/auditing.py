"""Helpers shared by the audit tests: the CLI runner, one-line error checks, and the index's
arrays read back with zarr itself (not mixindex's memory-mapped reader), so answers are
compared against an independent reading."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from click.testing import CliRunner, Result

from mixindex.cli import main


def run(*args: Any, input: str | None = None) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def assert_ok(result: Result) -> None:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert result.exception is None
    assert "Traceback" not in result.output


def assert_one_line_error(result: Result, *mentions: str) -> str:
    """Exit status 2, nothing on stdout, one line ``error: ...`` on stderr naming the problem."""
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("error: ")
    for m in mentions:
        assert m in line, f"{m!r} not in {line!r}"
    return line


@dataclass
class Arrays:
    """An index as zarr reads it."""

    source: np.ndarray
    row: np.ndarray
    epoch: np.ndarray
    counts: np.ndarray
    names: list[str]
    num_rows: list[int]
    block_size: int

    @property
    def n(self) -> int:
        return len(self.source)


def read_arrays(path: Path) -> Arrays:
    group = zarr.open_group(str(path), mode="r")
    meta = dict(group.attrs)["mixindex"]
    return Arrays(
        source=np.asarray(group["source"][:]).astype(np.int64),
        row=np.asarray(group["row"][:]).astype(np.int64),
        epoch=np.asarray(group["epoch"][:]).astype(np.int64),
        counts=np.asarray(group["counts"][:]).astype(np.int64),
        names=[s["name"] for s in meta["sources"]],
        num_rows=[s["num_rows"] for s in meta["sources"]],
        block_size=int(meta["block_size"]),
    )
