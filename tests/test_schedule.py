"""S1: weights and schedules."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mixindex.errors import SpecError
from mixindex.spec.schedule import (
    WeightSchedulePoint,
    WeightScheduler,
    cosine_ease,
    normalise_weights,
)

POINTS = [
    WeightSchedulePoint(0, {"code": 0.2, "text": 0.8}),
    WeightSchedulePoint(10000, {"code": 0.5, "text": 0.5}),
    WeightSchedulePoint(50000, {"code": 0.8, "text": 0.2}),
]


def test_linear_schedule_from_the_seed_api() -> None:
    s = WeightScheduler(POINTS, "linear")
    assert s.get_weights(5000) == pytest.approx({"code": 0.35, "text": 0.65})
    assert s.get_weights(30000) == pytest.approx({"code": 0.65, "text": 0.35})


def test_step_uses_the_left_point_and_clamps() -> None:
    s = WeightScheduler(POINTS, "step")
    assert s.get_weights(9999) == pytest.approx({"code": 0.2, "text": 0.8})
    assert s.get_weights(10000) == pytest.approx({"code": 0.5, "text": 0.5})
    assert s.get_weights(10**9) == pytest.approx({"code": 0.8, "text": 0.2})


def test_cosine_eases_in_and_out() -> None:
    s = WeightScheduler(POINTS, "cosine")
    # t = 0.25 -> (1 - cos(pi/4)) / 2
    t = (1 - math.cos(math.pi / 4)) / 2
    assert s.get_weights(2500)["code"] == pytest.approx(0.2 + 0.3 * t, abs=1e-15)
    assert s.get_weights(5000)["code"] == pytest.approx(0.35)


def test_schedule_starting_late_clamps_before_its_first_point() -> None:
    s = WeightScheduler([WeightSchedulePoint(100, {"a": 1, "b": 3})], "linear")
    assert s.get_weights(0) == pytest.approx({"a": 0.25, "b": 0.75})


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=200))
def test_own_cosine_matches_the_formula(ts: list[float]) -> None:
    t = np.array(ts)
    assert np.allclose(cosine_ease(t), (1 - np.cos(np.pi * t)) / 2, atol=1e-15, rtol=0)


def test_cosine_ease_is_pinned_bit_for_bit() -> None:
    # Our polynomial uses only +, * so these bits hold on every machine (S6).
    got = cosine_ease(np.array([0.1, 0.3, 0.7]))
    assert [v.hex() for v in got.tolist()] == [
        float.fromhex(h).hex()
        for h in ("0x1.90f1ecbbab00ap-6", "0x1.a61b9f7154b43p-3", "0x1.96791823aad30p-1")
    ]


@settings(max_examples=100, deadline=None)
@given(
    weights=st.lists(st.floats(0, 1e6), min_size=1, max_size=6).filter(lambda w: sum(w) > 0),
    step=st.integers(0, 10**12),
)
def test_weights_are_normalised(weights: list[float], step: int) -> None:
    names = [f"s{i}" for i in range(len(weights))]
    s = WeightScheduler(
        [WeightSchedulePoint(0, dict(zip(names, weights, strict=True)))], "step", names
    )
    got = s.get_weights(step)
    assert math.fsum(got.values()) == pytest.approx(1.0)
    for name, w in zip(names, weights, strict=True):
        assert got[name] == pytest.approx(w / math.fsum(weights))


def test_points_are_sorted_and_taken_by_keyword() -> None:
    # EasyDeL's WeightScheduler(schedule=..., interpolation=...) sorts its points.
    s = WeightScheduler(schedule=POINTS[::-1], interpolation="linear")
    assert [p.step for p in s.points] == [0, 10000, 50000]
    assert s.dataset_names == ["code", "text"]
    assert s.get_weights(5000) == pytest.approx({"code": 0.35, "text": 0.65})


@pytest.mark.parametrize(
    ("points", "interp", "message"),
    [
        ([WeightSchedulePoint(0, {"code": 1, "txt": 1})], "step", "'txt'"),
        ([WeightSchedulePoint(0, {"code": 1})], "step", "'text'"),
        ([WeightSchedulePoint(0, {"code": -1, "text": 1})], "step", "-1"),
        ([WeightSchedulePoint(0, {"code": 0, "text": 0})], "step", "all zero"),
        ([WeightSchedulePoint(0, {"code": float("nan"), "text": 1})], "step", "nan"),
        (
            [
                WeightSchedulePoint(5, {"code": 1, "text": 1}),
                WeightSchedulePoint(5, {"code": 1, "text": 1}),
            ],
            "linear",
            "step 5 after step 5",
        ),
        ([WeightSchedulePoint(0, {"code": 1, "text": 1})], "quadratic", "'quadratic'"),
        ([WeightSchedulePoint(-1, {"code": 1, "text": 1})], "step", "-1"),
        ([], "step", "empty"),
    ],
)
def test_bad_schedules_are_refused(points: list, interp: str, message: str) -> None:
    with pytest.raises(SpecError, match=message.replace("(", r"\(")):
        WeightScheduler(points, interp, ["code", "text"])


FAR = 2**60  # past 2^53: float64 holds only every 256th whole number here


def test_far_steps_pick_their_segment_exactly() -> None:
    # float64(FAR + 1) == FAR: a float lookup would put FAR in the second segment.
    assert float(FAR + 1) == float(FAR)
    s = WeightScheduler(
        [WeightSchedulePoint(0, {"a": 1, "b": 3}), WeightSchedulePoint(FAR + 1, {"a": 3, "b": 1})],
        "step",
    )
    assert s.get_weights(FAR) == {"a": 0.25, "b": 0.75}
    assert s.get_weights(FAR + 1) == {"a": 0.75, "b": 0.25}
    assert s.last_step == FAR + 1 and s.points[1].step == FAR + 1
    got = s.weights_at(np.array([FAR - 1, FAR, FAR + 1, FAR + 2], dtype=np.int64))
    assert got[:, 0].tolist() == [0.25, 0.25, 0.75, 0.75]


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_far_steps_interpolate_from_exact_offsets(kind: str) -> None:
    # Four positions between points 4 apart: floats would see one position four times.
    s = WeightScheduler(
        [
            WeightSchedulePoint(FAR, {"a": 0, "b": 1}),
            WeightSchedulePoint(FAR + 4, {"a": 1, "b": 0}),
        ],
        kind,
    )
    got = s.weights_at(np.arange(FAR - 1, FAR + 6, dtype=np.int64))[:, 0]
    t = np.array([0, 0, 0.25, 0.5, 0.75, 1, 1])
    want = t if kind == "linear" else (1 - np.cos(np.pi * t)) / 2
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-15)
    assert len(set(got.tolist())) == 5


def test_steps_up_to_int64_are_taken_and_beyond_refused() -> None:
    top = 2**63 - 1
    s = WeightScheduler(
        [WeightSchedulePoint(0, {"a": 1, "b": 0}), WeightSchedulePoint(top, {"a": 0, "b": 1})],
        "linear",
    )
    assert s.get_weights(top) == {"a": 0.0, "b": 1.0}
    assert s.get_weights(2**62)["a"] == pytest.approx(0.5)
    with pytest.raises(SpecError, match=r"step = 9223372036854775808 is out of range"):
        WeightScheduler([WeightSchedulePoint(top + 1, {"a": 1})])


def test_points_are_hashable_and_equal_by_value() -> None:
    a = WeightSchedulePoint(10, {"code": 0.5, "text": 0.5})
    b = WeightSchedulePoint(step=10, weights={"text": 0.5, "code": 0.5})
    c = WeightSchedulePoint(10, {"code": 0.4, "text": 0.6})
    assert a == b and hash(a) == hash(b)
    assert a != c and a != WeightSchedulePoint(11, {"code": 0.5, "text": 0.5})
    assert len({a, b, c}) == 2
    assert {a: "x"}[b] == "x"
    # Hashing does not freeze what the point was given.
    weights = {"code": 1.0}
    point = WeightSchedulePoint(0, weights)
    weights["code"] = 2.0
    assert point.weights == {"code": 1.0} and hash(point) == hash(
        WeightSchedulePoint(0, {"code": 1})
    )


def test_weights_name_exactly_the_datasets() -> None:
    names = [f"s{i}" for i in range(2000)]
    weights = dict.fromkeys(names, 2.0)
    assert normalise_weights(weights, names, "mix.weights") == dict.fromkeys(names, 1 / 2000)
    with pytest.raises(SpecError) as unknown:
        normalise_weights({**weights, "s2000": 1.0}, names, "mix.weights")
    message = str(unknown.value)
    assert "mix.weights has key 's2000' but no dataset is named 's2000'" in message
    assert "(datasets: s0, s1, " in message and "..." in message  # the long list is cut
    with pytest.raises(SpecError) as missing:
        normalise_weights({n: 1.0 for n in names if n not in ("s5", "s7")}, names, "w")
    assert str(missing.value).startswith("w has no weight for 's5', 's7' (datasets: s0, s1, ")
