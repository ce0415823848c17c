"""``mixindex extend``: grow a ``restart`` index to more positions without planning its first
ones again.

A mix is a prefix of any longer mix with the same spec (S6), so an index of N positions holds
the first N of the index of M > N. Its chunks before the last one are copied (checked against
their recorded digests, and cast where the longer mix needs wider dtypes); planning goes on from
the state recorded at the last chunk's start (``plan_state``). The result is the index a fresh
build with ``num_examples = M`` writes, byte for byte, with the same digest; it replaces the old
one atomically, as ``build --force`` does.
"""

from __future__ import annotations

import hashlib
import os
import platform
import time
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import numpy as np

from mixindex.builder import plan_state_attr, progress_bar
from mixindex.errors import IndexFormatError, PlanError
from mixindex.plan.planner import PlanInputs, Planner
from mixindex.plan.state import PlanState
from mixindex.spec.config import StopStrategy
from mixindex.store.index import StoredIndex
from mixindex.store.layout import ARRAYS, POSITION_ARRAYS
from mixindex.store.output import check_free_space, estimate_bytes
from mixindex.store.publish import clean_leftovers, termination_guard
from mixindex.store.writer import IndexWriter
from mixindex.workers import ChunkJob, run_chunks

__all__ = ["extend"]


def extend(
    index: str | Path,
    num_examples: int,
    *,
    quiet: bool = True,
    executor: Executor | None = None,
) -> Path:
    """Grow the ``restart`` index at ``index`` to ``num_examples`` positions; returns its path.

    Raises PlanError for an index that cannot grow so (another stop strategy, a length that is
    not larger, an index without a recorded plan state) and IndexFormatError for a path that is
    not a readable index; nothing is written then.
    """
    out = Path(index)
    with termination_guard():
        old = _open(out)
        try:
            return _extend(old, out, num_examples, quiet, executor)
        finally:
            old.close()


def _open(out: Path) -> StoredIndex:
    if not os.path.lexists(out):
        raise IndexFormatError(f"{str(out)!r} does not exist; build the index first")
    return StoredIndex(out)


def _check(old: StoredIndex, out: Path, m: int) -> PlanState:
    meta = old.meta
    if meta.mix.stop_strategy is not StopStrategy.RESTART:
        raise PlanError(
            f"{str(out)!r} has stop_strategy {meta.mix.stop_strategy.value!r}, so it ends where "
            "its sources do; only a restart mix can be extended (build a longer spec instead)"
        )
    if isinstance(m, bool) or not isinstance(m, int) or m <= meta.num_examples:
        raise PlanError(
            f"--num-examples {m!r} must be larger than the index's {meta.num_examples} "
            "positions; give the new, larger length"
        )
    try:
        return PlanState.from_json(meta.extra["plan_state"], meta.num_sources)
    except (KeyError, ValueError):
        raise PlanError(
            f"{str(out)!r} does not record where its plan ended (built by an older mixindex); "
            f"rebuild it with num_examples = {m}"
        ) from None


def _extend(old: StoredIndex, out: Path, m: int, quiet: bool, executor: Executor | None) -> Path:
    from mixindex import __version__

    state = _check(old, out, m)
    clean_leftovers(out)
    meta = old.meta
    inputs = PlanInputs(
        names=meta.names,
        lengths=tuple(s.num_rows for s in meta.sources),
        scheduler=meta.scheduler(),
        block_size=meta.block_size,
        seed=meta.mix.seed,
        stop=meta.mix.stop_strategy,
        num_examples=m,
        row_order=meta.mix.row_order,
    )
    # A fresh build chunks the longer mix as the shorter one unless that had a single chunk;
    # then planning starts over (at most one chunk of work).
    planner = Planner(inputs, meta.chunk_blocks if state.block else None)
    if state.block % planner.chunk_blocks:
        raise PlanError(f"{str(out)!r} records a plan state off its chunking; rebuild the index")
    compress = not old.arrays["row"].raw
    if not compress:
        b = meta.block_size
        k = meta.num_sources
        need = estimate_bytes(
            length_bound=m,
            block_size=b,
            chunk_blocks=planner.chunk_blocks,
            num_sources=k,
            dtypes=planner.dtypes,
        )
        check_free_space(out, need, m)
    spec = meta.spec.to_dict()
    spec["mix"]["num_examples"] = m
    started = time.perf_counter()
    with (
        IndexWriter(
            out,
            dtypes=planner.dtypes,
            num_sources=meta.num_sources,
            chunk_blocks=planner.chunk_blocks,
            block_size=meta.block_size,
            length_bound=m,
            force=True,
            compress=compress,
        ) as writer,
        progress_bar(m, quiet) as bar,
    ):
        _copy(old, writer, state.block // planner.chunk_blocks, bar.update)
        job = ChunkJob(planner, writer.regions)
        last = run_chunks(planner.tasks(state), job, writer, executor, bar.update)
        old.close()
        writer.commit(
            {
                "spec": spec,
                "sources": [s.to_dict() for s in meta.sources],
                "build": {
                    "mixindex_version": __version__,
                    "python": platform.python_version(),
                    "seconds": round(time.perf_counter() - started, 3),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "extended_from": meta.num_examples,
                },
                **plan_state_attr(planner, last),
            }
        )
    return out


def _copy(old: StoredIndex, writer: IndexWriter, chunks: int, progress: Any) -> None:
    """The first ``chunks`` chunks of ``old``, each checked against its recorded digests."""
    if not chunks:
        return
    recorded = old.chunk_digests().read(0, chunks)
    for i in range(chunks):
        arrays = {name: old.arrays[name].load(i) for name in ARRAYS}
        for j, name in enumerate(ARRAYS):
            data = np.ascontiguousarray(arrays[name])
            if hashlib.sha256(data.data).digest() != bytes(recorded[i, j]):
                raise IndexFormatError(
                    f"{str(old.arrays[name].chunk_path(i))!r} does not match its recorded "
                    "digest; check the index with 'mixindex verify' and rebuild it"
                )
        cast = {name: np.asarray(arrays[name], dtype=writer.dtypes[name]) for name in ARRAYS}
        writer.write_chunk(i * writer.chunk_positions, cast, i * writer.chunk_blocks)
        progress(len(cast[POSITION_ARRAYS[0]]))
