"""Weight schedules (S1): weights per source as a function of the position ("step").

A schedule is a list of points strictly increasing in step, each with complete weights; between
points the weights are interpolated (``step`` keeps the left point, ``linear``, or ``cosine`` with
``t' = (1 - cos(pi t)) / 2``), and outside them they are clamped.

Only IEEE basic operations (+, -, *, /) are used, elementwise, so the same inputs give the same
bits on every machine and numpy version. That is why the cosine ease below is our own polynomial
rather than ``numpy.cos``, whose SIMD implementations differ between CPUs.

>>> s = WeightScheduler([WeightSchedulePoint(0, {"code": .2, "text": .8}),
...                      WeightSchedulePoint(10000, {"code": .5, "text": .5}),
...                      WeightSchedulePoint(50000, {"code": .8, "text": .2})], "linear")
>>> {k: round(v, 6) for k, v in s.get_weights(5000).items()}
{'code': 0.35, 'text': 0.65}
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, cast, get_args

import numpy as np

from mixindex.errors import SpecError, clip, short

Interpolation = Literal["step", "linear", "cosine"]
INTERPOLATIONS: tuple[str, ...] = get_args(Interpolation)

# Taylor coefficients of sin(x) = x * sum_k (-1)^k x^(2k) / (2k+1)!, enough terms for full double
# precision on [0, pi/2].
_SIN_COEFFS = tuple((-1) ** k / math.factorial(2 * k + 1) for k in range(13))

# Steps and positions are compared as int64 (float64 would merge neighbours past 2^53, and a mix
# may be 2^62 long); a step may lie past the mix's end, up to the largest int64.
MAX_STEP = 2**63 - 1


def whole_number(value: object, where: str, *, minimum: int, maximum: int | None = None) -> int:
    """``value`` as an int if it is an integer in range; else SpecError.

    A float is refused even when it is whole (``42.0``, ``1e4``): specs write whole numbers as
    integers, so a float where an integer belongs is a mistake worth pointing out.
    """
    bound = f">= {minimum}" + (f" and <= {maximum}" if maximum is not None else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        hint = ""
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
            hint = f" (here {int(value)})"
        raise SpecError(
            f"{where} = {short(value)} is not an integer; write a whole number {bound} without "
            f"a decimal point or exponent{hint}"
        )
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        raise SpecError(f"{where} = {short(value)} is out of range; use a whole number {bound}")
    return value


def parse_interpolation(value: object, where: str = "weight_schedule_type") -> Interpolation:
    """``value`` if it names an interpolation (``step``, ``linear``, ``cosine``); else SpecError."""
    if isinstance(value, str) and value in INTERPOLATIONS:
        return cast(Interpolation, value)
    raise SpecError(f"{where} = {short(value)} is unknown; use one of {', '.join(INTERPOLATIONS)}")


def cosine_ease(t: np.ndarray) -> np.ndarray:
    """``(1 - cos(pi t)) / 2`` for ``t`` in [0, 1], as ``sin(pi t / 2) ** 2``, bit-reproducible."""
    x = np.asarray(t, dtype=np.float64) * (math.pi / 2)
    x2 = x * x
    acc = np.full_like(x, _SIN_COEFFS[-1])
    for c in reversed(_SIN_COEFFS[:-1]):
        acc = acc * x2 + c
    s = acc * x
    return np.clip(s * s, 0.0, 1.0)


def normalise_weights(
    weights: Mapping[str, float], names: Sequence[str], where: str
) -> dict[str, float]:
    """Check that ``weights`` has exactly the keys ``names`` with usable values and normalise them.

    The result keeps the order of ``names``. Raises :class:`SpecError` naming the problem.
    """
    if not isinstance(weights, Mapping):
        raise SpecError(
            f"{where} must be a table of source name -> weight, got {short(weights)}; "
            f"write for example {{ {names[0]} = 1.0 }}"
        )
    # A set: a mix may have thousands of sources, and each key is looked up.
    allowed = set(names)
    for key in weights:
        if key not in allowed:
            raise SpecError(
                f"{where} has key {short(key)} but no dataset is named {short(key)} "
                f"(datasets: {clip(', '.join(names))}); "
                "use the datasets' names exactly"
            )
    missing = [n for n in names if n not in weights]
    if missing:
        raise SpecError(
            f"{where} has no weight for {', '.join(map(short, missing))} "
            f"(datasets: {clip(', '.join(names))}); "
            "give every dataset a weight, 0 to leave one out"
        )
    values: list[float] = []
    for name in names:
        value = weights[name]
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise SpecError(
                f"{where}[{short(name)}] = {short(value)} is not a number; use a number >= 0"
            )
        try:
            value = float(value)
        except OverflowError:
            value = math.inf
        if not math.isfinite(value) or value < 0:
            raise SpecError(f"{where}[{short(name)}] = {short(value)} must be a finite number >= 0")
        values.append(value)
    total = _total(values)
    if total <= 0:
        raise SpecError(f"{where} are all zero; give at least one dataset a weight > 0")
    if math.isinf(total):
        # Weights near the largest float: scale by a power of two, which changes no ratio.
        values = [math.ldexp(v, -64) for v in values]
        total = _total(values)
    return {name: v / total for name, v in zip(names, values, strict=True)}


def _total(values: list[float]) -> float:
    try:
        return math.fsum(values)
    except OverflowError:
        return math.inf


@dataclass(frozen=True, kw_only=True)
class WeightSchedulePoint:
    """The weights in force from ``step`` on (``step`` counts positions of the mix, not optimizer
    steps)."""

    step: int
    weights: dict[str, float] = field(default_factory=dict)

    def __init__(self, step: int, weights: Mapping[str, float]) -> None:
        # Positional arguments are allowed here to match the seed API:
        # WeightSchedulePoint(step=0, weights={...}) and WeightSchedulePoint(0, {...}).
        if not isinstance(weights, Mapping):
            raise SpecError(
                f"the weights of the schedule point at step {short(step)} = {short(weights)} "
                "must be a table of source name -> weight"
            )
        object.__setattr__(self, "step", step)
        object.__setattr__(self, "weights", dict(weights))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WeightSchedulePoint):
            return NotImplemented
        return self.step == other.step and self.weights == other.weights

    def __hash__(self) -> int:
        # Equal points hash alike: dict equality ignores key order, and so does a frozenset.
        return hash((self.step, frozenset(self.weights.items())))

    def to_dict(self) -> dict[str, object]:
        return {"step": self.step, "weights": dict(self.weights)}


class WeightScheduler:
    """Weights as a function of position, from schedule points and an interpolation.

    Points are sorted by step (as EasyDeL's scheduler does); two points at one step are an error.
    ``names`` fixes the order of sources (default: the first point's keys). Weights are checked and
    normalised on construction.
    """

    def __init__(
        self,
        schedule: Sequence[WeightSchedulePoint],
        interpolation: str = "step",
        names: Sequence[str] | None = None,
    ) -> None:
        kind = parse_interpolation(interpolation)
        if not schedule:
            raise SpecError("weight_schedule is empty; give at least one point with step = 0")
        for i, p in enumerate(schedule):
            if not isinstance(p, WeightSchedulePoint):
                raise SpecError(
                    f"weight_schedule[{i}] = {short(p)} must be a WeightSchedulePoint(step, "
                    "weights) or a table with the keys step and weights"
                )
            whole_number(p.step, f"weight_schedule[{i}].step", minimum=0, maximum=MAX_STEP)
        points = sorted(schedule, key=lambda p: p.step)
        self.names: tuple[str, ...] = tuple(names if names is not None else points[0].weights)
        checked: list[WeightSchedulePoint] = []
        for i, p in enumerate(points):
            step = int(p.step)
            if checked and step <= checked[-1].step:
                raise SpecError(
                    f"weight_schedule steps must increase strictly, but point {i} has step {step} "
                    f"after step {checked[-1].step}; sort the points and drop duplicates"
                )
            w = normalise_weights(p.weights, self.names, f"weight_schedule[{i}].weights")
            checked.append(WeightSchedulePoint(step, w))
        self.points: tuple[WeightSchedulePoint, ...] = tuple(checked)
        self.interpolation: Interpolation = kind
        self._steps = np.array([p.step for p in checked], dtype=np.int64)
        self._table = np.array([[p.weights[n] for n in self.names] for p in checked])

    def get_weights(self, step: int) -> dict[str, float]:
        """The normalised weights at one position, as a dict in source order."""
        row = self.weights_at(np.array([step], dtype=np.int64))[0]
        return {n: float(v) for n, v in zip(self.names, row, strict=True)}

    def weights_at(self, steps: np.ndarray) -> np.ndarray:
        """Weights at many positions: an array ``(len(steps), num_sources)`` of float64."""
        left, right, t = self.segments_at(steps)
        w_left = self._table[left]
        if self.interpolation == "step" or len(self._steps) == 1:
            return np.array(w_left)
        w_right = self._table[right]
        out = w_left + (w_right - w_left) * t[:, None]
        return np.asarray(np.maximum(out, 0.0))

    def segments_at(self, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Where each position falls between the points: ``(left, right, t)``, rows of
        :attr:`table` and the eased fraction, so that the weights are ``table[left] +
        (table[right] - table[left]) * t``, clipped at 0 (``t`` is 0 for ``step``)."""
        pos = _positions(steps)
        # Index of the left point (clamped): the last point whose step is <= pos, found in exact
        # integers.
        left = np.searchsorted(self._steps, pos, side="right") - 1
        left = np.clip(left, 0, len(self._steps) - 1)
        t = np.zeros(pos.shape, dtype=np.float64)
        if self.interpolation == "step" or len(self._steps) == 1:
            return left, left, t
        right = np.minimum(left + 1, len(self._steps) - 1)
        inside = (pos >= self._steps[0]) & (right > left)
        # Only the fraction is a float, from exact integer differences (both below 2^63; below
        # 2^53 this is bit for bit the float64 arithmetic used before).
        span = (self._steps[right] - self._steps[left]).astype(np.float64)
        offset = np.where(inside, pos - self._steps[left], 0).astype(np.float64)
        np.divide(offset, span, out=t, where=inside)
        t = np.clip(t, 0.0, 1.0)
        if self.interpolation == "cosine":
            t = cosine_ease(t)
        return left, right, t

    @property
    def table(self) -> np.ndarray:
        """The points' normalised weights, ``(points, num_sources)``, in source order
        (a read-only view)."""
        view = self._table.view()
        view.flags.writeable = False
        return view

    @property
    def dataset_names(self) -> list[str]:
        """The sources' names, in order (EasyDeL's name for :attr:`names`)."""
        return list(self.names)

    @property
    def final_weights(self) -> np.ndarray:
        """The weights in force after the last point, forever (clamping)."""
        return np.array(self._table[-1])

    @property
    def last_step(self) -> int:
        return int(self._steps[-1])


def _positions(steps: np.ndarray) -> np.ndarray:
    """Positions as int64. Floats are taken only when whole (past 2^53 a float has already lost
    the position it meant, so pass integers there)."""
    steps = np.asarray(steps)
    if steps.dtype.kind == "f":
        whole = np.isfinite(steps) & (steps == np.floor(steps)) & (np.abs(steps) < 2.0**63)
        if not whole.all():
            raise ValueError("positions must be whole numbers below 2^63")
    elif steps.dtype.kind not in "iub":
        raise TypeError(f"positions must be integers, not {steps.dtype}")
    elif steps.dtype == np.uint64 and steps.size and int(steps.max()) > MAX_STEP:
        raise ValueError(f"position {int(steps.max())} does not fit in int64")
    return steps.astype(np.int64)
