"""The mix spec: strict, frozen config objects and the one place where loose input is parsed.

A spec is a TOML, YAML or JSON file, or the same objects built in Python::

    PipelineConfig(
        datasets=[DatasetConfig(name="code", data_files="data/code/*.parquet")],
        mix=MixStageConfig(seed=42, num_examples=1000),
    )

Everything past :func:`PipelineConfig.from_dict` / :func:`load_spec` takes these strict types.
"""

from __future__ import annotations

import enum
import json
import logging
import secrets
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args

from mixindex.errors import SpecError, clip, one_line, short
from mixindex.spec.schedule import (
    Interpolation,
    WeightSchedulePoint,
    WeightScheduler,
    normalise_weights,
    parse_interpolation,
    whole_number,
)

# json, csv and text files are converted into the Arrow cache when an index is built.
SourceType = Literal["parquet", "arrow", "json", "csv", "text"]
SOURCE_TYPES: tuple[str, ...] = get_args(SourceType)
# The order in which each pass (epoch) reads a source's rows (S4): ``sequential`` stored order;
# ``shuffled`` a fresh permutation of all rows; ``grouped`` a fresh permutation of the row groups
# (Parquet) or record batches (Arrow IPC), then of the rows inside each group, so that a pass
# decodes each group once. ``grouped`` trades randomness for read speed: rows of one group stay
# together within a pass (as in MosaicML Streaming's shard shuffles, with the whole source as
# the window), so it suits sources whose groups are not sorted by anything the model should not
# see in runs. See the README's "Row order" notes.
RowOrder = Literal["sequential", "shuffled", "grouped"]
ROW_ORDERS: tuple[str, ...] = get_args(RowOrder)
CacheKind = Literal["arrow"]

MAX_SEED = 2**64 - 1
# A block's slots are shuffled as one array: 2^24 positions keep that under a few hundred MB.
MAX_BLOCK_SIZE = 2**24
MAX_NUM_EXAMPLES = 2**62


class StopStrategy(enum.StrEnum):
    """When the mix ends (S5)."""

    RESTART = "restart"
    FIRST_EXHAUSTED = "first_exhausted"
    ALL_EXHAUSTED = "all_exhausted"

    @classmethod
    def parse(cls, value: object) -> StopStrategy:
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value)) if isinstance(value, str) else cls(value)  # type: ignore[arg-type]
        except ValueError:
            choices = ", ".join(s.value for s in cls)
            raise SpecError(
                f"mix.stop_strategy = {short(value)} is unknown; use one of {choices}"
            ) from None


def _check_keys(given: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    for key in given:
        if key not in allowed:
            raise SpecError(
                f"{where} has unknown key {short(key)}; known keys: {', '.join(allowed)} "
                "(check the spelling)"
            )


@dataclass(frozen=True, kw_only=True)
class DatasetConfig:
    """One source of the mix.

    ``data_files`` is a glob, a path, or a list of them (relative to the spec's folder), or a
    ``datasets.Dataset`` or ``IterableDataset`` object. ``type`` is inferred from the files when
    left out. ``num_rows`` caps how many rows of a streaming dataset are read into the cache.
    """

    name: str
    data_files: Any
    type: SourceType | None = None
    cache: CacheKind | None = None
    num_rows: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise SpecError(f"datasets[].name = {short(self.name)} must be a non-empty string")
        name = short(self.name)
        if self.name.startswith("__"):
            raise SpecError(
                f"dataset name {name} may not start with '__' (reserved for fields such "
                "as __source__); rename it"
            )
        if self.type is not None and self.type not in SOURCE_TYPES:
            raise SpecError(
                f"dataset {name} has type = {short(self.type)}; use one of "
                f"{', '.join(SOURCE_TYPES)}, or leave it out to infer it from the files"
            )
        if self.cache is not None and self.cache != "arrow":
            raise SpecError(
                f'dataset {name} has cache = {short(self.cache)}; the only cache is "arrow"'
            )
        if self.num_rows is not None:
            rows = whole_number(self.num_rows, f"dataset {short(self.name)} num_rows", minimum=1)
            object.__setattr__(self, "num_rows", rows)
        files = self.data_files
        if _is_hf_dataset(files) or _is_hf_dataset(files, "IterableDataset"):
            return
        if isinstance(files, (str, Path)):
            files = [files]
        if (
            not isinstance(files, (list, tuple))
            or not files
            or not all(isinstance(f, (str, Path)) and str(f) for f in files)
        ):
            raise SpecError(
                f"dataset {name} has data_files = {short(self.data_files)}; give a path, a glob "
                "or a list of them (or a datasets.Dataset in Python)"
            )
        object.__setattr__(self, "data_files", [str(f) for f in files])

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], index: int = 0) -> DatasetConfig:
        if not isinstance(d, Mapping):
            raise SpecError(
                f"datasets[{index}] = {short(d)} must be a table with name and data_files"
            )
        _check_keys(d, [f.name for f in fields(cls)], f"datasets[{index}]")
        for key in ("name", "data_files"):
            if key not in d:
                raise SpecError(f"datasets[{index}] has no {key!r}; every dataset needs one")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        files = self.data_files
        if _is_hf_dataset(files):
            files = [f"<datasets.Dataset {getattr(files, '_fingerprint', '?')}>"]
        elif _is_hf_dataset(files, "IterableDataset"):
            files = ["<datasets.IterableDataset>"]
        out: dict[str, Any] = {"name": self.name, "data_files": list(files), "type": self.type}
        if self.cache is not None:
            out["cache"] = self.cache
        if self.num_rows is not None:
            out["num_rows"] = self.num_rows
        return out


