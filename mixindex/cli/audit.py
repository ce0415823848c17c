"""The audit commands of the ``mixindex`` CLI: audit, report, where, plot, verify, diff.

Thin like the rest of the CLI: parse, call :mod:`mixindex.audit.sql`,
:mod:`mixindex.audit.report`, :mod:`mixindex.audit.verify` or :mod:`mixindex.audit.plot`, print.
Errors a user can cause print one line ``error: ...`` and exit with status 2 (``friendly``);
``verify`` and ``diff`` exit with 1 when the index is damaged or the two indexes differ, like
``cmp``.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from mixindex.cli.errors import friendly, stoppable

__all__ = ["COMMANDS"]

F = TypeVar("F", bound=Callable[..., Any])


def _checked_limits(memory_limit: str, temp_limit: str, timeout: str | None) -> dict[str, Any]:
    from mixindex.audit.sandbox import check_size, check_timeout

    return {
        "memory_limit": check_size(memory_limit, "--memory-limit"),
        "temp_limit": check_size(temp_limit, "--temp-limit", zero_ok=True),
        "timeout": check_timeout(timeout, "--timeout"),
    }


def limit_options(func: F) -> F:
    """--memory-limit, --temp-limit and --timeout, checked into the keyword ``limits``."""
    from mixindex.audit.sandbox import DEFAULT_MEMORY_LIMIT, DEFAULT_TEMP_LIMIT

    @functools.wraps(func)
    def wrapper(
        *args: Any, memory_limit: str, temp_limit: str, timeout: str | None, **kwargs: Any
    ) -> Any:
        limits = friendly(_checked_limits)(memory_limit, temp_limit, timeout)
        return func(*args, limits=limits, **kwargs)

    options = [
        click.option(
            "--memory-limit",
            default=DEFAULT_MEMORY_LIMIT,
            show_default=True,
            help="Memory DuckDB may use (e.g. 512MB, 4GB); beyond it, it spills.",
        ),
        click.option(
            "--temp-limit",
            default=DEFAULT_TEMP_LIMIT,
            show_default=True,
            help="Disk DuckDB may spill to, in a private temporary folder removed afterwards "
            "($TMPDIR or /tmp); 0B: no spilling.",
        ),
        click.option(
            "--timeout",
            metavar="SECONDS",
            help="Stop the query after SECONDS (exit status 2).  [default: no limit]",
        ),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper  # type: ignore[return-value]


def _atomic_out(path: str) -> Path:
    """A temporary sibling of ``path``, renamed over it once written: a failed query leaves
    no half-written file behind."""
    out = Path(path)
    if not out.parent.is_dir():
        from mixindex.errors import QueryError

        raise QueryError(f"the folder of {path!r} does not exist; create it first")
    return out.with_name(f".{out.name}.tmp-{os.getpid()}")


@click.command(short_help="Query INDEX with DuckDB SQL.")
@click.argument("index", type=click.Path())
@click.argument("sql")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json", "parquet"]),
    default="table",
    show_default=True,
    help="table: aligned text; json: one object per line (JSON Lines).",
)
@click.option("-o", "--out", type=click.Path(dir_okay=False), help="Write the result to FILE.")
@click.option(
    "--max-rows", default=100, show_default=True, help="Rows a table shows (the rest are counted)."
)
@limit_options
@stoppable
@friendly
def audit(
    index: str, sql: str, fmt: str, out: str | None, max_rows: int, limits: dict[str, Any]
) -> None:
    """Run the DuckDB query SQL ('-' reads it from stdin) over the views of INDEX.

    \b
    mix(position, block, source, source_id, row, epoch)   one row per position
    sources(source_id, name, type, data_files, num_rows, fingerprint)
    blocks(block, source, count, target_weight)           one row per block and source
    schedule(step, source, weight)                        the spec's schedule points

    Queries can only read: no file is reachable, and COPY, EXPORT, ATTACH, PRAGMA and
    extensions are refused. Ctrl-C stops a query at once.
    """
    from mixindex.audit.sql import connect, format_table, query, write_result
    from mixindex.errors import QueryError

    if sql == "-":
        sql = sys.stdin.read()
    if fmt == "parquet" and out is None:
        raise QueryError("--format parquet writes a binary file; give it one with -o FILE")
    with connect(index, **limits) as con:
        reader = query(con, sql)
        if fmt == "table":
            text = format_table(reader, max_rows)
            if out is None:
                click.echo(text)
                return
            tmp = _atomic_out(out)
            tmp.write_text(text + "\n", encoding="utf-8")
            os.replace(tmp, out)
            return
        if out is None:
            sys.stdout.flush()
            write_result(reader, fmt, sys.stdout.buffer)
            return
        tmp = _atomic_out(out)
        try:
            rows = write_result(reader, fmt, tmp)
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
    click.echo(f"wrote {rows:,} rows to {out}", err=True)


@click.command(short_help="Shares, coverage, repeats and windows of INDEX.")
@click.argument("index", type=click.Path())
@click.option(
    "--window",
    # Checked by the library, which says what is wrong on one line.
    type=int,
    help="Positions per window (rounded up to whole blocks; default about a tenth of the mix).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@limit_options
@stoppable
@friendly
def report(index: str, window: int | None, as_json: bool, limits: dict[str, Any]) -> None:
    """Per source: target vs. realised share, max dev, epochs, coverage, repeats, first and
    last position; per window of positions: realised vs. target weights.

    max dev is the largest gap, in examples, between a source's cumulative count and its
    cumulative target at any block boundary. That target follows the schedule, except that when
    a source's weight drops to 0 the fraction of an example it was still owed (or had been
    served ahead) is written off: handed to the active sources in proportion to their weights,
    as the planner does. The window targets include these write-offs too.
    """
    from mixindex.audit.report import format_report
    from mixindex.audit.report import report as make_report
    from mixindex.store.index import StoredIndex

    r = make_report(StoredIndex(index), window=window, **limits)
    click.echo(json.dumps(r, indent=2) if as_json else format_report(r))


@click.command(short_help="Positions at which one row of a source is served.")
@click.argument("index", type=click.Path())
@click.option("--source", required=True, help="The source's name.")
@click.option("--row", required=True, type=int, help="The row number within the source.")
@click.option(
    "--global-batch-size",
    type=click.IntRange(min=1),
    help="Also give the global batch (optimizer step) of each position.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
@friendly
def where(index: str, source: str, row: int, global_batch_size: int | None, as_json: bool) -> None:
    """List the positions at which ROW of SOURCE is served."""
    from mixindex.audit.where import format_where
    from mixindex.audit.where import where as find
    from mixindex.store.index import StoredIndex

    w = find(StoredIndex(index), source, row, global_batch_size=global_batch_size)
    click.echo(json.dumps(w, indent=2) if as_json else format_where(w))


@click.command(short_help="Draw target vs. realised weights and epochs.")
@click.argument("index", type=click.Path())
@click.option(
    "-o", "--out", required=True, type=click.Path(dir_okay=False), help="Image file (.png, .svg)."
)
@click.option(
    "--global-batch-size",
    type=click.IntRange(min=1),
    help="Add an axis in optimizer steps of this many examples.",
)
@click.option(
    "--windows", default=400, show_default=True, type=click.IntRange(min=1), help="Bars at most."
)
@friendly
def plot(index: str, out: str, global_batch_size: int | None, windows: int) -> None:
    """Draw target vs. realised weights over positions (stacked) and epochs per source.

    Needs matplotlib: pip install -e '.[plot]' in a checkout, or pip install matplotlib.
    """
    from mixindex.audit.plot import plot as draw
    from mixindex.store.index import StoredIndex

    draw(StoredIndex(index), out, global_batch_size=global_batch_size, windows=windows)
    click.echo(f"wrote {out}", err=True)


@click.command(short_help="Check INDEX against its digests and its sources.")
@click.argument("index", type=click.Path())
@click.option("--deep", is_flag=True, help="Also re-hash every byte of every source (slow).")
@friendly
def verify(index: str, deep: bool) -> None:
    """Check INDEX's arrays against their digests and its sources against their fingerprints.

    Exit status 0 when everything holds, 1 with one line per problem otherwise.
    """
    from mixindex.audit.verify import verify as check

    result = check(index, deep=deep)
    for line in result.problems:
        click.echo(line)
    for note in result.notes:
        click.echo(f"note: {note}")
    if not result.ok:
        sys.exit(1)
    click.echo(
        f"ok: {result.path}: {result.chunks} chunks match their digests, the tables agree with "
        f"the positions, {result.sources} sources match their fingerprints"
    )


@click.command(short_help="Compare two indexes position by position.")
@click.argument("a", type=click.Path())
@click.argument("b", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@friendly
def diff(a: str, b: str, as_json: bool) -> None:
    """Compare two indexes: equal or not, the first position where they differ, and per
    source the change in realised share. Exit status 0 if equal, 1 if not."""
    from mixindex.audit.diff import diff as compare
    from mixindex.audit.diff import format_diff
    from mixindex.store.index import StoredIndex

    d = compare(StoredIndex(a), StoredIndex(b))
    click.echo(json.dumps(d, indent=2) if as_json else format_diff(d))
    if not d["equal"]:
        sys.exit(1)


COMMANDS = [audit, report, where, plot, verify, diff]
