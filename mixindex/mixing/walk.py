"""The settings of an in-memory mix and a walk over its plan, chunk by chunk, planned on demand.

An in-memory mix (:func:`~mixindex.mixing.interleave.block_mixture_interleave`,
:class:`~mixindex.mixing.mixed.MixedShardedSource`) is planned by the same
:class:`~mixindex.plan.planner.Planner` as ``mixindex build``, so it serves the same
``(source, row)`` sequence as an index of the same spec (S6). Two plans are used:

- with every source's length known, the real plan: rows, epochs and where the stop falls;
- for streams, whose lengths are unknown, a plan with lengths so large that no source ever
  wraps: it says which source serves each position and which element of that source's stream
  it takes (S1-S3 do not need lengths). The stop strategy is then applied while reading.

A mix that ``restart``\\ s with no length is planned up to :data:`INFINITE` positions, which no
run reaches; because blocks are planned whole, every finite mix of the same spec is a prefix of
it. Chunks are planned only when the walk reaches them, and only their counts are kept.
"""

from __future__ import annotations

import bisect
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mixindex.errors import SpecError, short
from mixindex.plan.planner import Chunk, ChunkTask, PlanInputs, Planner
from mixindex.sources.base import digest
from mixindex.spec.config import MAX_SEED, StopStrategy
from mixindex.spec.schedule import WeightSchedulePoint, WeightScheduler, normalise_weights

__all__ = ["INFINITE", "MixSettings", "PlanWalker", "make_settings"]

# The length of a mix that never ends: far beyond any run, within what the planner's dtypes hold.
INFINITE = 2**62
# Positions per planned chunk: small, so that the first example comes at once.
WALK_POSITIONS = 1 << 14


@dataclass(frozen=True, kw_only=True)
class MixSettings:
    """What an in-memory mix depends on, validated: the names fix the source ids."""

    names: tuple[str, ...]
    scheduler: WeightScheduler
    block_size: int
    seed: int
    stop: StopStrategy
    num_examples: int | None = None

    def fingerprint(self) -> str:
        """A digest of everything that changes the sequence (states carry it)."""
        return digest(
            {
                "names": list(self.names),
                "schedule": [p.to_dict() for p in self.scheduler.points],
                "interpolation": self.scheduler.interpolation,
                "block_size": self.block_size,
                "seed": self.seed,
                "stop": self.stop.value,
                "num_examples": self.num_examples,
            }
        )

    def spec_mix(self) -> dict[str, Any]:
        """The ``[mix]`` table of the equivalent ``mixindex build`` spec."""
        return {
            "weight_schedule": [p.to_dict() for p in self.scheduler.points],
            "weight_schedule_type": self.scheduler.interpolation,
            "block_size": self.block_size,
            "stop_strategy": self.stop.value,
            "seed": self.seed,
            "num_examples": self.num_examples,
            "row_order": "sequential",
        }


def _parse_stop(value: object, where: str) -> StopStrategy:
    if isinstance(value, StopStrategy):
        return value
    choices = ", ".join(repr(s.value) for s in StopStrategy)
    if isinstance(value, str):
        try:
            return StopStrategy(value)
        except ValueError:
            pass
    raise SpecError(f"{where} = {value!r} is unknown; use one of {choices}")


def _whole(value: object, where: str, minimum: int, maximum: int) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or not minimum <= int(value) <= maximum
    ):
        raise SpecError(f"{where} = {value!r} must be a whole number from {minimum} to {maximum}")
    return int(value)


def make_settings(
    names: Sequence[str],
    *,
    weights: Mapping[str, float] | None,
    weight_scheduler: WeightScheduler | None,
    block_size: object,
    seed: object,
    stop: object,
    stop_name: str,
    num_examples: object = None,
) -> MixSettings:
    """Validate what a user passed; the scheduler wins over ``weights``, which are still checked.

    Raises :class:`~mixindex.errors.SpecError` naming the bad value and the fix.
    """
    names = tuple(names)
    if not names:
        raise SpecError("no datasets to mix; pass at least one, as {name: dataset}")
    for name in names:
        if not isinstance(name, str) or not name:
            raise SpecError(f"dataset name {name!r} must be a non-empty string")
        if name.startswith("__"):
            raise SpecError(
                f"dataset name {name!r} may not start with '__' (reserved for fields such as "
                "__source__); rename it"
            )
    if weights is not None and not isinstance(weights, Mapping):
        raise SpecError(f"weights must be a dict of name -> weight or None, got {short(weights)}")
    if weights is not None:
        normalised = normalise_weights(weights, names, "weights")
    if weight_scheduler is not None:
        if not isinstance(weight_scheduler, WeightScheduler):
            raise SpecError(
                f"weight_scheduler = {weight_scheduler!r} must be a WeightScheduler; build one "
                "with WeightScheduler(schedule=[WeightSchedulePoint(...), ...])"
            )
        given = set(weight_scheduler.names)
        extra = sorted(given - set(names))
        missing = [n for n in names if n not in given]
        if extra or missing:
            what = f"has weights for {extra[0]!r}" if extra else f"has no weight for {missing[0]!r}"
            raise SpecError(
                f"weight_scheduler {what}, but the datasets are {', '.join(names)}; name "
                "exactly the datasets in every schedule point"
            )
        scheduler = WeightScheduler(
            list(weight_scheduler.points), weight_scheduler.interpolation, names
        )
    else:
        if weights is None:
            normalised = normalise_weights(dict.fromkeys(names, 1.0), names, "weights")
        scheduler = WeightScheduler([WeightSchedulePoint(0, normalised)], "step", names)
    cap = None if num_examples is None else _whole(num_examples, "num_examples", 1, 2**62)
    return MixSettings(
        names=names,
        scheduler=scheduler,
        block_size=_whole(block_size, "block_size", 1, 2**31),
        seed=_whole(seed, "seed", 0, MAX_SEED),
        stop=_parse_stop(stop, stop_name),
        num_examples=cap,
    )


