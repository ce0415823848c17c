"""``--storage-option KEY=VALUE``: options for the fsspec filesystem of an index URL.

Every command takes it (repeatable). ``KEY`` may be dotted for a nested option
(``client_kwargs.endpoint_url=http://127.0.0.1:9000``); ``VALUE`` is read as JSON when it is JSON
(``anon=true``, ``default_block_size=5242880``), else as text. The options live in this process
only: they are never written into an index.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import click

from mixindex.cli.errors import friendly
from mixindex.errors import SpecError

__all__ = ["add_storage_option", "parse_storage_options"]


def parse_storage_options(values: tuple[str, ...]) -> dict[str, Any]:
    """``("a.b=1", "c=x")`` -> ``{"a": {"b": 1}, "c": "x"}``; SpecError on a malformed one."""
    out: dict[str, Any] = {}
    for text in values:
        key, sep, raw = text.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise SpecError(
                f"--storage-option {text!r} is not KEY=VALUE; write it like "
                "--storage-option endpoint_url=http://127.0.0.1:9000"
            )
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        *parents, last = key.split(".")
        node = out
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise SpecError(
                    f"--storage-option {text!r} sets inside {part!r}, which another "
                    "--storage-option already set to a value; give it once"
                )
            node = child
        node[last] = value
    return out


def add_storage_option(command: click.Command) -> None:
    """Give ``command`` the option; its values apply to every filesystem the command opens."""
    callback = command.callback
    if callback is None:
        return

    @functools.wraps(callback)
    def wrapper(*args: Any, storage_option: tuple[str, ...] = (), **kwargs: Any) -> Any:
        if not storage_option:
            return callback(*args, **kwargs)
        from mixindex.store.remote import default_options

        options = friendly(parse_storage_options)(storage_option)
        with default_options(options):
            return callback(*args, **kwargs)

    command.callback = wrapper
    command.params.append(
        click.Option(
            ["--storage-option", "storage_option"],
            multiple=True,
            metavar="KEY=VALUE",
            help="An fsspec storage option for an s3:// (or other URL) index, such as "
            "endpoint_url=http://127.0.0.1:9000; repeatable; never stored in the index.",
        )
    )
