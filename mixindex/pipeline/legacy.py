"""EasyDeL's legacy API that works: ``DatasetMixture``, ``TextDatasetInform``, ``build_dataset``.

    >>> mixture = DatasetMixture(
    ...     informs=[TextDatasetInform(data_files="data/code/*.parquet", content_field="text"),
    ...              TextDatasetInform(data_files="data/text/*.arrow", content_field="text")],
    ...     mixture_weights={"ds1": 0.7, "ds2": 0.3}, mixture_block_size=10, seed=42)
    >>> dataset = build_dataset(mixture)  # an IterableDataset, mixed block by block
    >>> [ex["text"] for ex in dataset.take(3)]
    ['def f0(): pass', 'def f1(): pass', 'text 0']

Each example holds its inform's ``content_field`` under ``text_target_field`` plus the inform's
``additional_fields``, as EasyDeL's do. Unlike EasyDeL, the mix is real: the same planner as
``mixindex build`` (exact counts per block of ``mixture_block_size``; ``block_mixture=False``
mixes example by example), ``streaming=False`` gives a map-style mixed ``datasets.Dataset`` (not
the unmixed concatenation), and the defaults run (EasyDeL's raise ``TypeError``).

``mixture_weights`` is a dict keyed by the informs' names (``name``, else ``dataset_{i}``), a
dict with one weight per inform taken in inform order when its keys name no inform (EasyDeL's
documented ``{"ds1": ..., "ds2": ...}``), or a list; None mixes equally.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mixindex.errors import SpecError, short
from mixindex.pipeline.stages import PackStageConfig
from mixindex.spec.config import DatasetConfig, MixStageConfig, PipelineConfig
from mixindex.spec.schedule import whole_number

__all__ = ["DatasetMixture", "TextDatasetInform", "build_dataset"]

logger = logging.getLogger("mixindex")

_SUFFIXES = {
    ".parquet": "parquet",
    ".arrow": "arrow",
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
    ".csv": "csv",
    ".txt": "text",
}


def _guess_type(data_files: Any) -> str:
    first = data_files if isinstance(data_files, (str, Path)) else next(iter(data_files), "")
    suffix = Path(str(first)).suffix.lower()
    if suffix not in _SUFFIXES:
        raise SpecError(
            f"TextDatasetInform cannot tell the type of {short(str(first))} from its suffix; set "
            "type = 'parquet', 'json', 'csv', 'arrow' or 'txt'"
        )
    return _SUFFIXES[suffix]


@dataclass(kw_only=True)
class TextDatasetInform:
    """One text dataset of a mixture; ``type`` is guessed from the files' suffix when left out."""

    type: str | None = None
    data_files: Any = None
    num_rows: int | None = None
    split: str = "train"
    content_field: str = "content"
    additional_fields: Sequence[str] | None = None
    preprocessing_fn: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if self.data_files is None or (
            isinstance(self.data_files, (list, tuple)) and not self.data_files
        ):
            raise SpecError("TextDatasetInform needs data_files (a path, a glob or a list of them)")
        if self.type is None and isinstance(self.data_files, (str, Path, list, tuple)):
            self.type = _guess_type(self.data_files)

    def config(self, name: str) -> DatasetConfig:
        return DatasetConfig(
            name=name,
            data_files=self.data_files,
            type=self.type,  # type: ignore[arg-type]  # EasyDeL's spellings are read there
            split=self.split,
            content_field=self.content_field,
            additional_fields=self.additional_fields,
        )


