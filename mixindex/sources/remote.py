"""Source files behind URLs (``s3://``, ``gs://``, ``hf://``, ``https://``, anything fsspec knows).

Listing, object metadata and byte ranges, each asked for many objects at once: a dataset of
thousands of files is listed by prefix and its footers are read by concurrent range requests.
Credentials and endpoints come from where the filesystem looks for them (``AWS_*`` variables,
``AWS_ENDPOINT_URL``, config files) and from a dataset's ``storage_options``; they live only in
memory, never in an index. fsspec (and s3fs, gcsfs, ...) is imported on first use: a local
index never loads it.

For example, against a bucket (``files[0]`` is ``RemoteFile(url='s3://bucket/web/part-0.parquet',
size=1048576, version='ETag:"9aec5f..."')``)::

    files = list_files("web", "s3://bucket/web/*.parquet", None, (".parquet",))
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from mixindex.errors import SourceError, clip, one_line, short

__all__ = [
    "RemoteFile",
    "fetch_ranges",
    "filesystem",
    "is_url",
    "list_files",
    "object_version",
    "open_url",
    "probe_files",
    "stat_files",
]

# Requests in flight at once for a filesystem without an async API (threads).
_THREADS = 32
_GLOB_CHARS = "*?["
# Object metadata that changes when an object is rewritten, most specific first: S3's version
# id and ETag, GCS's generation and hashes, the Hub's content hash and blob id, HTTP headers.
_VERSION_KEYS = (
    "VersionId",
    "version_id",
    "ETag",
    "etag",
    "generation",
    "md5Hash",
    "crc32c",
    "blob_id",
    "Content-MD5",
    "Digest",
)


def is_url(path: object) -> bool:
    """Whether a ``data_files`` entry names a remote object (``file://`` is a local path)."""
    return isinstance(path, str) and "://" in path and not path.startswith("file://")


@dataclass(frozen=True)
class RemoteFile:
    """One object: its URL, size and version (None where the store gives none)."""

    url: str
    size: int
    version: str | None


def object_version(info: Mapping[str, Any]) -> str | None:
    """``"KEY:value"`` of the most specific version token in a filesystem's ``info()``."""
    lfs = info.get("lfs")
    if isinstance(lfs, Mapping) and lfs.get("sha256"):
        return f"sha256:{lfs['sha256']}"
    for key in _VERSION_KEYS:
        value = info.get(key)
        if value not in (None, ""):
            return f"{key}:{value}"
    return None


def _check_url(name: str, url: str) -> None:
    parts = urlsplit(url)
    if parts.password:
        # The URL itself is not shown: it holds the password.
        where = f"{parts.scheme}://{parts.hostname}/..."
        raise SourceError(
            f"dataset {short(name)}: data_files URL {where} holds a password; put credentials "
            "in storage_options or the environment, which an index never records"
        )


def filesystem(url: str, storage_options: Mapping[str, Any] | None) -> tuple[Any, str]:
    """The fsspec filesystem for ``url`` and the path inside it."""
    try:
        from fsspec.core import url_to_fs

        fs, path = url_to_fs(url, **dict(storage_options or {}))
        return fs, str(path)
    except ImportError as exc:
        scheme = url.split("://", 1)[0]
        extra = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}.get(scheme)
        hint = f"pip install 'mixindex[{extra}]'" if extra else f"install fsspec's {scheme} support"
        raise SourceError(f"cannot read {short(url)}: {clip(one_line(exc))}; {hint}") from None
    except (ValueError, TypeError) as exc:
        raise SourceError(
            f"cannot read {short(url)}: {clip(one_line(exc))}; check the URL and storage_options"
        ) from None


def _fail(name: str, url: str, exc: BaseException) -> SourceError:
    return SourceError(
        f"dataset {short(name)}: cannot read {short(url)} ({type(exc).__name__}: "
        f"{clip(one_line(exc))}); check the connection, the credentials (environment or "
        "storage_options) and that the object exists"
    )


