"""The folder the package's docstring examples run in (``--doctest-modules``, see pyproject.toml).

The examples read like a session beside a spec, as README.md's do. Each one runs in a fresh copy
of this folder (its current directory), so what one example writes no other sees::

    data/code/part-0.parquet   Parquet, column text; 40 rows ("def f0(): pass", ...)
    data/text/data.arrow       Arrow IPC file, column text; 60 rows ("text 0", ...)
    mix.toml                   code 0.4, text 0.6; 100 examples in blocks of 10, seed 42
    mix.mixindex/              mix.toml built
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent / "mixindex"

SPEC = """\
[[datasets]]
name = "code"
data_files = "data/code/*.parquet"

[[datasets]]
name = "text"
data_files = "data/text/*.arrow"

[mix]
weights = { code = 0.4, text = 0.6 }
block_size = 10
num_examples = 100
seed = 42
"""


@pytest.fixture(scope="session")
def doctest_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mixindex import build

    root = tmp_path_factory.mktemp("doctest")
    (root / "data" / "code").mkdir(parents=True)
    (root / "data" / "text").mkdir()
    code = pa.table({"text": [f"def f{i}(): pass" for i in range(40)]})
    pq.write_table(code, root / "data" / "code" / "part-0.parquet")
    text = pa.table({"text": [f"text {i}" for i in range(60)]})
    arrow = root / "data" / "text" / "data.arrow"
    with pa.OSFile(str(arrow), "wb") as f, pa.ipc.new_file(f, text.schema) as writer:
        writer.write_table(text)
    (root / "mix.toml").write_text(SPEC, encoding="utf-8")
    build(root / "mix.toml", root / "mix.mixindex", quiet=True)
    return root


@pytest.fixture(autouse=True)
def _doctest_cwd(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    if not request.node.path.is_relative_to(PACKAGE):  # the tests under tests/ set up their own
        yield
        return
    work = tmp_path_factory.mktemp("example") / "work"
    shutil.copytree(request.getfixturevalue("doctest_folder"), work)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        yield
