"""Packing: no token is ever dropped or reordered within a document, for every strategy, and a
packed stream resumes from any sequence."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mixindex.pipeline.pack import PackStream, WindowShuffle
from mixindex.pipeline.stages import PackStageConfig
from mixindex.pipeline.stream import PositionStream

EOS, PAD = 1, 0


def docs_stream(lengths: list[int]) -> tuple[PositionStream, list[list[int]]]:
    """Documents of the given lengths whose tokens are unique (10, 11, ...)."""
    docs, t = [], 10
    for n in lengths:
        docs.append(list(range(t, t + n)))
        t += n

    def open_at(p: int) -> Iterator[dict[str, Any]]:
        return iter([{"input_ids": d, "__source__": "x"} for d in docs[p:]])

    return PositionStream(open_at, endless=False), docs


def packed(stream: Any, state: Any = None) -> list[tuple[dict[str, np.ndarray], Any]]:
    return list(stream.iterate(state))


def make(lengths: list[int], **kw: Any) -> tuple[Any, list[list[int]], PackStageConfig]:
    source, docs = docs_stream(lengths)
    config = PackStageConfig(enabled=True, eos_token_id=EOS, pad_token_id=PAD, **kw)
    stream: Any = PackStream(source, config)
    if config.shuffle_packed:
        stream = WindowShuffle(stream, config.window, seed=3, salt=1)
    return stream, docs, config


def check_every_token(seqs: list[dict[str, np.ndarray]], docs: list[list[int]], n: int) -> None:
    """The packed pieces, put back in place, are exactly the documents with EOS after each."""
    stream = [t for d in docs for t in [*d, EOS]]
    doc_of = np.repeat(np.arange(len(docs)), [len(d) + 1 for d in docs])
    where = {t: i for i, t in enumerate(stream) if t != EOS}
    covered = np.zeros(len(stream), dtype=int)
    lone_eos = 0
    for s in seqs:
        ids, seg = s["input_ids"], s["segment_ids"]
        assert ids.shape == seg.shape == s["attention_mask"].shape == (n,)
        assert (s["attention_mask"] == (seg > 0)).all()
        assert (ids[seg == 0] == PAD).all()
        # Segments are numbered 1, 2, ... from the start; padding only at the end.
        used = seg[seg > 0]
        assert (seg[: len(used)] == used).all() and (np.diff(used) >= 0).all()
        for k in np.unique(used):
            piece = ids[seg == k].tolist()
            if piece == [EOS]:
                lone_eos += 1
                continue
            assert piece[0] != EOS
            at = where[piece[0]]
            assert stream[at : at + len(piece)] == piece
            # A piece never spans two documents.
            assert doc_of[at] == doc_of[at + len(piece) - 1]
            covered[at : at + len(piece)] += 1
    assert covered.max(initial=0) <= 1
    gaps = [stream[i] for i in np.flatnonzero(covered == 0)]
    assert gaps == [EOS] * lone_eos


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 40), min_size=0, max_size=30),
    seq_length=st.integers(1, 12),
    strategy=st.sampled_from(["greedy", "pool", "first_fit"]),
    shuffle=st.booleans(),
    num_packers=st.integers(1, 4),
    factor=st.integers(1, 3),
)
def test_packing_keeps_every_token(
    lengths: list[int], seq_length: int, strategy: str, shuffle: bool, num_packers: int, factor: int
) -> None:
    stream, docs, _ = make(
        lengths,
        seq_length=seq_length,
        strategy=strategy,
        shuffle_packed=shuffle,
        num_packers=num_packers,
        shuffle_buffer_factor=factor,
    )
    seqs = [s for s, _ in packed(stream)]
    check_every_token(seqs, docs, seq_length)
    if strategy == "greedy" and not shuffle:
        # Greedy without shuffling: the packed tokens, in order, are the documents in order.
        tokens = [t for s in seqs for t in s["input_ids"][s["segment_ids"] > 0].tolist()]
        assert tokens == [t for d in docs for t in [*d, EOS]]
        # Only the last sequence has padding.
        assert all((s["segment_ids"] > 0).all() for s in seqs[:-1])


@pytest.mark.parametrize("strategy", ["greedy", "pool", "first_fit"])
def test_an_example_longer_than_twice_the_sequence_keeps_every_token(strategy: str) -> None:
    # EasyDeL's greedy packer keeps one sequence of such an example and drops the rest.
    stream, docs, _ = make([5, 53, 3], seq_length=8, strategy=strategy, shuffle_packed=False)
    seqs = [s for s, _ in packed(stream)]
    check_every_token(seqs, docs, 8)
    assert sum(int((s["segment_ids"] > 0).sum()) for s in seqs) == 5 + 53 + 3 + 3


@pytest.mark.parametrize("strategy", ["greedy", "pool", "first_fit"])
@pytest.mark.parametrize("shuffle", [False, True])
def test_resume_from_every_sequence(strategy: str, shuffle: bool) -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 30, size=60).tolist()
    stream, _, _ = make(
        lengths, seq_length=10, strategy=strategy, shuffle_packed=shuffle, num_packers=2,
        shuffle_buffer_factor=3,
    )  # fmt: skip
    whole = packed(stream)
    ids = [s["input_ids"].tolist() for s, _ in whole]
    for k, (_, state) in enumerate(whole):
        state = json.loads(json.dumps(state))  # states are plain JSON
        rest = [s["input_ids"].tolist() for s, _ in packed(stream, state)]
        assert rest == ids[k + 1 :], k


def test_shuffles_depend_on_the_seed_only() -> None:
    source, _ = docs_stream([3] * 50)
    config = PackStageConfig(seq_length=7, eos_token_id=EOS, shuffle_packed=True)

    def order(seed: int) -> list[list[int]]:
        s = WindowShuffle(PackStream(source, config), 40, seed=seed, salt=1)
        return [x["input_ids"].tolist() for x, _ in s.iterate(None)]

    np.random.seed(1)
    first = order(5)
    np.random.seed(2)
    assert order(5) == first
    assert order(6) != first
    plain = [x["input_ids"].tolist() for x, _ in PackStream(source, config).iterate(None)]
    assert sorted(first) == sorted(plain) and first != plain


def test_pool_uses_at_most_num_packers_open_sequences() -> None:
    # Remainders of 6 never share a sequence of 10, so each needs its own; with one packer each
    # sequence is sent as soon as the next document does not fit.
    stream, docs, _ = make([5] * 6, seq_length=10, strategy="pool", num_packers=1,
                           shuffle_packed=False)  # fmt: skip
    seqs = [s for s, _ in packed(stream)]
    assert len(seqs) == 6
    check_every_token(seqs, docs, 10)
    stream, docs, _ = make([2] * 6, seq_length=10, strategy="first_fit", shuffle_packed=False)
    seqs = [s for s, _ in packed(stream)]
    # first_fit fills: 3 documents of 3 tokens (with EOS) per sequence of 10.
    assert [int(s["segment_ids"].max()) for s in seqs] == [3, 3]
