"""Reading an in-memory mix: the planner says which source serves each position, inputs are read.

Two ways, one sequence:

- **indexed** (every input has a length and rows by number, e.g. ``datasets.Dataset``): the real
  plan gives ``(source, row)`` per position, as ``mixindex build`` would store it, and rows are
  read by number in grouped batches. Resuming anywhere plans counts up to there and reads.
- **streams** (any input without rows by number): the plan of sources per position needs no
  lengths (S1-S3); the k-th slot of a source takes the next element of its stream, read in its
  own order (S4). A stream that ends starts its next pass under ``restart`` (``set_epoch`` is
  called, so a shuffled HF stream reshuffles), ends the mix at exactly that slot under
  ``first_exhausted``, and counts as done under ``all_exhausted``, which ends just after the
  position where the last source served its last row (one element is read ahead to see it).

The state (:meth:`Mixer.initial_state`) is a plain dict kept up to date in place while examples
are yielded: the next position, and per stream its pass, offset and, for inputs with a state of
their own (HF ``IterableDataset``), that state, so resuming needs no replay.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from itertools import islice
from operator import itemgetter
from typing import Any

import numpy as np

from mixindex.errors import PlanError, SourceError, StateError
from mixindex.mixing.inputs import Input
from mixindex.mixing.walk import (
    MixSettings,
    PlanWalker,
    row_planner,
    settled_position,
    slot_planner,
)
from mixindex.read.rows import SOURCE_FIELD, to_examples
from mixindex.spec.config import StopStrategy

__all__ = ["STATE_KIND", "STATE_VERSION", "Mixer"]

STATE_VERSION = 1
STATE_KIND = "mixindex.mix"
# Positions read per grouped take in indexed mode.
READ_BATCH = 1024

_END = object()
_NOTHING = object()


def _skip(it: Iterator[Any], n: int) -> int:
    """Drop up to ``n`` items; how many were dropped."""
    return sum(1 for _ in islice(it, n))


class _Stream:
    """Where one input's stream is: pass, elements served in it, and what was read ahead."""

    __slots__ = ("entry", "input", "it", "length", "offset", "pass_", "pending")

    def __init__(self, inp: Input, entry: dict[str, Any]) -> None:
        self.input = inp
        self.entry = entry
        self.pass_ = 0
        self.offset = 0
        self.length: int | None = inp.known_length()
        self.it: Iterator[Any] | None = None
        self.pending: Any = _NOTHING


