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
        "print(sorted(m for m in ('datasets', 'duckdb', 'zarr', 'pyarrow', 'torch', 'fsspec', "
        "'s3fs', 'aiobotocore', 'transformers', 'tokenizers', 'numba') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _exception_classes() -> dict[str, type[BaseException]]:
    """Every exception class the package defines, found by importing each of its modules."""
    import importlib
    import pkgutil

    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(mixindex.__path__, "mixindex."):
        if info.name.endswith("__main__"):
            continue  # running it would start the command line
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
                and not name.startswith("_")
            ):
                found[name] = value
    return found


def test_every_public_error_is_exported() -> None:
    import mixindex.errors

    classes = _exception_classes()
    # The check must see the errors it guards, wherever they are defined.
    assert {"MixIndexError", "QueryError", "QueryTimeout", "BuildTerminated"} <= set(classes)
    for name, cls in classes.items():
        assert cls.__module__ == "mixindex.errors", f"{name} is defined outside errors.py"
        assert name in mixindex.__all__, name
        assert getattr(mixindex, name) is cls
    ours = {n for n, c in vars(mixindex.errors).items() if isinstance(c, type)}
    assert ours <= set(mixindex.__all__)
    # Each MixIndexError is also the built-in a caller would catch.
    for name, cls in classes.items():
        if issubclass(cls, mixindex.MixIndexError) and cls is not mixindex.MixIndexError:
            assert set(cls.__mro__) & {ValueError, FileExistsError, OSError}, name


def test_moved_errors_keep_their_old_homes() -> None:
    from mixindex.audit.sandbox import QueryTimeout
    from mixindex.store.publish import BuildTerminated

    assert QueryTimeout is mixindex.QueryTimeout and issubclass(QueryTimeout, mixindex.QueryError)
    assert BuildTerminated is mixindex.BuildTerminated
    assert issubclass(BuildTerminated, KeyboardInterrupt)
    assert not issubclass(BuildTerminated, Exception)
