"""The index's attributes (``attributes["mixindex"]`` of the group's ``zarr.json``) as one frozen
:class:`IndexMeta`, the only reader of them, and the content digest that covers them.

The digest is one sha256 over each whole array's sha256 and a canonical JSON of every attribute
that changes what is served or reported: the spec's ``mix`` section and dataset names; each
source's name, row count, type and fingerprint (those of its original files when it is read
through an Arrow cache, so that the cache changes where rows are read, not the digest), and
its row groups where ``grouped`` row order recorded them; the
block size, the lengths and the dtypes; and the format version. Hand-editing any of them is
refused at open. Left out, because they say where things are or how a build went rather than
what is served: ``data_files`` (moved data opens with ``data_files=``), cache folders, build
facts, content hashes (``verify --deep`` checks those against the data), and the chunking (a mix
has one digest whatever ``chunk_blocks``; ``open`` checks the chunking against the arrays).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mixindex.errors import IndexFormatError, SpecError, one_line
from mixindex.spec.schedule import WeightSchedulePoint, WeightScheduler
from mixindex.store.attrs import (
    BuildFacts,
    Fields,
    MixRecord,
    Record,
    SourceRecord,
    SpecRecord,
)
from mixindex.store.layout import ARRAYS, ATTR_KEY, FORMAT_VERSION

__all__ = ["IndexMeta", "attributes_of", "content_digest", "recorded_digest"]


@dataclass(frozen=True, kw_only=True)
class IndexMeta(Record):
    """Everything an index records besides its arrays, typed and checked.

    :meth:`from_dict` reads the attributes (a missing or wrong-typed key is
    :class:`~mixindex.errors.IndexFormatError` naming it); :meth:`to_dict` writes them back as
    they were read, unknown keys and key order included.

    >>> # meta = StoredIndex("mix.mixindex").meta; meta.mix.seed, meta.names, meta.scheduler()
    """

    spec: SpecRecord
    sources: tuple[SourceRecord, ...]
    build: BuildFacts | None
    format_version: int
    num_examples: int
    num_blocks: int
    block_size: int
    chunk_positions: int
    chunk_blocks: int
    array_digests: Mapping[str, str]
    digest: str

    @classmethod
    def from_dict(cls, doc: Any, path: str | Path | None = None) -> IndexMeta:
        """The attributes ``doc`` (``path`` names the index in errors), checked."""
        f = Fields(doc, path)
        version = doc.get("format_version")
        if version != FORMAT_VERSION:
            where = repr(str(path)) if path is not None else "the index"
            raise IndexFormatError(
                f"{where} has format version {version!r}; this mixindex reads version "
                f"{FORMAT_VERSION}; rebuild the index with 'mixindex build SPEC -o OUT --force'"
            )
        digests = f.obj("array_digests")
        for name in ARRAYS:
            digests.text(name)
        build = f.maybe_obj("build")
        sources = f.objs("sources", low=1, want="a list of at least one source")
        return cls(
            spec=SpecRecord.parse(f.obj("spec")),
            sources=tuple(SourceRecord.parse(s) for s in sources),
            build=None if build is None else BuildFacts.parse(build),
            format_version=f.whole("format_version"),
            num_examples=f.whole("num_examples"),
            num_blocks=f.whole("num_blocks"),
            block_size=f.whole("block_size", low=1),
            chunk_positions=f.whole("chunk_positions", low=1),
            chunk_blocks=f.whole("chunk_blocks", low=1),
            array_digests=dict(digests.doc),
            digest=f.text("digest"),
            **f.kept(),
        )

    def to_dict(self) -> dict[str, Any]:
        """The attributes as JSON-ready objects, as the writer stores them."""
        out: dict[str, Any] = {
            "spec": self.spec.to_dict(),
            "sources": [s.to_dict() for s in self.sources],
        }
        if self.build is not None:
            out["build"] = self.build.to_dict()
        out.update(
            format_version=self.format_version,
            num_examples=self.num_examples,
            num_blocks=self.num_blocks,
            block_size=self.block_size,
            chunk_positions=self.chunk_positions,
            chunk_blocks=self.chunk_blocks,
            array_digests=dict(self.array_digests),
            digest=self.digest,
        )
        return self._emit(out)

    @property
    def mix(self) -> MixRecord:
        """The recorded spec's ``mix`` section (seed, stop strategy, row order, schedule)."""
        return self.spec.mix

    @property
    def names(self) -> tuple[str, ...]:
        """The sources' names, in source-id order."""
        return tuple(s.name for s in self.sources)

    @property
    def num_sources(self) -> int:
        return len(self.sources)

    def scheduler(self) -> WeightScheduler:
        """The recorded weight schedule, in source order."""
        mix = self.mix
        points = [WeightSchedulePoint(p.step, p.weights) for p in mix.weight_schedule]
        try:
            return WeightScheduler(points, mix.weight_schedule_type, self.names)
        except SpecError as exc:
            raise IndexFormatError(
                f"the index's weight schedule cannot be used ({one_line(exc)}); rebuild the index"
            ) from None


def attributes_of(group: Any) -> Any:
    """The ``mixindex`` attributes of a group's ``zarr.json`` document (unchecked), or None."""
    attrs = group.get("attributes") if isinstance(group, dict) else None
    doc = attrs.get(ATTR_KEY) if isinstance(attrs, dict) else None
    return doc if isinstance(doc, dict) else None


def recorded_digest(group: Any) -> str | None:
    """The digest a group's ``zarr.json`` records, or None: for messages about a folder that
    may be any index, of any version, or none."""
    doc = attributes_of(group)
    digest = doc.get("digest") if doc is not None else None
    return digest if isinstance(digest, str) else None


def _identity(rec: SourceRecord) -> dict[str, Any]:
    """What a source is, whichever copy of its rows is read."""
    origin = rec.origin
    out: dict[str, Any] = {
        "name": rec.name,
        "num_rows": rec.num_rows,
        "type": origin.type,
        "fingerprint": origin.fingerprint,
    }
    if rec.row_groups is not None:
        # grouped row order: the groups decide which rows are served (only then recorded, so
        # the digest of every other index stays what it was)
        out["row_groups"] = list(rec.row_groups)
    return out


def content_digest(
    meta: IndexMeta, array_digests: Mapping[str, str], dtypes: Mapping[str, Any]
) -> str:
    """The index's content digest: the arrays' whole-array sha256s and the attributes that
    change what is served or reported (see the module's docstring)."""
    facts = {
        "format_version": meta.format_version,
        "num_examples": meta.num_examples,
        "num_blocks": meta.num_blocks,
        "block_size": meta.block_size,
        "num_sources": meta.num_sources,
        "dtypes": {n: np.dtype(d).name for n, d in dtypes.items()},
        "mix": meta.mix.to_dict(),
        "datasets": [d.name for d in meta.spec.datasets],
        "sources": [_identity(rec) for rec in meta.sources],
    }
    doc = json.dumps(
        {"arrays": dict(array_digests), "facts": facts}, sort_keys=True, separators=(",", ":")
    )
    return "sha256:" + hashlib.sha256(doc.encode()).hexdigest()
