"""The index on disk: the zarr v3 layout, its attributes and digest, atomic publishing, and the
memory-mapped reads of a built index."""
