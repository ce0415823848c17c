"""Exact apportionment (S2): how many slots each source gets in each block.

Each block's targets are integer increments (:mod:`mixindex.plan.fixed`); the counts come from
earliest deadline first over them (:mod:`mixindex.plan.edf`), compiled. Every cumulative count
stays within ``beta = 1 - 1/(2K-2)`` of its cumulative target ``Q'`` at every block boundary,
whatever the weights: Tijdeman's bound for the chairman assignment problem.

``Q'`` is the schedule's target with one change: in a block where some source's weight falls to
0, every source's owed fraction is settled, so ``Q'`` restarts from the counts there (a weight
that is 0 gets nothing, and what it was still owed, less than one example, is written off).
:class:`WrittenOffTargets` rebuilds ``Q'`` from planned counts for ``max dev`` and the report.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from mixindex.plan.fixed import drops, increments, scale
from mixindex.spec.schedule import WeightScheduler

# Blocks of increments computed beyond the ones apportioned: most deadlines fall inside.
LOOKAHEAD = 64
# Blocks per step when a deadline lies beyond that window: the first, and at most.
FAR_FIRST_STEP = 128
FAR_STEP = 4096
# (block, source) increments computed at a time.
WINDOW_CELLS = 1 << 17
_STATE_ROWS = ("owed", "served", "deadline", "deadline_job", "since", "job")
# Windows at least this big are computed ahead, on a thread of their own.
AHEAD_CELLS = WINDOW_CELLS


def bound(num_sources: int) -> float:
    """The largest ``|A_s - Q'_s|`` the apportionment allows at a block boundary."""
    if num_sources <= 1:
        return 0.0
    return 1.0 - 1.0 / (2 * num_sources - 2)


