"""The ``mixindex`` command line: parse, call the library, print.

Every error a user can cause prints one line ``error: ...`` and exits with status 2.
"""

from mixindex.cli.group import main

__all__ = ["main"]