def slot_planner(settings: MixSettings) -> Planner:
    """The plan of which source serves each position, for sources of unknown length."""
    return _planner(settings, [INFINITE] * len(settings.names), StopStrategy.RESTART, INFINITE)


def row_planner(settings: MixSettings, lengths: Sequence[int]) -> Planner:
    """The real plan (rows, epochs, the stop) for sources of known lengths."""
    cap = settings.num_examples
    if cap is None and settings.stop is StopStrategy.RESTART:
        cap = INFINITE
    return _planner(settings, lengths, settings.stop, cap)


def _planner(
    settings: MixSettings, lengths: Sequence[int], stop: StopStrategy, cap: int | None
) -> Planner:
    inputs = PlanInputs(
        names=settings.names,
        lengths=tuple(int(n) for n in lengths),
        scheduler=settings.scheduler,
        block_size=settings.block_size,
        seed=settings.seed,
        stop=stop,
        num_examples=cap,
        row_order="sequential",
    )
    return Planner(inputs, max(1, WALK_POSITIONS // settings.block_size))


class PlanWalker:
    """A planner's chunks, planned when first asked for; keeps each chunk's counts only."""

    def __init__(self, planner: Planner) -> None:
        self.planner = planner
        self._tasks = planner.tasks()
        self._starts: list[int] = []
        self._stops: list[int] = []
        self._first_blocks: list[int] = []
        self._counts: list[np.ndarray] = []
        self._cursors: list[np.ndarray] = []
        self._done = False
        self._last: tuple[int, Chunk] | None = None
        self._count_dtype = planner.count_dtype

    def __getstate__(self) -> dict[str, Any]:
        # The task generator cannot be pickled (DataLoader workers): a copy plans afresh.
        return {"planner": self.planner}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["planner"])  # type: ignore[misc]

    def _plan_next(self) -> bool:
        if self._done:
            return False
        task = next(self._tasks, None)
        if task is None:
            self._done = True
            return False
        self._starts.append(task.start)
        self._stops.append(task.stop)
        self._first_blocks.append(task.first_block)
        self._counts.append(task.counts.astype(self._count_dtype))
        self._cursors.append(task.cursor.astype(np.int64))
        self._done = task.last
        return True

    def length(self) -> int:
        """The mix's length (plans every chunk: only for mixes that end)."""
        while self._plan_next():
            pass
        return self._stops[-1] if self._stops else 0

    def chunk_index(self, position: int) -> int | None:
        """The chunk holding ``position``, or None when the mix ends at or before it."""
        while not self._stops or self._stops[-1] <= position:
            if not self._plan_next():
                return None
        return bisect.bisect_right(self._stops, position)

    def chunk(self, i: int) -> Chunk:
        """Chunk ``i`` (from :meth:`chunk_index`): positions, sources, rows and epochs."""
        if self._last is not None and self._last[0] == i:
            return self._last[1]
        counts = self._counts[i].astype(np.int64)
        task = ChunkTask(
            self._starts[i], self._first_blocks[i], self._stops[i], counts, self._cursors[i]
        )
        chunk = self.planner.materialize(task)
        self._last = (i, chunk)
        return chunk

    def cursor_at(self, position: int) -> np.ndarray | None:
        """How many slots each source has before ``position``; None past the end."""
        i = self.chunk_index(position)
        if i is None:
            if position == self.length():
                last = len(self._stops) - 1
                if last < 0:
                    return np.zeros(len(self.planner.inputs.names), dtype=np.int64)
                chunk = self.chunk(last)
                return np.asarray(self._cursors[last] + self._bincount(chunk.source))
            return None
        chunk = self.chunk(i)
        return np.asarray(self._cursors[i] + self._bincount(chunk.source[: position - chunk.start]))

    def _bincount(self, src: np.ndarray) -> np.ndarray:
        k = len(self.planner.inputs.names)
        return np.bincount(src.astype(np.int64), minlength=k).astype(np.int64)


def settled_position(settings: MixSettings) -> int:
    """The first block start from which the schedule's weights no longer change."""
    b = settings.block_size
    return (settings.scheduler.last_step // b + 1) * b
