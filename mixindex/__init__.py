"""mixindex: plan a weighted mixture of datasets ahead of time, serve it back by position.

>>> import mixindex
>>> # mixindex.build("mix.toml", "mix.mixindex"); ds = mixindex.open("mix.mixindex"); ds[0]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "DatasetConfig",
    "IndexExistsError",
    "IndexFormatError",
    "IndexReplacedError",
    "MixIndexError",
    "MixStageConfig",
    "MixedDataset",
    "OutputError",
    "PipelineConfig",
    "PlanError",
    "SourceChangedError",
    "SourceError",
    "SpecError",
    "StateError",
    "StopStrategy",
    "WeightSchedulePoint",
    "WeightScheduler",
    "__version__",
    "build",
    "load_spec",
    "open",
]

from mixindex.errors import (
    IndexExistsError,
    IndexFormatError,
    IndexReplacedError,
    MixIndexError,
    OutputError,
    PlanError,
    SourceChangedError,
    SourceError,
    SpecError,
    StateError,
)
from mixindex.schedule import WeightSchedulePoint, WeightScheduler
from mixindex.spec import (
    DatasetConfig,
    MixStageConfig,
    PipelineConfig,
    StopStrategy,
    load_spec,
)

if TYPE_CHECKING:
    from mixindex.builder import build
    from mixindex.reader import MixedDataset, open

# The reader and the builder load on first use, so that `import mixindex` stays light.
_LAZY = {"build": "mixindex.builder", "open": "mixindex.reader", "MixedDataset": "mixindex.reader"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mixindex' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
