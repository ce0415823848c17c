"""One dataset of a spec (:class:`DatasetConfig`): its files or datasets object, and the
pipeline fields that say how its examples are tokenized.

    >>> DatasetConfig(name="code", data_files="data/code/*.parquet").data_files
    ['data/code/*.parquet']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args

from mixindex.errors import SpecError, short
from mixindex.pipeline.stages import TokenizerConfig
from mixindex.spec.schedule import whole_number

__all__ = [
    "SOURCE_TYPES",
    "CacheKind",
    "DatasetConfig",
    "SourceType",
    "check_keys",
    "is_hf_dataset",
]

# json, csv and text files are converted into the Arrow cache when an index is built.
SourceType = Literal["parquet", "arrow", "json", "csv", "text"]
SOURCE_TYPES: tuple[str, ...] = get_args(SourceType)
# EasyDeL's other spellings of a type, read as ours ("huggingface": a datasets object or a
# save_to_disk folder, which is Arrow).
TYPE_ALIASES = {"jsonl": "json", "txt": "text", "huggingface": "arrow", "hf": "arrow"}
CacheKind = Literal["arrow"]


def check_keys(given: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
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
    ``datasets.Dataset`` or ``IterableDataset`` object (a ``DatasetDict`` gives its ``split``).
    ``type`` is inferred from the files when left out (EasyDeL's ``jsonl``, ``txt`` and
    ``huggingface`` are read as ``json``, ``text`` and ``arrow``). ``num_rows`` caps how many rows
    of a streaming dataset are read into the cache. ``name`` may be left out in a pipeline:
    :class:`PipelineConfig` names the dataset ``dataset_{i}``.

    The pipeline fields (``tokenizer``, ``content_field``, ``additional_fields``) say how the
    examples are tokenized; they do not change the mix (nor an index's digest).

    ``data_files`` may be URLs (``s3://``, ``gs://``, ``hf://``, ``https://``, ...), read through
    fsspec with ``storage_options`` (endpoint, credentials): these are used at build time only
    and never recorded in an index (:meth:`to_dict` leaves them out).
    """

    # None is replaced by PipelineConfig ("dataset_{i}"): a config in a spec always has a name.
    name: str = None  # type: ignore[assignment]
    data_files: Any
    type: SourceType | None = None
    cache: CacheKind | None = None
    num_rows: int | None = None
    split: str = "train"
    tokenizer: str | TokenizerConfig | None = None
    content_field: str = "text"
    additional_fields: Sequence[str] | None = None
    # Left out of repr too: a traceback or a log line must not show credentials.
    storage_options: Mapping[str, Any] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.name is not None:
            if not isinstance(self.name, str) or not self.name.strip():
                raise SpecError(f"datasets[].name = {short(self.name)} must be a non-empty string")
            if self.name.startswith("__"):
                raise SpecError(
                    f"dataset name {short(self.name)} may not start with '__' (reserved for fields "
                    "such as __source__); rename it"
                )
        name = short(self.name)
        if isinstance(self.type, str) and self.type.lower() in TYPE_ALIASES:
            alias = TYPE_ALIASES[self.type.lower()]
            if alias == "arrow" and not isinstance(self.data_files, (str, Path, list, tuple)):
                alias = None  # type: ignore[assignment]  # a datasets object needs no type
            object.__setattr__(self, "type", alias)
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
        self._check_pipeline_fields(name)
        options = self.storage_options
        if options is not None:
            if not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options):
                # The value is not shown: it may hold credentials.
                raise SpecError(
                    f"dataset {name} has storage_options of type {type(options).__name__}; give "
                    'a table of fsspec options, such as { endpoint_url = "http://..." }'
                )
            object.__setattr__(self, "storage_options", dict(options))
        files = self.data_files
        if is_hf_dataset(files, "DatasetDict") or is_hf_dataset(files, "IterableDatasetDict"):
            if self.split not in files:
                raise SpecError(
                    f"dataset {name} has split = {short(self.split)}, which its DatasetDict lacks "
                    f"(splits: {', '.join(map(str, files))})"
                )
            files = files[self.split]
            object.__setattr__(self, "data_files", files)
        if is_hf_dataset(files) or is_hf_dataset(files, "IterableDataset"):
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

    def _check_pipeline_fields(self, name: str) -> None:
        if not isinstance(self.split, str) or not self.split:
            raise SpecError(f"dataset {name} has split = {short(self.split)}; give a split name")
        tokenizer = TokenizerConfig.parse(self.tokenizer, f"dataset {name} tokenizer")
        object.__setattr__(self, "tokenizer", tokenizer)
        if not isinstance(self.content_field, str) or not self.content_field:
            raise SpecError(
                f"dataset {name} has content_field = {short(self.content_field)}; give the name "
                "of the text column"
            )
        extra = self.additional_fields
        if extra is not None:
            if isinstance(extra, str) or not all(isinstance(f, str) and f for f in extra):
                raise SpecError(
                    f"dataset {name} has additional_fields = {short(extra)}; give a list of "
                    "column names"
                )
            object.__setattr__(self, "additional_fields", tuple(extra))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], index: int = 0) -> DatasetConfig:
        if not isinstance(d, Mapping):
            raise SpecError(
                f"datasets[{index}] = {short(d)} must be a table with name and data_files"
            )
        check_keys(d, [f.name for f in fields(cls)], f"datasets[{index}]")
        # A dataset without a name is named by PipelineConfig ("dataset_{i}"), as in EasyDeL.
        if "data_files" not in d:
            raise SpecError(f"datasets[{index}] has no 'data_files'; every dataset needs one")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        """What the mix depends on (the pipeline fields are left out: they change no position)."""
        files = self.data_files
        if is_hf_dataset(files):
            files = [f"<datasets.Dataset {getattr(files, '_fingerprint', '?')}>"]
        elif is_hf_dataset(files, "IterableDataset"):
            files = ["<datasets.IterableDataset>"]
        out: dict[str, Any] = {"name": self.name, "data_files": list(files), "type": self.type}
        if self.cache is not None:
            out["cache"] = self.cache
        if self.num_rows is not None:
            out["num_rows"] = self.num_rows
        return out


def is_hf_dataset(obj: object, kind: str = "Dataset") -> bool:
    cls = type(obj)
    return cls.__name__ == kind and cls.__module__.startswith("datasets")
