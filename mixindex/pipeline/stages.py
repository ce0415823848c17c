"""The pipeline's stage configs, with EasyDeL's names and defaults, validated when built.

    >>> PackStageConfig(enabled=True, seq_length=512, strategy="first_fit").seq_length
    512

A config given as a dict (a spec file, ``Pipeline.from_config({...})``) is read by
:func:`stage_from_dict`, which refuses unknown keys.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal, TypeVar, get_args

from mixindex.errors import SpecError, short
from mixindex.spec.schedule import whole_number

__all__ = [
    "LoadStageConfig",
    "PackStageConfig",
    "SaveStageConfig",
    "TokenizeStageConfig",
    "TokenizerConfig",
    "parse_size",
    "stage_from_dict",
]

PackStrategy = Literal["greedy", "pool", "first_fit"]
PACK_STRATEGIES: tuple[str, ...] = get_args(PackStrategy)
Padding = bool | Literal["max_length", "longest", "do_not_pad"]
PADDINGS = (True, False, "max_length", "longest", "do_not_pad")
SaveFormat = Literal["parquet"]

_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]?i?B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_UNITS.update({"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40})


def _flag(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise SpecError(f"{where} = {short(value)} must be true or false")
    return value


def parse_size(value: object, where: str) -> int:
    """A byte count from an int or a string such as ``"500MB"`` or ``"1GiB"``."""
    if isinstance(value, str):
        m = _SIZE.match(value)
        if m is None:
            raise SpecError(
                f"{where} = {short(value)} is not a size; write bytes or a string like '500MB'"
            )
        value = int(m.group(1)) * _UNITS[(m.group(2) or "").upper()]
    return whole_number(value, where, minimum=1)


@dataclass(frozen=True, kw_only=True)
class TokenizerConfig:
    """A Hugging Face tokenizer: a hub name or a local folder (``AutoTokenizer``), or a
    ``tokenizer.json`` file (read with ``tokenizers``), and how to call it."""

    name_or_path: str
    max_length: int = 2048
    truncation: bool = True
    padding: Padding = False
    add_special_tokens: bool = True
    return_attention_mask: bool = True
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name_or_path, str) or not self.name_or_path.strip():
            raise SpecError(
                f"tokenizer name_or_path = {short(self.name_or_path)} must be a tokenizer name, "
                "a folder or a tokenizer.json path"
            )
        where = f"tokenizer {short(self.name_or_path)}"
        whole_number(self.max_length, f"{where} max_length", minimum=1)
        for name in ("truncation", "add_special_tokens", "return_attention_mask"):
            _flag(getattr(self, name), f"{where} {name}")
        _flag(self.trust_remote_code, f"{where} trust_remote_code")
        if self.padding not in PADDINGS or (
            isinstance(self.padding, int) and not isinstance(self.padding, bool)
        ):
            raise SpecError(
                f"{where} padding = {short(self.padding)} is unknown; use false, true, "
                "'max_length', 'longest' or 'do_not_pad'"
            )

    @classmethod
    def parse(cls, value: object, where: str) -> str | TokenizerConfig | None:
        """None, a name/path (kept: the tokenize stage gives it its ``max_length``), a table of
        these fields, or a TokenizerConfig."""
        if value is None or isinstance(value, cls):
            return value
        if isinstance(value, str):
            return cls(name_or_path=value).name_or_path
        if isinstance(value, Mapping):
            return stage_from_dict(cls, value, where)
        raise SpecError(
            f"{where} = {short(value)} must be a tokenizer name or path, or a TokenizerConfig"
        )

    def call_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of a ``transformers`` tokenizer call."""
        return {
            "max_length": self.max_length,
            "truncation": self.truncation,
            "padding": self.padding,
            "add_special_tokens": self.add_special_tokens,
            "return_attention_mask": self.return_attention_mask,
        }


@dataclass(frozen=True, kw_only=True)
class TokenizeStageConfig:
    """Tokenization: the default tokenizer of datasets that name none, and the batch size."""

    default_tokenizer: str | TokenizerConfig | None = None
    max_length: int = 2048
    batch_size: int = 1000
    # Accepted for EasyDeL configs; tokenization runs in the loader's background thread.
    num_workers: int = 4
    remove_columns: Sequence[str] | None = None

    def __post_init__(self) -> None:
        default = TokenizerConfig.parse(self.default_tokenizer, "tokenize.default_tokenizer")
        object.__setattr__(self, "default_tokenizer", default)
        whole_number(self.max_length, "tokenize.max_length", minimum=1)
        whole_number(self.batch_size, "tokenize.batch_size", minimum=1)
        whole_number(self.num_workers, "tokenize.num_workers", minimum=0)
        if self.remove_columns is not None:
            if isinstance(self.remove_columns, str) or not all(
                isinstance(c, str) for c in self.remove_columns
            ):
                raise SpecError(
                    f"tokenize.remove_columns = {short(self.remove_columns)} must be a list of "
                    "column names"
                )
            object.__setattr__(self, "remove_columns", tuple(self.remove_columns))


