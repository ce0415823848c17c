"""Where an index may be written, checked before any planning work.

Three rules protect what is already on disk:

- the output is never the current folder, the spec or its folder, a source's files or data
  folder, or the Arrow cache folder, and never contains or (for data and cache folders) lies
  inside one of them, with or without ``--force``;
- ``--force`` replaces only a mixindex index (a zarr group whose attributes carry ``mixindex``):
  a file, a symbolic link or any other folder is left alone;
- an index whose estimated size exceeds the free space of the output's file system is refused
  with the estimate, instead of filling the disk.

>>> check_existing(Path("mix.mixindex"), force=True)  # an index: --force may replace it
>>> check_existing(Path("mix.toml"), force=True)
Traceback (most recent call last):
  ...
mixindex.errors.IndexExistsError: 'mix.toml' exists and is a file, not a mixindex index; ...
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mixindex.errors import IndexExistsError, OutputError
from mixindex.sources.remote import is_url
from mixindex.store.layout import CHUNK_DIGESTS, POSITION_ARRAYS, TABLE_ARRAYS
from mixindex.store.meta import attributes_of

# Everything a mixindex writer puts in its folder: a leftover holding only these names is ours.
# ``resume`` is a build's journal (mixindex.store.resume), removed before the index is published.
INDEX_ENTRIES = frozenset({"zarr.json", *POSITION_ARRAYS, *TABLE_ARRAYS, CHUNK_DIGESTS, "resume"})


def is_index(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a mixindex index: a real folder (not a link) whose ``zarr.json`` is a
    zarr v3 group with ``mixindex`` attributes. Any format version counts."""
    path = Path(path)
    if path.is_symlink() or not path.is_dir():
        return False
    try:
        with open(path / "zarr.json", encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return False
    return (
        isinstance(doc, dict)
        and doc.get("zarr_format") == 3
        and doc.get("node_type") == "group"
        and attributes_of(doc) is not None
    )


def describe(path: Path) -> str:
    """What a path that is not an index is, in a few words, for error messages."""
    if path.is_symlink():
        return "a symbolic link"
    if not path.is_dir():
        return "a file"
    try:
        n = len(os.listdir(path))
    except OSError:
        return "a folder that cannot be read"
    if (path / "zarr.json").is_file():
        return "a zarr store without mixindex attributes"
    return "an empty folder" if n == 0 else f"a folder with {n} entr{'y' if n == 1 else 'ies'}"


def check_existing(out: Path, force: bool) -> None:
    """Refuse an existing ``out`` unless it is an index and ``force`` is set."""
    if not os.path.lexists(out):
        if not out.parent.is_dir():
            raise OutputError(f"the folder of {str(out)!r} does not exist; create it first")
        return
    if not is_index(out):
        raise IndexExistsError(
            f"{str(out)!r} exists and is {describe(out)}, not a mixindex index; --force replaces "
            "only an index, so choose another output path (or move it away yourself)"
        )
    if not force:
        raise IndexExistsError(
            f"{str(out)!r} already exists; pass --force (force=True) to replace it"
        )


@dataclass(frozen=True)
class Protected:
    """A path the output may not be or contain (nor lie inside, when ``inside`` is set)."""

    label: str
    path: Path
    inside: bool


def protected_paths(
    *,
    base_dir: Path,
    spec_file: Path | None,
    datasets: Sequence[Any],
    sources: Sequence[Any],
    cache_dir: Path | None,
) -> list[Protected]:
    """The paths of one build that its output must keep clear of."""
    out = [Protected("the current folder", Path.cwd(), False)]
    if spec_file is not None:
        out.append(Protected("the spec", spec_file, False))
    out.append(Protected("the spec's folder", base_dir, False))
    for config, src in zip(datasets, sources, strict=True):
        label = f"dataset {src.name!r}'s data"
        out.extend(Protected(label, Path(d), True) for d in _data_folders(config, base_dir))
        # Objects behind URLs are not on this disk: nothing local to keep clear of.
        out.extend(Protected(label, Path(f), True) for f in src.data_files if not is_url(f))
    if cache_dir is not None:
        out.append(Protected("the Arrow cache folder", cache_dir, True))
    return out


def _data_folders(config: Any, base_dir: Path) -> list[str]:
    """Folders named (directly or by a glob) in a dataset's ``data_files``."""
    import glob

    entries = config.data_files
    if isinstance(entries, (str, os.PathLike)):
        entries = [entries]
    elif not isinstance(entries, (list, tuple)):
        return []  # an in-memory dataset: its files are in the source's data_files
    folders: list[str] = []
    for entry in entries:
        if is_url(entry):
            continue
        text = os.path.expanduser(os.fspath(entry))
        path = os.path.join(os.path.abspath(base_dir), text)
        matches = glob.glob(path, recursive=True) if any(c in text for c in "*?[") else [path]
        folders.extend(m for m in matches if os.path.isdir(m))
    return folders


def check_output_path(out: Path, protected: Sequence[Protected]) -> None:
    """Refuse an output that is, contains or lies inside a protected path (see module doc)."""
    # Compare real paths: the folder holding OUT resolved, and OUT itself resolved (a link).
    absolute = Path(os.path.abspath(out))
    candidates = {Path(os.path.realpath(absolute.parent)) / absolute.name}
    candidates.add(Path(os.path.realpath(absolute)))
    for p in protected:
        real = Path(os.path.realpath(p.path))
        for cand in candidates:
            if cand == real:
                relation = "is"
            elif real.is_relative_to(cand):
                relation = "contains"
            elif p.inside and cand.is_relative_to(real):
                relation = "lies inside"
            else:
                continue
            raise OutputError(
                f"output {str(out)!r} {relation} {p.label} {str(p.path)!r}; write the index to "
                "a new path outside it, such as 'mix.mixindex' beside the spec"
            )


def estimate_bytes(
    *,
    length_bound: int,
    block_size: int,
    chunk_blocks: int,
    num_sources: int,
    dtypes: Mapping[str, Any],
) -> int:
    """Bytes an uncompressed index of at most ``length_bound`` positions takes on disk.

    Chunk files are stored whole (the last one too), so sizes round up to whole chunks; the
    attributes add a few hundred bytes of digests per chunk.
    """
    per_position = sum(np.dtype(dtypes[n]).itemsize for n in POSITION_ARRAYS)
    per_block = max(num_sources, 1) * sum(np.dtype(dtypes[n]).itemsize for n in TABLE_ARRAYS)
    chunk_positions = chunk_blocks * block_size
    chunks = max(1, -(-length_bound // chunk_positions))
    return int(
        chunks * (chunk_positions * per_position + chunk_blocks * per_block + 512) + (1 << 16)
    )


def check_free_space(out: Path, needed: int, length_bound: int) -> None:
    """Refuse an index that would not fit on the file system of ``out``'s folder."""
    folder = Path(os.path.abspath(out)).parent
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise OutputError(
            f"the index would take about {_size(needed)} ({length_bound:,} positions), more "
            f"than the {_size(free)} free on the file system of {str(folder)!r}; lower "
            "mix.num_examples, or write the index to a larger disk"
        )


def _size(n: float) -> str:
    units = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n /= 1024
        i += 1
    return f"{n:,.0f} bytes" if i == 0 else f"{n:,.1f} {units[i]}"
