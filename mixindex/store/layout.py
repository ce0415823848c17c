"""The index's layout on disk (the on-disk contract)::

NAME.mixindex/
  zarr.json          group; attributes["mixindex"]: format version, spec, sources, build,
                     array digests, content digest (see mixindex.store.meta)
  source/ row/ epoch/    1-D, length N, chunked by whole blocks, uncompressed
  counts/            (blocks, sources): slots of each source in each block
  cursors/           (blocks, sources): each source's stream cursor at the block's start
  chunk_digests/     (chunks, 5, 32) uint8: each chunk's sha256, arrays in ARRAYS order
"""

from __future__ import annotations

__all__ = [
    "ARRAYS",
    "ATTR_KEY",
    "CHUNK_DIGESTS",
    "FORMAT_VERSION",
    "POSITION_ARRAYS",
    "TABLE_ARRAYS",
]

FORMAT_VERSION = 4
POSITION_ARRAYS = ("source", "row", "epoch")
TABLE_ARRAYS = ("counts", "cursors")
ARRAYS = (*POSITION_ARRAYS, *TABLE_ARRAYS)
CHUNK_DIGESTS = "chunk_digests"
ATTR_KEY = "mixindex"
