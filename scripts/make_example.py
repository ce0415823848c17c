"""Generate the example data used by the README's first command.

    python scripts/make_example.py [--out example] [--quiet]

Under OUT (default ``example/``, relative to the current directory) this writes three
datasets, one in each on-disk format that mixindex reads, plus a spec that mixes them:

``data/code/part-NNNNN.parquet``
    One row per Python source file of the running interpreter's standard library
    (columns ``path``, ``text``, ``num_lines``), sorted by path, ~500 rows per file in
    row groups of 256 rows.
``data/docs/``
    A ``datasets.Dataset.save_to_disk`` folder with one row per built-in help topic
    (``pydoc_data.topics.topics``; columns ``topic``, ``text``), sorted by topic.
``data/docstrings/docstrings.arrow``
    An Arrow IPC file of the module, class and function docstrings of the same stdlib
    files, extracted with ``ast`` (columns ``qualname``, ``text``), docstrings shorter
    than 80 characters left out, sorted by qualname.
``mix.toml``
    A weighted, scheduled mixture of the three, with paths relative to itself.
``mix-v2.toml``
    The same mixture with one more schedule point (step 30,000), to compare with
    ``mixindex diff``.

Why this text: every machine that has Python has its standard library and its help
texts, so the example needs no download, and real prose and code make the mixed output
look like what a training run sees (unlike random characters). The output depends only
on the interpreter that runs the script, and is rebuilt from scratch on each run: the
data is written into a temporary folder next to ``OUT/data`` and then renamed over it.

Only the standard library, pyarrow and datasets are used (mixindex is not imported).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import os
import shutil
import sys
import sysconfig
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from pydoc_data.topics import topics

import datasets
import pyarrow as pa
import pyarrow.parquet as pq

ROWS_PER_FILE = 500
ROW_GROUP_SIZE = 256
MIN_DOCSTRING_CHARS = 80
# Folder names skipped anywhere under the stdlib folder: third-party packages, the test
# suites (large, and full of deliberately odd files) and IDLE.
SKIP_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests", "idlelib", "__pycache__"})

MIX_TOML = """\
# Example mixindex spec for the data made by scripts/make_example.py.
# Relative paths are resolved against the folder holding this file.

# One [[datasets]] table per source.
#   name:       how the mix below refers to the source.
#   data_files: a file, a folder or a glob of files.
#   type:       the on-disk format; left out, it is inferred from the files.
[[datasets]]
name = "code"
data_files = "data/code/*.parquet"
type = "parquet"

[[datasets]]
name = "docs"
data_files = "data/docs"
type = "arrow"

[[datasets]]
name = "docstrings"
data_files = "data/docstrings/docstrings.arrow"

[mix]
# Weights per source at a few steps; a step is a position in the mix (an example),
# not an optimizer step. Weights need not sum to 1.
weight_schedule = [ { step = 0, weights = { code = 0.6, docs = 0.1, docstrings = 0.3 } },
                    { step = 20000, weights = { code = 0.3, docs = 0.2, docstrings = 0.5 } } ]
# Between points: "step" keeps the earlier weights, "linear" or "cosine" interpolate.
weight_schedule_type = "linear"
# Positions planned together: each block gets its sources' counts from the weights
# at its first position, and its slots in a random order of their own.
block_size = 512
# When a source runs out: "restart" goes through it again (the mix then ends at
# num_examples); "first_exhausted" / "all_exhausted" end the mix instead.
stop_strategy = "restart"
# Seed for every random choice, so the same spec always gives the same mix.
seed = 42
# Length of the mix, in examples.
num_examples = 50000
# Order of rows within each source: "sequential" (as stored) or "shuffled".
row_order = "shuffled"
"""

# The README's `mixindex diff` example: mix.toml with a schedule point added at step 30,000,
# as a project might add one midway.
_LAST_POINT = "{ step = 20000, weights = { code = 0.3, docs = 0.2, docstrings = 0.5 } }"
_ADDED_POINT = "{ step = 30000, weights = { code = 0.2, docs = 0.2, docstrings = 0.6 } }"
MIX_V2_TOML = MIX_TOML.replace(
    "# Example mixindex spec for the data made by scripts/make_example.py.",
    "# mix.toml with a schedule point added at step 30000, to compare with it (mixindex diff).",
).replace(f"{_LAST_POINT} ]", f"{_LAST_POINT},\n                    {_ADDED_POINT} ]")


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def iter_stdlib_sources(root: Path) -> Iterator[tuple[str, str]]:
    """Yield ``(relative posix path, text)`` for the stdlib's .py files, sorted by path."""
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        for filename in filenames:
            if filename.endswith(".py"):
                path = Path(dirpath, filename)
                found.append((path.relative_to(root).as_posix(), path))
    found.sort()
    for rel, path in found:
        try:
            text = path.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        yield rel, text


def count_lines(text: str) -> int:
    return text.count("\n") + (1 if text and not text.endswith("\n") else 0)


def module_name(rel: str) -> str:
    parts = rel.removesuffix(".py").split("/")
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


# The fields of ast nodes that hold statements (or except handlers / match cases, which do).
_BODY_FIELDS = ("body", "orelse", "finalbody", "handlers", "cases")


