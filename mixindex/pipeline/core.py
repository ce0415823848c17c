"""``Pipeline``: EasyDeL's fluent pipeline from files to training batches, resumable in O(1).

    >>> from mixindex import LoadStageConfig, load_spec
    >>> config = dataclasses.replace(load_spec("mix.toml"), load=LoadStageConfig(batch_size=4))
    >>> pipeline = Pipeline.from_config(config)
    >>> batches = iter(pipeline.source().mix(index="mix.mixindex").load().build())
    >>> next(batches)["__source__"]  # with tokenize(): input_ids, attention_mask too
    array(['code', 'code', 'text', 'text'], dtype='<U4')
    >>> state = pipeline.state_dict()  # later: pipeline.load_state_dict(state), then build()

Stages are recorded in order and run lazily by :meth:`Pipeline.build`: ``source()`` comes
first; ``tokenize()`` may come before or after ``mix()`` (it tokenizes either way: examples
carry ``__source__``); ``pack()`` needs ``tokenize()`` first; ``load()`` comes last. An order
that cannot work is a :class:`~mixindex.errors.StageError`, never a stage silently skipped.
``mix(index="path.mixindex")`` builds an index once (reused while the spec and the sources
match) and reads it by position; without ``index`` the same sequence is planned in memory.

The state is the place after the last batch (or example) handed out: a position in the mix,
plus, when packing or shuffling, where the current window or document began.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from mixindex.errors import StageError, StateError, short
from mixindex.pipeline.stream import PositionStream, Stream
from mixindex.sources.base import digest
from mixindex.spec.config import PipelineConfig

__all__ = ["Pipeline"]

logger = logging.getLogger("mixindex")

STATE_VERSION = 1


class Pipeline:
    """A chain of stages over the datasets of a :class:`~mixindex.spec.config.PipelineConfig`."""

    def __init__(self, config: PipelineConfig) -> None:
        if not isinstance(config, PipelineConfig):
            raise StageError(f"Pipeline needs a PipelineConfig, got {short(config)}")
        self.config = config
        self.stages: list[str] = []
        self._index: Path | None = None
        self._cache_dir: str | Path | None = None
        self._state: Any = None
        self._expected: str | None = None  # a loaded state's pipeline, checked at build()
        self._saved = False
        self.saved_paths: list[Path] = []

    @classmethod
    def from_config(cls, config: PipelineConfig | Mapping[str, Any]) -> Pipeline:
        """A pipeline from a config object, or from a dict in spec form (relative paths are
        read from the current folder)."""
        if isinstance(config, Mapping):
            config = PipelineConfig.from_dict(config)
        return cls(config)

    # ---- the stages ----------------------------------------------------------------------------

    def _add(self, stage: str) -> Pipeline:
        if stage in self.stages:
            raise StageError(f"{stage}() was already called on this pipeline; call it once")
        if stage != "source" and "source" not in self.stages:
            raise StageError(f"{stage}() before source(); start with pipeline.source()")
        if "load" in self.stages:
            raise StageError(f"{stage}() after load(); load() is the last stage before build()")
        if stage == "pack" and "tokenize" not in self.stages:
            raise StageError("pack() needs token ids; call tokenize() before pack()")
        if stage in ("tokenize", "mix") and "pack" in self.stages:
            raise StageError(f"{stage}() after pack(); call it before pack()")
        self.stages.append(stage)
        return self

    def source(self) -> Pipeline:
        """Open the datasets (read lazily, as the pipeline runs)."""
        return self._add("source")

    def tokenize(self) -> Pipeline:
        """Tokenize each example with its dataset's tokenizer (before or after ``mix()``)."""
        return self._add("tokenize")

    def mix(self, index: str | Path | None = None, cache_dir: str | Path | None = None) -> Pipeline:
        """Mix the datasets as ``config.mix`` says. With ``index``, the mix is built into that
        index once (``cache_dir`` as for ``mixindex build``) and read by position."""
        self._add("mix")
        self._index = Path(index) if index is not None else None
        self._cache_dir = cache_dir
        if self._index is None and self.config.mix.row_order != "sequential":
            self.stages.pop()
            raise StageError(
                f"mix.row_order = {short(self.config.mix.row_order)} is served from an index "
                'only; call mix(index="path.mixindex")'
            )
        return self

    def pack(self) -> Pipeline:
        """Pack token ids into sequences of ``config.pack.seq_length`` (whatever
        ``pack.enabled`` says: calling pack() packs)."""
        return self._add("pack")

    def load(self) -> Pipeline:
        """Batch the stream as ``config.load`` says (the last stage before ``build()``). With
        ``pack.enabled`` it packs first, and with ``save.enabled`` it saves first, when
        ``pack()`` / ``save()`` were not called: an enabled stage is never skipped."""
        if self.config.pack.enabled and "pack" not in self.stages and "tokenize" in self.stages:
            logger.info("pack.enabled is true: packing before load()")
            self._add("pack")
        if self.config.save.enabled and not self._saved and "source" in self.stages:
            logger.info("save.enabled is true: saving before load()")
            self.save()
        return self._add("load")

    def save(self, output_dir: str | Path | None = None) -> Pipeline:
        """Write the stream so far to Parquet shards now (``output_dir`` or
        ``config.save.output_dir``); the paths are in :attr:`saved_paths`."""
        if "source" not in self.stages:
            raise StageError("save() before source(); start with pipeline.source()")
        if "load" in self.stages:
            raise StageError("save() after load(); save the stream before batching it")
        from mixindex.pipeline.save import save_stream

        out = Path(output_dir if output_dir is not None else self.config.save.output_dir)
        self.saved_paths = save_stream(self._stream(), self.config.save, out)
        self._saved = True
        return self

    # ---- running ---------------------------------------------------------------------------------

    def _positions(self) -> PositionStream:
        from mixindex.pipeline import stream

        if "mix" not in self.stages:
            return stream.concat_stream(self.config)
        if self._index is not None:
            return stream.index_stream(self.config, self._index, self._cache_dir)
        return stream.mixed_stream(self.config)

    def _stream(self) -> Stream:
        """The stages up to (not including) load, composed."""
        if "source" not in self.stages:
            raise StageError("build() before source(); start with pipeline.source()")
        base: Stream = self._positions()
        if "tokenize" in self.stages:
            from mixindex.pipeline.tokenize import TokenizeStream, tokenizer_plans

            stage = self.config.tokenize
            plans = tokenizer_plans(self.config, packing="pack" in self.stages)
            base = TokenizeStream(base, plans, stage.batch_size, stage.remove_columns or ())  # type: ignore[arg-type]
        if "pack" in self.stages:
            from mixindex.pipeline.pack import SALT_PACK, PackStream, WindowShuffle

            pack = self.config.pack
            base = PackStream(base, pack)
            if pack.shuffle_packed:
                base = WindowShuffle(base, pack.window, self.seed, SALT_PACK)
        return base

    @property
    def seed(self) -> int:
        """The seed of the pack and load shuffles: ``config.seed``, else the mix's."""
        return self.config.seed if self.config.seed is not None else self.config.mix.seed

    def build(self) -> Any:
        """The pipeline's output: a :class:`~mixindex.pipeline.load.Loader` of batches after
        ``load()``, else an iterable of examples. Each iteration starts at the current state."""
        if self._expected is not None:
            self._check(self._expected)
        stream = self._stream()
        if "load" not in self.stages:
            return _Examples(self, stream)
        from mixindex.pipeline.load import Loader, batches
        from mixindex.pipeline.pack import SALT_LOAD, WindowShuffle

        load = self.config.load
        if load.shuffle_buffer_size is not None:
            stream = WindowShuffle(stream, load.shuffle_buffer_size, self.seed, SALT_LOAD)
        final = stream

        def make(state: Any) -> Iterator[tuple[Any, Any]]:
            return batches(final, state, load.batch_size, load.drop_last)

        return Loader(make, load, lambda: self._state, self._set)

    def _set(self, state: Any) -> None:
        self._state = state

    # ---- resume ----------------------------------------------------------------------------------

    def fingerprint(self) -> str:
        """A digest of everything that changes what the pipeline yields."""
        c = self.config
        payload = {
            "spec": c.to_dict(),
            "datasets": [[d.tokenizer, d.content_field, d.additional_fields] for d in c.datasets],
            "stages": self.stages,
            "index": self._index is not None,
            "seed": self.seed,
            **{k: dataclasses.asdict(getattr(c, k)) for k in ("tokenize", "pack", "load")},
            "default_tokenizer": c.default_tokenizer,
        }
        return digest(json.loads(json.dumps(payload, default=repr)))

    def state_dict(self) -> dict[str, Any]:
        """Where the pipeline is: after the last batch (or example) that ``build()`` handed out.
        Small and JSON-able; :meth:`load_state_dict` on a pipeline of the same config and
        stages resumes at the next batch."""
        return {"version": STATE_VERSION, "pipeline": self.fingerprint(), "state": self._state}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume at a place :meth:`state_dict` returned; StateError for another pipeline's."""
        if not isinstance(state, Mapping) or state.get("version") != STATE_VERSION:
            raise StateError(
                f"pipeline state {short(state)} is not a state of this version "
                f"({STATE_VERSION}); pass what Pipeline.state_dict() returned"
            )
        expected = state.get("pipeline")
        if not isinstance(expected, str):
            raise StateError(f"pipeline state {short(state)} names no pipeline")
        if self.stages:
            self._check(expected)
        else:
            self._expected = expected  # loaded before the stages: checked by build()
        self._state = state.get("state")

    def _check(self, expected: str) -> None:
        mine = self.fingerprint()
        if expected != mine:
            raise StateError(
                f"pipeline state is of another pipeline ({short(expected)}, this one is "
                f"{mine}): the same config, seeds and stages are needed to resume"
            )
        self._expected = None

    def __repr__(self) -> str:
        chain = ".".join(f"{s}()" for s in self.stages) or "(no stages)"
        return f"Pipeline({', '.join(self.config.names)}: {chain})"


class _Examples:
    """The stream without batching; iterating it moves the pipeline's state."""

    def __init__(self, pipeline: Pipeline, stream: Stream) -> None:
        self._pipeline = pipeline
        self._stream = stream

    def __iter__(self) -> Iterator[Any]:
        for item, state in self._stream.iterate(self._pipeline._state):
            self._pipeline._set(state)
            yield item
