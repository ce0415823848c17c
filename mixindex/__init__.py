"""mixindex: plan a weighted mixture of datasets ahead of time, serve it back by position.

>>> import mixindex
>>> index = mixindex.build("mix.toml", "mix.mixindex", force=True)
>>> ds = mixindex.open("mix.mixindex")
>>> len(ds), ds[0]
(100, {'text': 'def f0(): pass', '__source__': 'code'})
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "ArrowShardedSource",
    "BuildTerminated",
    "CompositeShardedSource",
    "CsvShardedSource",
    "DatasetConfig",
    "DatasetMixture",
    "FilteredShardedSource",
    "HFDatasetShardedSource",
    "IndexExistsError",
    "IndexFormatError",
    "IndexReplacedError",
    "JsonShardedSource",
    "LimitedShardedSource",
    "LoadStageConfig",
    "MappedShardedSource",
    "MixIndexError",
    "MixStageConfig",
    "MixedDataset",
    "MixedShardedSource",
    "OutputError",
    "PackStageConfig",
    "ParquetShardedSource",
    "Pipeline",
    "PipelineConfig",
    "PlanError",
    "QueryError",
    "QueryTimeout",
    "SaveStageConfig",
    "ShardInfo",
    "ShardedDataSource",
    "ShardingError",
    "ShuffledShardedSource",
    "SourceChangedError",
    "SourceError",
    "SpecError",
    "StageError",
    "StateError",
    "StopStrategy",
    "StorageError",
    "TextDatasetInform",
    "TextShardedSource",
    "TokenizeStageConfig",
    "TokenizerConfig",
    "WeightSchedulePoint",
    "WeightScheduler",
    "__version__",
    "block_mixture_interleave",
    "build",
    "build_dataset",
    "extend",
    "load_spec",
    "open",
]

from mixindex.errors import (
    BuildTerminated,
    IndexExistsError,
    IndexFormatError,
    IndexReplacedError,
    MixIndexError,
    OutputError,
    PlanError,
    QueryError,
    QueryTimeout,
    ShardingError,
    SourceChangedError,
    SourceError,
    SpecError,
    StageError,
    StateError,
    StorageError,
)
from mixindex.pipeline.stages import (
    LoadStageConfig,
    PackStageConfig,
    SaveStageConfig,
    TokenizerConfig,
    TokenizeStageConfig,
)
from mixindex.spec.config import (
    DatasetConfig,
    MixStageConfig,
    PipelineConfig,
    StopStrategy,
    load_spec,
)
from mixindex.spec.schedule import WeightSchedulePoint, WeightScheduler

if TYPE_CHECKING:
    from mixindex.builder import build
    from mixindex.extender import extend
    from mixindex.mixing.composite import CompositeShardedSource
    from mixindex.mixing.files import (
        ArrowShardedSource,
        CsvShardedSource,
        JsonShardedSource,
        ParquetShardedSource,
        TextShardedSource,
    )
    from mixindex.mixing.hf import HFDatasetShardedSource
    from mixindex.mixing.interleave import block_mixture_interleave
    from mixindex.mixing.mixed import MixedShardedSource
    from mixindex.mixing.sharded import (
        FilteredShardedSource,
        LimitedShardedSource,
        MappedShardedSource,
        ShardedDataSource,
        ShardInfo,
        ShuffledShardedSource,
    )
    from mixindex.pipeline.core import Pipeline
    from mixindex.pipeline.legacy import DatasetMixture, TextDatasetInform, build_dataset
    from mixindex.read.dataset import MixedDataset, open

# The reader and the builder load on first use, so that `import mixindex` stays light.
_LAZY = {
    "build": "mixindex.builder",
    "extend": "mixindex.extender",
    "open": "mixindex.read.dataset",
    "MixedDataset": "mixindex.read.dataset",
    # EasyDeL's mixing API (mixindex/mixing/); block_mixture_interleave imports datasets.
    "block_mixture_interleave": "mixindex.mixing.interleave",
    "MixedShardedSource": "mixindex.mixing.mixed",
    "ShardedDataSource": "mixindex.mixing.sharded",
    "ShardInfo": "mixindex.mixing.sharded",
    "MappedShardedSource": "mixindex.mixing.sharded",
    "FilteredShardedSource": "mixindex.mixing.sharded",
    "ShuffledShardedSource": "mixindex.mixing.sharded",
    "LimitedShardedSource": "mixindex.mixing.sharded",
    "CompositeShardedSource": "mixindex.mixing.composite",
    "ParquetShardedSource": "mixindex.mixing.files",
    "JsonShardedSource": "mixindex.mixing.files",
    "ArrowShardedSource": "mixindex.mixing.files",
    "CsvShardedSource": "mixindex.mixing.files",
    "TextShardedSource": "mixindex.mixing.files",
    "HFDatasetShardedSource": "mixindex.mixing.hf",
    # EasyDeL's Pipeline API and legacy DatasetMixture (mixindex/pipeline/); tokenizers load
    # when a pipeline first tokenizes.
    "Pipeline": "mixindex.pipeline.core",
    "DatasetMixture": "mixindex.pipeline.legacy",
    "TextDatasetInform": "mixindex.pipeline.legacy",
    "build_dataset": "mixindex.pipeline.legacy",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mixindex' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