def iter_docstrings(rel: str, text: str) -> Iterator[tuple[str, str]]:
    """Yield ``(qualname, docstring)`` for a module and the classes and functions in it."""
    with warnings.catch_warnings():
        # Old-style escapes in some stdlib files warn at parse time; they are not our concern.
        warnings.simplefilter("ignore")
        try:
            tree = ast.parse(text, filename=rel)
        except (SyntaxError, ValueError):
            return
    module = module_name(rel)
    doc = ast.get_docstring(tree)
    if doc:
        yield module, doc

    def walk(node: ast.AST, prefix: str) -> Iterator[tuple[str, str]]:
        # Definitions are statements, so only statement lists need visiting (the bodies of
        # if/try/with/match/loops included), not expressions; that is much faster.
        for name in _BODY_FIELDS:
            for child in getattr(node, name, ()):
                if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                    qualname = f"{prefix}.{child.name}"
                    doc = ast.get_docstring(child)
                    if doc:
                        yield qualname, doc
                    yield from walk(child, qualname)
                else:
                    yield from walk(child, prefix)

    yield from walk(tree, module)


def write_code(sources: list[tuple[str, str]], folder: Path) -> int:
    folder.mkdir(parents=True)
    schema = pa.schema([("path", pa.string()), ("text", pa.string()), ("num_lines", pa.int32())])
    for part, start in enumerate(range(0, len(sources), ROWS_PER_FILE)):
        chunk = sources[start : start + ROWS_PER_FILE]
        table = pa.table(
            {
                "path": [rel for rel, _ in chunk],
                "text": [text for _, text in chunk],
                "num_lines": [count_lines(text) for _, text in chunk],
            },
            schema=schema,
        )
        pq.write_table(table, folder / f"part-{part:05d}.parquet", row_group_size=ROW_GROUP_SIZE)
    return len(sources)


def write_docs(folder: Path) -> int:
    names = sorted(topics)
    table = pa.table(
        {"topic": names, "text": [topics[name] for name in names]},
        schema=pa.schema([("topic", pa.string()), ("text", pa.string())]),
    )
    # A fingerprint derived from the content (rather than a random one) keeps state.json,
    # and so the whole folder, identical from run to run.
    digest = hashlib.sha256()
    for name in names:
        digest.update(f"{len(name)}:{name}{len(topics[name])}:{topics[name]}".encode())
    dataset = datasets.Dataset(table, fingerprint=digest.hexdigest()[:16])
    bars_were_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        dataset.save_to_disk(str(folder))
    finally:
        if not bars_were_disabled:
            datasets.enable_progress_bars()
    return len(names)


def write_docstrings(sources: list[tuple[str, str]], path: Path) -> int:
    path.parent.mkdir(parents=True)
    rows = [
        (qualname, doc)
        for rel, text in sources
        for qualname, doc in iter_docstrings(rel, text)
        if len(doc) >= MIN_DOCSTRING_CHARS
    ]
    rows.sort()
    schema = pa.schema([("qualname", pa.string()), ("text", pa.string())])
    table = pa.table(
        {"qualname": [q for q, _ in rows], "text": [t for _, t in rows]}, schema=schema
    )
    with pa.ipc.new_file(path, schema) as writer:
        writer.write_table(table, max_chunksize=1024)
    return len(rows)


def _summary(name: str, folder: Path, rows: int, data_suffix: str) -> str:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    data_files = sum(1 for p in files if p.name.endswith(data_suffix))
    megabytes = sum(p.stat().st_size for p in files) / 1e6
    return f"{name:<11} {rows:>6} rows  {data_files:>2} files  {megabytes:6.1f} MB  {folder}"


def build(out: Path) -> list[str]:
    """Write the example under ``out``; return one summary line per source."""
    out.mkdir(parents=True, exist_ok=True)
    sources = list(iter_stdlib_sources(stdlib_dir()))
    final = out / "data"
    tmp = Path(tempfile.mkdtemp(prefix=".data-", dir=out))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; data/ should not be
        code_rows = write_code(sources, tmp / "code")
        docs_rows = write_docs(tmp / "docs")
        docstring_rows = write_docstrings(sources, tmp / "docstrings" / "docstrings.arrow")
        # Swap the new folder in: the old one (if any) is moved aside first, then removed.
        old = None
        if final.exists() or final.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=".data-old-", dir=out))
            os.replace(final, old / "data")
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    for name, text in (("mix.toml", MIX_TOML), ("mix-v2.toml", MIX_V2_TOML)):
        toml_tmp = out / f".{name}.{os.getpid()}"
        toml_tmp.write_text(text, encoding="utf-8")
        os.replace(toml_tmp, out / name)

    return [
        _summary("code", final / "code", code_rows, ".parquet"),
        _summary("docs", final / "docs", docs_rows, ".arrow"),
        _summary("docstrings", final / "docstrings", docstring_rows, ".arrow"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write example datasets (Python stdlib source, help topics, docstrings), "
        "a mix.toml that mixes them and a mix-v2.toml with one more schedule point."
    )
    parser.add_argument("--out", type=Path, default=Path("example"), help="default: example")
    parser.add_argument("--quiet", action="store_true", help="print nothing")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    lines = build(args.out)
    if not args.quiet:
        for line in lines:
            print(line)
        elapsed = time.perf_counter() - start
        print(f"wrote {args.out / 'mix.toml'} and {args.out / 'mix-v2.toml'} in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
