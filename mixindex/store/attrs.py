"""The typed records inside an index's attributes (:class:`~mixindex.store.meta.IndexMeta` holds
them): the recorded spec, the sources and the build facts.

Each record is parsed from its JSON object with every key it reads checked (a missing or
wrong-typed key is :class:`~mixindex.errors.IndexFormatError` naming the key, ``sources[1].name``)
and written back as the same object: keys the record does not know are kept in ``extra``, and the
key order of the object read is kept, so ``to_dict(from_dict(d)) == d`` to the byte.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

from mixindex.errors import IndexFormatError
from mixindex.spec.config import (
    ROW_ORDERS,
    SOURCE_TYPES,
    CacheKind,
    RowOrder,
    SourceType,
    StopStrategy,
)
from mixindex.spec.schedule import INTERPOLATIONS, Interpolation

__all__ = [
    "BuildFacts",
    "CacheRecord",
    "DatasetRecord",
    "Fields",
    "MixRecord",
    "Record",
    "SchedulePoint",
    "SourceOrigin",
    "SourceRecord",
    "SpecRecord",
    "damaged",
]

_MISSING = object()
_STOPS = tuple(s.value for s in StopStrategy)


def damaged(path: str | Path | None, key: str, value: Any, want: str) -> IndexFormatError:
    """The one-line error for attribute ``key`` (a dotted path) holding ``value``."""
    shown = "missing" if value is _MISSING else f"{value!r}"[:60]
    where = repr(str(path)) if path is not None else "the index"
    return IndexFormatError(
        f"{where} is damaged: attribute {key!r} is {shown}, expected {want}; rebuild the index"
    )


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _whole_list(v: Any) -> bool:
    return isinstance(v, list) and all(_is_int(x) and x >= 0 for x in v)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class Fields:
    """One JSON object of the attributes being read: getters that check a key's type and name
    it (``where.key``) when it is wrong, and the keys left unread (a record's ``extra``)."""

    def __init__(self, doc: Any, path: str | Path | None, where: str = "") -> None:
        if not isinstance(doc, dict):
            raise damaged(path, where or "mixindex", doc, "an object")
        self.doc, self.path, self.where = doc, path, where
        self.read: set[str] = set()

    def name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def get(self, key: str, want: str, ok: Callable[[Any], bool], optional: bool = False) -> Any:
        """The value of ``key`` if ``ok(value)``; None if ``optional`` and the key is absent."""
        self.read.add(key)
        value = self.doc.get(key, _MISSING)
        if value is _MISSING and optional:
            return None
        if value is _MISSING or not ok(value):
            raise damaged(self.path, self.name(key), value, want)
        return value

    def whole(self, key: str, low: int = 0, optional: bool = False) -> Any:
        ok = lambda v: _is_int(v) and v >= low  # noqa: E731
        return self.get(key, f"a whole number >= {low}", ok, optional)

    def text(self, key: str, optional: bool = False) -> Any:
        return self.get(key, "a string", lambda v: isinstance(v, str), optional)

    def choice(self, key: str, choices: tuple[str, ...], optional: bool = False) -> Any:
        return self.get(key, f"one of {', '.join(choices)}", lambda v: v in choices, optional)

    def choice_or_null(self, key: str, choices: tuple[str, ...]) -> Any:
        """A key that is always written, as one of ``choices`` or null."""
        want = f"one of {', '.join(choices)} or null"
        return self.get(key, want, lambda v: v is None or v in choices)

    def whole_or_null(self, key: str, low: int = 0) -> int | None:
        """A key that is always written, as a whole number or null."""
        want = f"a whole number >= {low} or null"
        got: int | None = self.get(key, want, lambda v: v is None or (_is_int(v) and v >= low))
        return got

    def number(self, key: str, optional: bool = False) -> Any:
        return self.get(key, "a number", _is_number, optional)

    def paths(self, key: str) -> tuple[str, ...]:
        ok = lambda v: isinstance(v, list) and all(isinstance(f, str) for f in v)  # noqa: E731
        return tuple(self.get(key, "a list of paths", ok))

    def obj(self, key: str) -> Fields:
        return Fields(self.get(key, "an object", lambda v: isinstance(v, dict)), *self._at(key))

    def maybe_obj(self, key: str) -> Fields | None:
        """An optional object: None when the key is absent."""
        value = self.get(key, "an object", lambda v: isinstance(v, dict), optional=True)
        return None if value is None else Fields(value, *self._at(key))

    def _at(self, key: str) -> tuple[str | Path | None, str]:
        return self.path, self.name(key)

    def objs(self, key: str, low: int = 0, want: str = "a list") -> list[Fields]:
        """A list of at least ``low`` objects, each one's failures named ``key[i].field``."""
        items = self.get(key, want, lambda v: isinstance(v, list) and len(v) >= low)
        return [Fields(item, self.path, f"{self.name(key)}[{i}]") for i, item in enumerate(items)]

    def kept(self) -> dict[str, Any]:
        """``extra`` and ``key_order`` of the record read from this object."""
        extra = {k: copy.deepcopy(v) for k, v in self.doc.items() if k not in self.read}
        return {"extra": extra, "key_order": tuple(self.doc)}


@dataclass(frozen=True, kw_only=True)
class Record:
    """What every record keeps of the object it was read from: the keys it does not know, and
    the key order (not compared: two records with the same values are equal)."""

    extra: Mapping[str, Any] = field(default_factory=dict)
    key_order: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def _emit(self, known: dict[str, Any]) -> dict[str, Any]:
        """``known`` and ``extra`` as one object, in the order read (new keys last)."""
        out = {**copy.deepcopy(dict(self.extra)), **known}
        first = {k: out[k] for k in self.key_order if k in out}
        return {**first, **out}


@dataclass(frozen=True, kw_only=True)
class SchedulePoint(Record):
    """A recorded schedule point: the weights from ``step`` on, as written (not normalised)."""

    step: int
    weights: Mapping[str, float]

    @classmethod
    def parse(cls, f: Fields) -> SchedulePoint:
        weights = f.obj("weights")
        for key in weights.doc:
            weights.number(key)
        return cls(step=f.whole("step"), weights=dict(weights.doc), **f.kept())

    def to_dict(self) -> dict[str, Any]:
        return self._emit({"step": self.step, "weights": dict(self.weights)})


@dataclass(frozen=True, kw_only=True)
class MixRecord(Record):
    """The spec's ``mix`` section as recorded: every default spelled out, weights as a schedule."""

    weight_schedule: tuple[SchedulePoint, ...]
    weight_schedule_type: Interpolation
    block_size: int
    stop_strategy: StopStrategy
    seed: int
    num_examples: int | None
    row_order: RowOrder

    @classmethod
    def parse(cls, f: Fields) -> MixRecord:
        return cls(
            weight_schedule=tuple(SchedulePoint.parse(p) for p in f.objs("weight_schedule")),
            weight_schedule_type=f.choice("weight_schedule_type", INTERPOLATIONS),
            block_size=f.whole("block_size", low=1),
            stop_strategy=StopStrategy(f.choice("stop_strategy", _STOPS)),
            seed=f.whole("seed"),
            num_examples=f.whole_or_null("num_examples", low=1),
            row_order=f.choice("row_order", ROW_ORDERS),
            **f.kept(),
        )

    def to_dict(self) -> dict[str, Any]:
        return self._emit(
            {
                "weight_schedule": [p.to_dict() for p in self.weight_schedule],
                "weight_schedule_type": self.weight_schedule_type,
                "block_size": self.block_size,
                "stop_strategy": StopStrategy(self.stop_strategy).value,
                "seed": self.seed,
                "num_examples": self.num_examples,
                "row_order": self.row_order,
            }
        )


@dataclass(frozen=True, kw_only=True)
class DatasetRecord(Record):
    """One ``[[datasets]]`` entry of the recorded spec (paths as the spec gave them)."""

    name: str
    data_files: tuple[str, ...]
    type: SourceType | None
    cache: CacheKind | None = None
    num_rows: int | None = None

    @classmethod
    def parse(cls, f: Fields) -> DatasetRecord:
        return cls(
            name=f.text("name"),
            data_files=f.paths("data_files"),
            type=f.choice_or_null("type", SOURCE_TYPES),
            cache=f.choice("cache", get_args(CacheKind), optional=True),
            num_rows=f.whole("num_rows", low=1, optional=True),
            **f.kept(),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "data_files": list(self.data_files),
            "type": self.type,
        }
        if self.cache is not None:
            out["cache"] = self.cache
        if self.num_rows is not None:
            out["num_rows"] = self.num_rows
        return self._emit(out)


@dataclass(frozen=True, kw_only=True)
class SpecRecord(Record):
    """The normalised spec the index was planned from."""

    datasets: tuple[DatasetRecord, ...]
    mix: MixRecord

    @classmethod
    def parse(cls, f: Fields) -> SpecRecord:
        return cls(
            datasets=tuple(DatasetRecord.parse(d) for d in f.objs("datasets")),
            mix=MixRecord.parse(f.obj("mix")),
            **f.kept(),
        )

    def to_dict(self) -> dict[str, Any]:
        return self._emit(
            {"datasets": [d.to_dict() for d in self.datasets], "mix": self.mix.to_dict()}
        )


@dataclass(frozen=True, kw_only=True)
class SourceOrigin(Record):
    """A source as read when the index was built: what its Arrow cache was made from."""

    name: str
    type: str
    data_files: tuple[str, ...]
    num_rows: int
    fingerprint: str

    @staticmethod
    def _fields(f: Fields) -> dict[str, Any]:
        return {
            "name": f.text("name"),
            "type": f.text("type"),
            "data_files": f.paths("data_files"),
            "num_rows": f.whole("num_rows"),
            "fingerprint": f.text("fingerprint"),
        }

    @classmethod
    def parse(cls, f: Fields) -> SourceOrigin:
        return cls(**cls._fields(f), **f.kept())

    def _known(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "data_files": list(self.data_files),
            "num_rows": self.num_rows,
            "fingerprint": self.fingerprint,
        }

    def to_dict(self) -> dict[str, Any]:
        return self._emit(self._known())


@dataclass(frozen=True, kw_only=True)
class CacheRecord(Record):
    """Where a source's rows are read from instead of its own files: an Arrow cache."""

    kind: str
    folder: str
    source: SourceOrigin

    @classmethod
    def parse(cls, f: Fields) -> CacheRecord:
        return cls(
            kind=f.text("kind"),
            folder=f.text("folder"),
            source=SourceOrigin.parse(f.obj("source")),
            **f.kept(),
        )

    def to_dict(self) -> dict[str, Any]:
        return self._emit(
            {"kind": self.kind, "folder": self.folder, "source": self.source.to_dict()}
        )


@dataclass(frozen=True, kw_only=True)
class SourceRecord(SourceOrigin):
    """A source of the mix, in source-id order: the files its rows are read from (a cache's
    files where it has one), its row count and fingerprint, and ``build --deep``'s content
    hash."""

    cache: CacheRecord | None = None
    content_hash: str | None = None
    # Rows per row group the plan permuted (``grouped`` row order only; empty: one group).
    row_groups: tuple[int, ...] | None = None

    @classmethod
    def parse(cls, f: Fields) -> SourceRecord:
        cache = f.maybe_obj("cache")
        groups = f.get("row_groups", "a list of whole numbers", _whole_list, optional=True)
        return cls(
            **cls._fields(f),
            cache=None if cache is None else CacheRecord.parse(cache),
            content_hash=f.text("content_hash", optional=True),
            row_groups=None if groups is None else tuple(groups),
            **f.kept(),
        )

    @property
    def origin(self) -> SourceOrigin:
        """What the source is, whichever copy of its rows is read: its cache's origin, or
        itself."""
        return self.cache.source if self.cache is not None else self

    def to_dict(self) -> dict[str, Any]:
        out = self._known()
        if self.cache is not None:
            out["cache"] = self.cache.to_dict()
        if self.content_hash is not None:
            out["content_hash"] = self.content_hash
        if self.row_groups is not None:
            out["row_groups"] = list(self.row_groups)
        return self._emit(out)


@dataclass(frozen=True, kw_only=True)
class BuildFacts(Record):
    """How the build went (not covered by the digest); every key is optional."""

    mixindex_version: str | None = None
    python: str | None = None
    seconds: float | None = None
    created: str | None = None

    @classmethod
    def parse(cls, f: Fields) -> BuildFacts:
        return cls(
            mixindex_version=f.text("mixindex_version", optional=True),
            python=f.text("python", optional=True),
            seconds=f.number("seconds", optional=True),
            created=f.text("created", optional=True),
            **f.kept(),
        )

    def to_dict(self) -> dict[str, Any]:
        known = {
            "mixindex_version": self.mixindex_version,
            "python": self.python,
            "seconds": self.seconds,
            "created": self.created,
        }
        return self._emit({k: v for k, v in known.items() if v is not None})
