"""The build side of the command line: ``build``, ``inspect`` and ``show``.

Thin: parse, call the library, print. Errors a user can cause print one line (``friendly``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, NoReturn

import click

from mixindex.cli.errors import friendly

if TYPE_CHECKING:
    from concurrent.futures import Executor
    from pathlib import Path

    from mixindex.errors import BuildTerminated

# The options by which ``build`` and ``extend`` report their result (each is its own decorator, so
# that ``--help`` keeps listing them where the command puts them).
quiet_option = click.option("--quiet", is_flag=True, help="No progress bar and no summary.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
workers_option = click.option(
    "--workers",
    type=int,
    default=None,
    help="Threads that plan and write the chunks (default: one per core, at most 8); the index "
    "is the same, byte for byte, whatever the number.",
)


@contextmanager
def chunk_threads(workers: int | None) -> Iterator[Executor | None]:
    """The executor that ``--workers`` asks for (None: the library's default)."""
    from concurrent.futures import ThreadPoolExecutor

    from mixindex.errors import MixIndexError

    if workers is None:
        yield None
        return
    if workers < 1:
        raise MixIndexError(
            f"--workers {workers} is not a number of threads; give 1 or more, such as --workers 4"
        )
    with ThreadPoolExecutor(workers, thread_name_prefix="mixindex-chunk") as pool:
        yield pool


def _stopped(exc: BuildTerminated, line: str) -> NoReturn:
    """Exit with ``line`` on stderr and the status of the signal that stopped the work."""
    click.echo(f"error: {line}", err=True)
    sys.exit(128 + exc.signum)


def _summary(path: str | Path, quiet: bool, as_json: bool) -> None:
    """The new index's summary: as JSON, as text, or nothing (``--quiet``)."""
    from mixindex.audit.summary import format_summary, summarize
    from mixindex.store.index import StoredIndex

    if as_json:
        click.echo(json.dumps(summarize(StoredIndex(path)), indent=2))
    elif not quiet:
        click.echo(format_summary(summarize(StoredIndex(path))))


@click.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(), help="Where to write the index.")
@click.option(
    "--force",
    is_flag=True,
    help="Replace OUT if it is a mixindex index (nothing else is replaced).",
)
@quiet_option
@click.option("--compress", is_flag=True, help="zstd-compress the arrays (smaller, slower reads).")
@click.option("--deep", is_flag=True, help="Also hash every byte of every source (slow).")
@json_option
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Convert every Parquet source into an Arrow IPC cache here (fast random rows); "
    'datasets with cache = "arrow" use it too.',
)
@click.option(
    "--resume",
    is_flag=True,
    help="Go on from the last complete chunk of a build of OUT that was killed (same spec); "
    "a fresh build where there is none.",
)
@workers_option
@click.option("--chunk-blocks", type=click.IntRange(min=1), default=None, hidden=True)
@friendly
def build(
    spec: str,
    out: str,
    force: bool,
    quiet: bool,
    compress: bool,
    deep: bool,
    as_json: bool,
    cache_dir: str | None,
    resume: bool,
    workers: int | None,
    chunk_blocks: int | None,
) -> None:
    """Plan the mix described by SPEC (TOML, YAML or JSON) into the index OUT."""
    from mixindex.builder import build as build_index
    from mixindex.errors import BuildTerminated

    try:
        with chunk_threads(workers) as pool:
            path = build_index(
                spec,
                out,
                force=force,
                quiet=quiet,
                compress=compress,
                deep_fingerprint=deep,
                cache_dir=cache_dir,
                executor=pool,
                resume=resume,
                chunk_blocks=chunk_blocks,
            )
    except BuildTerminated as exc:
        _stopped(
            exc,
            f"the build was stopped by {exc.name}; {out!r} was left as it was and the build's "
            "temporary files were removed",
        )
    _summary(path, quiet, as_json)


@click.command()
@click.argument("index", type=click.Path())
@click.option(
    "--num-examples",
    "-n",
    required=True,
    type=int,
    help="The new length: more than the index has.",
)
@quiet_option
@json_option
@workers_option
@friendly
def extend(index: str, num_examples: int, quiet: bool, as_json: bool, workers: int | None) -> None:
    """Grow the restart mix INDEX to NUM_EXAMPLES positions, without planning its first ones
    again: the result is what a fresh build of the longer mix writes, byte for byte."""
    from mixindex.errors import BuildTerminated
    from mixindex.extender import extend as extend_index

    try:
        with chunk_threads(workers) as pool:
            path = extend_index(index, num_examples, quiet=quiet, executor=pool)
    except BuildTerminated as exc:
        _stopped(
            exc,
            f"extending was stopped by {exc.name}; {index!r} was left as it was and the "
            "temporary files were removed",
        )
    _summary(path, quiet, as_json)


@click.command()
@click.argument("index", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@friendly
def inspect(index: str, as_json: bool) -> None:
    """Summarise a built INDEX: length, blocks, per source target vs. realised share."""
    from mixindex.audit.summary import format_summary, summarize
    from mixindex.store.index import StoredIndex

    summary = summarize(StoredIndex(index))
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(format_summary(summary))


# Unknown options pass through as arguments, so that a negative POSITION such as -1 is not
# taken for an option (click would answer "No such option: -1").
@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("index", type=click.Path())
@click.argument("position", type=int)
@click.option(
    "-n", "--count", default=1, show_default=True, help="How many examples from POSITION."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--no-verify", is_flag=True, help="Do not check the sources' fingerprints.")
@click.option("--width", default=100, show_default=True, help="Cut long values to this width.")
@friendly
def show(index: str, position: int, count: int, as_json: bool, no_verify: bool, width: int) -> None:
    """Print the examples at POSITION (negative counts from the end) and after it."""
    import numpy as np

    from mixindex.read.dataset import open as open_index

    if count < 1:
        raise click.BadParameter(f"--count {count} must be >= 1", param_hint="--count")
    ds = open_index(index, verify=not no_verify)
    n = len(ds)
    start = position + n if position < 0 else position
    if not 0 <= start < n:
        click.echo(
            f"error: position {position} is out of range for a mix of {n} examples "
            f"(use 0 to {n - 1}, or -1 for the last)",
            err=True,
        )
        sys.exit(2)
    positions = np.arange(start, min(start + count, n))
    source, row, epoch = ds.lookup(positions)
    examples = ds.__getitems__(positions)
    for p, s, r, e, ex in zip(positions, source, row, epoch, examples, strict=True):
        head = {"position": int(p), "source": ds.names[int(s)], "row": int(r), "epoch": int(e)}
        if as_json:
            click.echo(json.dumps({**head, "example": ex}, default=str))
            continue
        click.echo(
            f"position {head['position']}: {head['source']} row {head['row']} epoch {head['epoch']}"
        )
        for key, value in ex.items():
            if key == "__source__":
                continue
            text = " ".join(str(value).split())
            if len(text) > width:
                text = text[: width - 3] + "..."
            click.echo(f"  {key}: {text}")


COMMANDS = [build, extend, inspect, show]
