"""The planner: (normalised spec, source lengths) -> ``(source, row, epoch)`` per position.

Pure and streaming: no I/O, no globals, no hidden randomness, and memory bounded by one chunk of
blocks whatever the length. For each chunk of blocks it

1. evaluates the schedule at each block's first position (S1),
2. apportions each block's slots among the sources (S2, :mod:`mixindex.plan.apportion`),
3. orders each block's slots by a counter-based permutation of ``(seed, block)`` (S3),
4. gives the k-th slot of a source, in position order, element k of that source's stream of
   epochs, rows in order, in a fresh stateless permutation per epoch, or group by group (S4,
   :mod:`mixindex.plan.rows`),
5. and ends the mix where the stop strategy says (S5).

Steps 3 and 4 run as compiled kernels (:mod:`mixindex.plan.kernels`, loaded on first use).

Blocks are always apportioned and permuted whole, so a mix is a prefix of any longer mix with the
same spec: raising ``num_examples`` later never changes what came before.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from mixindex.errors import PlanError
from mixindex.plan.bound import length_bound, targets_before
from mixindex.plan.rng import SALT_ROWS, derive_key
from mixindex.plan.rows import GroupTable, mode_of, reference_rows, stream_rows
from mixindex.plan.state import PlanState
from mixindex.spec.config import RowOrder, StopStrategy
from mixindex.spec.schedule import WeightScheduler

# Positions per chunk (rounded to whole blocks): big enough for numpy to be efficient, small
# enough to keep memory flat.
CHUNK_POSITIONS = 1 << 20
# Blocks apportioned first in each chunk before looking for the end of the mix (then doubling).
FIRST_SLICE = 64
# Mixes with at most SMALL_MIX positions, blocks of at most SMALL_BLOCK and at most SMALL_CELLS
# (block, source) counts run on the references of the kernels (see Planner.compiled).
SMALL_MIX = 1 << 18
SMALL_BLOCK = 4096
SMALL_CELLS = 1 << 15
# A mix longer than this without an explicit num_examples is almost surely a mistake.
MAX_IMPLICIT_LENGTH = 1 << 40


def uint_dtype(max_value: int) -> np.dtype:
    """The smallest unsigned dtype holding ``max_value``."""
    for dt in (np.uint8, np.uint16, np.uint32, np.uint64):
        if max_value <= np.iinfo(dt).max:
            return np.dtype(dt)
    raise PlanError(f"value {max_value} does not fit in 64 bits")


@dataclass(frozen=True, kw_only=True)
class PlanInputs:
    """Everything the plan depends on (S6): the normalised spec's mix and the source lengths."""

    names: tuple[str, ...]
    lengths: tuple[int, ...]
    scheduler: WeightScheduler
    block_size: int
    seed: int
    stop: StopStrategy
    num_examples: int | None
    row_order: RowOrder
    # Rows per row group (record batch) of each source, for ``grouped`` row order; None (or an
    # empty entry): one group per source.
    groups: tuple[tuple[int, ...], ...] | None = None

    @property
    def num_sources(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class Chunk:
    """A run of whole blocks (the last one possibly cut by the stop) and its positions.

    ``last`` marks the mix's final chunk: its :attr:`stop` is the mix's length.
    """

    start: int
    first_block: int
    source: np.ndarray
    row: np.ndarray
    epoch: np.ndarray
    counts: np.ndarray
    cursors: np.ndarray
    last: bool = False

    @property
    def stop(self) -> int:
        return self.start + len(self.source)


@dataclass(frozen=True)
class ChunkTask:
    """The sequential half of a chunk: its blocks' counts, each source's stream cursor at its
    start, and where it stops.

    ``last`` marks the mix's final chunk: its ``stop`` is the mix's length.
    """

    start: int
    first_block: int
    stop: int
    counts: np.ndarray
    cursor: np.ndarray
    last: bool = False
    begin: PlanState | None = None  # planning's state at ``first_block``: tasks() goes on from it

    @property
    def cursors(self) -> np.ndarray:
        """Each block's cursors (where it starts in each source's stream), blocks x K: summed
        here, on the worker that materialises the chunk, not on the thread that plans."""
        return np.asarray(self.cursor + np.cumsum(self.counts, axis=0) - self.counts)


class Planner:
    """Plans a mix chunk by chunk: iterate :meth:`chunks` (or :meth:`tasks`); the one marked
    ``last`` ends where the mix does. Planning changes nothing on the planner."""

    def __init__(self, inputs: PlanInputs, chunk_blocks: int | None = None) -> None:
        self.inputs = inputs
        b = inputs.block_size
        self.lengths = np.array(inputs.lengths, dtype=np.int64)
        if (self.lengths <= 0).any():
            bad = inputs.names[int(np.flatnonzero(self.lengths <= 0)[0])]
            raise PlanError(f"dataset {bad!r} has no rows; remove it or point it at data")
        k = inputs.num_sources
        self.source_dtype = uint_dtype(max(k - 1, 0))
        self.row_dtype = (
            np.dtype(np.uint32) if max(inputs.lengths) <= 2**32 else np.dtype(np.uint64)
        )
        self.length_bound = self._length_bound()
        self.epoch_dtype = self._epoch_dtype()
        self.count_dtype = uint_dtype(b)
        # A cursor never passes the mix's length.
        self.cursor_dtype = uint_dtype(self.length_bound)
        # No chunk needs to reach past the end of the mix.
        blocks_needed = -(-self.length_bound // b)
        # A small mix is planned by the numpy references (the same bytes): loading numba and its
        # cached kernels costs more than the whole plan.
        self.compiled = not (
            self.length_bound <= SMALL_MIX
            and b <= SMALL_BLOCK
            and blocks_needed * max(k, 1) <= SMALL_CELLS
        )
        self.chunk_blocks = min(chunk_blocks or max(1, CHUNK_POSITIONS // b), blocks_needed)
        # Per-source keys and row groups for shuffled and grouped row order (S4).
        self.row_keys = np.array(
            [derive_key(inputs.seed, SALT_ROWS, s) for s in range(k)], dtype=np.uint64
        )
        grouped = inputs.row_order == "grouped"
        self.groups = GroupTable.of(
            inputs.names, inputs.lengths, inputs.groups if grouped else None
        )

    # ---- checks and bounds before planning -------------------------------------------------

    def _length_bound(self) -> int:
        """An upper bound on the mix length; raises PlanError for a mix that cannot end."""
        inp = self.inputs
        if inp.stop is StopStrategy.RESTART:
            return int(inp.num_examples)  # type: ignore[arg-type]
        cap = inp.num_examples
        sched = inp.scheduler
        b = inp.block_size
        # Targets up to the block where the schedule stops changing, then the final weights.
        settle = sched.last_step // b + 1
        low, high = targets_before(sched, b, settle)
        final = sched.final_weights
        # |A - Q| <= 1, so a source is surely exhausted once its target passes n + 1, and surely
        # never is if its target stays below n - 1.
        short = np.maximum(self.lengths + 2.0 - low, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            more = np.where(final > 0, short / np.where(final > 0, final, 1.0), np.inf)
        more[(final == 0) & (short == 0)] = 0.0
        needed = more + (settle + 2) * b
        first = inp.stop is StopStrategy.FIRST_EXHAUSTED
        if not first:
            never = [
                inp.names[s]
                for s in range(inp.num_sources)
                if final[s] == 0 and high[s] + 1 < self.lengths[s]
            ]
            if never and cap is None:
                raise PlanError(
                    f"all_exhausted can never end: dataset {never[0]!r} has weight 0 from step "
                    f"{sched.last_step} on and would not have served all its "
                    f"{self.lengths[inp.names.index(never[0])]} rows by then; give it a weight "
                    "> 0 in the last schedule point, set num_examples, or use first_exhausted"
                )
        bound = float(needed.min() if first else needed.max())
        if cap is not None:
            return int(min(cap, bound)) if math.isfinite(bound) else int(cap)
        if not math.isfinite(bound) or bound > MAX_IMPLICIT_LENGTH:
            # The bound above counts every block up to the last schedule point; a mix that ends
            # long before a far point gets the tighter bound (only here, so that the bound, and
            # with it the chunking, of every mix that was accepted before stays the same).
            bound = length_bound(sched, b, self.lengths, first_only=first)
        if not math.isfinite(bound) or bound > MAX_IMPLICIT_LENGTH:
            raise PlanError(
                f"{inp.stop.value} would need about {bound:.3g} positions before it ends; "
                "set mix.num_examples to cap the mix, or raise the small weights"
            )
        return int(bound)

    @property
    def dtypes(self) -> dict[str, np.dtype]:
        """The stored dtype of each array of the index."""
        return {
            "source": self.source_dtype,
            "row": self.row_dtype,
            "epoch": self.epoch_dtype,
            "counts": self.count_dtype,
            "cursors": self.cursor_dtype,
        }

    @property
    def size_bound(self) -> int:
        """An upper bound on the mix length for sizing the output (the free-space check).

        ``length_bound`` keeps the loose bound that sets the chunking of mixes accepted before;
        a ``first_exhausted`` or ``all_exhausted`` mix that ends long before a far schedule point
        would then look far too big for the disk, so take the tighter bound where it is smaller.
        """
        inp = self.inputs
        if inp.stop is StopStrategy.RESTART:
            return self.length_bound
        first = inp.stop is StopStrategy.FIRST_EXHAUSTED
        tight = length_bound(inp.scheduler, inp.block_size, self.lengths, first_only=first)
        return int(min(self.length_bound, tight)) if math.isfinite(tight) else self.length_bound

    def _epoch_dtype(self) -> np.dtype:
        if self.inputs.stop is StopStrategy.FIRST_EXHAUSTED:
            return np.dtype(np.uint8)
        return uint_dtype(self.length_bound // int(self.lengths.min()) + 1)

    # ---- planning --------------------------------------------------------------------------

    def chunks(self) -> Iterator[Chunk]:
        """The plan, chunk by chunk, in order."""
        for task in self.tasks():
            yield self.materialize(task)

    def tasks(self, begin: PlanState | None = None) -> Iterator[ChunkTask]:
        """The sequential part of planning: block counts and where the mix ends (the task
        marked ``last``; nothing is apportioned past it).

        Each task is then turned into positions by :meth:`materialize`, independently of the
        others, so that work can run on another thread or process. ``begin`` (a task's
        ``begin``) plans from that task on: the same tasks as from the start (S6).
        """
        inp = self.inputs
        k, b, nb = inp.num_sources, inp.block_size, self.chunk_blocks
        state = begin or PlanState.first(k)
        apportioner = state.apportioner_at(inp.scheduler, b, compiled=self.compiled)
        cursor, exhausted_at, block = state.cursor, state.exhausted_at, state.block
        cap = self._cap
        while True:
            start = block * b
            here = PlanState.capture(block, cursor, exhausted_at, apportioner)
            # Apportion the chunk in growing slices and stop once the end of the mix is known:
            # a mix that ends early in a long chunk (whose length comes from a loose bound, say
            # past a far schedule point) costs its own length, not the chunk's. Slices give the
            # same counts as one call (the apportioner's state carries over, S6).
            parts: list[np.ndarray] = []
            done, size = 0, self._first_slice(start)
            found = exhausted_at
            while True:
                m = min(size, nb - done)
                parts.append(apportioner.counts(block + done, m, self._then(start, size, done + m)))
                done += m
                counts = parts[0] if len(parts) == 1 else np.concatenate(parts)
                # Each slice extends the one before: what was exhausted there stays found.
                natural, found = self._stop_in(block, counts, cursor, found)
                if done == nb or min(cap, natural) <= start + done * b:
                    break
                size *= 2
            stop = min(start + nb * b, cap, natural)
            if stop < natural and stop == cap and inp.num_examples is None:
                raise PlanError(
                    f"{inp.stop.value} did not end within {cap} positions: a dataset whose weight "
                    "ends at 0 cannot be exhausted; set num_examples or give it a weight > 0"
                )
            if stop <= start:
                return  # an empty mix
            # The end is known once the cap or the natural end falls in this chunk, also at its
            # very last position: no further chunk is apportioned just to find nothing in it.
            last = min(cap, natural) <= start + nb * b
            yield ChunkTask(start, block, stop, counts, cursor, last, here)
            if last:
                return
            cursor = cursor + counts.sum(axis=0)
            exhausted_at = found
            block += nb

    @property
    def _cap(self) -> int:
        """Where the mix ends at the latest."""
        inp = self.inputs
        return inp.num_examples if inp.num_examples is not None else self.length_bound

    def _first_slice(self, start: int) -> int:
        """Blocks :meth:`tasks` first apportions of the chunk from ``start``: all of them if
        the mix surely goes on past it, else a short slice."""
        inp = self.inputs
        nb = self.chunk_blocks
        whole = inp.stop is StopStrategy.RESTART and self._cap >= start + nb * inp.block_size
        return nb if whole else FIRST_SLICE

    def _then(self, start: int, size: int, done: int) -> int:
        """How many blocks :meth:`tasks` likely asks the apportioner for next, after ``done``
        blocks of the chunk from ``start`` in slices of ``size`` (0: none)."""
        nb = self.chunk_blocks
        if done < nb:
            return min(2 * size, nb - done)
        after = start + nb * self.inputs.block_size
        return 0 if self._cap <= after else min(self._first_slice(after), nb)

    def block_sources(self, first_block: int, counts: np.ndarray) -> np.ndarray:
        """The source at each slot of whole blocks (blocks x block_size), in position order (S3)."""
        b = self.inputs.block_size
        if not self.compiled:
            from mixindex.plan.rng import shuffle_blocks

            return shuffle_blocks(self.inputs.seed, first_block, counts, b, self.source_dtype)
        from mixindex.plan.kernels import order_blocks

        return order_blocks(self.inputs.seed, first_block, counts, b, self.source_dtype)

    def _stop_in(
        self,
        block: int,
        counts: np.ndarray,
        cursor: np.ndarray,
        exhausted_at: np.ndarray,
    ) -> tuple[int, np.ndarray]:
        """The end of the mix if it falls in this chunk (else a position past it), and the
        position at which each source was exhausted (-1: not yet) as of the chunk's end, for
        ``all_exhausted``. ``cursor``: the sources' cursors at the chunk's start;
        ``exhausted_at`` is that state before the chunk; it is not changed."""
        stop = self.inputs.stop
        n = self.lengths
        b = self.inputs.block_size
        start = block * b
        never = start + counts.shape[0] * b + 1
        if stop is StopStrategy.RESTART:
            return never, exhausted_at
        cum_end = cursor + np.cumsum(counts, axis=0)
        cum_start = cum_end - counts

        def nth(j: int, s: int, k: int) -> int:
            # Position inside block j of the k-th (0-based) slot of source s.
            row = self.block_sources(block + j, counts[j : j + 1])[0]
            return int(np.flatnonzero(row == s)[k])

        if stop is StopStrategy.FIRST_EXHAUSTED:
            hit = np.argwhere(cum_end > n)
            if hit.size == 0:
                return never, exhausted_at
            j = int(hit[0, 0])
            over = np.flatnonzero(cum_end[j] > n)
            first = min(nth(j, int(s), int(n[s] - cum_start[j, s])) for s in over)
            return start + j * b + first, exhausted_at
        found = exhausted_at.copy()
        for s in np.flatnonzero(found < 0):
            done = np.flatnonzero(cum_end[:, s] >= n[s])
            if done.size:
                j = int(done[0])
                found[s] = start + j * b + nth(j, int(s), int(n[s] - cum_start[j, s] - 1))
        if (found < 0).any():
            return never, found
        return int(found.max()) + 1, found

    def materialize(self, task: ChunkTask) -> Chunk:
        """Positions of one chunk: block order (S3), then rows (S4), cut at the task's stop."""
        b = self.inputs.block_size
        length = task.stop - task.start
        used = -(-length // b)
        counts = task.counts[:used]
        flat = self.block_sources(task.first_block, counts).ravel()[:length]
        if length % b:
            counts = counts.copy()
            counts[-1] = np.bincount(flat[(used - 1) * b :], minlength=counts.shape[1])
        row, epoch = self._rows(flat, task.cursor)
        return Chunk(
            start=task.start,
            first_block=task.first_block,
            source=flat,
            row=row,
            epoch=epoch,
            counts=counts.astype(self.count_dtype),
            cursors=self._cursors(task, used),
            last=task.last,
        )

    def _cursors(self, task: ChunkTask, used: int) -> np.ndarray:
        """The first ``used`` blocks' cursors, in the stored dtype."""
        if not self.compiled:
            return task.cursors[:used].astype(self.cursor_dtype)
        from mixindex.plan.kernels import block_cursors

        return block_cursors(task.counts[:used], task.cursor, self.cursor_dtype)

    def _rows(self, src: np.ndarray, cursor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stream element of each position: the k-th slot of a source, in position order, takes
        element ``cursor + k`` of its stream (S4, :mod:`mixindex.plan.rows`)."""
        mode = mode_of(self.inputs.row_order)
        rows = stream_rows if self.compiled else reference_rows
        dtypes = (self.row_dtype, self.epoch_dtype)
        return rows(src, cursor, self.lengths, self.row_keys, mode, self.groups, dtypes)
