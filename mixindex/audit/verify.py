"""``mixindex verify``: does an index still hold what was written, and its sources too?

Checks, each problem reported as one line:

1. every chunk of every array against its recorded sha256 (the ``chunk_digests`` array),
   naming the chunk file (``row/c/3``) that differs, is missing or has the wrong size;
2. the index's content digest, recomputed from the arrays' bytes and the attributes that change
   what is served or reported (so a hand-edited attribute shows here, see
   :mod:`mixindex.store.meta`);
3. that the tables agree with the positions: each block's ``counts`` are the number of slots of
   each source in it, its ``cursors`` the number before it, and rows are within their source;
4. every source against its fingerprint (files, sizes, row counts, schema), and with ``deep``
   against the content hash recorded by ``build --deep``.

Everything is read one chunk at a time, so memory stays flat whatever the index's size.

>>> result = verify("mix.mixindex")
>>> result.ok, result.problems
(True, [])
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mixindex.errors import IndexFormatError, IndexReplacedError, SourceError, one_line
from mixindex.store.attrs import SourceRecord
from mixindex.store.index import StoredIndex
from mixindex.store.layout import ARRAYS, POSITION_ARRAYS

__all__ = ["VerifyResult", "verify"]


@dataclass
class VerifyResult:
    """What :func:`verify` found: ``problems`` (one line each), ``notes`` (not failures), and
    counts of what was checked."""

    path: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    chunks: int = 0
    sources: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(path: str | Path, *, deep: bool = False) -> VerifyResult:
    """Check an index's arrays against their digests and its sources against their
    fingerprints (``deep``: also re-hash every byte of the sources).

    Raises IndexFormatError only when ``path`` is no readable index at all.
    """
    index = StoredIndex(path, check_digest=False)
    result = VerifyResult(str(index.path))
    if _check_arrays(index, result):
        _check_tables(index, result)
    for rec in index.sources:
        _check_source(rec, deep, result)
    index.close()
    return result


def _recorded(index: StoredIndex, result: VerifyResult) -> np.ndarray | None:
    """The ``chunk_digests`` array, (chunks, arrays, 32); None (and a problem) if unusable."""
    num_chunks = index.arrays["source"].num_chunks
    try:
        table = index.chunk_digests()
        if table.shape != (num_chunks, len(ARRAYS), 32):
            result.problems.append(
                f"chunk_digests: shape {list(table.shape)} but the arrays have {num_chunks} "
                f"chunks; the index is damaged, rebuild it"
            )
            return None
        return table.read(0, num_chunks) if num_chunks else np.zeros((0, len(ARRAYS), 32))
    except IndexReplacedError:
        raise
    except IndexFormatError as exc:
        result.problems.append(f"chunk_digests: {one_line(exc)}")
        return None


def _check_arrays(index: StoredIndex, result: VerifyResult) -> bool:
    """Chunk digests, then the content digest; False if a chunk is bad (tables unchecked)."""
    recorded = _recorded(index, result)
    hashes = {}
    found = len(result.problems)
    for j, name in enumerate(ARRAYS):
        arr = index.arrays[name]
        h = hashlib.sha256()
        for i in range(arr.num_chunks):
            key = f"{name}/{arr.chunk_key(i)}"
            result.chunks += 1
            if not arr.has_file(i):
                result.problems.append(f"{key}: chunk file is missing")
                continue
            try:
                data = arr.load(i)
            except IndexReplacedError:
                raise
            except IndexFormatError as exc:
                result.problems.append(f"{key}: chunk cannot be read ({one_line(exc)})")
                continue
            raw = np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("<")).data
            got = hashlib.sha256(raw).hexdigest()
            h.update(raw)
            if recorded is not None and got != (want := recorded[i, j].tobytes().hex()):
                result.problems.append(
                    f"{key}: bytes do not match the recorded digest ({_span(index, name, i)}; "
                    f"recorded {want[:12]}..., found {got[:12]}...)"
                )
        hashes[name] = h.hexdigest()
    if len(result.problems) > found:
        return False
    for name in ARRAYS:
        if hashes[name] != index.meta.array_digests[name]:
            result.problems.append(
                f"{name}: its bytes do not match the array digest recorded in the attributes; "
                "the attributes were edited or the index is damaged, rebuild it"
            )
    digest = index.recomputed_digest(hashes)
    if digest != index.digest:
        result.problems.append(
            f"index digest: recorded {index.digest} but the arrays and attributes give {digest}; "
            "the attributes were edited or the index is damaged, rebuild it"
        )
    return True


def _span(index: StoredIndex, name: str, i: int) -> str:
    arr = index.arrays[name]
    lo = i * arr.chunks[0]
    hi = min(lo + arr.chunks[0], len(arr))
    what = "positions" if name in POSITION_ARRAYS else "blocks"
    return f"{what} {lo:,}-{hi - 1:,}"


def _check_tables(index: StoredIndex, result: VerifyResult) -> None:
    """counts == slots per block and source; cursors == counts before; rows within sources."""
    k = len(index.sources)
    num_rows = np.array([s.num_rows for s in index.sources], dtype=np.int64)
    block_size = index.meta.block_size
    source, row = index.arrays["source"], index.arrays["row"]
    counts, cursors = index.arrays["counts"], index.arrays["cursors"]
    chunk_blocks = counts.chunks[0]
    if source.chunks[0] != chunk_blocks * block_size:
        result.notes.append("chunks of positions and of blocks do not align; tables not checked")
        return
    before = np.zeros(k, dtype=np.int64)
    for c in range(counts.num_chunks):
        src = source.load(c).astype(np.int64)
        if src.size and int(src.max()) >= k:
            p = c * source.chunks[0] + int(np.argmax(src >= k))
            result.problems.append(
                f"source/{source.chunk_key(c)}: position {p:,} has source id {src.max()} but "
                f"the index has {k} sources"
            )
            return
        out = np.flatnonzero(row.load(c) >= num_rows[src])
        if out.size:
            p = c * source.chunks[0] + int(out[0])
            result.problems.append(
                f"row/{row.chunk_key(c)}: position {p:,} serves a row past the end of "
                f"source {index.sources[int(src[out[0]])].name!r} ({out.size:,} such positions)"
            )
        table = counts.load(c).astype(np.int64)
        local_block = np.arange(src.size, dtype=np.int64) // block_size
        actual = np.bincount(local_block * k + src, minlength=len(table) * k).reshape(-1, k)
        wrong = np.flatnonzero((actual != table).any(axis=1))
        if wrong.size:
            b = int(wrong[0])
            result.problems.append(
                f"counts/{counts.chunk_key(c)}: block {c * chunk_blocks + b:,} records counts "
                f"{table[b].tolist()} but its positions hold {actual[b].tolist()}"
            )
        # Cursors follow what the positions did, so one bad counts row is one problem, not a
        # cascade through every later block.
        starts = before + np.concatenate([np.zeros((1, k), np.int64), np.cumsum(actual, 0)[:-1]])
        cur = cursors.load(c).astype(np.int64)
        wrong = np.flatnonzero((cur != starts).any(axis=1))
        if wrong.size:
            b = int(wrong[0])
            result.problems.append(
                f"cursors/{cursors.chunk_key(c)}: block {c * chunk_blocks + b:,} records "
                f"cursors {cur[b].tolist()} but the positions before it hold {starts[b].tolist()}"
            )
        before = before + actual.sum(axis=0)


def _check_source(rec: SourceRecord, deep: bool, result: VerifyResult) -> None:
    from mixindex.sources import reopen_source

    name = rec.name
    if not rec.data_files:
        result.notes.append(
            f"source {name!r} was an in-memory datasets.Dataset; it cannot be checked here"
        )
        return
    result.sources += 1
    try:
        src = reopen_source(rec.to_dict())
    except SourceError as exc:
        result.problems.append(f"source {name!r}: {one_line(exc)}")
        return
    try:
        now = src.describe()
        if now["num_rows"] != rec.num_rows:
            result.problems.append(
                f"source {name!r}: row count changed from {rec.num_rows:,} to "
                f"{now['num_rows']:,}; rebuild the index or restore the data"
            )
        elif now["fingerprint"] != rec.fingerprint:
            from mixindex.sources.remote import replaced_object

            what = (
                replaced_object(rec.to_dict(), now)
                or "its files' sizes, schema or metadata changed"
            )
            result.problems.append(
                f"source {name!r}: fingerprint changed ({rec.fingerprint} -> "
                f"{now['fingerprint']}): {what}; rebuild the index or restore the data"
            )
        elif deep:
            content = src.fingerprint(deep=True)
            recorded = rec.content_hash
            if recorded is None:
                result.notes.append(
                    f"source {name!r}: no content hash was recorded (build with --deep to "
                    f"record one); its content hash now is {content}"
                )
            elif recorded != content:
                result.problems.append(
                    f"source {name!r}: content hash changed ({recorded} -> {content}): its "
                    "bytes changed though sizes and row counts did not; rebuild the index or "
                    "restore the data"
                )
    except (SourceError, OSError) as exc:
        result.problems.append(f"source {name!r}: {one_line(exc)}")
    finally:
        src.close()
