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
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, get_args

from mixindex.errors import SpecError, clip, one_line, short
from mixindex.pipeline.stages import (
    LoadStageConfig,
    PackStageConfig,
    SaveStageConfig,
    TokenizerConfig,
    TokenizeStageConfig,
    stage_from_dict,
)
from mixindex.spec.dataset import (
    SOURCE_TYPES,
    CacheKind,
    DatasetConfig,
    SourceType,
    check_keys,
)
from mixindex.spec.schedule import (
    Interpolation,
    WeightSchedulePoint,
    WeightScheduler,
    normalise_weights,
    parse_interpolation,
    whole_number,
)

# The order in which each pass (epoch) reads a source's rows (S4): ``sequential`` stored order;
# ``shuffled`` a fresh permutation of all rows; ``grouped`` a fresh permutation of the row groups
# (Parquet) or record batches (Arrow IPC), then of the rows inside each group, so that a pass
# decodes each group once. ``grouped`` trades randomness for read speed: rows of one group stay
# together within a pass (as in MosaicML Streaming's shard shuffles, with the whole source as
# the window), so it suits sources whose groups are not sorted by anything the model should not
# see in runs. See the README's "Row order" notes.
RowOrder = Literal["sequential", "shuffled", "grouped"]
ROW_ORDERS: tuple[str, ...] = get_args(RowOrder)
# Re-exported: the dataset config lives in mixindex/spec/dataset.py.
__all__ = [
    "SOURCE_TYPES",
    "CacheKind",
    "DatasetConfig",
    "MixStageConfig",
    "PipelineConfig",
    "SourceType",
    "StopStrategy",
    "check_finite",
    "load_spec",
]

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
        check_keys(d, [f.name for f in fields(cls)], "mix")
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
    """A whole spec: the datasets and how to mix them. ``base_dir`` anchors relative paths.

    The other stages (``tokenize``, ``pack``, ``load``, ``save``) and ``default_tokenizer`` are
    read by :class:`~mixindex.pipeline.core.Pipeline`; ``seed`` seeds its pack and load shuffles
    (the mix's seed when None). An index needs a finite mix: ``mixindex build`` refuses a
    ``restart`` mix without ``num_examples`` (see :func:`check_finite`); a pipeline streams it.
    """

    datasets: Sequence[DatasetConfig]
    mix: MixStageConfig = field(default_factory=MixStageConfig)
    base_dir: Path = field(default_factory=Path.cwd)
    default_tokenizer: str | TokenizerConfig | None = None
    seed: int | None = None
    tokenize: TokenizeStageConfig = field(default_factory=TokenizeStageConfig)
    pack: PackStageConfig = field(default_factory=PackStageConfig)
    load: LoadStageConfig = field(default_factory=LoadStageConfig)
    save: SaveStageConfig = field(default_factory=SaveStageConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.datasets, (list, tuple)) or not self.datasets:
            raise SpecError("datasets is empty; list at least one [[datasets]] entry")
        named = []
        seen: set[str] = set()
        for i, d in enumerate(self.datasets):
            if not isinstance(d, DatasetConfig):
                raise SpecError(f"datasets must hold DatasetConfig objects, got {short(d)}")
            if d.name is None:
                d = replace(d, name=f"dataset_{i}")
            if d.name in seen:
                raise SpecError(f"two datasets are named {short(d.name)}; names must be unique")
            seen.add(d.name)
            named.append(d)
        if not isinstance(self.mix, MixStageConfig):
            raise SpecError(f"mix must be a MixStageConfig, got {short(self.mix)}")
        object.__setattr__(self, "datasets", tuple(named))
        object.__setattr__(self, "base_dir", Path(self.base_dir))
        default = TokenizerConfig.parse(self.default_tokenizer, "default_tokenizer")
        object.__setattr__(self, "default_tokenizer", default)
        if self.seed is not None:
            seed = whole_number(self.seed, "seed", minimum=0, maximum=MAX_SEED)
            object.__setattr__(self, "seed", seed)
        for key, cls in _STAGES.items():
            object.__setattr__(self, key, stage_from_dict(cls, getattr(self, key), key))
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
        check_keys(d, ["datasets", "mix", "default_tokenizer", "seed", *_STAGES], "the spec")
        if "datasets" not in d:
            raise SpecError("the spec has no datasets; add [[datasets]] entries")
        if "mix" not in d:
            raise SpecError("the spec has no [mix] table; add one with at least seed")
        raw = d["datasets"]
        if not isinstance(raw, list):
            raise SpecError(f"datasets = {short(raw)} must be a list of tables")
        datasets = [DatasetConfig.from_dict(x, i) for i, x in enumerate(raw)]
        stages = {k: v for k, v in d.items() if k not in ("datasets", "mix")}
        config = cls(
            datasets=datasets,
            mix=MixStageConfig.from_dict(d["mix"]),
            base_dir=Path(base_dir) if base_dir is not None else Path.cwd(),
            **stages,
        )
        check_finite(config)
        return config

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


_STAGES: dict[str, type[Any]] = {
    "tokenize": TokenizeStageConfig,
    "pack": PackStageConfig,
    "load": LoadStageConfig,
    "save": SaveStageConfig,
}


def check_finite(config: PipelineConfig) -> None:
    """Refuse a mix that never ends where a length is needed (a spec file, an index)."""
    if config.mix.stop_strategy is StopStrategy.RESTART and config.mix.num_examples is None:
        raise SpecError(
            "mix.num_examples is missing; stop_strategy = 'restart' never runs out, so say "
            "how long the mix is (or use first_exhausted / all_exhausted)"
        )


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
