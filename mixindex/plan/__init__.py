"""The pure planner: (normalised spec, source lengths) -> ``(source, row, epoch)`` per position.

``apportion`` (S2 block counts), ``rng`` (S3 order and S4 row permutations), ``bound`` (how long
a mix that stops by itself can be) and ``planner`` (chunk by chunk, S1-S6).
"""
