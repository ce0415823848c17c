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

__all__ = ["PlanState"]


def _apportioner_state(apportioner: Apportioner) -> dict[str, np.ndarray]:
    """The apportioner's state: every array or number it carries between blocks (copied)."""
    return {
        name: np.array(value, copy=True)
        for name, value in vars(apportioner).items()
        if isinstance(value, (np.ndarray, np.generic, int, float))
    }


def _restored(num_sources: int, state: Mapping[str, np.ndarray]) -> Apportioner:
    apportioner = Apportioner(num_sources)
    fresh = vars(apportioner)
    known = _apportioner_state(apportioner)
    if set(state) != set(known):
        raise ValueError(f"apportioner state has {sorted(state)}, expected {sorted(known)}")
    for name, value in state.items():
        if value.shape != known[name].shape:
            raise ValueError(f"apportioner state {name!r} has shape {value.shape}")
        was = fresh[name]
        if isinstance(was, np.ndarray):
            setattr(apportioner, name, value.astype(was.dtype, copy=True))
        else:
            setattr(apportioner, name, type(was)(value.item()))
    return apportioner


@dataclass(frozen=True)
class PlanState:
    """Planning's state before block ``block`` (a chunk's first block)."""

    block: int
    cursor: np.ndarray
    exhausted_at: np.ndarray
    apportioner: Mapping[str, np.ndarray]

    @classmethod
    def first(cls, num_sources: int) -> PlanState:
        """The state before the first block."""
        return cls.capture(
            0,
            np.zeros(num_sources, dtype=np.int64),
            np.full(num_sources, -1, dtype=np.int64),
            Apportioner(num_sources),
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

    def apportioner_at(self, num_sources: int) -> Apportioner:
        """A new apportioner in this state."""
        return _restored(num_sources, self.apportioner)

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
        state = cls(block, cursor, exhausted, parts)
        state.apportioner_at(num_sources)  # checks the apportioner's part
        return state
