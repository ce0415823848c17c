"""``mixindex build``: spec -> sources -> planner -> store, with progress.

>>> from mixindex import build
>>> build("mix.toml", "new.mixindex").name
'new.mixindex'
"""

from __future__ import annotations

import platform
import sys
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mixindex.plan.planner import ChunkTask, PlanInputs, Planner
from mixindex.sources import open_source
from mixindex.sources.convert import PendingSource
from mixindex.spec.config import PipelineConfig, load_spec
from mixindex.store.output import (
    check_existing,
    check_free_space,
    check_output_path,
    estimate_bytes,
    protected_paths,
)
from mixindex.store.publish import clean_leftovers, termination_guard
from mixindex.store.remote import IndexUrl, is_url
from mixindex.store.writer import IndexWriter


def _progress(total: int, quiet: bool) -> Any:
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
    storage_options: dict[str, Any] | None = None,
) -> Path | IndexUrl:
    """Plan the mix described by ``spec`` and store it at ``out``; returns the index path.

    Nothing is left at ``out`` (or beside it) if anything fails, SIGTERM included (it raises
    :class:`~mixindex.store.publish.BuildTerminated` once cleanup is done). ``force`` replaces
    only an existing index; an output that overlaps the spec, the sources, the cache or the current
    folder, or that would not fit on its disk, is refused before any work. ``cache_dir``
    converts every Parquet source into an Arrow IPC cache there (fast random rows); a dataset
    with ``cache = "arrow"`` is converted even without it, into the default cache folder.
    ``out`` may be a URL (``s3://bucket/mix.mixindex``, see :mod:`mixindex.store.remote`);
    ``storage_options`` are then passed to its fsspec filesystem.
    """
    with termination_guard():
        if is_url(out):
            # Built in a local temporary folder, then uploaded and published atomically.
            from mixindex.store.remote import build_remote

            def build_local(local: Path) -> Path:
                return _build(
                    spec,
                    local,
                    force=False,
                    quiet=quiet,
                    chunk_blocks=chunk_blocks,
                    compress=compress,
                    deep_fingerprint=deep_fingerprint,
                    cache_dir=cache_dir,
                )

            return build_remote(str(out), build_local, force=force, storage_options=storage_options)
        return _build(
            spec,
            Path(out),
            force=force,
            quiet=quiet,
            chunk_blocks=chunk_blocks,
            compress=compress,
            deep_fingerprint=deep_fingerprint,
            cache_dir=cache_dir,
        )


def plan_inputs(config: PipelineConfig, lengths: Sequence[int]) -> PlanInputs:
    """What the plan depends on (S6): the spec's mix, in source order, and the sources' lengths."""
    mix = config.mix
    return PlanInputs(
        names=config.names,
        lengths=tuple(int(n) for n in lengths),
        scheduler=config.scheduler(),
        block_size=mix.block_size,
        seed=mix.seed,
        stop=mix.stop_strategy,
        num_examples=mix.num_examples,
        row_order=mix.row_order,
    )


def _sized_planner(
    config: PipelineConfig,
    lengths: list[int],
    chunk_blocks: int | None,
    out: Path,
    compress: bool,
) -> Planner:
    """The planner, once the index it will write is known to fit on the output's disk."""
    planner = Planner(plan_inputs(config, lengths), chunk_blocks)
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
) -> Path:
    config = spec if isinstance(spec, PipelineConfig) else load_spec(spec)
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
        clean_leftovers(out)
        check_existing(out, force)
        # The plan's bounds and dtypes need only the row counts (a cache has the same rows), so
        # an index too big for the disk is refused before any conversion or write. Text files
        # and streams have no row count before their conversion: they are sized after it.
        planner = None
        if not any(isinstance(s, PendingSource) for s in sources):
            planner = _sized_planner(config, [len(s) for s in sources], chunk_blocks, out, compress)
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
            planner = _sized_planner(config, lengths, chunk_blocks, out, compress)
        if deep_fingerprint:
            for rec, src in zip(records, sources, strict=True):
                rec["content_hash"] = src.fingerprint(deep=True)
    finally:
        for src in sources:
            src.close()
    with (
        IndexWriter(
            out,
            dtypes=planner.dtypes,
            num_sources=len(records),
            chunk_blocks=planner.chunk_blocks,
            block_size=config.mix.block_size,
            # Sized by the tighter bound: zarr's resize at commit visits every chunk between the
            # final length and the shape, which for a far schedule point would be billions.
            length_bound=planner.size_bound,
            force=force,
            compress=compress,
        ) as writer,
        _progress(planner.size_bound, quiet) as bar,
    ):
        # Counting blocks is sequential; turning counts into positions and writing them is not.
        # One background thread does the latter (numpy and file writes release the GIL) while
        # this thread counts the next chunk. Writes stay in order: there is one writer thread.
        def write(task: ChunkTask) -> int:
            chunk = planner.materialize(task)
            writer.write_chunk(
                chunk.start,
                {
                    "source": chunk.source,
                    "row": chunk.row,
                    "epoch": chunk.epoch,
                    "counts": chunk.counts,
                    "cursors": chunk.cursors,
                },
                chunk.first_block,
            )
            return len(chunk.source)

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mixindex-write") as pool:
            pending: deque[Future[int]] = deque()
            try:
                for task in planner.tasks():
                    pending.append(pool.submit(write, task))
                    while len(pending) > 2 or (pending and pending[0].done()):
                        bar.update(pending.popleft().result())
                while pending:
                    bar.update(pending.popleft().result())
            except BaseException:
                for future in pending:
                    future.cancel()
                raise
        from mixindex import __version__

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
            }
        )
    return out
