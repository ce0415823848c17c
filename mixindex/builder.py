"""``mixindex build``: spec -> sources -> planner -> store, with progress.

>>> from mixindex import build
>>> build("mix.toml", "new.mixindex").name
'new.mixindex'
"""

from __future__ import annotations

import functools
import platform
import sys
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from mixindex.plan.planner import PlanInputs, Planner
from mixindex.plan.state import PlanState
from mixindex.sources import open_source
from mixindex.sources.base import row_groups
from mixindex.sources.convert import PendingSource
from mixindex.spec.config import PipelineConfig, StopStrategy, check_finite, load_spec
from mixindex.store.layout import FORMAT_VERSION
from mixindex.store.output import (
    check_existing,
    check_free_space,
    check_output_path,
    estimate_bytes,
    protected_paths,
)
from mixindex.store.publish import clean_leftovers, termination_guard
from mixindex.store.remote import IndexUrl, is_url
from mixindex.store.resume import adopt_leftover
from mixindex.store.writer import IndexWriter
from mixindex.workers import ChunkJob, run_chunks


def progress_bar(total: int, quiet: bool) -> Any:
    """A tqdm bar on stderr, off when ``quiet`` or when stderr is not a terminal."""
    from tqdm import tqdm

    disable = quiet or not sys.stderr.isatty()
    return tqdm(
        total=total, unit="ex", unit_scale=True, desc="planning", disable=disable, leave=False
    )


