"""How the tests run the command line: in process with click's CliRunner (exit codes and
messages), or as a real process where a crash, a signal, a hang or a process's memory is the
point. A real process runs this checkout's code (``python -m mixindex.cli`` with ``PYTHONPATH``
set), never whatever ``mixindex`` script is installed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

import mixindex
from mixindex.cli import main

# The environment of a real process: this checkout's package first.
ENV = {**os.environ, "PYTHONPATH": str(Path(mixindex.__file__).resolve().parents[1])}
# Only to keep a broken command from hanging the suite; nothing is timed.
PATIENCE = 300


def run(*args: Any, input: str | None = None) -> Result:
    """``mixindex ARGS...`` in process."""
    return _runner().invoke(main, [str(a) for a in args], input=input)


def _runner() -> CliRunner:
    # click 8.1 mixes stderr into stdout unless told not to; 8.2 keeps them apart and dropped
    # the option (the oldest-versions CI run tests 8.1).
    try:
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:
        return CliRunner()


def command(*args: Any) -> list[str]:
    """The argument list of ``mixindex ARGS...`` as a real process."""
    return [sys.executable, "-m", "mixindex.cli", *(str(a) for a in args)]


def run_process(
    *args: Any, timeout: float = PATIENCE, **popen: Any
) -> subprocess.CompletedProcess[str]:
    """``mixindex ARGS...`` in a real process, to its end; its output captured as text."""
    popen.setdefault("env", ENV)
    return subprocess.run(command(*args), capture_output=True, text=True, timeout=timeout, **popen)


def start(*args: Any, **popen: Any) -> subprocess.Popen[str]:
    """``mixindex ARGS...`` started in a real process; its output piped as text."""
    popen.setdefault("env", ENV)
    return subprocess.Popen(
        command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen
    )


def assert_ok(result: Result) -> None:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert result.exception is None
    assert "Traceback" not in result.output


def assert_one_line_error(result: Result | subprocess.CompletedProcess[str], *mentions: str) -> str:
    """Exit status 2, nothing on stdout, one line ``error: ...`` on stderr naming the problem."""
    code = result.exit_code if isinstance(result, Result) else result.returncode
    assert code == 2, (result.stdout, result.stderr[-2000:])
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr[-2000:]
    line = lines[0]
    assert line.startswith("error: ")
    for m in mentions:
        assert m in line, f"{m!r} not in {line!r}"
    return line
