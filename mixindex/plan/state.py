"""Where planning stands at the start of a chunk, so that it can go on from there (S6).

A :class:`PlanState` holds everything :meth:`Planner.tasks` carries from one chunk to the next:
the block, each source's stream cursor, where each source was exhausted (``all_exhausted``), and
the apportioner's state. Planning from a state gives the same tasks as planning from the start,
which is what a resumed build and an extended index rely on. It is stored as JSON (exact: a
float's ``repr`` reads back to the same bits).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from mixindex.plan.apportion import Apportioner
from mixindex.spec.schedule import WeightScheduler

__all__ = ["PlanState"]


_PARTS = ("next_block", "rows", "on")


def _apportioner_state(apportioner: Apportioner) -> dict[str, np.ndarray]:
    """The apportioner's state (:meth:`Apportioner.state`) as arrays (copied)."""
    state = apportioner.state()
    return {name: np.array(state[name], copy=True) for name in _PARTS}


def _check(num_sources: int, state: Mapping[str, np.ndarray]) -> None:
    """ValueError unless ``state`` is an apportioner state for ``num_sources`` sources (or empty:
    the start)."""
    if not state:
        return
    if set(state) != set(_PARTS):
        raise ValueError(f"apportioner state has {sorted(state)}, expected {sorted(_PARTS)}")
    rows = Apportioner.STATE_ROWS
    if (
        state["next_block"].shape != ()
        or state["rows"].shape != (rows, num_sources)
        or state["on"].shape != (num_sources,)
    ):
        raise ValueError(f"apportioner state is not one for {num_sources} sources")


def _restored(
    scheduler: WeightScheduler,
    block_size: int,
    state: Mapping[str, np.ndarray],
    compiled: bool,
) -> Apportioner:
    if not state:
        return Apportioner(scheduler, block_size, compiled=compiled)
    _check(len(scheduler.names), state)
    return Apportioner.restore(
        scheduler,
        block_size,
        {
            "next_block": int(state["next_block"]),
            "rows": state["rows"].astype(np.int64),
            "on": state["on"].astype(bool),
        },
        compiled=compiled,
    )


@dataclass(frozen=True)
class PlanState:
    """Planning's state before block ``block`` (a chunk's first block)."""

    block: int
    cursor: np.ndarray
    exhausted_at: np.ndarray
    apportioner: Mapping[str, np.ndarray]

    @classmethod
    def first(cls, num_sources: int) -> PlanState:
        """The state before the first block (a fresh apportioner)."""
        return cls(
            0,
            np.zeros(num_sources, dtype=np.int64),
            np.full(num_sources, -1, dtype=np.int64),
            {},
        )

    @classmethod
    def capture(
        cls, block: int, cursor: np.ndarray, exhausted_at: np.ndarray, apportioner: Apportioner
    ) -> PlanState:
        return cls(
            block,
            np.array(cursor, dtype=np.int64),
            np.array(exhausted_at, dtype=np.int64),
            _apportioner_state(apportioner),
        )

    def apportioner_at(
        self, scheduler: WeightScheduler, block_size: int, *, compiled: bool = True
    ) -> Apportioner:
        """A new apportioner in this state (``compiled=False``: the interpreted reference)."""
        return _restored(scheduler, block_size, self.apportioner, compiled)

    def to_json(self) -> dict[str, Any]:
        return {
            "block": self.block,
            "cursor": self.cursor.tolist(),
            "exhausted_at": self.exhausted_at.tolist(),
            "apportioner": {
                name: {"dtype": value.dtype.str, "values": value.tolist()}
                for name, value in sorted(self.apportioner.items())
            },
        }

    @classmethod
    def from_json(cls, doc: Any, num_sources: int) -> PlanState:
        """The state ``doc`` (from :meth:`to_json`); ValueError if it is not one for
        ``num_sources`` sources."""
        try:
            block = doc["block"]
            if not isinstance(block, int) or isinstance(block, bool) or block < 0:
                raise ValueError(f"block {block!r}")
            cursor = np.array(doc["cursor"], dtype=np.int64)
            exhausted = np.array(doc["exhausted_at"], dtype=np.int64)
            parts = {
                str(name): np.array(part["values"], dtype=np.dtype(part["dtype"]))
                for name, part in doc["apportioner"].items()
            }
        except (KeyError, TypeError, AttributeError, OverflowError) as exc:
            raise ValueError(f"not a plan state ({exc!r})") from None
        if cursor.shape != (num_sources,) or exhausted.shape != (num_sources,):
            raise ValueError(f"plan state is not for {num_sources} sources")
        _check(num_sources, parts)
        return cls(block, cursor, exhausted, parts)