def build(
    spec: PipelineConfig | str | Path,
    out: str | Path,
    *,
    force: bool = False,
    quiet: bool = True,
    chunk_blocks: int | None = None,
    compress: bool = False,
    deep_fingerprint: bool = False,
    cache_dir: str | Path | None = None,
    executor: Executor | None = None,
    resume: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> Path | IndexUrl:
    """Plan the mix described by ``spec`` and store it at ``out``; returns the index path.

    Nothing is left at ``out`` (or beside it) if anything fails, SIGTERM included (it raises
    :class:`~mixindex.store.publish.BuildTerminated` once cleanup is done). ``force`` replaces
    only an existing index; an output that overlaps the spec, the sources, the cache or the current
    folder, or that would not fit on its disk, is refused before any work. ``cache_dir``
    converts every Parquet source into an Arrow IPC cache there (fast random rows); a dataset
    with ``cache = "arrow"`` is converted even without it, into the default cache folder.

    Chunks are planned and written on ``executor`` (any ``concurrent.futures.Executor``; by
    default a thread per core); the index is the same, byte for byte, whatever it is. ``resume``
    goes on from the last chunk that a killed build of the same spec and ``out`` completed
    (a fresh build where there is none).
    ``out`` may be a URL (``s3://bucket/mix.mixindex``, see :mod:`mixindex.store.remote`);
    ``storage_options`` are then passed to its fsspec filesystem.
    """
    with termination_guard():
        build_at = functools.partial(
            _build,
            spec,
            quiet=quiet,
            chunk_blocks=chunk_blocks,
            compress=compress,
            deep_fingerprint=deep_fingerprint,
            cache_dir=cache_dir,
            executor=executor,
        )
        if is_url(out):
            # Built in a local temporary folder, then uploaded and published atomically.
            from mixindex.store.remote import build_remote

            def build_local(local: Path) -> Path:
                return build_at(local, force=False, resume=False)

            return build_remote(str(out), build_local, force=force, storage_options=storage_options)
        return build_at(Path(out), force=force, resume=resume)


def plan_inputs(
    config: PipelineConfig,
    lengths: Sequence[int],
    groups: Sequence[Sequence[int]] | None = None,
) -> PlanInputs:
    """What the plan depends on (S6): the spec's mix, in source order, the sources' lengths and,
    for ``grouped`` row order, their row groups (rows per group; see ``row_groups``)."""
    mix = config.mix
    grouped = mix.row_order == "grouped" and groups is not None
    return PlanInputs(
        names=config.names,
        lengths=tuple(int(n) for n in lengths),
        scheduler=config.scheduler(),
        block_size=mix.block_size,
        seed=mix.seed,
        stop=mix.stop_strategy,
        num_examples=mix.num_examples,
        row_order=mix.row_order,
        groups=tuple(tuple(int(n) for n in g) for g in groups or ()) if grouped else None,
    )


def _sized_planner(
    config: PipelineConfig,
    lengths: list[int],
    groups: list[tuple[int, ...]],
    chunk_blocks: int | None,
    out: Path,
    compress: bool,
) -> Planner:
    """The planner, once the index it will write is known to fit on the output's disk."""
    planner = Planner(plan_inputs(config, lengths, groups), chunk_blocks)
    if not compress:
        # Compressed sizes are known only after writing; an uncompressed index's is now.
        needed = estimate_bytes(
            length_bound=planner.size_bound,
            block_size=config.mix.block_size,
            chunk_blocks=planner.chunk_blocks,
            num_sources=len(lengths),
            dtypes=planner.dtypes,
        )
        check_free_space(out, needed, planner.size_bound)
    return planner


def _build(
    spec: PipelineConfig | str | Path,
    out: Path,
    *,
    force: bool,
    quiet: bool,
    chunk_blocks: int | None,
    compress: bool,
    deep_fingerprint: bool,
    cache_dir: str | Path | None,
    executor: Executor | None,
    resume: bool,
) -> Path:
    config = spec if isinstance(spec, PipelineConfig) else load_spec(spec)
    check_finite(config)  # a Python PipelineConfig may stream forever; an index cannot
    started = time.perf_counter()
    sources = [open_source(d, config.base_dir) for d in config.datasets]
    from mixindex.sources.cache import default_cache_dir
    from mixindex.sources.prepare import cache_sources

    # ---- where the index goes: refused before any work if it could hurt what is on disk ----
    caching = cache_dir is not None or any(d.cache == "arrow" for d in config.datasets)
    protected = protected_paths(
        base_dir=config.base_dir,
        spec_file=None if isinstance(spec, PipelineConfig) else Path(spec),
        datasets=config.datasets,
        sources=sources,
        cache_dir=Path(cache_dir or default_cache_dir()) if caching else None,
    )
    try:
        check_output_path(out, protected)
        # A resumed build takes over a dead build's folder before the others are cleaned.
        adopted = adopt_leftover(out) if resume else None
        clean_leftovers(out)
        check_existing(out, force)
        # The plan's bounds and dtypes need only the row counts (a cache has the same rows), so
        # an index too big for the disk is refused before any conversion or write. Text files
        # and streams have no row count before their conversion: they are sized after it.
        planner = None
        # Row groups of the sources as given (a Parquet source's, not its Arrow cache's: the
        # fingerprint covers those); a source converted below gets its converted groups.
        groups = [row_groups(s) for s in sources]
        if not any(isinstance(s, PendingSource) for s in sources):
            lengths = [len(s) for s in sources]
            planner = _sized_planner(config, lengths, groups, chunk_blocks, out, compress)
    except BaseException:
        for src in sources:
            src.close()
        raise
    # ---- Parquet -> Arrow IPC cache (mixindex/sources/cache.py) -------------------------------
    # Where a dataset says cache = "arrow", or cache_dir is given, a Parquet source is replaced by
    # its Arrow cache: the record points at the cache files and keeps the Parquet fingerprint.
    sources, records = cache_sources(config.datasets, sources, cache_dir)
    # ---- end of the cache step ---------------------------------------------------------------
    try:
        if planner is None:
            lengths = [int(r["num_rows"]) for r in records]
            groups = [g or row_groups(s) for g, s in zip(groups, sources, strict=True)]
            planner = _sized_planner(config, lengths, groups, chunk_blocks, out, compress)
        if planner.inputs.groups is not None:
            for rec, g in zip(records, planner.inputs.groups, strict=True):
                rec["row_groups"] = list(g)
        if deep_fingerprint:
            for rec, src in zip(records, sources, strict=True):
                rec["content_hash"] = src.fingerprint(deep=True)
    finally:
        for src in sources:
            src.close()
    from mixindex import __version__

    with (
        IndexWriter(
            out,
            dtypes=planner.dtypes,
            num_sources=len(records),
            chunk_blocks=planner.chunk_blocks,
            block_size=config.mix.block_size,
            # The arrays' length until commit gives them the mix's own: the tighter bound (the
            # loose one may lie billions past the end, at a far schedule point).
            length_bound=planner.size_bound,
            force=force,
            compress=compress,
            identity=_identity(config, planner, compress, __version__),
            adopt=adopted is not None,
        ) as writer,
        progress_bar(planner.size_bound, quiet) as bar,
    ):
        begin = _resumed(writer, planner, out, quiet) if writer.adopted else None
        if adopted is not None and not writer.adopted:
            _say(
                f"the killed build of {str(out)!r} was of another spec, chunking or mixindex "
                "version; building from the start",
                quiet,
            )
        bar.update(writer.length)
        job = ChunkJob(planner, writer.regions)
        last = run_chunks(planner.tasks(begin), job, writer, executor, bar.update)
        writer.commit(
            {
                "spec": config.to_dict(),
                "sources": records,
                "build": {
                    "mixindex_version": __version__,
                    "python": platform.python_version(),
                    "seconds": round(time.perf_counter() - started, 3),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                },
                **plan_state_attr(planner, last),
            }
        )
    return out


def plan_state_attr(planner: Planner, last: Any) -> dict[str, Any]:
    """``plan_state``: planning's state at the last chunk's start, which ``mixindex extend``
    goes on from (a ``restart`` mix only: the others end by themselves)."""
    if planner.inputs.stop is not StopStrategy.RESTART or last is None or last.begin is None:
        return {}
    return {"plan_state": last.begin.to_json()}


def _identity(
    config: PipelineConfig, planner: Planner, compress: bool, version: str
) -> dict[str, Any]:
    """What decides the arrays' bytes: a killed build is resumed only if all of it is the same."""
    return {
        "mixindex": version,
        "format_version": FORMAT_VERSION,
        "mix": config.to_dict()["mix"],
        "names": list(planner.inputs.names),
        "lengths": list(planner.inputs.lengths),
        "dtypes": {n: d.str for n, d in planner.dtypes.items()},
        "chunk_blocks": planner.chunk_blocks,
        "length_bound": planner.size_bound,
        "compress": compress,
    }


def _resumed(writer: IndexWriter, planner: Planner, out: Path, quiet: bool) -> PlanState | None:
    """Keep what the adopted folder holds that checks out; the state to plan on from."""
    doc = writer.resume()
    begin = None
    if doc is not None:
        try:
            begin = PlanState.from_json(doc, planner.inputs.num_sources)
        except ValueError:
            begin = None
    if begin is None or begin.block * planner.inputs.block_size != writer.length:
        begin = None
        writer.reset()
    _say(
        f"resuming the build of {str(out)!r}: {writer.length:,} positions kept (checked "
        "against their digests)",
        quiet,
    )
    return begin


def _say(message: str, quiet: bool) -> None:
    if not quiet:
        print(f"mixindex: {message}", file=sys.stderr, flush=True)