@dataclass(frozen=True, kw_only=True)
class PackStageConfig:
    """Packing tokenized examples into sequences of ``seq_length`` tokens, EOS between them.

    ``strategy``: ``greedy`` (fill each sequence in order), ``first_fit`` (each example into
    the first open sequence it fits, over windows of ``num_packers * shuffle_buffer_factor``
    examples) or ``pool`` (``num_packers`` open sequences, the best-fitting one takes each
    example). No token is ever dropped: an example longer than ``seq_length`` is split.
    """

    enabled: bool = False
    seq_length: int = 2048
    eos_token_id: int = 2
    pad_token_id: int = 0
    strategy: PackStrategy = "greedy"
    num_packers: int = 4
    include_segment_ids: bool = True
    shuffle_packed: bool = True
    shuffle_buffer_factor: int = 10

    def __post_init__(self) -> None:
        _flag(self.enabled, "pack.enabled")
        whole_number(self.seq_length, "pack.seq_length", minimum=1)
        whole_number(self.eos_token_id, "pack.eos_token_id", minimum=0)
        whole_number(self.pad_token_id, "pack.pad_token_id", minimum=0)
        if self.strategy not in PACK_STRATEGIES:
            raise SpecError(
                f"pack.strategy = {short(self.strategy)} is unknown; use one of "
                f"{', '.join(PACK_STRATEGIES)}"
            )
        whole_number(self.num_packers, "pack.num_packers", minimum=1)
        _flag(self.include_segment_ids, "pack.include_segment_ids")
        _flag(self.shuffle_packed, "pack.shuffle_packed")
        whole_number(self.shuffle_buffer_factor, "pack.shuffle_buffer_factor", minimum=1)

    @property
    def window(self) -> int:
        """Examples per first-fit window, and packed sequences per shuffle window."""
        return self.num_packers * self.shuffle_buffer_factor


@dataclass(frozen=True, kw_only=True)
class LoadStageConfig:
    """Batches: size, background prefetch, an optional seeded shuffle buffer, ``drop_last``."""

    batch_size: int = 8
    prefetch_enabled: bool = True
    # Accepted for EasyDeL configs: one thread prefetches, so that batches keep their order.
    prefetch_workers: int = 2
    prefetch_buffer_size: int = 4
    shuffle_buffer_size: int | None = None
    drop_last: bool = True
    # Accepted for EasyDeL configs: batches are numpy arrays, which jax.device_put takes as is.
    prefetch_to_device: bool = False

    def __post_init__(self) -> None:
        whole_number(self.batch_size, "load.batch_size", minimum=1)
        _flag(self.prefetch_enabled, "load.prefetch_enabled")
        whole_number(self.prefetch_workers, "load.prefetch_workers", minimum=1)
        whole_number(self.prefetch_buffer_size, "load.prefetch_buffer_size", minimum=1)
        if self.shuffle_buffer_size is not None:
            whole_number(self.shuffle_buffer_size, "load.shuffle_buffer_size", minimum=1)
        _flag(self.drop_last, "load.drop_last")
        _flag(self.prefetch_to_device, "load.prefetch_to_device")


@dataclass(frozen=True, kw_only=True)
class SaveStageConfig:
    """Writing the pipeline's stream to Parquet shards of at most ``max_shard_size`` bytes."""

    enabled: bool = False
    output_dir: str = "./output"
    format: SaveFormat = "parquet"
    num_shards: int | None = None
    compression: str | None = None
    max_shard_size: str | int = "500MB"
    overwrite: bool = False

    def __post_init__(self) -> None:
        _flag(self.enabled, "save.enabled")
        _flag(self.overwrite, "save.overwrite")
        if not isinstance(self.output_dir, str) or not self.output_dir:
            raise SpecError(f"save.output_dir = {short(self.output_dir)} must be a folder path")
        if self.format != "parquet":
            raise SpecError(f"save.format = {short(self.format)} is unknown; the format is parquet")
        if self.num_shards is not None:
            whole_number(self.num_shards, "save.num_shards", minimum=1)
        parse_size(self.max_shard_size, "save.max_shard_size")

    @property
    def max_bytes(self) -> int:
        return parse_size(self.max_shard_size, "save.max_shard_size")


Stage = TypeVar("Stage")


def stage_from_dict(cls: type[Stage], d: object, where: str) -> Stage:
    """``cls(**d)`` for a table ``d``, refusing keys that are not fields of ``cls``."""
    if isinstance(d, cls):
        return d
    if not isinstance(d, Mapping):
        raise SpecError(f"{where} = {short(d)} must be a table of {cls.__name__} fields")
    known = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    for key in d:
        if key not in known:
            raise SpecError(
                f"{where} has unknown key {short(key)}; known keys: {', '.join(known)} "
                "(check the spelling)"
            )
    return cls(**d)
