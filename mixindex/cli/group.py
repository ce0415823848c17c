"""The ``mixindex`` command group: the build commands and the audit commands under one name."""

from __future__ import annotations

import click

from mixindex.cli import audit, build
from mixindex.cli.storage import add_storage_option

__all__ = ["main"]


@click.group()
@click.version_option(package_name="mixindex")
def main() -> None:
    """Plan a weighted mixture of datasets ahead of time and read it back by position."""


for _command in (*build.COMMANDS, *audit.COMMANDS):
    add_storage_option(_command)
    main.add_command(_command)
