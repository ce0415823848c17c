"""Shared fixtures: small real data files in every format mixindex reads, and spec writers.

Under ``tmp_path`` the ``data`` fixture writes::

    data/code/part-0.parquet, part-1.parquet   Parquet, columns text, path; 37 + 23 rows in row
                                               groups of 8 (several groups per file, odd sizes)
    data/notes.arrow                           Arrow IPC file, columns topic, text; 29 rows in
                                               record batches of 10
    data/docs/                                 datasets save_to_disk folder, columns title, text;
                                               17 rows

and ``write_spec`` writes a spec (TOML, YAML or JSON by suffix) beside ``data``, so the spec's
relative paths point at it. The reference rows come from pyarrow and datasets, never from
mixindex, so tests compare mixindex against an independent reading of the same files.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import settings

from tests.s3server import s3, s3_server  # noqa: F401  (fixtures: a real S3 endpoint)

# CI replays one fixed search on every run (derandomized), so that its result depends on the code
# alone; a local run searches afresh each time and may find new counterexamples.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

CODE_SIZES = (37, 23)
CODE_ROW_GROUP = 8
NOTES_ROWS = 29
NOTES_BATCH = 10
DOCS_ROWS = 17

# The default mix: three sources with different columns, 10 blocks, the last one partial. (Blocks
# of 100 rather than 10 keep a build at ~0.2 s: the planner apportions a whole chunk of
# 2**20 positions whatever the mix length, so the cost grows with the number of blocks in it.)
DEFAULT_DATASETS: list[dict[str, Any]] = [
    {"name": "code", "data_files": "data/code/*.parquet"},
    {"name": "notes", "data_files": "data/notes.arrow"},
    {"name": "docs", "data_files": "data/docs", "type": "arrow"},
]
DEFAULT_MIX: dict[str, Any] = {
    "seed": 7,
    "weights": {"code": 3, "notes": 2, "docs": 1},
    "block_size": 100,
    "num_examples": 950,
    "row_order": "shuffled",
}


def code_rows(start: int, n: int) -> list[dict[str, Any]]:
    # Strings of varying length, so that a wrong row is also a wrong size.
    return [
        {"text": f"def f{i}(): return " + "x" * (i % 7), "path": f"pkg/mod{i}.py"}
        for i in range(start, start + n)
    ]


def write_parquet(path: Path, rows: list[dict[str, Any]], schema: pa.Schema) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, row_group_size=CODE_ROW_GROUP)


CODE_SCHEMA = pa.schema([("text", pa.string()), ("path", pa.string())])
NOTES_SCHEMA = pa.schema([("topic", pa.string()), ("text", pa.string())])


@dataclass
class Data:
    """The files written under ``root`` and their rows as read back by pyarrow / datasets."""

    root: Path
    code_files: list[Path]
    notes_file: Path
    docs_dir: Path

    def reference(self) -> dict[str, list[dict[str, Any]]]:
        """Every source's rows in order, read without mixindex."""
        import datasets

        code: list[dict[str, Any]] = []
        for f in self.code_files:
            code.extend(pq.read_table(f).to_pylist())
        with pa.memory_map(str(self.notes_file)) as mm:
            notes = pa.ipc.open_file(mm).read_all().to_pylist()
        docs = datasets.load_from_disk(str(self.docs_dir)).to_list()
        return {"code": code, "notes": notes, "docs": docs}


def make_data(root: Path) -> Data:
    """Write the three sources under ``root``."""
    import datasets

    datasets.disable_progress_bars()
    code_files = []
    start = 0
    for k, n in enumerate(CODE_SIZES):
        path = root / "code" / f"part-{k}.parquet"
        write_parquet(path, code_rows(start, n), CODE_SCHEMA)
        code_files.append(path)
        start += n
    notes_file = root / "notes.arrow"
    notes = pa.Table.from_pylist(
        [
            {"topic": f"topic-{i:02d}", "text": f"note {i}: " + "y" * (i % 5)}
            for i in range(NOTES_ROWS)
        ],
        schema=NOTES_SCHEMA,
    )
    with pa.OSFile(str(notes_file), "wb") as f, pa.ipc.new_file(f, notes.schema) as w:
        w.write_table(notes, max_chunksize=NOTES_BATCH)
    docs_dir = root / "docs"
    docs = datasets.Dataset.from_dict(
        {
            "title": [f"Doc {i}" for i in range(DOCS_ROWS)],
            "text": [f"documentation page {i} " + "z" * (i % 3) for i in range(DOCS_ROWS)],
        }
    )
    docs.save_to_disk(str(docs_dir))
    return Data(root=root, code_files=code_files, notes_file=notes_file, docs_dir=docs_dir)


