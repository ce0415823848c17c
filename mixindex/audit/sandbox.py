"""A DuckDB connection that reaches no file of the user's, within set limits, and can be stopped.

What ``Sandbox`` guarantees for the SQL run through it:

- **Private spill space.** DuckDB's temporary directory is a fresh ``mixindex-audit-*`` folder
  made by :func:`tempfile.mkdtemp` (mode 0700) in the system's temporary folder, never ``.tmp``
  of the working directory; it is removed when the sandbox closes, also after an error, a
  timeout or Ctrl-C (and at interpreter exit if the caller forgot to close).
- **Limits.** ``memory_limit`` caps DuckDB's memory and ``temp_limit`` what it may spill
  (``max_temp_directory_size``); a query over either fails with one line.
- **No files.** External access is switched off, so DuckDB refuses every path but its own
  temporary folder. That folder stays reachable by DuckDB's design, so statements that can
  write a file (COPY, EXPORT, ATTACH, PRAGMA, PREPARE/EXECUTE, LOAD, ...) are refused before
  DuckDB sees them: only the statement kinds in ``ALLOWED`` run, and ``EXPLAIN`` only over one
  of them. The configuration is then locked, so SQL cannot undo any of this.
- **Stoppable.** :meth:`Sandbox.run` executes on a worker thread; the caller's thread waits in
  short steps, so a timeout or a KeyboardInterrupt reaches it at once and calls DuckDB's
  ``interrupt()`` (a query blocked inside DuckDB on the main thread would never see Ctrl-C).
"""

from __future__ import annotations

import contextlib
import queue
import re
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from mixindex.errors import QueryError, QueryTimeout

__all__ = [
    "ALLOWED",
    "DEFAULT_MEMORY_LIMIT",
    "DEFAULT_TEMP_LIMIT",
    "QueryTimeout",
    "Sandbox",
    "check_size",
    "check_timeout",
]

DEFAULT_MEMORY_LIMIT = "2GB"
DEFAULT_TEMP_LIMIT = "10GB"

# Statement kinds that touch nothing but the in-memory catalog. COPY, EXPORT, ATTACH, DETACH,
# LOAD, EXTENSION, PRAGMA (which expands to other statements, COPY FROM DATABASE among them),
# PREPARE and EXECUTE (a prepared COPY) and VACUUM are not here.
ALLOWED = frozenset(
    {
        "SELECT",
        "EXPLAIN",
        "CREATE",
        "INSERT",
        "UPDATE",
        "DELETE",
        "MERGE_INTO",
        "DROP",
        "ALTER",
        "CALL",
        "SET",
        "VARIABLE_SET",
        "TRANSACTION",
        "MULTI",
        "ANALYZE",
    }
)

