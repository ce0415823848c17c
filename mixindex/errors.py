"""Errors raised by mixindex.

Every class also subclasses the built-in exception a caller would expect, so
``except ValueError`` keeps working. Messages name the bad value and the fix.
"""

from __future__ import annotations

import reprlib
import signal

# Messages quote what the user wrote, which can be huge (a long list, a deeply nested YAML value):
# quote at most a few items per level, a few levels deep, and cut the rest.
_QUOTE = reprlib.Repr()
_QUOTE.maxlevel = 3
_QUOTE.maxlist = _QUOTE.maxtuple = _QUOTE.maxset = _QUOTE.maxfrozenset = _QUOTE.maxdict = 4
_QUOTE.maxstring = 160
_QUOTE.maxother = _QUOTE.maxlong = 80
MAX_QUOTE = 240


def short(value: object) -> str:
    """``repr(value)``, shortened to a readable length for an error message.

    >>> short("code")
    "'code'"
    >>> short(list(range(100)))
    '[0, 1, 2, 3, ...]'
    """
    try:
        text = _QUOTE.repr(value)
    except ValueError:
        # An int past Python's limit on digits converted to text.
        text = f"<{type(value).__name__} too large to print>"
    return clip(text, MAX_QUOTE)


def clip(text: str, limit: int = MAX_QUOTE) -> str:
    """``text`` cut to at most ``limit`` characters, marked with ``...`` where it was cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(exc: BaseException) -> str:
    """An exception's message squashed onto one line (pyarrow and parser messages span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


class MixIndexError(Exception):
    """Base class of every error mixindex raises on purpose."""


class SpecError(MixIndexError, ValueError):
    """The spec (or a Python config object) is invalid."""


class SourceError(MixIndexError, ValueError):
    """A data source is missing, unreadable, empty or of an unknown type."""


class PlanError(MixIndexError, ValueError):
    """The mix cannot be planned (for example an ``all_exhausted`` mix that never ends)."""


class IndexFormatError(MixIndexError, ValueError):
    """A path is not a mixindex index, or the index is damaged or of another format version."""


class IndexReplacedError(IndexFormatError):
    """The index a reader opened was replaced or removed at its path while it was open."""


class StorageError(MixIndexError, OSError):
    """Object storage could not be reached, or refused a request (network, endpoint,
    credentials, a missing bucket)."""


class IndexExistsError(MixIndexError, FileExistsError):
    """The output path exists and overwriting was not asked for."""


class OutputError(MixIndexError, ValueError):
    """The output path cannot take the index: it overlaps the build's inputs, its folder is
    missing, or the index would not fit on its disk."""


class SourceChangedError(MixIndexError, ValueError):
    """A source no longer matches the fingerprint recorded in the index."""


class StateError(MixIndexError, ValueError):
    """A resume state does not belong to this index or this sharding."""


class StageError(MixIndexError, ValueError):
    """Pipeline stages called in an order that cannot work (``pack()`` before ``tokenize()``)."""


class ShardingError(MixIndexError, ValueError):
    """A data-parallel sharding is invalid (rank, world size, global batch size) or leaves a
    rank nothing to read."""


class QueryError(MixIndexError, ValueError):
    """An audit query failed (DuckDB's message, on one line), or an audit was asked for
    something unusable: an output format, a limit, a window or a batch size."""


class QueryTimeout(QueryError):
    """A query ran past its timeout and was stopped."""


class BuildTerminated(KeyboardInterrupt):
    """A build was stopped by a signal (SIGTERM); raised so that cleanup runs as for Ctrl-C.

    Not a MixIndexError: like Ctrl-C it stops the program, and ``except Exception`` must not
    swallow it.
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(f"stopped by {self.name}")