@dataclass(kw_only=True)
class DatasetMixture:
    """A mixture of informs and how to serve it (EasyDeL's fields; ``num_examples`` is ours:
    the length of a ``restart`` mix built with ``streaming=False``, all the rows by default)."""

    informs: Sequence[TextDatasetInform]
    cache_dir: str | Path = "~/.cache/mixindex/mixture"
    streaming: bool = True
    text_target_field: str = "text"
    image_target_field: str = "image"
    batch_size: int = 1
    shuffle_buffer_size: int | None = None
    seed: int = 42
    pack_tokens: bool = False
    tokens_field_name: str = "tokens"
    pack_seq_length: int | None = None
    pack_eos_token_id: int = 0
    pack_shuffle: bool = True
    pack_shuffle_buffer_factor: int = 16
    mixture_weights: Mapping[str, float] | Sequence[float] | None = None
    block_mixture: bool = True
    mixture_block_size: int = 2048
    stop_strategy: str = "restart"
    num_examples: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.informs, (list, tuple)) or not self.informs:
            raise SpecError("DatasetMixture needs informs: a list of TextDatasetInform")
        for inform in self.informs:
            if not isinstance(inform, TextDatasetInform):
                raise SpecError(f"informs must hold TextDatasetInform objects, got {short(inform)}")
        whole_number(self.mixture_block_size, "mixture_block_size", minimum=1)
        if self.pack_tokens and self.pack_seq_length is None:
            raise SpecError("pack_tokens=True needs pack_seq_length (the packed sequence length)")

    @property
    def names(self) -> list[str]:
        return [inf.name or f"dataset_{i}" for i, inf in enumerate(self.informs)]

    def weights(self) -> dict[str, float] | None:
        """The weights keyed by inform name."""
        w, names = self.mixture_weights, self.names
        if w is None:
            return None
        if isinstance(w, Mapping):
            if set(w) & set(names) or len(w) != len(names):
                return dict(w)  # checked against the names by PipelineConfig
            logger.info(
                "mixture_weights keys %s name no inform; taking them in inform order (%s)",
                list(w),
                ", ".join(names),
            )
            return dict(zip(names, w.values(), strict=True))
        if isinstance(w, (list, tuple)) and len(w) == len(names):
            return dict(zip(names, w, strict=True))
        raise SpecError(
            f"mixture_weights = {short(w)} must be a dict keyed by inform names "
            f"({', '.join(names)}), or one weight per inform"
        )

    def pipeline_config(self) -> PipelineConfig:
        names = self.names
        stop = self.stop_strategy
        num = self.num_examples
        if not self.streaming and stop == "restart" and num is None:
            num = -1  # filled in below, once the row counts are known
        config = PipelineConfig(
            datasets=[inf.config(n) for n, inf in zip(names, self.informs, strict=True)],
            mix=MixStageConfig(
                weights=self.weights(),
                block_size=self.mixture_block_size if self.block_mixture else 1,
                seed=self.seed,
                stop_strategy=stop,  # type: ignore[arg-type]  # parsed there
                num_examples=None if num == -1 else num,
            ),
        )
        if num == -1:
            mix = replace(config.mix, num_examples=_total_rows(config))
            config = replace(config, mix=mix)
        return config


def _total_rows(config: PipelineConfig) -> int:
    """Every dataset's row count (a stream is counted by reading it once)."""
    from mixindex.mixing.inputs import as_input
    from mixindex.pipeline.stream import dataset_inputs

    total = 0
    for name, obj in dataset_inputs(config).items():
        inp = as_input(name, obj)
        n = inp.known_length()
        total += n if n is not None else sum(1 for _ in inp.open(0, 0))
    return max(total, 1)


class _Projected:
    """The mixed examples as EasyDeL's: the text under ``text_target_field``, plus fields."""

    def __init__(self, upstream: Any, mixture: DatasetMixture) -> None:
        self.upstream = upstream
        self.endless = upstream.endless
        self.informs = dict(zip(mixture.names, mixture.informs, strict=True))
        self.target = mixture.text_target_field
        self.tokens = mixture.tokens_field_name if mixture.pack_tokens else None

    def iterate(self, state: Any) -> Iterator[tuple[dict[str, Any], Any]]:
        for example, after in self.upstream.iterate(state):
            inform = self.informs[example.pop("__source__")]
            if inform.preprocessing_fn is not None:
                example = inform.preprocessing_fn(example)
            if self.tokens is not None:
                yield {"input_ids": example[self.tokens]}, after
                continue
            if inform.content_field not in example:
                raise SpecError(
                    f"inform {short(inform.name or inform.data_files)} has no field "
                    f"{short(inform.content_field)} (content_field); its fields: "
                    f"{', '.join(map(str, example))}"
                )
            out = {self.target: example[inform.content_field]}
            for f in inform.additional_fields or ():
                out[f] = example.get(f)
            yield out, after


def build_dataset(mixture: DatasetMixture) -> Any:
    """The mixture as a ``datasets.IterableDataset`` (``streaming=True``) or a map-style
    ``datasets.Dataset`` (``streaming=False``), mixed by mixindex's planner."""
    import datasets

    from mixindex.pipeline.pack import SALT_LOAD, SALT_PACK, PackStream, WindowShuffle
    from mixindex.pipeline.stream import mixed_stream

    config = mixture.pipeline_config()
    stream: Any = _Projected(mixed_stream(config), mixture)
    if mixture.pack_tokens:
        pack = PackStageConfig(
            enabled=True,
            seq_length=mixture.pack_seq_length,  # type: ignore[arg-type]  # checked
            eos_token_id=mixture.pack_eos_token_id,
            shuffle_packed=mixture.pack_shuffle,
            shuffle_buffer_factor=mixture.pack_shuffle_buffer_factor,
        )
        stream = PackStream(stream, pack)
        if pack.shuffle_packed:
            stream = WindowShuffle(stream, pack.window, mixture.seed, SALT_PACK)
    if mixture.shuffle_buffer_size:
        stream = WindowShuffle(stream, mixture.shuffle_buffer_size, mixture.seed, SALT_LOAD)
    final = stream

    def examples() -> Iterator[dict[str, Any]]:
        for example, _ in final.iterate(None):
            yield {k: v.tolist() if hasattr(v, "tolist") else v for k, v in example.items()}

    if mixture.streaming:
        return datasets.IterableDataset.from_generator(examples)
    return datasets.Dataset.from_list(list(examples()))