@pytest.fixture
def data(tmp_path: Path) -> Data:
    """The sources under ``tmp_path / "data"``, fresh for each test (tests may change them)."""
    return make_data(tmp_path / "data")


def spec_dict(datasets: list[dict[str, Any]] | None = None, **mix: Any) -> dict[str, Any]:
    """The default spec with ``mix`` keys replaced (a value of ``None`` removes the key)."""
    out_mix = copy.deepcopy(DEFAULT_MIX)
    for key, value in mix.items():
        if value is None:
            out_mix.pop(key, None)
        else:
            out_mix[key] = value
    return {
        "datasets": copy.deepcopy(datasets if datasets is not None else DEFAULT_DATASETS),
        "mix": out_mix,
    }


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(spec: dict[str, Any]) -> str:
    """A spec dict (``datasets`` list of tables, ``mix`` table) as TOML text."""
    lines: list[str] = []
    for d in spec.get("datasets", []):
        lines.append("[[datasets]]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in d.items())
        lines.append("")
    if "mix" in spec:
        lines.append("[mix]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in spec["mix"].items())
    return "\n".join(lines) + "\n"


SpecWriter = Callable[..., Path]


@pytest.fixture
def write_spec(tmp_path: Path) -> SpecWriter:
    """``write_spec(spec, name="mix.toml")``: write a dict (or raw text) into ``tmp_path``.

    The format follows the suffix: ``.toml``, ``.yaml``/``.yml``, ``.json``; any other suffix
    gets TOML text.
    """

    def write(spec: dict[str, Any] | str | None = None, name: str = "mix.toml") -> Path:
        path = tmp_path / name
        if spec is None:
            spec = spec_dict()
        if isinstance(spec, str):
            text = spec
        elif path.suffix in (".yaml", ".yml"):
            import yaml

            text = yaml.safe_dump(spec, sort_keys=False)
        elif path.suffix == ".json":
            text = json.dumps(spec, indent=2)
        else:
            text = to_toml(spec)
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def built(data: Data, write_spec: SpecWriter, tmp_path: Path) -> Path:
    """The default spec built into ``tmp_path / "mix.mixindex"``."""
    from mixindex.builder import build

    return build(write_spec(), tmp_path / "mix.mixindex")


@dataclass
class Shared:
    data: Data
    index: Path
    reference: dict[str, list[dict[str, Any]]]


@pytest.fixture(scope="session")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Shared:
    """One build of the default spec for the whole session: tests must only read it."""
    from mixindex.builder import build

    root = tmp_path_factory.mktemp("shared")
    data = make_data(root / "data")
    path = root / "mix.toml"
    path.write_text(to_toml(spec_dict()), encoding="utf-8")
    return Shared(data=data, index=build(path, root / "mix.mixindex"), reference=data.reference())


@pytest.fixture
def spec() -> Callable[..., dict[str, Any]]:
    """``spec(datasets=None, **mix)``: the default spec dict with mix keys replaced."""
    return spec_dict


@pytest.fixture
def other_index(data: Data, write_spec: SpecWriter, tmp_path: Path) -> Path:
    """The default spec with another seed, built: an index whose states must not load here."""
    from mixindex.builder import build

    return build(write_spec(spec_dict(seed=99), "other.toml"), tmp_path / "other.mixindex")


def not_an_index(tmp_path: Path, kind: str) -> Path:
    """A path that is not a mixindex index: missing, an empty folder, a file, a plain zarr group."""
    import zarr

    path = tmp_path / "thing.mixindex"
    if kind == "empty_dir":
        path.mkdir()
    elif kind == "file":
        path.write_text("hello")
    elif kind == "plain_zarr":
        zarr.open_group(str(path), mode="w", zarr_format=3).attrs["other"] = 1
    return path


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The system's temporary folder, here an empty one of the test's own."""
    import tempfile

    folder = tmp_path / "system-tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The working directory, with a user's file in ``.tmp`` (DuckDB's default temp folder)."""
    work = tmp_path / "work"
    (work / ".tmp").mkdir(parents=True)
    (work / ".tmp" / "x.csv").write_text("precious\n", encoding="utf-8")
    monkeypatch.chdir(work)
    return work


@pytest.fixture(autouse=True)
def _cache_in_tmp(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Builds convert in-memory datasets and text files into the Arrow cache: keep it out of
    the user's home (tests that need another place set MIXINDEX_CACHE_DIR themselves)."""
    monkeypatch.setenv("MIXINDEX_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "mixindex-cache"))
