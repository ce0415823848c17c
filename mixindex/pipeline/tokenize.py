"""The tokenize stage: each example becomes its tokenizer's output plus its additional fields.

A dataset's tokenizer is its own (``DatasetConfig.tokenizer``), else the tokenize stage's
``default_tokenizer``, else the pipeline's; a dataset with none is an error, never skipped.
Tokenizers are Hugging Face ones: a hub name or a local folder through ``transformers``'
``AutoTokenizer``, or a ``tokenizer.json`` file through ``tokenizers`` (both from the
``tokenize`` extra, imported on first use). Examples are tokenized ``batch_size`` at a time, in
batches aligned to positions, so that a resumed pipeline tokenizes exactly what a whole run did
(``padding="longest"`` pads to the same batch).

With packing on, examples are neither truncated nor padded: the packer splits long examples
across sequences and pads only the last one, so no token is lost.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from mixindex.errors import SourceError, SpecError, clip, one_line, short
from mixindex.pipeline.stages import TokenizerConfig
from mixindex.pipeline.stream import PositionStream, position_of
from mixindex.spec.config import PipelineConfig

__all__ = ["TokenizeStream", "load_tokenizer", "tokenizer_plans"]

_CACHE: dict[tuple[str, bool], Any] = {}
_LOCK = threading.Lock()


def load_tokenizer(config: TokenizerConfig) -> Any:
    """The tokenizer ``config`` names, loaded once per process."""
    key = (config.name_or_path, config.trust_remote_code)
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = _load(config)
        return _CACHE[key]


def _load(config: TokenizerConfig) -> Any:
    name = config.name_or_path
    try:
        import transformers
    except ImportError:
        raise SpecError(
            f"tokenizer {short(name)} needs the transformers package; install the extra: "
            "pip install 'mixindex[tokenize]'"
        ) from None
    path = Path(name).expanduser()
    try:
        if path.is_file() and path.suffix == ".json":
            from tokenizers import Tokenizer

            return transformers.PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
                tokenizer_object=Tokenizer.from_file(str(path))
            )
        return transformers.AutoTokenizer.from_pretrained(
            name, trust_remote_code=config.trust_remote_code
        )
    except Exception as exc:
        raise SpecError(
            f"tokenizer {short(name)} cannot be loaded: {clip(one_line(exc))}; give a "
            "tokenizer name, a folder saved by save_pretrained, or a tokenizer.json file"
        ) from None


@dataclass(frozen=True)
class Plan:
    """How one dataset's examples are tokenized."""

    tokenizer: TokenizerConfig
    content_field: str
    additional_fields: tuple[str, ...]


def tokenizer_plans(config: PipelineConfig, packing: bool) -> dict[str, Plan]:
    """Each dataset's tokenizer and fields; SpecError for a dataset without a tokenizer."""
    stage = config.tokenize
    plans = {}
    for d in config.datasets:
        chosen = d.tokenizer or stage.default_tokenizer or config.default_tokenizer
        if chosen is None:
            raise SpecError(
                f"dataset {short(d.name)} has no tokenizer; set DatasetConfig(tokenizer=...), "
                "TokenizeStageConfig(default_tokenizer=...) or "
                "PipelineConfig(default_tokenizer=...)"
            )
        tok = chosen if isinstance(chosen, TokenizerConfig) else TokenizerConfig(
            name_or_path=chosen, max_length=stage.max_length
        )  # fmt: skip
        if packing:
            tok = replace(tok, truncation=False, padding=False)
        plans[d.name] = Plan(tok, d.content_field, tuple(d.additional_fields or ()))
    return plans


class TokenizeStream:
    """A positional stream of examples, tokenized ``batch_size`` at a time."""

    def __init__(
        self,
        upstream: PositionStream,
        plans: Mapping[str, Plan],
        batch_size: int,
        remove_columns: Sequence[str] = (),
    ) -> None:
        self.upstream = upstream
        self.plans = dict(plans)
        self.batch_size = batch_size
        self.remove_columns = set(remove_columns)
        self.endless = upstream.endless

    def iterate(self, state: Any) -> Iterator[tuple[dict[str, Any], Any]]:
        p = position_of(state)
        start = p - p % self.batch_size
        items = self.upstream.iterate({"position": start})
        while chunk := list(islice(items, self.batch_size)):
            out = self.tokenize([example for example, _ in chunk])
            for (_, after), example in zip(chunk, out, strict=True):
                if after["position"] > p:
                    yield example, after

    def tokenize(self, examples: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Each example's tokenizer output plus its additional fields and ``__source__``."""
        groups: dict[str, list[int]] = {}
        for i, ex in enumerate(examples):
            groups.setdefault(ex.get("__source__", ""), []).append(i)
        out: list[dict[str, Any]] = [{} for _ in examples]
        for name, members in groups.items():
            plan = self.plans.get(name)
            if plan is None:
                raise SourceError(
                    f"an example of {short(name)} reached tokenize(), but no dataset has that "
                    f"name (datasets: {', '.join(self.plans)})"
                )
            texts = [self._text(examples[i], name, plan.content_field) for i in members]
            tokenizer = load_tokenizer(plan.tokenizer)
            try:
                enc = tokenizer(texts, **plan.tokenizer.call_kwargs())
            except ValueError as exc:  # e.g. padding without a pad token
                raise SpecError(
                    f"tokenizer {short(plan.tokenizer.name_or_path)} refused dataset "
                    f"{short(name)}'s examples: {clip(one_line(exc))}"
                ) from None
            # Padded outputs have one length: arrays, which the loader stacks into 2-D batches.
            padded = plan.tokenizer.padding not in (False, "do_not_pad")
            for j, i in enumerate(members):
                row = {
                    k: np.asarray(v[j], dtype=np.int32)
                    if padded and isinstance(v[j], list)
                    else v[j]
                    for k, v in enc.items()
                }
                for f in plan.additional_fields:
                    if f not in examples[i]:
                        raise SourceError(
                            f"dataset {short(name)} has no field {short(f)} (additional_fields);"
                            f" its fields: {', '.join(map(str, examples[i]))}"
                        )
                    row[f] = examples[i][f]
                row["__source__"] = name
                for col in self.remove_columns:
                    row.pop(col, None)
                out[i] = row
        return out

    @staticmethod
    def _text(example: Mapping[str, Any], name: str, field: str) -> str:
        if field not in example:
            fields = ", ".join(k for k in example if k != "__source__")
            raise SourceError(
                f"dataset {short(name)} has no field {short(field)} (content_field); its fields: "
                f"{fields}; set DatasetConfig(content_field=...)"
            )
        text = example[field]
        if not isinstance(text, str):
            raise SourceError(
                f"dataset {short(name)}: content_field {short(field)} holds a "
                f"{type(text).__name__}, not text"
            )
        return text
