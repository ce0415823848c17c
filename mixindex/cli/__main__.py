"""``python -m mixindex.cli``: the same as the ``mixindex`` command."""

from mixindex.cli.group import main

if __name__ == "__main__":
    main()
