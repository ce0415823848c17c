"""Positions (mixindex/positions.py): only integers are positions; nothing wraps or overflows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from clirun import assert_ok, assert_one_line_error, run
from conftest import DEFAULT_MIX, Shared

import mixindex
from mixindex.read.positions import check_position, check_positions

N = DEFAULT_MIX["num_examples"]

NOT_POSITIONS = [1.7, np.float64(2.0), "3", b"3", True, False, np.bool_(True), None, 1j]
OUT_OF_RANGE = [np.uint64(2**64 - 1), 2**63, 2**64, -(2**63) - 1, N, -N - 1, np.int64(N)]


@pytest.fixture(scope="module")
def ds(shared: Shared) -> Any:
    return mixindex.open(shared.index)


@pytest.mark.parametrize("key", NOT_POSITIONS, ids=repr)
def test_only_integers_are_positions(ds: Any, key: Any) -> None:
    with pytest.raises(TypeError):
        ds[key]
    with pytest.raises(TypeError):
        ds.__getitems__([key])
    with pytest.raises(TypeError):
        ds.__getitems__([0, key, 2])
    with pytest.raises(TypeError):
        ds.lookup([key])
    with pytest.raises(TypeError):
        ds.read_batch([key])
    with pytest.raises(TypeError):
        ds.iter(start=key)


@pytest.mark.parametrize("key", OUT_OF_RANGE, ids=repr)
def test_out_of_range_never_wraps(ds: Any, key: Any) -> None:
    with pytest.raises(IndexError, match="out of range"):
        ds[key]
    with pytest.raises(IndexError, match="out of range"):
        ds.__getitems__([0, key])
    with pytest.raises(IndexError, match="out of range"):
        ds.lookup(np.array([key]))


def test_arrays_of_the_wrong_kind(ds: Any) -> None:
    with pytest.raises(IndexError, match=str(2**64 - 1)):
        ds.__getitems__(np.array([1, 2**64 - 1], dtype=np.uint64))
    for arr in (np.array([1.0, 2.0]), np.array([True]), np.array(["1"])):
        with pytest.raises(TypeError):
            ds.__getitems__(arr)


def test_integers_of_every_kind_still_read(ds: Any) -> None:
    want = ds.lookup(np.array([0, 5, N - 1]))
    for keys in (
        [0, 5, -1],
        [np.int8(0), np.uint16(5), np.int64(-1)],
        np.array([0, 5, N - 1], dtype=np.uint64),
        np.array([0, 5, -1], dtype=np.int32),
        (0, 5, N - 1),
    ):
        got = ds.lookup(keys)
        for a, b in zip(got, want, strict=True):
            assert a.tolist() == b.tolist()
    assert ds[np.uint64(3)] == ds[3] == ds[3 - N]
    assert ds[2:5] == ds.__getitems__([2, 3, 4])
    assert ds[::-300] == ds.__getitems__([N - 1, N - 301, N - 601, N - 901])
    assert ds.__getitems__([]) == []
    assert next(ds.iter(start=np.uint32(7))) == ds[7]


def test_a_shard_checks_its_own_length(ds: Any) -> None:
    mine = ds.shard(1, 2, global_batch_size=100)
    assert len(mine) == 450
    assert mine[0] == ds[50]
    with pytest.raises(IndexError):
        mine[450]
    with pytest.raises(TypeError):
        mine[0.0]


def test_the_helpers() -> None:
    assert check_position(-1, 10) == 9
    assert check_positions([0, 9, -10], 10).tolist() == [0, 9, 0]
    assert check_positions(range(3, 5), 10).tolist() == [3, 4]
    assert check_positions(np.zeros((2, 2), dtype=np.uint8), 10).tolist() == [0, 0, 0, 0]
    with pytest.raises(TypeError, match="bool"):
        check_positions([1, True], 10)  # numpy alone would read it as [1, 1]
    with pytest.raises(TypeError):
        check_positions([[1], [2, 3]], 10)


def test_show_positions(shared: Shared) -> None:
    assert_ok(run("show", shared.index, "-1", "--no-verify"))
    assert_one_line_error(run("show", shared.index, str(2**64 - 1)), "out of range")
    result = run("show", shared.index, "1.7")
    assert result.exit_code == 2 and "Traceback" not in result.output