def _is_hf_dataset(obj: object, kind: str = "Dataset") -> bool:
    cls = type(obj)
    return cls.__name__ == kind and cls.__module__.startswith("datasets")


@dataclass(frozen=True, kw_only=True)
class MixStageConfig:
    """How the sources are mixed: weights or a weight schedule, block size, seed, stop strategy.

    Given both ``weights`` and ``weight_schedule`` (EasyDeL's documented example does), the
    schedule wins and the weights are still checked. ``seed=None`` draws a seed once and logs
    it; the drawn seed is what :meth:`PipelineConfig.to_dict` (and so the index) records.
    """

    # None draws a seed in __post_init__: a built config always holds an int.
    seed: int = None  # type: ignore[assignment]
    weights: Mapping[str, float] | None = None
    weight_schedule: Sequence[WeightSchedulePoint] | None = None
    weight_schedule_type: Interpolation = "step"
    block_size: int = 1000
    # A string is accepted and parsed once, here: the field always holds a StopStrategy.
    stop_strategy: StopStrategy = StopStrategy.RESTART
    num_examples: int | None = None
    row_order: RowOrder = "sequential"

    def __post_init__(self) -> None:
        if self.seed is None:
            # EasyDeL's default: a seed drawn once and logged, so the run can be repeated.
            seed = secrets.randbits(63)
            logging.getLogger("mixindex").warning(
                "mix.seed is None: drew seed %d; set seed = %d to repeat this mix", seed, seed
            )
            object.__setattr__(self, "seed", seed)
        # Stored back as plain ints: a numpy integer is accepted, a float never is.
        seed = whole_number(self.seed, "mix.seed", minimum=0, maximum=MAX_SEED)
        object.__setattr__(self, "seed", seed)
        block = whole_number(self.block_size, "mix.block_size", minimum=1, maximum=MAX_BLOCK_SIZE)
        object.__setattr__(self, "block_size", block)
        object.__setattr__(self, "stop_strategy", StopStrategy.parse(self.stop_strategy))
        if self.num_examples is not None:
            n = whole_number(
                self.num_examples, "mix.num_examples", minimum=1, maximum=MAX_NUM_EXAMPLES
            )
            object.__setattr__(self, "num_examples", n)
        if self.row_order not in ROW_ORDERS:
            raise SpecError(
                f"mix.row_order = {short(self.row_order)} is unknown; "
                f"use one of {', '.join(ROW_ORDERS)}"
            )
        interpolation = parse_interpolation(self.weight_schedule_type, "mix.weight_schedule_type")
        object.__setattr__(self, "weight_schedule_type", interpolation)
        if self.weights is not None:
            # The values now; the names once the datasets are known (PipelineConfig).
            names = list(self.weights) if isinstance(self.weights, Mapping) else ["?"]
            normalise_weights(self.weights, names, "mix.weights")
        if self.weight_schedule is not None:
            object.__setattr__(self, "weight_schedule", _schedule_points(self.weight_schedule))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MixStageConfig:
        if not isinstance(d, Mapping):
            raise SpecError(f"mix = {short(d)} must be a table")
        _check_keys(d, [f.name for f in fields(cls)], "mix")
        if "seed" not in d:
            raise SpecError(
                "mix.seed is missing; set a whole number, for example seed = 42 "
                "(there is no implicit randomness)"
            )
        schedule = d.get("weight_schedule")
        if schedule is not None:
            points = _schedule_points(schedule)
            # A spec file lists its points in order (WeightScheduler sorts Python objects).
            for i in range(1, len(points)):
                a, b = points[i - 1].step, points[i].step
                if all(isinstance(x, int) and not isinstance(x, bool) for x in (a, b)) and b <= a:
                    raise SpecError(
                        f"weight_schedule steps must increase strictly, but point {i} has step "
                        f"{b} after step {a}; sort the points and drop duplicates"
                    )
            d = {**d, "weight_schedule": points}
        return cls(**d)


def _schedule_points(schedule: object) -> tuple[WeightSchedulePoint, ...]:
    """Schedule points from WeightSchedulePoint objects or ``{step, weights}`` tables."""
    if not isinstance(schedule, (list, tuple)):
        raise SpecError(
            f"mix.weight_schedule = {short(schedule)} must be a list of "
            "{ step = N, weights = { ... } } points"
        )
    points = []
    for i, p in enumerate(schedule):
        if isinstance(p, WeightSchedulePoint):
            points.append(p)
            continue
        if not isinstance(p, Mapping) or set(p) != {"step", "weights"}:
            raise SpecError(
                f"mix.weight_schedule[{i}] = {short(p)} must have exactly the keys step and weights"
            )
        points.append(WeightSchedulePoint(p["step"], p["weights"]))
    return tuple(points)


