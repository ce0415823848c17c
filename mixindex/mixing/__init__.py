"""EasyDeL's mixing API (``easydel.data``) on mixindex's planner: the same names, exact underneath.

``block_mixture_interleave`` mixes Hugging Face datasets into a ``datasets.IterableDataset``;
``MixedShardedSource`` mixes sharded sources; the sharded-source family reads files and datasets
shard by shard. Every mix is planned by :mod:`mixindex.plan.planner`, so it serves the same
sequence as a ``mixindex build`` index of the same spec.
"""