_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KIB|MIB|GIB|TIB)\s*", re.IGNORECASE)
_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_UNITS.update({"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40})
_WAIT_S = 0.05  # how often a waiting caller looks at its deadline (and lets signals in)
_JOIN_S = 10.0  # how long to wait for an interrupted query to unwind


def check_size(value: str, name: str, *, zero_ok: bool = False) -> str:
    """``value`` if it is a size DuckDB understands (a number and a unit: ``2GB``, ``512MiB``),
    else QueryError naming ``name``; returned without spaces."""
    m = _SIZE.fullmatch(str(value))
    if m is None or (float(m[1]) * _UNITS[m[2].upper()] < 1 and not zero_ok):
        least = "0B or more" if zero_ok else "more than 0B"
        raise QueryError(
            f"{name} {value!r} is not a size: give a number and a unit, {least}, "
            "such as 512MB, 2GB or 4GiB"
        )
    return f"{m[1]}{m[2]}"


def check_timeout(value: float | str | None, name: str) -> float | None:
    """``value`` in seconds as a float (None: no limit), else QueryError naming ``name``."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise QueryError(f"{name} {value!r} is not a number of seconds above 0; try {name} 60")
    return seconds


def duckdb_line(exc: BaseException) -> str:
    # DuckDB adds "LINE 1: <sql>" and a caret line under it; the caret means nothing on one line.
    # A Python error inside a view's stream comes with its traceback as "Detail": drop it.
    text = str(exc).split("Detail: Python exception", 1)[0]
    lines = [ln for ln in text.splitlines() if ln.strip() and set(ln.strip()) != {"^"}]
    return " ".join(" ".join(lines).split()) or type(exc).__name__


class Sandbox:
    """An in-memory DuckDB connection with limits, a private temporary folder and no file
    access; call :meth:`lock` once the caller's views are registered.

    >>> with Sandbox(memory_limit="1GB") as box:
    ...     box.lock()
    ...     box.run("SELECT 42 AS answer").read_all().to_pylist()
    [{'answer': 42}]
    """

    def __init__(
        self,
        *,
        memory_limit: str = DEFAULT_MEMORY_LIMIT,
        temp_limit: str = DEFAULT_TEMP_LIMIT,
        timeout: float | None = None,
        refused: str = "",
    ) -> None:
        import duckdb

        self.memory_limit = check_size(memory_limit, "memory_limit")
        self.temp_limit = check_size(temp_limit, "temp_limit", zero_ok=True)
        self.timeout = check_timeout(timeout, "timeout")
        self._refused = refused
        self.temp_dir = Path(tempfile.mkdtemp(prefix="mixindex-audit-"))
        try:
            # Given at start-up, before external access goes off: DuckDB allows its own
            # temporary folder even then, so it must be this private one, not ./.tmp.
            self.con = duckdb.connect(
                ":memory:",
                config={
                    "temp_directory": str(self.temp_dir),
                    "memory_limit": self.memory_limit,
                    "max_temp_directory_size": self.temp_limit,
                },
            )
        except BaseException as exc:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
            if isinstance(exc, duckdb.Error):
                raise QueryError(duckdb_line(exc)) from None
            raise
        # Tied to DuckDB's connection, not to this object: a relation from ``sql`` keeps the
        # connection (and so its spill folder) alive after the sandbox itself is dropped.
        self._remove = weakref.finalize(self.con, shutil.rmtree, self.temp_dir, True)
        self._running: _Run | None = None
        self._locked = False

    def lock(self) -> None:
        """Switch off files, extensions and persistent secrets, and freeze the settings (done
        by the first query if the caller has not)."""
        for setting in (
            "SET autoinstall_known_extensions = false",
            "SET autoload_known_extensions = false",
            "SET allow_persistent_secrets = false",
            "SET enable_external_access = false",
            "SET lock_configuration = true",
        ):
            self.con.execute(setting)
        self._locked = True

    def sql(self, sql: str) -> Any:
        """DuckDB's lazy relation for ``sql``, checked like :meth:`run` but run on the caller's
        thread when fetched: no timeout, and Ctrl-C waits for DuckDB."""
        self._ready(sql)
        return self.con.sql(sql)

    def execute(self, sql: str, parameters: object = None) -> Any:
        """DuckDB's ``execute``, checked like :meth:`run`, on the caller's thread."""
        self._ready(sql)
        return self.con.execute(sql, parameters)

    def __getattr__(self, name: str) -> Any:
        # The rest of DuckDB's connection (register, interrupt, ...); ``con`` itself is the raw,
        # unchecked connection.
        if "con" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.con, name)

    def _ready(self, sql: str) -> None:
        # DuckDB refuses a second call on a connection that is busy: end the last query first.
        if self._running is not None:
            self._running.cancel()
        if not self._locked:
            self.lock()
        self.check(sql)

    def check(self, sql: str) -> None:
        """QueryError unless every statement of ``sql`` is of a kind in ``ALLOWED``."""
        import duckdb

        try:
            statements = self.con.extract_statements(sql)
            kinds = [(st.type.name, st.query) for st in statements]
        except duckdb.Error as exc:
            raise QueryError(duckdb_line(exc)) from None
        except ValueError:  # a statement kind this duckdb module has no name for
            kinds = [("UNKNOWN", sql)]
        for kind, text in kinds:
            inner = _explained(text) if kind == "EXPLAIN" else None
            if kind not in ALLOWED or (kind == "EXPLAIN" and inner is None):
                raise QueryError(f"{kind} statements are refused{self._refused}")
            if inner is not None:
                self.check(inner)

    def run(
        self, sql: str, batch_rows: int = 1 << 17, *, timeout: float | None = None
    ) -> pa.RecordBatchReader:
        """Check and run ``sql``; its result streams from a worker thread. QueryError with
        DuckDB's message on one line, QueryTimeout past ``timeout`` seconds (default: the
        sandbox's); a KeyboardInterrupt while waiting stops the query and is re-raised."""
        self._ready(sql)
        limit = self.timeout if timeout is None else check_timeout(timeout, "timeout")
        self._running = run = _Run(self, sql, batch_rows, limit)
        schema = run.next()
        # The worker's first item is always the schema.
        if not isinstance(schema, pa.Schema):
            raise RuntimeError(f"mixindex internal error: schema is {type(schema).__name__}")
        batches = run.batches()
        # A result dropped unread must not leave its worker (and the connection) busy.
        weakref.finalize(batches, run.abandon)
        return pa.RecordBatchReader.from_batches(schema, batches)

    def interrupt(self) -> None:
        """Stop the query in flight, if any (from any thread)."""
        self.con.interrupt()

    def close(self) -> None:
        """Stop any query, close DuckDB and remove the temporary folder. A Ctrl-C meanwhile
        does not cut this short; it is raised once everything is done."""
        import duckdb

        def close_duckdb() -> None:
            # Still busy only if a query ignored interrupt() for _JOIN_S; the process's exit
            # ends it then, and the folder goes now all the same.
            with contextlib.suppress(duckdb.Error):
                self.con.close()

        steps = [close_duckdb, lambda: shutil.rmtree(self.temp_dir, ignore_errors=True)]
        if self._running is not None:
            steps.insert(0, self._running.cancel)
        if any([_shielded(step) for step in steps]):
            raise KeyboardInterrupt
        self._remove.detach()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def error(self, exc: BaseException) -> QueryError:
        """DuckDB's error as one line, the limits named when one of them was hit. Matched on
        the text: an error while the result streams reaches us as pyarrow's, not DuckDB's."""
        line = duckdb_line(exc)
        if "Out of Memory Error" in line:
            if "max_temp_directory_size" in line:
                return QueryError(
                    f"the query needs more than memory_limit={self.memory_limit} of memory "
                    f"plus temp_limit={self.temp_limit} of disk to spill to; raise "
                    "--temp-limit or --memory-limit, or narrow the query"
                )
            return QueryError(
                f"the query needs more than memory_limit={self.memory_limit} of memory "
                f"(with temp_limit={self.temp_limit} to spill to); raise --memory-limit, "
                "or narrow the query"
            )
        if "Permission Error" in line:
            return QueryError(f"{line}{self._refused}")
        return QueryError(line)


def _explained(text: str) -> str | None:
    """The statement an ``EXPLAIN [ANALYZE | (options)]`` statement explains, or None."""
    import duckdb

    spans = duckdb.tokenize(text)
    words = []
    for i, (start, kind) in enumerate(spans):
        if kind != duckdb.token_type.comment:
            end = spans[i + 1][0] if i + 1 < len(spans) else len(text)
            words.append((start, text[start:end].strip().lower()))
    if len(words) < 2 or words[0][1] != "explain":
        return None
    i = 1
    if words[i][1] in ("analyze", "analyse"):
        i += 1
    elif words[i][1] == "(":
        depth = 0
        while i < len(words):
            depth += words[i][1].count("(") - words[i][1].count(")")
            i += 1
            if depth <= 0:
                break
    return text[words[i][0] :] if i < len(words) else None


_END = object()


class _Run:
    """One query on a worker thread, handing its schema and batches over a small queue."""

    def __init__(self, box: Sandbox, sql: str, batch_rows: int, timeout: float | None) -> None:
        self._box = box
        self._timeout = timeout
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._items: queue.Queue[object] = queue.Queue(maxsize=2)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._work, args=(sql, batch_rows), name="mixindex-query", daemon=True
        )
        self._thread.start()

    def _work(self, sql: str, batch_rows: int) -> None:
        try:
            rel = self._box.con.sql(sql)
            if rel is None:
                self._put(pa.schema([]))
            else:
                reader = rel.to_arrow_reader(batch_rows)
                self._put(reader.schema)
                for batch in reader:
                    if not self._put(batch):
                        return
            self._put(_END)
        except BaseException as exc:  # handed to the waiting thread, which raises it there
            self._put(exc)

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            with contextlib.suppress(queue.Full):
                self._items.put(item, timeout=_WAIT_S)
                return True
        return False

    def next(self) -> object:
        """The worker's next item; errors, the deadline and Ctrl-C are raised here."""
        try:
            while True:
                if self._deadline is not None and time.monotonic() > self._deadline:
                    self.cancel()
                    raise QueryTimeout(
                        f"query stopped after {self._timeout:g} s (--timeout {self._timeout:g}); "
                        "raise --timeout or narrow the query"
                    )
                with contextlib.suppress(queue.Empty):
                    item = self._items.get(timeout=_WAIT_S)
                    break
                if self._stop.is_set() and not self._thread.is_alive():
                    raise QueryError(
                        "this result was cut short by a later query on the same connection; "
                        "read each result before running the next query"
                    )
        except KeyboardInterrupt:
            _shielded(self.cancel)
            raise
        if isinstance(item, BaseException):
            self._thread.join(_JOIN_S)
            raise self._box.error(item) from None
        return item

    def batches(self) -> Iterator[pa.RecordBatch]:
        while (item := self.next()) is not _END:
            if not isinstance(item, pa.RecordBatch):
                raise RuntimeError(f"mixindex internal error: item is {type(item).__name__}")
            yield item

    def abandon(self) -> None:
        """Tell the worker to stop, without waiting for it (safe from a finalizer)."""
        self._stop.set()
        if self._thread.is_alive():
            self._box.interrupt()

    def cancel(self) -> None:
        """Stop the worker: DuckDB's interrupt, repeated (one that lands between two
        statements is forgotten), until it unwinds or _JOIN_S have passed."""
        self._stop.set()
        deadline = time.monotonic() + _JOIN_S
        while self._thread.is_alive() and time.monotonic() < deadline:
            self._box.interrupt()
            self._thread.join(_WAIT_S)


def _shielded(step: Callable[[], object]) -> bool:
    """Run ``step`` to its end even if Ctrl-C is pressed (again) meanwhile; True if it was."""
    pressed = False
    while True:
        try:
            step()
            return pressed
        except KeyboardInterrupt:
            pressed = True
