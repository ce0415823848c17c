"""Auditing what the model will see: SQL views over an index (``connect``), the build summary,
``report``, ``where``, ``diff``, ``verify`` and ``plot``.

>>> from mixindex.audit import connect  # connect("mix.mixindex").sql("SELECT count(*) FROM mix")
"""

from mixindex.audit.sql import connect

__all__ = ["connect"]
