"""Our counter-based randomness: pinned values (S6) and the properties S3/S4 rely on."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mixindex.plan.rng import (
    derive_key,
    half_bits,
    mix64,
    mix64_array,
    permute_rows,
    shuffle_blocks,
)


def test_splitmix64_reference_values() -> None:
    # splitmix64 seeded with 0 produces these first outputs (the published reference stream):
    # state advances by the golden gamma and the finaliser is applied to each state.
    gamma = 0x9E3779B97F4A7C15
    assert mix64(0) == 0xE220A8397B1DCDAF
    assert mix64(gamma) == 0x6E789E6AA1B965F4
    assert mix64((2 * gamma) % 2**64) == 0x06C45D188009454F


def test_scalar_and_array_versions_agree() -> None:
    xs = [0, 1, 2**63, 2**64 - 1, 123456789]
    got = mix64_array(np.array(xs, dtype=np.uint64)).tolist()
    assert got == [mix64(x) for x in xs]


def test_derived_keys_are_pinned() -> None:
    assert derive_key(42, 1) != derive_key(43, 1)
    assert derive_key(0, 7, 3) == 0x131C537753C06F4C


@settings(max_examples=100, deadline=None)
@given(n=st.integers(1, 5000), key=st.integers(0, 2**64 - 1))
def test_row_permutation_is_a_bijection(n: int, key: int) -> None:
    idx = np.arange(n, dtype=np.uint64)
    nn = np.full(n, n, dtype=np.uint64)
    got = permute_rows(np.full(n, key, dtype=np.uint64), idx, nn, half_bits(nn))
    assert sorted(got.tolist()) == list(range(n))


def test_row_permutation_is_pinned() -> None:
    n = np.full(10, 10, dtype=np.uint64)
    got = permute_rows(
        np.full(10, 99, dtype=np.uint64), np.arange(10, dtype=np.uint64), n, half_bits(n)
    )
    assert got.tolist() == PINNED_PERMUTATION


def test_block_shuffle_keeps_each_block_a_permutation() -> None:
    slots = np.repeat(np.arange(4, dtype=np.uint8), [3, 1, 4, 2])[None, :].repeat(50, axis=0)
    out = shuffle_blocks(7, 0, slots, 2)
    assert (np.sort(out, axis=1) == np.sort(slots, axis=1)).all()
    assert len({bytes(r) for r in out}) > 40


PINNED_PERMUTATION = [5, 9, 1, 7, 6, 3, 4, 0, 8, 2]
