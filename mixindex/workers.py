"""Chunks on many workers: planning's counts are sequential, the rest of each chunk is not.

The calling thread runs :meth:`Planner.tasks` (cheap: counts and cursors) and hands each task to
an executor, where :class:`ChunkJob` turns it into positions, writes its chunk files and hashes
them. Results are taken back in position order, to feed the whole-array digests, so the bytes and
the digest are the same whatever the executor and its number of workers. Any
``concurrent.futures.Executor`` will do: the default thread pool (numpy, hashing and file writes
release the GIL), a process pool, or a cluster's (``distributed.Client.get_executor()``) whose
workers see the output's folder.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import numpy as np

from mixindex.plan.planner import ChunkTask, Planner
from mixindex.store.writer import IndexWriter, RegionWriter

__all__ = ["ChunkJob", "Written", "default_workers", "run_chunks"]


# Threads by default: one per core, up to this many (each holds a chunk and its temporaries,
# tens of MB; past this, the sequential counts are the limit anyway).
MAX_DEFAULT_WORKERS = 8


def default_workers() -> int:
    """The cores this process may run on, at most :data:`MAX_DEFAULT_WORKERS`."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_DEFAULT_WORKERS))


@dataclass(frozen=True)
class Written:
    """A chunk on disk: its arrays (for the ordered digests) and each array's sha256."""

    start: int
    first_block: int
    arrays: dict[str, np.ndarray]
    digests: dict[str, bytes]


@dataclass(frozen=True)
class ChunkJob:
    """``job(task)``: one chunk's positions, written and hashed (picklable)."""

    planner: Planner
    regions: RegionWriter

    def __call__(self, task: ChunkTask) -> Written:
        chunk = self.planner.materialize(task)
        arrays = {
            "source": chunk.source,
            "row": chunk.row,
            "epoch": chunk.epoch,
            "counts": chunk.counts,
            "cursors": chunk.cursors,
        }
        digests = self.regions.write(chunk.start, chunk.first_block, arrays)
        return Written(chunk.start, chunk.first_block, arrays, digests)


def run_chunks(
    tasks: Iterable[ChunkTask],
    job: Callable[[ChunkTask], Written],
    writer: IndexWriter,
    executor: Executor | None,
    progress: Callable[[int], object],
) -> ChunkTask | None:
    """Run ``tasks`` through ``job`` on ``executor`` (None: a thread per core) and record them in
    ``writer`` in order; returns the last task (None if there was none)."""
    pool = executor or ThreadPoolExecutor(default_workers(), thread_name_prefix="mixindex-chunk")
    # Enough work queued to keep every worker busy, and no more: each result holds a chunk.
    workers = getattr(pool, "_max_workers", None)
    ahead = (workers if isinstance(workers, int) else default_workers()) + 2
    pending: deque[Future[Written]] = deque()
    # The ordered digests run on a thread of their own (hashlib releases the GIL), so that this
    # thread, which the sequential counts run on, only counts.
    digester = ThreadPoolExecutor(1, thread_name_prefix="mixindex-digest")
    recorded: deque[Future[None]] = deque()
    # Planning's state at each chunk is journalled on the digest thread too, off this one (with
    # many sources, converting and writing it takes a while). That thread runs its work in the
    # order submitted, so a chunk's state is on disk before the chunk is recorded as done.
    journalled: deque[Future[None]] = deque()
    last = None

    def record(done: Written) -> None:
        writer.record(done.start, done.arrays, done.first_block, done.digests)
        progress(len(done.arrays["source"]))

    def journal(task: ChunkTask) -> None:
        if task.begin is not None:
            writer.begin(task.start, task.begin.to_json())

    def take() -> None:
        recorded.append(digester.submit(record, pending.popleft().result()))
        while len(recorded) > 2 or (recorded and recorded[0].done()):
            recorded.popleft().result()
        while journalled and journalled[0].done():
            journalled.popleft().result()

    try:
        for task in tasks:
            journalled.append(digester.submit(journal, task))
            pending.append(pool.submit(job, task))
            last = task
            while len(pending) > ahead or (pending and pending[0].done()):
                take()
        while pending:
            take()
        for done in (*journalled, *recorded):
            done.result()
    except BaseException:
        # No worker may still write into a folder that the caller is about to remove.
        futures: list[Future[Any]] = [*pending, *recorded, *journalled]
        for future in futures:
            future.cancel()
        wait(futures)
        raise
    finally:
        digester.shutdown(wait=True, cancel_futures=True)
        if executor is None:
            pool.shutdown(wait=True, cancel_futures=True)
    return last
