"""How the command line fails: one line ``error: ...`` on stderr, never a traceback.

Errors a user can cause exit with status 2; Ctrl-C during a query exits with 130.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from mixindex.errors import MixIndexError, one_line

__all__ = ["friendly", "stoppable"]

F = TypeVar("F", bound=Callable[..., Any])


def friendly(func: F) -> F:
    """Turn our errors into one line on stderr and exit status 2, without a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except MixIndexError as exc:
            click.echo(f"error: {one_line(exc)}", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def stoppable(func: F) -> F:
    """Ctrl-C or SIGTERM during a query: one line and exit status 130 or 143, no traceback (the
    query's connection has already been interrupted and closed, and its private temporary
    folder removed, on the way out)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from mixindex.errors import BuildTerminated
        from mixindex.store.publish import termination_guard

        try:
            with termination_guard():
                return func(*args, **kwargs)
        except BuildTerminated as exc:
            said, code = f"stopped by {exc.name}", 128 + exc.signum
        except KeyboardInterrupt:
            said, code = "interrupted (Ctrl-C)", 130
        click.echo(
            f"error: {said}: the query was stopped and its temporary files removed", err=True
        )
        sys.exit(code)

    return wrapper  # type: ignore[return-value]