class Apportioner:
    """Per-block counts of one mix; ask for blocks in order with :meth:`counts`.

    ``compiled=False`` runs the same loop interpreted (the reference, for tests).
    :meth:`state` and :meth:`restore` let a later run continue where this one stopped.
    """

    STATE_ROWS = len(_STATE_ROWS)

    def __init__(
        self, scheduler: WeightScheduler, block_size: int, *, compiled: bool = True
    ) -> None:
        self.scheduler = scheduler
        self.block_size = block_size
        self.num_sources = k = len(scheduler.names)
        self.unit, self.beta = scale(k, block_size)
        self.compiled = compiled
        self.next_block = 0
        self.state_rows = np.zeros((len(_STATE_ROWS), k), dtype=np.int64)
        self.state_rows[3] = -1
        self.state_rows[5] = -1
        # Which sources had a positive weight in the block before next_block.
        self.on = np.zeros(k, dtype=bool)
        self._ahead: _Ahead | None = None

    def state(self) -> dict[str, Any]:
        """What the next :meth:`counts` depends on besides the schedule (small, K-sized)."""
        return {
            "next_block": self.next_block,
            "rows": self.state_rows.copy(),
            "on": self.on.copy(),
        }

    @classmethod
    def restore(
        cls,
        scheduler: WeightScheduler,
        block_size: int,
        state: dict[str, Any],
        *,
        compiled: bool = True,
    ) -> Apportioner:
        """An apportioner that continues from :meth:`state`."""
        out = cls(scheduler, block_size, compiled=compiled)
        out.next_block = int(state["next_block"])
        out.state_rows = np.array(state["rows"], dtype=np.int64).reshape(out.state_rows.shape)
        out.on = np.array(state["on"], dtype=bool).reshape(out.on.shape)
        return out

    def _window(self, first: int, nblocks: int, before: np.ndarray) -> tuple[np.ndarray, ...]:
        u = np.empty((nblocks, self.num_sources), dtype=np.int64)
        # In pieces whose temporaries stay in the core's cache (3x faster with 1,000 sources).
        step = max(1, WINDOW_CELLS // self.num_sources)
        for lo in range(0, nblocks, step):
            hi = min(nblocks, lo + step)
            starts = (first + np.arange(lo, hi, dtype=np.int64)) * self.block_size
            self._increments(starts, u[lo:hi])
        on = u > 0
        return u, on, drops(on, before)

    def _increments(self, starts: np.ndarray, out: np.ndarray) -> None:
        """The increments of the blocks that start at ``starts``, into ``out``."""
        if not self.compiled:
            out[:] = increments(self.scheduler.weights_at(starts), self.block_size, self.unit)
            return
        from mixindex.plan.kernels import increments_between

        segments = self.scheduler.segments_at(starts)
        increments_between(self.scheduler.table, segments, self.block_size, self.unit, out)

    def counts(self, first_block: int, nblocks: int, then: int = 0) -> np.ndarray:
        """Counts ``(nblocks, K)`` (int64) of blocks ``first_block ..``; every row sums to the
        block size. Blocks must be asked for in order, each once.

        ``then``: how many blocks the next call will likely ask for. Their increments are then
        computed on another thread while these blocks are apportioned (the same numbers either
        way: a window depends only on where it starts and how long it is).
        """
        if first_block != self.next_block:
            raise RuntimeError(f"blocks asked out of order: {first_block}, not {self.next_block}")
        k, b = self.num_sources, self.block_size
        out = np.zeros((nblocks, k), dtype=np.int64)
        if nblocks == 0:
            return out
        if k == 1:
            out[:, 0] = b
            self.next_block += nblocks
            self.on = np.ones(1, dtype=bool)
            return out
        width = nblocks + LOOKAHEAD
        ahead, self._ahead = self._ahead, None
        key = (first_block, width, self.on.tobytes())
        got = ahead.take(key) if ahead is not None else None
        u, on, reset = got if got is not None else self._window(first_block, width, self.on)
        if then and self.compiled and (then + LOOKAHEAD) * k >= AHEAD_CELLS:
            before = on[nblocks - 1].copy()
            key = (first_block + nblocks, then + LOOKAHEAD, before.tobytes())
            self._ahead = _Ahead(self._window, key, key[0], key[1], before)
        from mixindex.plan.edf import compiled, edf_blocks

        loop: Callable[..., int] = compiled() if self.compiled else edf_blocks
        want = np.full((3, k), -1, dtype=np.int64)
        j, end, skip = first_block, first_block + nblocks, -1
        # The windows past this one that far deadlines were looked for in, kept for the next
        # source that needs one (each window is the same whoever asks).
        far: dict[tuple[int, int], tuple[np.ndarray, ...]] = {}
        while j < end:
            j = int(
                loop(u, reset, first_block, j, end, b, self.unit, self.beta, skip,
                     self.state_rows, out[j - first_block :], want)
            )  # fmt: skip
            if j < end:
                self._far_deadlines(first_block + width, on[-1], want, far)
                skip = j
        self.on = on[nblocks - 1].copy()
        self.next_block = end
        return out

    def _far_deadlines(
        self,
        first: int,
        on_before: np.ndarray,
        want: np.ndarray,
        windows: dict[tuple[int, int], tuple[np.ndarray, ...]],
    ) -> None:
        """Deadlines past the window, for the sources ``want`` names; stores them in the state.

        Scans the schedule on from block ``first`` in steps, and in closed form once the
        weights are constant forever (past the last schedule point). ``windows`` keeps the
        steps' increments between calls (a window depends only on where it starts: whether a
        weight was on before it is the schedule's too).
        """
        from mixindex.plan.edf import CAP, INF

        ids = np.flatnonzero(want[0] >= 0)
        slack = want[0, ids].copy()
        since = want[2, ids]
        due = np.full(ids.size, -1, dtype=np.int64)
        acc = np.zeros(ids.size, dtype=np.int64)
        settled = self.scheduler.last_step // self.block_size + 1
        t, before = first, on_before
        # Most deadlines past the window lie just past it: steps grow from a short one.
        step = FAR_FIRST_STEP
        while (due < 0).any():
            open_ = due < 0
            if t >= settled:
                # Constant weights from here on: no more settlements, and a closed form.
                u, _, reset = self._window(t, 1, before)
                per = u[0, ids]
                with np.errstate(divide="ignore"):
                    steps = np.where(per > 0, (slack - acc) // np.maximum(per, 1) + 1, INF)
                hit = np.where(reset[0], INF, np.minimum(t + steps - 1, INF))
                due[open_] = hit[open_]
            else:
                n = min(step, settled - t)
                step = min(2 * step, FAR_STEP)
                got = windows.get((t, n))
                if got is None:
                    got = windows[(t, n)] = self._window(t, n, before)
                u, on, reset = got
                cum = acc[None, :] + np.cumsum(u[:, ids], axis=0)
                blocks = t + np.arange(n, dtype=np.int64)
                stop = np.flatnonzero(reset)
                last = int(stop[0]) if stop.size else n
                over = cum[:last] > slack[None, :]
                found = over.any(axis=0) & open_
                if found.any():
                    due[found] = blocks[np.argmax(over[:, found], axis=0)]
                if last < n:
                    due[open_ & ~found] = INF
                else:
                    acc = cum[-1]
                before = on[-1]
                t += n
            # One more than CAP blocks after the job first competed counts as none.
            due = np.where((due >= 0) & (due > since + CAP), INF, due)
            due = np.where((due < 0) & (t > since + CAP), INF, due)
        self.state_rows[2, ids] = due
        self.state_rows[3, ids] = want[1, ids]
        want[:] = -1


class _Ahead:
    """One window of increments computed on a thread of its own, for the call that asks for
    the same window next (numpy releases the GIL, and so does the compiled apportionment)."""

    def __init__(self, window: Callable[..., tuple[np.ndarray, ...]], key: Any, *args: Any):
        self.key = key
        self.result: tuple[np.ndarray, ...] | None = None
        self.thread = threading.Thread(
            target=self._run, args=(window, args), name="mixindex-window", daemon=True
        )
        self.thread.start()

    def _run(self, window: Callable[..., tuple[np.ndarray, ...]], args: Any) -> None:
        try:
            self.result = window(*args)
        except Exception:
            # The caller computes the window itself then, and meets the error there.
            self.result = None

    def take(self, key: Any) -> tuple[np.ndarray, ...] | None:
        """The window if it is the one for ``key`` (None: compute it)."""
        if key != self.key:
            return None
        self.thread.join()
        return self.result


class WrittenOffTargets:
    """The cumulative target ``Q'`` the apportionment keeps to, rebuilt from planned counts and
    the schedule alone; feed it blocks in order.

    ``Q'`` grows by each block's increments (:func:`~mixindex.plan.fixed.increments`); in a
    block where some source's weight falls to 0 it first restarts from the counts so far.
    """

    def __init__(self, num_sources: int, block_size: int) -> None:
        self.unit, _ = scale(num_sources, block_size)
        self.block_size = block_size
        self.owed = np.zeros(num_sources)
        self.served = np.zeros(num_sources, dtype=np.int64)
        self.on = np.zeros(num_sources, dtype=bool)

    def advance(self, counts: np.ndarray, weights: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """``Q'`` (examples, float) at the end of each of these blocks, ``(blocks, K)``.

        ``counts`` and ``weights`` are ``(blocks, K)``, ``lengths`` the blocks' lengths.
        """
        nb, k = weights.shape
        if nb == 0:
            return np.zeros((0, k))
        u = increments(weights, np.asarray(lengths), self.unit)
        on = u > 0
        reset = drops(on, self.on)
        counts = np.asarray(counts, dtype=np.int64)
        # Owed (target minus count, in examples) after each block; it restarts at each
        # settlement, so it is summed piece by piece between them. (In floats: counts that are
        # not the planner's, as a hand-edited table would be, may stray far from the target.)
        step = u / self.unit - counts
        owed = np.empty_like(step)
        cuts = [0, *np.flatnonzero(reset).tolist(), nb]
        carry = self.owed
        for lo, hi in itertools.pairwise(cuts):
            if hi == lo:
                continue
            start = np.zeros(k) if reset[lo] else carry
            owed[lo:hi] = start + np.cumsum(step[lo:hi], axis=0)
            carry = owed[hi - 1]
        served = self.served + np.cumsum(counts, axis=0)
        self.owed, self.served, self.on = owed[-1], served[-1], on[-1]
        return np.asarray(served + owed)
