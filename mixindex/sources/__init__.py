"""Data sources: open the datasets of a spec, count their rows and read rows by number.

    >>> from mixindex.spec import DatasetConfig
    >>> config = DatasetConfig(name="code", data_files="code/*.parquet")
    >>> src = open_source(config, base_dir)  # doctest: +SKIP
    >>> len(src), src.fingerprint()  # doctest: +SKIP
    (120000, 'sha256:...')
    >>> same = reopen_source(src.describe())  # doctest: +SKIP

``data_files`` entries are paths, globs or folders, relative to ``base_dir``: a folder holds
``*.parquet`` files, Arrow files (``*.arrow``, ``*.feather``, ``*.ipc``), or is a
``datasets.Dataset.save_to_disk`` folder (its ``state.json`` gives the files in order). Names
starting with ``.`` or ``_`` in a folder are skipped (``_SUCCESS``, ``_metadata``). Paths are
made absolute but symlinks are kept, so a fingerprint sees the names the user sees.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mixindex.errors import SourceError
from mixindex.sources.base import Source

if TYPE_CHECKING:
    from mixindex.spec import DatasetConfig

__all__ = ["Source", "SourceError", "infer_type", "open_source", "reopen_source", "resolve_files"]

_TYPES = ("parquet", "arrow")
_PARQUET_SUFFIXES = (".parquet",)
_ARROW_SUFFIXES = (".arrow", ".feather", ".ipc")
# Formats converted into the Arrow cache at build time (mixindex/sources/convert.py).
_CONVERTED_SUFFIXES: dict[str | None, tuple[str, ...]] = {
    "json": (".json", ".jsonl", ".ndjson"),
    "csv": (".csv", ".tsv"),
    "text": (".txt",),
}
_GLOB_CHARS = "*?["


def open_source(config: DatasetConfig, base_dir: Path | str) -> Source:
    """Open the dataset a :class:`~mixindex.spec.DatasetConfig` names; reads metadata only."""
    from mixindex.sources.hf import is_hf_dataset

    name = config.name
    from mixindex.sources.convert import CONVERTED_TYPES, PendingSource

    if type(config.data_files).__name__ == "IterableDataset":
        # A stream: read into the Arrow cache when the index is built (up to num_rows rows).
        return PendingSource(name, "stream", [], config.data_files, config.num_rows)  # type: ignore[return-value]
    if is_hf_dataset(config.data_files):
        if config.type not in (None, "arrow"):
            raise SourceError(
                f"dataset {name!r} is a datasets.Dataset, which is read as type 'arrow', not "
                f"{config.type!r}; leave type out"
            )
        from mixindex.sources.hf import open_hf_dataset

        return open_hf_dataset(name, config.data_files)
    files = resolve_files(name, config.data_files, Path(base_dir), config.type)
    kind = config.type or infer_type(name, files)
    if kind in CONVERTED_TYPES:
        return PendingSource(name, kind, files)  # type: ignore[return-value]
    return _open_files(name, kind, files)


def reopen_source(record: Mapping[str, Any], data_files: Any = None) -> Source:
    """Reopen a source from its :meth:`Source.describe` record, as stored in an index.

    ``data_files`` overrides the recorded files (paths, globs or folders, relative to the current
    directory), or is the ``datasets.Dataset`` an in-memory source was built from. The
    fingerprint is not checked here: the caller compares it.
    """
    name = record.get("name")
    kind = record.get("type")
    if not isinstance(name, str) or kind not in _TYPES:
        raise SourceError(
            f"source record {dict(record)!r} needs a name and a type of parquet or arrow; "
            "pass what Source.describe() returned"
        )
    from mixindex.sources.hf import is_hf_dataset

    if is_hf_dataset(data_files):
        from mixindex.sources.hf import open_hf_dataset

        return open_hf_dataset(name, data_files)
    if data_files is not None:
        return _open_files(name, kind, resolve_files(name, data_files, Path.cwd(), kind))
    files = list(record.get("data_files") or [])
    if not files:
        raise SourceError(
            f"dataset {name!r} was an in-memory datasets.Dataset, which an index cannot reopen "
            "by itself; pass the same dataset again for it"
        )
    for f in files:
        if not os.path.isfile(f):
            raise SourceError(
                f"dataset {name!r}: file {f!r} recorded in the index does not exist; restore it "
                "or pass data_files to point at the files' new place"
            )
    return _open_files(name, kind, files)


def _open_files(name: str, kind: str, files: list[str]) -> Source:
    if kind == "parquet":
        from mixindex.sources.parquet import ParquetSource

        return ParquetSource(name, files)
    from mixindex.sources.arrow import ArrowSource

    return ArrowSource(name, files)


def resolve_files(
    name: str, data_files: str | os.PathLike[str] | Sequence[Any], base_dir: Path, kind: str | None
) -> list[str]:
    """Absolute file paths, in read order, for ``data_files`` entries relative to ``base_dir``."""
    entries = [data_files] if isinstance(data_files, (str, os.PathLike)) else list(data_files)
    base = os.path.abspath(base_dir)
    files: list[str] = []
    for entry in entries:
        text = os.fspath(entry)
        path = os.path.abspath(os.path.join(base, os.path.expanduser(text)))
        if os.path.exists(path):
            matches = [path]
        elif any(c in text for c in _GLOB_CHARS):
            matches = sorted(glob.glob(path, recursive=True))
        else:
            matches = []
        if not matches:
            raise SourceError(
                f"dataset {name!r}: data_files {text!r} matched no file (looked in "
                f"{_fixed_prefix(path)}); check the path or glob"
            )
        for m in matches:
            files.extend(_folder_files(name, m, kind) if os.path.isdir(m) else [m])
    seen: set[str] = set()
    for f in files:
        if f in seen:
            raise SourceError(
                f"dataset {name!r}: file {f!r} is listed twice in data_files; list each file "
                "once (oversample with weights instead)"
            )
        seen.add(f)
    return files


def _fixed_prefix(path: str) -> str:
    # The folder part before the first wildcard: where a user should look for the files.
    parts = Path(path).parts
    for i, part in enumerate(parts):
        if any(c in part for c in _GLOB_CHARS):
            return str(Path(*parts[:i]))
    return os.path.dirname(path)


def _folder_files(name: str, folder: str, kind: str | None) -> list[str]:
    state_path = os.path.join(folder, "state.json")
    if kind in (None, "arrow") and os.path.isfile(state_path):
        return _save_to_disk_files(name, folder, state_path)
    by_kind: dict[str | None, tuple[str, ...]] = {
        None: _PARQUET_SUFFIXES + _ARROW_SUFFIXES,
        "parquet": _PARQUET_SUFFIXES,
        "arrow": _ARROW_SUFFIXES,
        **_CONVERTED_SUFFIXES,
    }
    suffixes = by_kind[kind]
    found = sorted(
        e.name
        for e in os.scandir(folder)
        if e.is_file() and e.name.lower().endswith(suffixes) and e.name[0] not in "._"
    )
    if not found:
        raise SourceError(
            f"dataset {name!r}: folder {folder!r} has no {' or '.join(suffixes)} files and no "
            "state.json; check the path"
        )
    return [os.path.join(folder, n) for n in found]


def _save_to_disk_files(name: str, folder: str, state_path: str) -> list[str]:
    try:
        with open(state_path, encoding="utf-8") as f:
            state = json.load(f)
        files = [os.path.join(folder, d["filename"]) for d in state["_data_files"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SourceError(
            f"dataset {name!r}: {state_path!r} is not a datasets save_to_disk state "
            f"({type(exc).__name__}: {exc}); point data_files at the .arrow files instead"
        ) from None
    if not files:
        raise SourceError(
            f"dataset {name!r}: {state_path!r} lists no data files; remove the dataset or point "
            "it at data"
        )
    return files


def infer_type(name: str, files: Sequence[str]) -> str:
    """``"parquet"`` or ``"arrow"`` from the files' suffixes; SourceError if unknown or mixed."""
    kinds: dict[str, str] = {}
    for f in files:
        low = f.lower()
        if low.endswith(_PARQUET_SUFFIXES):
            kinds.setdefault("parquet", f)
        elif low.endswith(_ARROW_SUFFIXES):
            kinds.setdefault("arrow", f)
        elif any(low.endswith(v) for v in _CONVERTED_SUFFIXES.values()):
            kind = next(str(k) for k, v in _CONVERTED_SUFFIXES.items() if low.endswith(v))
            kinds.setdefault(kind, f)
        else:
            raise SourceError(
                f"dataset {name!r}: cannot tell the type of {f!r} from its suffix; set "
                'type = "parquet", "arrow", "json", "csv" or "text"'
            )
    if len(kinds) > 1:
        shown = {"parquet": "Parquet", "arrow": "Arrow", "json": "JSON", "csv": "CSV"}
        (k1, f1), (k2, f2) = list(kinds.items())[:2]
        raise SourceError(
            f"dataset {name!r}: data_files mixes {shown.get(k1, k1)} ({f1!r}) and "
            f"{shown.get(k2, k2)} ({f2!r}) files; set type, or split them into two datasets"
        )
    return next(iter(kinds))
