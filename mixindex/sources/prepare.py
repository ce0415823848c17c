"""Sources made ready to plan and read: Parquet swapped for its Arrow cache where asked, and text
files, in-memory datasets and streams converted into it (so that an index reopens by itself).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mixindex.sources.base import Source
from mixindex.sources.cache import cached_source, default_cache_dir
from mixindex.sources.convert import convert_source, needs_conversion

if TYPE_CHECKING:
    from mixindex.spec.config import DatasetConfig

__all__ = ["cache_sources"]


def cache_sources(
    configs: Sequence[DatasetConfig], sources: Sequence[Source], cache_dir: Path | str | None
) -> tuple[list[Source], list[dict[str, Any]]]:
    """Sources and index records, with Parquet sources swapped for their Arrow cache where
    ``cache = "arrow"`` or a ``cache_dir`` asks for it (in ``cache_dir``, else
    :func:`default_cache_dir`). The sources swapped out are closed."""
    out: list[Source] = []
    records: list[dict[str, Any]] = []
    for config, src in zip(configs, sources, strict=True):
        if needs_conversion(src):
            # Text formats, in-memory datasets and streams: converted whatever the settings,
            # so that the index can reopen them by itself.
            cached, record = convert_source(
                src, cache_dir if cache_dir is not None else default_cache_dir()
            )
            src.close()
            out.append(cached)
            records.append(record)
            continue
        wanted = config.cache == "arrow" or (cache_dir is not None and src.type == "parquet")
        if not wanted:
            out.append(src)
            records.append(src.describe())
            continue
        if src.type != "parquet":
            # Arrow sources are already memory-mapped; caching them would only copy the files.
            out.append(src)
            records.append(src.describe())
            continue
        cached, record = cached_source(
            src, cache_dir if cache_dir is not None else default_cache_dir()
        )
        src.close()
        out.append(cached)
        records.append(record)
    return out, records