def _to_file(fs: Any, info: Mapping[str, Any]) -> RemoteFile:
    return RemoteFile(
        fs.unstrip_protocol(info["name"]), int(info.get("size") or 0), object_version(info)
    )


def stat_files(
    name: str, urls: Sequence[str], storage_options: Mapping[str, Any] | None
) -> list[RemoteFile]:
    """Size and version of each object, asked for all at once; SourceError for one missing."""
    found = probe_files(name, urls, storage_options)
    for url, f in zip(urls, found, strict=True):
        if f is None:
            raise SourceError(
                f"dataset {short(name)}: object {short(url)} does not exist (or is a folder); "
                "restore it, or point data_files at the objects' new place"
            )
    return [f for f in found if f is not None]


def probe_files(
    name: str, urls: Sequence[str], storage_options: Mapping[str, Any] | None
) -> list[RemoteFile | None]:
    """Each URL's object, asked for all at once: None where there is none (or a folder)."""
    if not urls:
        return []
    for url in urls:
        _check_url(name, url)
    fs, _ = filesystem(urls[0], storage_options)
    # A listing cached by an earlier call would hide an object replaced since.
    fs.invalidate_cache()

    def one(url: str) -> RemoteFile | None:
        try:
            info = fs.info(url)
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise _fail(name, url, exc) from None
        if info.get("type") == "directory":
            return None
        return RemoteFile(url, int(info.get("size") or 0), object_version(info))

    with ThreadPoolExecutor(min(_THREADS, len(urls))) as pool:
        return list(pool.map(one, urls))


def list_files(
    name: str,
    entry: str,
    storage_options: Mapping[str, Any] | None,
    suffixes: tuple[str, ...],
) -> list[RemoteFile]:
    """The objects one ``data_files`` URL names, sorted: a glob, a folder (its files with one of
    ``suffixes``, or those a ``datasets`` ``state.json`` lists) or one object."""
    _check_url(name, entry)
    fs, path = filesystem(entry, storage_options)
    fs.invalidate_cache()
    try:
        if any(c in path for c in _GLOB_CHARS):
            found = fs.glob(path, detail=True)
            infos = [i for i in found.values() if i.get("type") != "directory"]
        else:
            try:
                info = fs.info(path)
            except FileNotFoundError:
                info = None
            if info is None:
                infos = []
            elif info.get("type") != "directory":
                infos = [info]
            else:
                infos = _folder(name, fs, path, suffixes)
    except SourceError:
        raise
    except Exception as exc:
        raise _fail(name, entry, exc) from None
    if not infos:
        raise SourceError(
            f"dataset {short(name)}: data_files {short(entry)} matched no object; check the URL "
            "or glob (and the credentials: a store may answer 'not found' for 'forbidden')"
        )
    files = [_to_file(fs, i) for i in infos]
    return files if len(files) == 1 else sorted(files, key=lambda f: f.url)


