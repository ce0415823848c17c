"""The pack stage: tokenized examples into sequences of ``seq_length`` tokens, never dropping one.

Each example becomes its ``input_ids`` followed by EOS (a *document*). A document longer than a
sequence is cut into whole sequences and a remainder; nothing is truncated (EasyDeL's greedy
packer drops the tail of an example longer than twice the sequence length). Every packed
sequence has ``input_ids``, ``attention_mask`` (0 on padding) and, by default, ``segment_ids``:
1, 2, ... for the pieces of documents it holds, 0 on padding.

- ``greedy`` fills each sequence in stream order (the concatenation of all packed tokens is
  the concatenation of the documents);
- ``first_fit`` puts each remainder into the first open sequence it fits, over windows of
  ``num_packers * shuffle_buffer_factor`` documents;
- ``pool`` keeps ``num_packers`` open sequences and gives each remainder to the one it fills
  best; when none has room, the fullest is sent and a new one opened.

``shuffle_packed`` then shuffles the sequences in windows (:class:`WindowShuffle`), seeded, never
with the global RNG. States: greedy resumes at the first document not yet wholly sent and the
tokens of it already sent; the windowed strategies at the window's start and the count sent.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from itertools import islice
from typing import Any

import numpy as np

from mixindex.errors import SourceError, StateError, short
from mixindex.pipeline.stages import PackStageConfig
from mixindex.pipeline.stream import Stream

__all__ = ["PackStream", "WindowShuffle", "document"]

# Salts of the seeded shuffles, so that two shuffles of one seed differ.
SALT_PACK = 0x7061636B
SALT_LOAD = 0x6C6F6164


def document(example: Mapping[str, Any], eos: int) -> np.ndarray:
    """An example's tokens followed by EOS."""
    ids = example.get("input_ids")
    if ids is None:
        raise SourceError(
            "pack() got an example without input_ids (fields: "
            f"{', '.join(map(str, example))}); call tokenize() before pack()"
        )
    arr = np.asarray(ids, dtype=np.int64)
    if arr.ndim != 1:
        raise SourceError(f"pack() needs one list of token ids per example, got shape {arr.shape}")
    return np.concatenate([arr, np.array([eos], dtype=np.int64)])


def _state(state: Any, keys: tuple[str, ...]) -> tuple[Any, ...]:
    if state is None:
        return (None, *([0] * (len(keys) - 1)))
    if not isinstance(state, Mapping) or set(state) != set(keys):
        raise StateError(
            f"pack state {short(state)} is not this stage's; pass a state that this pipeline's "
            "state_dict() returned"
        )
    return tuple(state[k] for k in keys)


