"""An index in object storage (``s3://bucket/mix.mixindex``, or any fsspec URL): its layout
and its atomic publishing on a store that has no rename.

Layout under the index URL::

    mix.mixindex/
      mixindex.json        the pointer: {"mixindex_index": 1, "version": "v-<hex>",
                           "digest": "sha256:...", "previous": "v-<hex>" or null}
      v-<hex>/             one whole index, exactly the local layout (zarr.json, source/, row/,
                           ...); <hex> is the first 32 hex digits of its content digest

Publishing uploads every object of the new version first, the version's own ``zarr.json`` last,
and then writes the pointer: one PUT, which object stores make atomic. A reader resolves the
pointer once at open and reads only under that version, so it never sees a half-uploaded index
(no pointer names it) nor a mix of two builds (versions are never written into once published).
``build --force`` publishes the new version and keeps the one it replaced (``previous``) for
readers in flight; the version before that is removed, object by object, and only the names an
index writer creates. A reader whose version was removed gets IndexReplacedError. A build killed
mid-upload leaves no pointer change: readers keep the old index (or find none), and the
stray version is overwritten by the next build of the same mix.

Credentials and endpoints come from where fsspec and its backends look (``AWS_*`` variables and
``AWS_ENDPOINT_URL``, ``~/.aws``, fsspec's config files) or from ``storage_options``; they are
never written into the index.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mixindex.errors import IndexExistsError, IndexFormatError, StorageError, one_line

__all__ = [
    "POINTER",
    "IndexUrl",
    "build_remote",
    "default_options",
    "filesystem",
    "is_url",
    "read_pointer",
    "version_name",
]

POINTER = "mixindex.json"
_VERSION = re.compile(r"v-[0-9a-f]{32}")
# Options given on the command line (--storage-option), for every filesystem this process opens.
_DEFAULT_OPTIONS: dict[str, Any] = {}


class IndexUrl(str):
    """An index URL that joins like a path (``url / "row"``) and has a ``name``, so messages and
    summaries treat remote and local indexes alike."""

    def __truediv__(self, name: str) -> IndexUrl:
        return IndexUrl(f"{self.rstrip('/')}/{name}")

    @property
    def name(self) -> str:
        return self.rstrip("/").rsplit("/", 1)[-1]


def is_url(path: object) -> bool:
    """Whether ``path`` names object storage (``s3://...``): a string with a scheme."""
    return isinstance(path, str) and not isinstance(path, Path) and "://" in path


@contextmanager
def default_options(options: dict[str, Any]) -> Iterator[None]:
    """Storage options for every filesystem opened inside (the CLI's --storage-option)."""
    saved = dict(_DEFAULT_OPTIONS)
    _DEFAULT_OPTIONS.update(options)
    try:
        yield
    finally:
        _DEFAULT_OPTIONS.clear()
        _DEFAULT_OPTIONS.update(saved)


def filesystem(url: str, storage_options: dict[str, Any] | None = None) -> tuple[Any, str]:
    """``(fs, root)`` for ``url``: the fsspec filesystem and the URL's path on it."""
    from fsspec.core import url_to_fs

    options = {**_DEFAULT_OPTIONS, **(storage_options or {})}
    try:
        fs, root = url_to_fs(url, **options)
    except ImportError as exc:
        scheme = url.split("://", 1)[0]
        raise StorageError(
            f"{url!r} needs a filesystem for {scheme}:// that is not installed ({one_line(exc)}); "
            f"for S3: pip install 'mixindex[s3]'"
        ) from None
    except (ValueError, TypeError) as exc:
        raise StorageError(f"{url!r} cannot be opened: {one_line(exc)}") from None
    return fs, str(root).rstrip("/")


def version_name(digest: str) -> str:
    """The folder of the version with this content digest: ``v-`` and 32 hex digits."""
    return "v-" + digest.split(":", 1)[-1][:32]


def fetch_error(url: str, exc: BaseException) -> StorageError:
    return StorageError(
        f"cannot read {url!r} from object storage ({one_line(exc)}); check the connection, the "
        "endpoint and the credentials, then try again"
    )


def whole_get(fs: Any) -> dict[str, Any]:
    """Keywords for ``cat_file`` that read a small object in one GET: s3fs otherwise asks for
    its size first (a HEAD, one more round trip)."""
    import inspect

    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    if "s3" not in protocols:
        return {}
    try:
        # Older s3fs releases have no such keyword (and always ask for the size).
        known = inspect.signature(fs._cat_file).parameters
    except (AttributeError, TypeError, ValueError):
        return {}
    return {"max_concurrency": 1} if "max_concurrency" in known else {}


def read_pointer(fs: Any, root: str, url: str) -> dict[str, Any] | None:
    """The pointer document at ``root``; None where there is none."""
    try:
        raw = fs.cat_file(f"{root}/{POINTER}", **whole_get(fs))
    except FileNotFoundError:
        return None
    except Exception as exc:  # backends raise their own types for network failures
        raise fetch_error(f"{url.rstrip('/')}/{POINTER}", exc) from None
    try:
        doc = json.loads(raw)
        ok = (
            isinstance(doc, dict)
            and doc.get("mixindex_index") == 1
            and isinstance(doc.get("digest"), str)
            and _VERSION.fullmatch(str(doc.get("version"))) is not None
            and version_name(doc["digest"]) == doc["version"]
        )
    except ValueError:
        ok = False
    if not ok:
        raise IndexFormatError(
            f"{url!r} has an unreadable {POINTER} (the pointer to its current version); "
            "rebuild the index there with 'mixindex build SPEC -o URL --force'"
        )
    return dict(doc)


def _ours(rel: str) -> bool:
    """Whether ``rel`` (relative to the index URL) is a name a mixindex build writes."""
    from mixindex.store.output import INDEX_ENTRIES

    if rel == POINTER:
        return True
    head, _, rest = rel.partition("/")
    if not _VERSION.fullmatch(head):
        return False
    return rest.split("/", 1)[0] in INDEX_ENTRIES


def check_remote_output(url: str, force: bool, storage_options: dict[str, Any] | None) -> None:
    """Refuse an existing index at ``url`` unless ``force``, and anything else there always;
    also say now, before any planning, when the bucket cannot be reached."""
    fs, root = filesystem(url, storage_options)
    fs.invalidate_cache()
    pointer = read_pointer(fs, root, url)
    try:
        found = [str(p) for p in fs.find(root, maxdepth=None)]
    except FileNotFoundError:
        found = []
    except Exception as exc:
        raise fetch_error(url, exc) from None
    foreign = [p for p in found if not _ours(p[len(root) + 1 :])]
    if foreign:
        raise IndexExistsError(
            f"{url!r} holds {len(foreign)} object(s) that mixindex did not write (such as "
            f"{foreign[0]!r}); the index is written only to a new prefix or over an index, so "
            "choose another URL"
        )
    if pointer is not None and not force:
        raise IndexExistsError(f"{url!r} already exists; pass --force (force=True) to replace it")
    bucket = root.split("/", 1)[0]
    try:
        there = fs.exists(bucket)
    except Exception as exc:
        raise fetch_error(url, exc) from None
    if not there:
        raise StorageError(f"the bucket of {url!r} does not exist; create it first")


def build_remote(
    url: str,
    build_local: Callable[[Path], Path],
    *,
    force: bool,
    storage_options: dict[str, Any] | None = None,
) -> IndexUrl:
    """Build into a temporary local folder (under ``$TMPDIR``) with ``build_local``, then
    publish it at ``url``; the temporary folder is removed whatever happens."""
    import shutil
    import tempfile

    check_remote_output(url, force, storage_options)
    stage = Path(tempfile.mkdtemp(prefix="mixindex-upload-"))
    try:
        local = build_local(stage / "index.mixindex")
        publish_remote(local, url, force=force, storage_options=storage_options)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return IndexUrl(url.rstrip("/"))


def _local_files(folder: Path) -> list[str]:
    """Every file of a built index folder, relative, the group's zarr.json last."""
    rels = sorted(
        os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs
    )
    rels.remove("zarr.json")
    return [r.replace(os.sep, "/") for r in rels] + ["zarr.json"]


def publish_remote(
    folder: Path, url: str, *, force: bool, storage_options: dict[str, Any] | None = None
) -> str:
    """Upload the built index ``folder`` as a new version at ``url`` and point to it; returns
    the digest. See the module's docstring for the order of writes."""
    from mixindex.store.meta import recorded_digest

    with open(folder / "zarr.json", encoding="utf-8") as f:
        digest = recorded_digest(json.load(f))
    if digest is None:
        raise RuntimeError(f"{str(folder)!r} has no recorded digest")
    check_remote_output(url, force, storage_options)
    fs, root = filesystem(url, storage_options)
    old = read_pointer(fs, root, url)
    version = version_name(digest)
    base = f"{root}/{version}"
    if not _complete(fs, base, digest):
        # A stray prefix of this same version (a killed build) is simply written over.
        existed = bool(_find(fs, base, url))
        rels = _local_files(folder)
        try:
            fs.put([str(folder / r) for r in rels[:-1]], [f"{base}/{r}" for r in rels[:-1]])
            fs.put_file(str(folder / "zarr.json"), f"{base}/zarr.json")
        except BaseException as exc:
            if not existed:
                _remove_version(fs, root, version, url, quiet=True)
            if isinstance(exc, Exception):
                raise fetch_error(url, exc) from None
            raise
    previous = old["version"] if old is not None and old["version"] != version else None
    if previous is None and old is not None:
        previous = old.get("previous")
    doc = {"mixindex_index": 1, "version": version, "digest": digest, "previous": previous}
    try:
        fs.pipe_file(f"{root}/{POINTER}", json.dumps(doc, indent=1).encode())
    except Exception as exc:
        raise fetch_error(url, exc) from None
    # Readers of the version just replaced keep reading it; the one before it goes.
    stale = old.get("previous") if old is not None else None
    if stale and stale not in (version, previous) and _VERSION.fullmatch(str(stale)):
        _remove_version(fs, root, str(stale), url, quiet=True)
    return digest


def _find(fs: Any, prefix: str, url: str) -> list[str]:
    try:
        return [str(p) for p in fs.find(prefix)]
    except FileNotFoundError:
        return []
    except Exception as exc:
        raise fetch_error(url, exc) from None


def _complete(fs: Any, base: str, digest: str) -> bool:
    """Whether ``base`` already holds this version whole (its zarr.json is uploaded last)."""
    from mixindex.store.meta import recorded_digest

    try:
        return recorded_digest(json.loads(fs.cat_file(f"{base}/zarr.json"))) == digest
    except (OSError, ValueError):
        return False


def _remove_version(fs: Any, root: str, version: str, url: str, *, quiet: bool) -> None:
    """Delete the objects of one version that a build writes (nothing else under it)."""
    try:
        keys = [p for p in _find(fs, f"{root}/{version}", url) if _ours(p[len(root) + 1 :])]
        if keys:
            fs.rm(keys)
    except Exception:
        if not quiet:
            raise
