"""The public facade: names, laziness, and no module shadowing a function."""

from __future__ import annotations

import subprocess
import sys

import mixindex


def test_public_names_are_the_package_s_own_objects() -> None:
    assert mixindex.__all__ == sorted(set(mixindex.__all__))
    for name in mixindex.__all__:
        if name == "__version__":
            continue
        obj = getattr(mixindex, name)  # AttributeError for a name that does not resolve
        # Each name is the object it names (not an alias of another), defined in the package.
        assert obj.__name__ == name, (name, obj)
        assert obj.__module__.startswith("mixindex."), (name, obj.__module__)


def test_importing_submodules_keeps_the_functions() -> None:
    import mixindex.builder
    import mixindex.read.dataset

    assert callable(mixindex.build) and mixindex.build.__module__ == "mixindex.builder"
    assert callable(mixindex.open) and mixindex.open.__module__ == "mixindex.read.dataset"


def test_import_is_light() -> None:
    code = (
        "import sys, mixindex; "
        "print(sorted(m for m in ('datasets', 'duckdb', 'zarr', 'pyarrow', 'torch') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