@dataclass(frozen=True, kw_only=True)
class PipelineConfig:
    """A whole spec: the datasets and how to mix them. ``base_dir`` anchors relative paths."""

    datasets: Sequence[DatasetConfig]
    mix: MixStageConfig
    base_dir: Path = field(default_factory=Path.cwd)

    def __post_init__(self) -> None:
        if not isinstance(self.datasets, (list, tuple)) or not self.datasets:
            raise SpecError("datasets is empty; list at least one [[datasets]] entry")
        seen: set[str] = set()
        for d in self.datasets:
            if not isinstance(d, DatasetConfig):
                raise SpecError(f"datasets must hold DatasetConfig objects, got {short(d)}")
            if d.name in seen:
                raise SpecError(f"two datasets are named {short(d.name)}; names must be unique")
            seen.add(d.name)
        if not isinstance(self.mix, MixStageConfig):
            raise SpecError(f"mix must be a MixStageConfig, got {short(self.mix)}")
        object.__setattr__(self, "datasets", tuple(self.datasets))
        object.__setattr__(self, "base_dir", Path(self.base_dir))
        if self.mix.stop_strategy is StopStrategy.RESTART and self.mix.num_examples is None:
            raise SpecError(
                "mix.num_examples is missing; stop_strategy = 'restart' never runs out, so say "
                "how long the mix is (or use first_exhausted / all_exhausted)"
            )
        # Build the scheduler once now so that every weight problem surfaces at construction.
        self.scheduler()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.datasets)

    def scheduler(self) -> WeightScheduler:
        """The weight schedule in source order; plain weights become a single point at step 0."""
        mix = self.mix
        if mix.weight_schedule is not None:
            if mix.weights is not None:
                normalise_weights(mix.weights, self.names, "mix.weights")
            return WeightScheduler(list(mix.weight_schedule), mix.weight_schedule_type, self.names)
        weights = mix.weights if mix.weights is not None else dict.fromkeys(self.names, 1.0)
        normalised = normalise_weights(weights, self.names, "mix.weights")
        return WeightScheduler([WeightSchedulePoint(0, normalised)], "step", self.names)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], base_dir: Path | str | None = None) -> PipelineConfig:
        if not isinstance(d, Mapping):
            raise SpecError(f"the spec must be a table with datasets and mix, got {short(d)}")
        _check_keys(d, ["datasets", "mix"], "the spec")
        if "datasets" not in d:
            raise SpecError("the spec has no datasets; add [[datasets]] entries")
        if "mix" not in d:
            raise SpecError("the spec has no [mix] table; add one with at least seed")
        raw = d["datasets"]
        if not isinstance(raw, list):
            raise SpecError(f"datasets = {short(raw)} must be a list of tables")
        datasets = [DatasetConfig.from_dict(x, i) for i, x in enumerate(raw)]
        return cls(
            datasets=datasets,
            mix=MixStageConfig.from_dict(d["mix"]),
            base_dir=Path(base_dir) if base_dir is not None else Path.cwd(),
        )

    def to_dict(self) -> dict[str, Any]:
        """The normalised spec: every default spelled out, weights normalised, as a schedule."""
        sched = self.scheduler()
        mix = self.mix
        return {
            "datasets": [d.to_dict() for d in self.datasets],
            "mix": {
                "weight_schedule": [p.to_dict() for p in sched.points],
                "weight_schedule_type": sched.interpolation,
                "block_size": mix.block_size,
                "stop_strategy": mix.stop_strategy.value,
                "seed": mix.seed,
                "num_examples": mix.num_examples,
                "row_order": mix.row_order,
            },
        }


def load_spec(path: str | Path) -> PipelineConfig:
    """Read a spec file (``.toml``, ``.yaml``/``.yml`` or ``.json``); paths are relative to it."""
    path = Path(path)
    where = f"spec file {short(str(path))}"
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            # Reading a FIFO or a device would wait forever or never end.
            raise SpecError(f"{where} is not a regular file; give the path of a spec file")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{where} does not exist; check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{where} cannot be read: {clip(one_line(exc))}") from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            data = _load_yaml(text, where)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise SpecError(f"{where} has suffix {short(suffix)}; use .toml, .yaml, .yml or .json")
    except SpecError:
        raise
    except Exception as exc:
        raise SpecError(
            f"{where} is not valid {suffix[1:].upper()}: {clip(one_line(exc))}"
        ) from None
    return PipelineConfig.from_dict(data, base_dir=path.resolve().parent)


def _load_yaml(text: str, where: str) -> Any:
    """YAML without aliases: nested aliases expand exponentially (a "billion laughs" bomb)."""
    import yaml

    class NoAliasLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no types
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                mark = self.peek_event().start_mark
                raise SpecError(
                    f"{where} uses a YAML alias at line {mark.line + 1}; YAML aliases (&/*) are "
                    "not allowed in a spec: write the value out"
                )
            return super().compose_node(parent, index)

    loader = NoAliasLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