class PackStream:
    """Packed sequences from a stream of tokenized examples."""

    def __init__(self, upstream: Stream, config: PackStageConfig) -> None:
        self.upstream = upstream
        self.config = config
        self.endless = upstream.endless

    def _sequence(self, pieces: list[np.ndarray]) -> dict[str, np.ndarray]:
        c = self.config
        ids = np.full(c.seq_length, c.pad_token_id, dtype=np.int32)
        seg = np.zeros(c.seq_length, dtype=np.int32)
        at = 0
        for k, piece in enumerate(pieces, 1):
            ids[at : at + len(piece)] = piece
            seg[at : at + len(piece)] = k
            at += len(piece)
        out = {"input_ids": ids, "attention_mask": (seg > 0).astype(np.int32)}
        if c.include_segment_ids:
            out["segment_ids"] = seg
        return out

    def iterate(self, state: Any) -> Iterator[tuple[dict[str, np.ndarray], Any]]:
        if self.config.strategy == "greedy":
            return self._greedy(state)
        return self._windows(state)

    # ---- greedy --------------------------------------------------------------------------------

    def _greedy(self, state: Any) -> Iterator[tuple[dict[str, np.ndarray], Any]]:
        up, skip = _state(state, ("up", "skip"))
        n = self.config.seq_length
        eos = self.config.eos_token_id
        # Documents not yet wholly sent: [state before it, tokens, tokens already sent].
        pending: deque[list[Any]] = deque()
        held = 0
        before = up
        for example, after in self.upstream.iterate(up):
            doc = document(example, eos)
            if skip > len(doc):
                raise StateError(f"pack state skips {skip} tokens of a {len(doc)}-token document")
            pending.append([before, doc, skip])
            held += len(doc) - skip
            skip = 0
            before = after
            while held >= n:
                pieces, room = [], n
                while room:
                    entry = pending[0]
                    piece = entry[1][entry[2] : entry[2] + room]
                    pieces.append(piece)
                    entry[2] += len(piece)
                    room -= len(piece)
                    if entry[2] == len(entry[1]):
                        pending.popleft()
                held -= n
                nxt = {"up": pending[0][0], "skip": pending[0][2]} if pending else {
                    "up": before, "skip": 0
                }  # fmt: skip
                yield self._sequence(pieces), nxt
        if pending:
            yield self._sequence([e[1][e[2] :] for e in pending]), {"up": before, "skip": 0}

    # ---- first_fit and pool, over windows of documents -----------------------------------------

    def _windows(self, state: Any) -> Iterator[tuple[dict[str, np.ndarray], Any]]:
        up, sent = _state(state, ("up", "sent"))
        items = self.upstream.iterate(up)
        while window := list(islice(items, self.config.window)):
            sequences = self._pack_window(
                [document(ex, self.config.eos_token_id) for ex, _ in window]
            )
            last = window[-1][1]
            for k in range(sent, len(sequences)):
                nxt = {"up": up, "sent": k + 1} if k + 1 < len(sequences) else {
                    "up": last, "sent": 0
                }  # fmt: skip
                yield self._sequence(sequences[k]), nxt
            up, sent = last, 0

    def _pack_window(self, docs: list[np.ndarray]) -> list[list[np.ndarray]]:
        """The window's sequences, in the order they are closed."""
        n = self.config.seq_length
        done: list[list[np.ndarray]] = []
        bins: list[list[np.ndarray]] = []
        room: list[int] = []
        for doc in docs:
            whole = len(doc) // n * n
            done.extend([doc[i : i + n]] for i in range(0, whole, n))
            rest = doc[whole:]
            if not len(rest):
                continue
            fits = [i for i, r in enumerate(room) if r >= len(rest)]
            if self.config.strategy == "first_fit":
                i = fits[0] if fits else -1
            else:
                i = min(fits, key=lambda j: (room[j], j)) if fits else -1
                if i < 0 and len(bins) >= self.config.num_packers:
                    full = min(range(len(bins)), key=lambda j: (room[j], j))
                    done.append(bins.pop(full))
                    room.pop(full)
            if i < 0:
                bins.append([])
                room.append(n)
                i = len(bins) - 1
            bins[i].append(rest)
            room[i] -= len(rest)
        return done + bins


class WindowShuffle:
    """A seeded shuffle over windows of ``size`` items: window ``w`` is permuted by a generator
    seeded with ``(seed, salt, w)``, so a resumed stream re-reads one window at most."""

    def __init__(self, upstream: Stream, size: int, seed: int, salt: int) -> None:
        self.upstream = upstream
        self.size = size
        self.seed = seed
        self.salt = salt
        self.endless = upstream.endless

    def iterate(self, state: Any) -> Iterator[tuple[Any, Any]]:
        up, w, sent = _state(state, ("up", "window", "sent"))
        items = self.upstream.iterate(up)
        while window := list(islice(items, self.size)):
            order = np.random.default_rng([self.seed, self.salt, w]).permutation(len(window))
            last = window[-1][1]
            for k in range(sent, len(window)):
                nxt = {"up": up, "window": w, "sent": k + 1} if k + 1 < len(window) else {
                    "up": last, "window": w + 1, "sent": 0
                }  # fmt: skip
                yield window[order[k]][0], nxt
            up, w, sent = last, w + 1, 0
