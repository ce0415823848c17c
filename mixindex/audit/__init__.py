"""Auditing what the model will see: SQL views over an index (``connect``), the build summary,
``report``, ``where``, ``diff``, ``verify`` and ``plot``.

>>> from mixindex.audit import connect
>>> with connect("mix.mixindex") as con:
...     con.sql("SELECT count(*) FROM mix").fetchall()
[(100,)]
"""

from mixindex.audit.sql import connect, query

__all__ = ["connect", "query"]
