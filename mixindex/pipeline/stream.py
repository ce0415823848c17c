"""Resumable streams: every item comes with the state that resumes right after it.

A stream's ``iterate(state)`` yields ``(item, state_after_item)`` pairs, starting where
``state`` says (``None``: the beginning). States are small JSON-able values, so a pipeline's
``state_dict()`` is the state after the last batch handed out, and resuming costs no more than
re-reading one window of a stage.

The streams at the bottom are positional (the state is ``{"position": p}``): the mix read
from an index (:func:`index_stream`), the mix planned in memory (:func:`mixed_stream`), or the
datasets read one after another when nothing mixes them (:func:`concat_stream`). Every example
carries ``__source__``, the name of its dataset.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

from mixindex.errors import MixIndexError, SpecError, StateError, short
from mixindex.spec.config import PipelineConfig, StopStrategy

__all__ = [
    "PositionStream",
    "Stream",
    "concat_stream",
    "dataset_inputs",
    "index_stream",
    "mixed_stream",
]

logger = logging.getLogger("mixindex")


class Stream(Protocol):
    """Items with the state after each; ``endless`` when it never ends (a ``restart`` mix
    without ``num_examples``)."""

    endless: bool

    def iterate(self, state: Any) -> Iterator[tuple[Any, Any]]: ...


def position_of(state: Any) -> int:
    """The position a positional state names (None: 0); StateError for anything else."""
    if state is None:
        return 0
    p = state.get("position") if isinstance(state, Mapping) else None
    if isinstance(p, bool) or not isinstance(p, int) or p < 0:
        raise StateError(
            f"pipeline state {short(state)} is not a stream position; pass a state that this "
            "pipeline's state_dict() returned"
        )
    return p


class PositionStream:
    """Examples by position, opened at any position by ``open_at``."""

    def __init__(
        self, open_at: Callable[[int], Iterator[dict[str, Any]]], *, endless: bool
    ) -> None:
        self.open_at = open_at
        self.endless = endless

    def iterate(self, state: Any) -> Iterator[tuple[dict[str, Any], Any]]:
        p = position_of(state)
        for i, example in enumerate(self.open_at(p), p + 1):
            yield example, {"position": i}


# ---- the datasets ------------------------------------------------------------------------------


def _json_lines(path: str) -> bool:
    """A ``.json`` file holding one list is read whole; anything else line by line."""
    with open(path, encoding="utf-8") as f:
        head = f.read(4096).lstrip()
    return not head.startswith("[")


def dataset_inputs(config: PipelineConfig) -> dict[str, Any]:
    """Each dataset as something an in-memory mix reads: a ``datasets`` object or a sharded
    source over its files (Parquet and Arrow read rows by number, so a mix seeks at once)."""
    from mixindex.mixing import files as fs
    from mixindex.sources import infer_type, resolve_files

    out: dict[str, Any] = {}
    for d in config.datasets:
        if not isinstance(d.data_files, list):
            out[d.name] = d.data_files  # a datasets object
            continue
        paths = resolve_files(d.name, d.data_files, config.base_dir, d.type)
        kind = d.type or infer_type(d.name, paths)
        if kind == "parquet":
            out[d.name] = fs.ParquetShardedSource(paths)
        elif kind == "arrow":
            out[d.name] = fs.ArrowShardedSource(paths)
        elif kind == "csv":
            out[d.name] = fs.CsvShardedSource(paths)
        elif kind == "text":
            out[d.name] = fs.TextShardedSource(paths)
        else:
            lines = [_json_lines(p) for p in paths]
            parts = [fs.JsonShardedSource([p], jsonl=j) for p, j in zip(paths, lines, strict=True)]
            if len(parts) == 1:
                out[d.name] = parts[0]
            else:
                from mixindex.mixing.composite import CompositeShardedSource

                out[d.name] = CompositeShardedSource(parts)
    return out


def _tagged(name: str, rows: Iterator[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
    for row in rows:
        yield {**row, "__source__": name}


def concat_stream(config: PipelineConfig) -> PositionStream:
    """The datasets one after another (a pipeline without ``mix()``)."""
    from mixindex.mixing.inputs import as_input

    inputs = [as_input(n, obj) for n, obj in dataset_inputs(config).items()]

    def open_at(position: int) -> Iterator[dict[str, Any]]:
        skip = position
        for inp in inputs:
            n = inp.known_length()
            if n is not None and skip >= n:
                skip -= n
                continue
            rows = inp.open(0, skip if n is not None else 0)
            if n is None:
                # A stream has no other way to get there: read past what was already served.
                taken = sum(1 for _ in islice(rows, skip))
                if taken < skip:
                    skip -= taken
                    continue
            skip = 0
            yield from _tagged(inp.name, rows)

    return PositionStream(open_at, endless=False)


def mixed_stream(config: PipelineConfig) -> PositionStream:
    """The mix planned in memory, by the same planner as an index of the same spec."""
    from mixindex.mixing.mixed import MixedShardedSource

    mix = config.mix
    if mix.row_order != "sequential":
        raise SpecError(
            f"mix.row_order = {short(mix.row_order)} is served from an index only; call "
            'mix(index="path.mixindex"), or use row_order = "sequential"'
        )
    mixed = MixedShardedSource(
        dataset_inputs(config),
        block_size=mix.block_size,
        seed=mix.seed,
        stop_strategy=mix.stop_strategy.value,
        weight_scheduler=config.scheduler(),
        num_examples=mix.num_examples,
    )
    endless = mix.stop_strategy is StopStrategy.RESTART and mix.num_examples is None
    return PositionStream(lambda p: mixed.open_shard_at_row(mixed.SHARD, p), endless=endless)


# ---- an index ----------------------------------------------------------------------------------


def _reusable(config: PipelineConfig, path: Path) -> bool:
    """Whether the index at ``path`` was built from this spec and its sources are unchanged."""
    from mixindex.read.dataset import open as open_index

    try:
        ds = open_index(path)
    except MixIndexError as exc:
        logger.warning("rebuilding %s: %s", path, exc)
        return False
    recorded = ds.index.meta.spec.to_dict()
    wanted = json.loads(json.dumps(config.to_dict(), default=str))
    same_mix = recorded.get("mix") == wanted["mix"]
    same_sources = [d.get("name") for d in recorded.get("datasets", [])] == list(config.names)
    if same_mix and same_sources:
        # The recorded files must be the ones the config names now (their contents were
        # checked against the recorded fingerprints when the index opened).
        files = _config_files(config)
        recorded_files = [list(r.origin.data_files) for r in ds.index.sources]
        same_sources = files is None or files == recorded_files
    ds.close()
    if not (same_mix and same_sources):
        logger.warning("rebuilding %s: it was built from another spec or other files", path)
    return same_mix and same_sources


def _config_files(config: PipelineConfig) -> list[list[str]] | None:
    from mixindex.sources import resolve_files

    out = []
    for d in config.datasets:
        if not isinstance(d.data_files, list):
            return None  # a datasets object: its fingerprint was checked at open
        out.append(resolve_files(d.name, d.data_files, config.base_dir, d.type))
    return out


def index_stream(
    config: PipelineConfig, path: str | Path, cache_dir: str | Path | None = None
) -> PositionStream:
    """The mix read from the index at ``path``: built once, reused while the spec and the
    sources match, rebuilt (only an index is ever replaced) when they do not."""
    from mixindex.builder import build
    from mixindex.read.dataset import open as open_index

    path = Path(path)
    exists = path.exists()
    if not (exists and _reusable(config, path)):
        build(config, path, force=exists, cache_dir=cache_dir)
    ds = open_index(path)
    return PositionStream(lambda p: iter(ds.iter(start=p)), endless=False)