class Mixer:
    """One in-memory mix: its settings and inputs, read from any position or state."""

    def __init__(self, settings: MixSettings, inputs: Sequence[Input]) -> None:
        self.settings = settings
        self.inputs = list(inputs)
        self.names = settings.names
        sources = [inp.random_access() for inp in self.inputs]
        self.indexed = all(s is not None for s in sources)
        self._sources = sources
        self._rows: PlanWalker | None = None
        self._slots: PlanWalker | None = None
        if self.indexed:
            # Plans that can never end are refused now, not at the first example.
            self._rows = PlanWalker(row_planner(settings, [len(s) for s in sources]))  # type: ignore[arg-type]

    # ---- facts ---------------------------------------------------------------------------------

    def length(self) -> int | None:
        """The mix's length; None when it never ends; TypeError when it is not known yet."""
        st = self.settings
        if st.stop is StopStrategy.RESTART:
            return st.num_examples
        if self._rows is None:
            lengths = [inp.known_length() for inp in self.inputs]
            if any(n is None for n in lengths):
                unknown = self.names[lengths.index(None)]
                raise TypeError(
                    f"the mix's length is not known: dataset {unknown!r} has no len(), and "
                    f"{st.stop.value} ends where the datasets run out; iterate it to the end"
                )
            self._rows = PlanWalker(row_planner(st, lengths))  # type: ignore[arg-type]
        return self._rows.length()

    def initial_state(self) -> dict[str, Any]:
        """The state of an iteration that has not started."""
        state: dict[str, Any] = {
            "format_version": STATE_VERSION,
            "kind": STATE_KIND,
            "fingerprint": self.settings.fingerprint(),
            "seed": self.settings.seed,
            "position": 0,
        }
        if not self.indexed:
            state["streams"] = {
                name: {"pass": 0, "offset": 0, "length": inp.known_length(), "state": None}
                for name, inp in zip(self.names, self.inputs, strict=True)
            }
            state["exhausted"] = []
        return state

    def check_state(self, state: object) -> None:
        """StateError (with both values) for a state that is not one of this mix's."""
        if not isinstance(state, Mapping):
            raise StateError(f"a mix state is a dict from state_dict(), not {state!r}")
        if state.get("kind") != STATE_KIND or state.get("format_version") != STATE_VERSION:
            raise StateError(
                f"the state has kind {state.get('kind')!r} version "
                f"{state.get('format_version')!r}; this mix reads {STATE_KIND!r} version "
                f"{STATE_VERSION}; pass a state from this mix's state_dict()"
            )
        mine = self.settings.fingerprint()
        if state.get("fingerprint") != mine:
            raise StateError(
                f"the state was taken from another mix (other datasets, weights, block size, "
                f"seed or stop): state fingerprint {state.get('fingerprint')!r}, this mix "
                f"{mine!r}; resume with the mix the state was taken from"
            )
        pos = state.get("position")
        if isinstance(pos, bool) or not isinstance(pos, int) or pos < 0:
            raise StateError(f"the state's position {pos!r} is not a position")
        streams = state.get("streams")
        if streams is not None and (
            not isinstance(streams, Mapping) or set(streams) != set(self.names)
        ):
            raise StateError(
                f"the state names the datasets {sorted(streams or [])}, this mix "
                f"{sorted(self.names)}; resume with the mix the state was taken from"
            )

    # ---- iteration -----------------------------------------------------------------------------

    def iterate(
        self, state: dict[str, Any] | None = None, position: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Examples from a state (updated in place as examples are yielded) or a position."""
        if state is None:
            state = self.initial_state()
        else:
            self.check_state(state)
        if position is not None:
            if isinstance(position, bool) or not isinstance(position, int) or position < 0:
                raise ValueError(f"row = {position!r} must be a whole number >= 0")
            state.update(self.initial_state())
            state["position"] = position
            state.pop("streams", None)
        if self.indexed:
            return self._indexed(state)
        return self._streams(state)

    def _indexed(self, state: dict[str, Any]) -> Iterator[dict[str, Any]]:
        walker = self._rows
        # Set in __init__ when indexed.
        if walker is None:
            raise RuntimeError("mixindex internal error: walker is None")
        p = state["position"]
        i = walker.chunk_index(p)
        while i is not None:
            chunk = walker.chunk(i)
            start = chunk.start
            for lo in range(max(p, start), chunk.stop, READ_BATCH):
                hi = min(lo + READ_BATCH, chunk.stop)
                batch = self._read(
                    chunk.source[lo - start : hi - start], chunk.row[lo - start : hi - start]
                )
                for q, example in enumerate(batch, lo + 1):
                    state["position"] = q
                    yield example
            i = walker.chunk_index(chunk.stop)

    def _read(self, source: np.ndarray, row: np.ndarray) -> list[dict[str, Any]]:
        """Examples for ``(source, row)`` pairs, in order: one grouped read per source."""
        row = row.astype(np.int64, copy=False)
        order = np.argsort(source, kind="stable")
        sorted_source = source[order]
        cuts = np.flatnonzero(sorted_source[1:] != sorted_source[:-1]) + 1
        examples: list[dict[str, Any]] = []
        places = []
        for where in np.split(order, cuts):
            s = int(source[where[0]])
            src = self._sources[s]
            if src is None:
                raise RuntimeError("mixindex internal error: src is None")
            parts, within = src.take_parts(row[where])
            examples.extend(to_examples(parts, self.names[s]))
            places.append(where if within is None else where[within])
        where = np.concatenate(places)
        if len(where) == 1 or np.all(where[1:] > where[:-1]):
            return examples
        inverse = np.empty_like(where)
        inverse[where] = np.arange(len(where), dtype=where.dtype)
        return list(itemgetter(*inverse.tolist())(examples))

    # ---- streams -------------------------------------------------------------------------------

    def _slot_walker(self) -> PlanWalker:
        if self._slots is None:
            self._slots = PlanWalker(slot_planner(self.settings))
        return self._slots

    def _restore(self, state: dict[str, Any]) -> tuple[list[_Stream], set[int]] | None:
        """The streams where ``state`` left them; None when the mix ended before its position."""
        k = len(self.names)
        stop = self.settings.stop
        saved = state.get("streams")
        if saved is None:
            # Only a position: each stream's element count comes from the plan.
            fresh = self.initial_state()
            state["streams"], state["exhausted"] = fresh["streams"], fresh["exhausted"]
            cursor = self._slot_walker().cursor_at(state["position"])
            # The slot plan never ends.
            if cursor is None:
                raise RuntimeError("mixindex internal error: cursor is None")
            streams = [_Stream(inp, state["streams"][inp.name]) for inp in self.inputs]
            done: set[int] = set()
            for s, st in enumerate(streams):
                served = int(cursor[s])
                if served == 0:
                    continue
                if not self._seek(st, served):
                    return None
                if st.length is not None and served >= st.length:
                    done.add(s)
                st.entry.update({"pass": st.pass_, "offset": st.offset, "length": st.length})
            if stop is StopStrategy.ALL_EXHAUSTED:
                if len(done) == k:
                    return None
                state["exhausted"] = [self.names[s] for s in sorted(done)]
            else:
                done = set()
            return streams, done
        streams = []
        for inp in self.inputs:
            entry = dict(saved[inp.name])
            state["streams"][inp.name] = entry
            st = _Stream(inp, entry)
            st.pass_, st.offset = int(entry["pass"]), int(entry["offset"])
            if entry.get("length") is not None:
                st.length = int(entry["length"])
            streams.append(st)
        names = list(self.names)
        done = {names.index(n) for n in state.get("exhausted", [])}
        state["exhausted"] = [self.names[s] for s in sorted(done)]
        return streams, done

    def _seek(self, st: _Stream, served: int) -> bool:
        """Put a stream after its first ``served`` elements; False when that is past the end of
        a ``first_exhausted`` mix. Reads ahead only where the length is unknown: up to
        ``served`` elements of the first pass, or one more to see whether the pass ended."""
        first_exhausted = self.settings.stop is StopStrategy.FIRST_EXHAUSTED
        if st.length is None:
            it = iter(st.input.open(0, 0, None))
            skipped = _skip(it, served)
            if skipped == 0:
                raise SourceError(f"dataset {st.input.name!r} yielded no rows; remove it")
            if skipped == served:
                st.it, st.pass_, st.offset = it, 0, served
                if self.settings.stop is StopStrategy.ALL_EXHAUSTED:
                    # Whether the last element skipped ended the pass decides if it is done.
                    self._ends_pass(st)
                return True
            st.length = skipped
        n = st.length
        if first_exhausted and served > n:
            return False
        st.pass_, st.offset = divmod(served, n)
        if st.offset == 0:
            st.pass_, st.offset = st.pass_ - 1, n
        return True

    def _open(self, st: _Stream, native: Any = None) -> None:
        st.it = iter(st.input.open(st.pass_, st.offset, native))
        st.pending = _NOTHING

    def _serve(self, st: _Stream) -> Any:
        """The stream's next element, starting a new pass if need be; _END ends the mix."""
        if st.pending is not _NOTHING:
            example, st.pending = st.pending, _NOTHING
        else:
            ended = st.length is not None and st.offset >= st.length
            example = _END if ended else next(st.it, _END)  # type: ignore[arg-type]
            if example is _END:
                if st.offset == 0:
                    raise SourceError(
                        f"dataset {st.input.name!r} yielded no rows (pass {st.pass_ + 1}); "
                        "remove it or point it at data"
                    )
                st.length = st.offset
                if self.settings.stop is StopStrategy.FIRST_EXHAUSTED:
                    return _END
                st.pass_, st.offset = st.pass_ + 1, 0
                self._open(st)
                example = next(st.it, _END)  # type: ignore[arg-type]
                if example is _END:
                    raise SourceError(
                        f"dataset {st.input.name!r} yielded no rows on pass {st.pass_ + 1}; "
                        "a source must give the same rows on every pass"
                    )
        st.offset += 1
        entry = st.entry
        entry["pass"] = st.pass_
        entry["offset"] = st.offset
        entry["length"] = st.length
        if st.input.stateful:
            entry["state"] = st.input.live_state()
        return example

    def _ends_pass(self, st: _Stream) -> bool:
        """Whether the element just served was the last of its pass (reads one ahead if the
        length is unknown; a stateful input's state is kept from before that read)."""
        if st.length is not None:
            return st.offset >= st.length
        before = st.input.snapshot() if st.input.stateful else None
        nxt = next(st.it, _END)  # type: ignore[arg-type]
        if nxt is _END:
            st.length = st.offset
            st.entry["length"] = st.length
            return True
        st.pending = nxt
        if st.input.stateful:
            st.entry["state"] = before
        return False

    def _streams(self, state: dict[str, Any]) -> Iterator[dict[str, Any]]:
        settings = self.settings
        stop = settings.stop
        restored = self._restore(state)
        if restored is None:
            return
        streams, done = restored
        for st in streams:
            if st.it is None:
                self._open(st, st.entry.get("state") if st.input.stateful else None)
        k = len(streams)
        cap = settings.num_examples
        all_exhausted = stop is StopStrategy.ALL_EXHAUSTED
        settle = settled_position(settings)
        final = settings.scheduler.final_weights
        walker = self._slot_walker()
        p = state["position"]
        if all_exhausted and len(done) == k:
            return
        settled = False
        i = walker.chunk_index(p)
        while i is not None:
            chunk = walker.chunk(i)
            start = chunk.start
            sources = chunk.source[max(p, start) - start :].tolist()
            for q, s in enumerate(sources, max(p, start)):
                if cap is not None and q >= cap:
                    return
                if all_exhausted and q >= settle and not settled:
                    # From here on the weights are final: a source left with weight 0 that
                    # has not run out never will.
                    self._check_can_end(done, final)
                    settled = True
                st = streams[s]
                example = self._serve(st)
                if example is _END:
                    return
                if not isinstance(example, Mapping):
                    raise SourceError(
                        f"dataset {st.input.name!r} yielded a {type(example).__name__}, not a "
                        "dict; map its examples to dicts first"
                    )
                state["position"] = q + 1
                out = {**example, SOURCE_FIELD: st.input.name}
                if all_exhausted and s not in done and self._ends_pass(st):
                    done.add(s)
                    state["exhausted"].append(st.input.name)
                    if len(done) == k:
                        yield out
                        return
                yield out
            i = walker.chunk_index(chunk.stop)

    def _check_can_end(self, done: set[int], final: np.ndarray) -> None:
        for s, name in enumerate(self.names):
            if s not in done and final[s] == 0:
                raise PlanError(
                    f"all_exhausted can never end: dataset {name!r} has weight 0 from step "
                    f"{self.settings.scheduler.last_step} on and has not served all its rows; "
                    "give it a weight > 0 in the last schedule point, or use first_exhausted"
                )
