"""Data sources: open the datasets of a spec, count their rows and read rows by number.

    >>> from mixindex.spec.config import DatasetConfig
    >>> config = DatasetConfig(name="code", data_files="code/*.parquet")
    >>> src = open_source(config, base_dir="data")
    >>> len(src), src.fingerprint()
    (40, 'sha256:...')
    >>> same = reopen_source(src.describe())
    >>> same.fingerprint() == src.fingerprint()
    True

``data_files`` entries are paths, globs or folders, relative to ``base_dir``: a folder holds
``*.parquet`` files, Arrow files (``*.arrow``, ``*.feather``, ``*.ipc``), or is a
``datasets.Dataset.save_to_disk`` folder (its ``state.json`` gives the files in order). Names
starting with ``.`` or ``_`` in a folder are skipped (``_SUCCESS``, ``_metadata``). Paths are
made absolute but symlinks are kept, so a fingerprint sees the names the user sees; a file reached
twice through symlinks counts once, and ``**`` enters each real folder once, so a symlink loop
ends. Only regular files are sources: a FIFO or a device would block or never end.

An entry may instead be a URL (``s3://``, ``gs://``, ``hf://``, ``https://``, ...): the objects
are listed and opened through fsspec (:mod:`mixindex.sources.remote`) with the dataset's
``storage_options``, as :class:`~mixindex.sources.remote_parquet.RemoteParquetSource` or
:class:`~mixindex.sources.remote_arrow.RemoteArrowSource`.
"""

from __future__ import annotations

import fnmatch
import json
import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mixindex.errors import SourceError, clip, one_line, short
from mixindex.sources.base import Source
from mixindex.sources.remote import is_url

if TYPE_CHECKING:
    from mixindex.spec.config import DatasetConfig

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
    """Open the dataset a :class:`~mixindex.spec.config.DatasetConfig` names (metadata only)."""
    from mixindex.sources.hf import is_hf_dataset

    name = config.name
    from mixindex.sources.convert import CONVERTED_TYPES, PendingSource

    if type(config.data_files).__name__ == "IterableDataset":
        # A stream: read into the Arrow cache when the index is built (up to num_rows rows).
        return PendingSource(name, "stream", [], config.data_files, config.num_rows)  # type: ignore[return-value]
    if is_hf_dataset(config.data_files):
        if config.type not in (None, "arrow"):
            raise SourceError(
                f"dataset {short(name)} is a datasets.Dataset, which is read as type 'arrow', not "
                f"{short(config.type)}; leave type out"
            )
        from mixindex.sources.hf import open_hf_dataset

        return open_hf_dataset(name, config.data_files)
    options = getattr(config, "storage_options", None)
    if _has_url(config.data_files):
        return _open_remote(name, config.data_files, config.type, options)
    files = resolve_files(name, config.data_files, Path(base_dir), config.type)
    kind = config.type or infer_type(name, files)
    if kind in CONVERTED_TYPES:
        return PendingSource(name, kind, files)  # type: ignore[return-value]
    return _open_files(name, kind, files)