def _folder(name: str, fs: Any, path: str, suffixes: tuple[str, ...]) -> list[dict[str, Any]]:
    listed = fs.ls(path, detail=True)
    by_name = {os.path.basename(i["name"].rstrip("/")): i for i in listed}
    state = by_name.get("state.json")
    if state is not None and ".arrow" in suffixes:
        import json

        try:
            doc = json.loads(fs.cat_file(state["name"]))
            names = [d["filename"] for d in doc["_data_files"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise SourceError(
                f"dataset {short(name)}: {short(state['name'])} is not a datasets save_to_disk "
                f"state ({clip(one_line(exc))}); point data_files at the .arrow files instead"
            ) from None
        missing = [n for n in names if n not in by_name]
        if missing:
            raise SourceError(
                f"dataset {short(name)}: {short(state['name'])} lists {short(missing[0])}, which "
                "the folder does not hold; upload the whole folder"
            )
        return [by_name[n] for n in names]
    keep = [
        i
        for n, i in sorted(by_name.items())
        if i.get("type") != "directory" and n.lower().endswith(suffixes) and n[0] not in "._"
    ]
    if not keep:
        raise SourceError(
            f"dataset {short(name)}: folder {short(path)} has no {' or '.join(suffixes)} objects "
            "and no state.json; check the URL"
        )
    # Entries of one listing are the paths to sort by, as a local folder's names are.
    return sorted(keep, key=lambda i: i["name"])


def fetch_ranges(name: str, fs: Any, requests: Sequence[tuple[str, int, int]]) -> list[bytes]:
    """The bytes ``[start, end)`` of each ``(url, start, end)``, all requested at once."""
    if not requests:
        return []
    if getattr(fs, "async_impl", False):
        paths = [fs._strip_protocol(u) for u, _, _ in requests]
        try:
            got = fs.cat_ranges(
                paths, [s for _, s, _ in requests], [e for _, _, e in requests], on_error="return"
            )
        except Exception as exc:
            raise _fail(name, requests[0][0], exc) from None
        for (url, _, _), value in zip(requests, got, strict=True):
            if isinstance(value, BaseException):
                raise _fail(name, url, value) from None
        return list(got)

    def one(req: tuple[str, int, int]) -> bytes:
        url, start, end = req
        try:
            data: bytes = fs.cat_file(fs._strip_protocol(url), start=start, end=end)
        except Exception as exc:
            raise _fail(name, url, exc) from None
        return data

    if len(requests) == 1:
        return [one(requests[0])]
    with ThreadPoolExecutor(min(_THREADS, len(requests))) as pool:
        return list(pool.map(one, requests))


def open_url(
    name: str, url: str, storage_options: Mapping[str, Any] | None, mode: str = "rb"
) -> Any:
    """An open file object for ``url`` (read whole, in order: conversions and deep hashes)."""
    fs, path = filesystem(url, storage_options)
    try:
        return fs.open(path, mode) if "b" in mode else fs.open(path, mode, encoding="utf-8")
    except Exception as exc:
        raise _fail(name, url, exc) from None


def replaced_object(old: Mapping[str, Any], new: Mapping[str, Any]) -> str | None:
    """Which object of a remote source was rewritten, from two ``describe()`` records (the one
    an index holds and the one read now), in words; None if none can be named."""
    before, after = old.get("objects"), new.get("objects")
    if not isinstance(before, list) or not isinstance(after, list) or len(before) != len(after):
        return None
    for url, was, now in zip(new.get("data_files") or [], before, after, strict=False):
        if isinstance(was, Mapping) and isinstance(now, Mapping) and dict(was) != dict(now):
            return (
                f"object {url!r} was replaced (size {was.get('size')}, version "
                f"{was.get('version')} then; size {now.get('size')}, version {now.get('version')} "
                "now)"
            )
    return None


def fetch_coalesced(
    name: str, fs: Any, requests: Sequence[tuple[str, int, int]], limit: int = 4 << 20
) -> list[Any]:
    """Like :func:`fetch_ranges`, as ``pyarrow.Buffer`` views, with ranges that touch end to end
    in one object merged into one request of at most ``limit`` bytes: a read touching many
    neighbouring record batches or column chunks costs a few requests, not one each.

    The views share their request's buffer, so a cache that keeps one view keeps the whole
    request alive: the limit also bounds how far past its own bound the block cache can hold."""
    import pyarrow as pa

    order = sorted(range(len(requests)), key=lambda i: requests[i])
    merged: list[list[Any]] = []  # [url, start, end, [request indices]]
    for i in order:
        url, start, end = requests[i]
        last = merged[-1] if merged else None
        if last is not None and last[0] == url and last[2] == start and end - last[1] <= limit:
            last[2] = end
            last[3].append(i)
        else:
            merged.append([url, start, end, [i]])
    got = fetch_ranges(name, fs, [(u, s, e) for u, s, e, _ in merged])
    out: list[Any] = [None] * len(requests)
    for (_, start, _, members), data in zip(merged, got, strict=True):
        buf = pa.py_buffer(data)
        for i in members:
            _, s, e = requests[i]
            out[i] = buf.slice(s - start, e - s)
    return out
