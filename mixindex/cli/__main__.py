"""``python -m mixindex.cli``: the same as the ``mixindex`` command."""

from mixindex.cli.group import main

main()