def reopen_source(
    record: Mapping[str, Any],
    data_files: Any = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Source:
    """Reopen a source from its :meth:`Source.describe` record, as stored in an index.

    ``data_files`` overrides the recorded files (paths, globs or folders, relative to the current
    directory, or URLs), or is the ``datasets.Dataset`` an in-memory source was built from.
    ``storage_options`` are fsspec's options for URLs (credentials and endpoints are not in an
    index). The fingerprint is not checked here: the caller compares it.
    """
    name = record.get("name")
    kind = record.get("type")
    if not isinstance(name, str) or kind not in _TYPES:
        raise SourceError(
            f"source record {short(dict(record))} needs a name and a type of parquet or arrow; "
            "pass what Source.describe() returned"
        )
    from mixindex.sources.hf import is_hf_dataset

    if is_hf_dataset(data_files):
        from mixindex.sources.hf import open_hf_dataset

        return open_hf_dataset(name, data_files)
    if data_files is not None and _has_url(data_files):
        return _open_remote(name, data_files, kind, storage_options)
    if data_files is not None:
        return _open_files(name, kind, resolve_files(name, data_files, Path.cwd(), kind))
    files = list(record.get("data_files") or [])
    if files and all(is_url(f) for f in files):
        from mixindex.sources.remote import stat_files

        return _remote_source(name, kind, stat_files(name, files, storage_options), storage_options)
    if not files:
        raise SourceError(
            f"dataset {short(name)} was an in-memory datasets.Dataset, which an index cannot "
            "reopen by itself; pass the same dataset again for it"
        )
    for f in files:
        if not os.path.lexists(f):
            raise SourceError(
                f"dataset {short(name)}: file {short(f)} recorded in the index does not exist; "
                "restore it or pass data_files to point at the files' new place"
            )
        _check_regular(name, f)
    return _open_files(name, kind, files)


def _has_url(data_files: Any) -> bool:
    entries = [data_files] if isinstance(data_files, str) else data_files
    return isinstance(entries, (list, tuple)) and any(is_url(e) for e in entries)


def _open_remote(
    name: str, data_files: Any, kind: str | None, options: Mapping[str, Any] | None
) -> Source:
    """A source of objects behind URLs (mixindex/sources/remote.py): listed, then opened."""
    from mixindex.sources.convert import CONVERTED_TYPES, PendingSource
    from mixindex.sources.remote import list_files, probe_files

    entries = [data_files] if isinstance(data_files, str) else list(data_files)
    local = next((e for e in entries if not is_url(e)), None)
    if local is not None:
        raise SourceError(
            f"dataset {short(name)}: data_files mixes URLs and the local path {short(local)}; "
            "split them into two datasets"
        )
    by_kind: dict[str | None, tuple[str, ...]] = {
        None: _PARQUET_SUFFIXES + _ARROW_SUFFIXES,
        "parquet": _PARQUET_SUFFIXES,
        "arrow": _ARROW_SUFFIXES,
        **_CONVERTED_SUFFIXES,
    }
    # Entries that name one object each (thousands, say) are looked up all at once; globs,
    # folders and missing objects go through a listing, which also explains what is wrong.
    plain = [e for e in entries if not any(c in e.split("://", 1)[1] for c in _GLOB_CHARS)]
    single = dict(zip(plain, probe_files(name, plain, options), strict=True))
    files = []
    seen: set[str] = set()
    for entry in entries:
        one = single.get(entry)
        for f in [one] if one is not None else list_files(name, entry, options, by_kind[kind]):
            if f.url in seen:
                raise SourceError(
                    f"dataset {short(name)}: object {short(f.url)} is listed twice in "
                    "data_files; list each object once (oversample with weights instead)"
                )
            seen.add(f.url)
            files.append(f)
    kind = kind or infer_type(name, [f.url for f in files])
    if kind in CONVERTED_TYPES:
        objects = {f.url: f for f in files}
        return PendingSource(name, kind, list(objects), storage_options=options, objects=objects)  # type: ignore[return-value]
    return _remote_source(name, kind, files, options)


def _remote_source(
    name: str, kind: str, files: Sequence[Any], options: Mapping[str, Any] | None
) -> Source:
    if kind == "parquet":
        from mixindex.sources.remote_parquet import RemoteParquetSource

        return RemoteParquetSource(name, files, storage_options=options)
    from mixindex.sources.remote_arrow import RemoteArrowSource

    return RemoteArrowSource(name, files, storage_options=options)


def _open_files(name: str, kind: str, files: list[str]) -> Source:
    if kind == "parquet":
        from mixindex.sources.parquet import ParquetSource

        return ParquetSource(name, files)
    from mixindex.sources.arrow import ArrowSource

    return ArrowSource(name, files)


def resolve_files(
    name: str, data_files: str | os.PathLike[str] | Sequence[Any], base_dir: Path, kind: str | None
) -> list[str]:
    """Absolute file paths, in read order, for ``data_files`` entries relative to ``base_dir``.

    Within one entry, a file reached again through a symlink is dropped (the first name in sorted
    order is kept); the same file named by two entries is an error.
    """
    entries = [data_files] if isinstance(data_files, (str, os.PathLike)) else list(data_files)
    base = os.path.abspath(base_dir)
    files: list[str] = []
    owner: dict[str, str] = {}
    for entry in entries:
        text = os.fspath(entry)
        expanded = os.path.expanduser(text)
        path = os.path.abspath(os.path.join(base, expanded))
        if os.path.lexists(path):
            matches = [path]
        elif any(c in text for c in _GLOB_CHARS):
            # Only the user's text is a pattern: base_dir may hold [ or * in a folder name.
            root = base if not os.path.isabs(expanded) else os.sep
            matches = sorted(_glob(root, os.path.normpath(expanded)))
        else:
            matches = []
        if not matches:
            raise SourceError(
                f"dataset {short(name)}: data_files {short(text)} matched no file (looked in "
                f"{short(_fixed_prefix(path))}); check the path or glob"
            )
        mine: set[str] = set()
        for m in matches:
            for f in _folder_files(name, m, kind) if os.path.isdir(m) else [m]:
                _check_regular(name, f)
                real = os.path.realpath(f)
                if real in mine:
                    continue
                if real in owner:
                    same = "" if owner[real] == f else f" (the same file as {short(owner[real])})"
                    raise SourceError(
                        f"dataset {short(name)}: file {short(f)}{same} is listed twice in "
                        "data_files; list each file once (oversample with weights instead)"
                    )
                mine.add(real)
                owner[real] = f
                files.append(f)
    return files


def _check_regular(name: str, path: str) -> None:
    """SourceError unless ``path`` is a regular file (following symlinks)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise SourceError(
            f"dataset {short(name)}: file {short(path)} cannot be opened "
            f"({clip(one_line(exc))}); check the path (a broken symlink?)"
        ) from None
    if not stat.S_ISREG(mode):
        raise SourceError(
            f"dataset {short(name)}: {short(path)} is not a regular file (a FIFO, device or "
            "socket); data_files must name data files"
        )


def _glob(root: str, pattern: str) -> set[str]:
    """Paths under ``root`` matching ``pattern`` (glob syntax, ``**`` for any number of folders).

    Like :func:`glob.glob` with ``recursive=True`` (wildcards skip names starting with ``.``),
    except that ``**`` enters each real folder once per pattern position: a symlink loop such as
    ``sub/up -> ..`` ends instead of being walked until the path is too long.
    """
    parts = [p for p in pattern.split(os.sep) if p not in ("", ".")]
    found: set[str] = set()
    entered: set[tuple[str, int]] = set()

    def names(folder: str, part: str) -> list[str]:
        try:
            with os.scandir(folder) as it:
                listed = [e.name for e in it]
        except OSError:
            return []
        hidden_ok = part.startswith(".")
        return sorted(n for n in listed if (hidden_ok or n[0] != ".") and fnmatch.fnmatch(n, part))

    def walk(folder: str, i: int) -> None:
        if i == len(parts):
            found.add(folder)
            return
        part = parts[i]
        if part == "**":
            key = (os.path.realpath(folder), i)
            if key in entered:
                return
            entered.add(key)
            walk(folder, i + 1)
            for n in names(folder, "*"):
                sub = os.path.join(folder, n)
                if os.path.isdir(sub):
                    walk(sub, i)
                elif i + 1 == len(parts):
                    found.add(sub)  # a trailing ** matches files too
        elif any(c in part for c in _GLOB_CHARS):
            for n in names(folder, part):
                sub = os.path.join(folder, n)
                if i + 1 == len(parts) or os.path.isdir(sub):
                    walk(sub, i + 1)
        else:
            sub = os.path.join(folder, part)
            if os.path.lexists(sub) and (i + 1 == len(parts) or os.path.isdir(sub)):
                walk(sub, i + 1)

    walk(root, 0)
    return found


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
            f"dataset {short(name)}: folder {short(folder)} has no {' or '.join(suffixes)} "
            "files and no state.json; check the path"
        )
    return [os.path.join(folder, n) for n in found]


def _save_to_disk_files(name: str, folder: str, state_path: str) -> list[str]:
    try:
        with open(state_path, encoding="utf-8") as f:
            state = json.load(f)
        files = [os.path.join(folder, d["filename"]) for d in state["_data_files"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SourceError(
            f"dataset {short(name)}: {short(state_path)} is not a datasets save_to_disk state "
            f"({type(exc).__name__}: {clip(one_line(exc))}); point data_files at the .arrow files "
            "instead"
        ) from None
    if not files:
        raise SourceError(
            f"dataset {short(name)}: {short(state_path)} lists no data files; remove the "
            "dataset or point it at data"
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
                f"dataset {short(name)}: cannot tell the type of {short(f)} from its suffix; set "
                'type = "parquet", "arrow", "json", "csv" or "text"'
            )
    if len(kinds) > 1:
        shown = {"parquet": "Parquet", "arrow": "Arrow", "json": "JSON", "csv": "CSV"}
        (k1, f1), (k2, f2) = list(kinds.items())[:2]
        raise SourceError(
            f"dataset {short(name)}: data_files mixes {shown.get(k1, k1)} ({short(f1)}) and "
            f"{shown.get(k2, k2)} ({short(f2)}) files; set type, or split them into two datasets"
        )
    return next(iter(kinds))
