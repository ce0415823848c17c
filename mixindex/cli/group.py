"""The ``mixindex`` command group: the build commands and the audit commands under one name."""

from __future__ import annotations

import atexit
import functools
import gc

import click

from mixindex.cli import audit, build
from mixindex.cli.storage import add_storage_option

__all__ = ["main"]


@click.group()
@click.version_option(package_name="mixindex")
def main() -> None:
    """Plan a weighted mixture of datasets ahead of time and read it back by position."""
    _skip_the_last_collection()


@functools.cache  # once a process, however many commands it runs
def _skip_the_last_collection() -> None:
    """Freeze every object at exit, before Python's last collection, which would walk them all
    (with numba's compiler loaded, about 0.3 s) only to free memory the ending process gives
    back anyway. Each command has closed its files by then, so no data waits on it."""
    atexit.register(gc.freeze)


for _command in (*build.COMMANDS, *audit.COMMANDS):
    add_storage_option(_command)
    main.add_command(_command)
