"""IndexMeta (mixindex/store/meta.py, mixindex/store/attrs.py): the only reader of an index's
attributes. It reads back exactly what the writer wrote (the golden index's attributes round-trip
to the byte, unknown keys and key order included), names every missing or wrong-typed key, and
nothing else in the package reads the attributes."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import mixindex
from mixindex.errors import IndexFormatError
from mixindex.spec.config import StopStrategy
from mixindex.store.meta import IndexMeta

GOLDEN = Path(__file__).parent / "golden" / "tiny.mixindex"
PACKAGE = Path(mixindex.__file__).parent


def golden_doc() -> dict[str, Any]:
    return json.loads((GOLDEN / "zarr.json").read_text())["attributes"]["mixindex"]


def test_the_golden_attributes_round_trip_to_the_byte() -> None:
    doc = golden_doc()
    meta = IndexMeta.from_dict(copy.deepcopy(doc))
    assert meta.to_dict() == doc
    # Key order too: the writer stores json.dumps of to_dict().
    assert json.dumps(meta.to_dict()) == json.dumps(doc)
    assert IndexMeta.from_dict(meta.to_dict()) == meta
    assert IndexMeta.from_dict(json.loads(json.dumps(meta.to_dict()))) == meta


def test_the_golden_attributes_as_typed_objects() -> None:
    meta = IndexMeta.from_dict(golden_doc())
    assert meta.names == ("letters", "numbers") and meta.num_sources == 2
    assert (meta.num_examples, meta.num_blocks, meta.block_size) == (13, 3, 6)
    assert (meta.chunk_positions, meta.chunk_blocks) == (42, 7)
    assert meta.mix.seed == 2026 and meta.mix.row_order == "shuffled"
    assert meta.mix.stop_strategy is StopStrategy.ALL_EXHAUSTED
    assert [p.step for p in meta.mix.weight_schedule] == [0, 24]
    assert meta.mix.weight_schedule[1].weights == {"letters": 0.2, "numbers": 0.8}
    assert meta.spec.datasets[1].data_files == ("data/numbers.arrow",)
    assert meta.spec.datasets[1].type is None and meta.spec.datasets[1].cache is None
    numbers = meta.sources[1]
    assert (numbers.type, numbers.num_rows, numbers.cache, numbers.content_hash) == (
        "arrow",
        5,
        None,
        None,
    )
    assert numbers.origin is numbers
    assert meta.build is not None and meta.build.seconds == 0.234
    assert meta.array_digests["row"].startswith("324edab8")
    sched = meta.scheduler()
    assert sched.names == meta.names and sched.interpolation == "cosine"
    assert sched.get_weights(24) == pytest.approx({"letters": 0.2, "numbers": 0.8})


def _with_key_at(doc: dict[str, Any], index: int, key: str, value: Any) -> dict[str, Any]:
    items = list(doc.items())
    items.insert(index, (key, value))
    return dict(items)


def test_unknown_keys_and_key_order_are_kept() -> None:
    doc = golden_doc()
    doc = _with_key_at(doc, 1, "future", {"b": [1, 2], "a": None})
    doc["sources"][0] = _with_key_at(doc["sources"][0], 0, "note", "kept")
    doc["sources"][1]["cache"] = {
        "source": {
            "fingerprint": "sha256:" + "2" * 64,
            "num_rows": 5,
            "name": "numbers",
            "num_rows_cap": 5,
            "type": "stream",
            "data_files": [],
        },
        "kind": "arrow",
        "folder": "/cache/numbers-2222",
    }
    doc["sources"][1]["content_hash"] = "sha256:" + "3" * 64
    doc["spec"]["mix"] = _with_key_at(doc["spec"]["mix"], 3, "knob", 1.5)
    doc["build"]["host"] = "example"
    doc["array_digests"]["extra_array"] = "0" * 64
    meta = IndexMeta.from_dict(copy.deepcopy(doc))
    assert json.dumps(meta.to_dict()) == json.dumps(doc)
    assert meta.extra == {"future": {"b": [1, 2], "a": None}}
    assert meta.sources[0].extra == {"note": "kept"}
    assert meta.mix.extra == {"knob": 1.5}
    cache = meta.sources[1].cache
    assert cache is not None and meta.sources[1].origin is cache.source
    assert cache.source.extra == {"num_rows_cap": 5} and cache.source.type == "stream"
    assert meta.sources[1].content_hash == "sha256:" + "3" * 64
    # What was read is copied: editing the document afterwards changes nothing.
    doc["future"]["b"].append(3)
    assert meta.to_dict()["future"] == {"b": [1, 2], "a": None}


# Keys that may be left out (build facts say how a build went), and keys that are values in a
# table rather than fields (a source's weight: left to the digest, which covers the mix).
OPTIONAL = re.compile(r"build(\..*)?|spec\.mix\.weight_schedule\[\d+\]\.weights\.\w+")


def _keys(doc: Any, prefix: str = "") -> Iterator[tuple[str, list[Any]]]:
    """Every key of every object in ``doc`` (and every object in a list), as its dotted name
    and the path of keys and indexes that reaches it."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            name = f"{prefix}.{key}" if prefix else key
            yield name, [key]
            for sub, path in _keys(value, name):
                yield sub, [key, *path]
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            if isinstance(value, dict):
                yield f"{prefix}[{i}]", [i]
                for sub, path in _keys(value, f"{prefix}[{i}]"):
                    yield sub, [i, *path]


def _edit(doc: dict[str, Any], path: list[Any], value: Any = None, drop: bool = False) -> None:
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if drop:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value


def _wrong(value: Any) -> Any:
    """A value of another JSON type than ``value``."""
    if value is None:
        return [7]
    return 7 if isinstance(value, (str, dict, list)) else "7"


KEYS = [(name, path) for name, path in _keys(golden_doc()) if name != "format_version"]
# A list item is no key: it cannot be missing (a shorter list is another value).
NAMED_KEYS = [(name, path) for name, path in KEYS if not isinstance(path[-1], int)]


def test_every_key_is_walked() -> None:
    names = {name for name, _ in KEYS}
    assert len(KEYS) > 50
    for name in (
        "spec.mix.seed",
        "spec.datasets[1].type",
        "sources[0].fingerprint",
        "build.seconds",
        "array_digests.cursors",
        "spec.mix.weight_schedule[1].weights.numbers",
        "digest",
    ):
        assert name in names


@pytest.mark.parametrize("name,path", NAMED_KEYS, ids=[name for name, _ in NAMED_KEYS])
def test_a_missing_key_is_named(name: str, path: list[Any]) -> None:
    doc = golden_doc()
    _edit(doc, path, drop=True)
    if OPTIONAL.fullmatch(name):
        assert IndexMeta.from_dict(copy.deepcopy(doc)).to_dict() == doc
        return
    with pytest.raises(IndexFormatError, match=re.escape(f"attribute {name!r} is missing")):
        IndexMeta.from_dict(doc, "x.mixindex")


@pytest.mark.parametrize("name,path", KEYS, ids=[name for name, _ in KEYS])
def test_a_wrong_typed_key_is_named(name: str, path: list[Any]) -> None:
    doc = golden_doc()
    parent: Any = doc
    for key in path:
        parent = parent[key]
    _edit(doc, path, _wrong(parent))
    with pytest.raises(IndexFormatError) as info:
        IndexMeta.from_dict(doc, "x.mixindex")
    line = str(info.value)
    assert line.startswith(f"'x.mixindex' is damaged: attribute {name!r} is ")
    assert line.endswith("rebuild the index") and "\n" not in line


@pytest.mark.parametrize(
    "name,value,words",
    [
        ("stop_strategy", "forever", "one of restart, first_exhausted, all_exhausted"),
        ("row_order", "random", "one of sequential, shuffled, grouped"),
        ("weight_schedule_type", "spline", "one of step, linear, cosine"),
        ("seed", -1, "a whole number >= 0"),
        ("block_size", 0, "a whole number >= 1"),
        ("num_examples", 0, "a whole number >= 1 or null"),
    ],
)
def test_a_value_out_of_its_choices_is_named(name: str, value: Any, words: str) -> None:
    doc = golden_doc()
    doc["spec"]["mix"][name] = value
    with pytest.raises(IndexFormatError, match=re.escape(f"'spec.mix.{name}' is {value!r}")):
        IndexMeta.from_dict(doc)
    with pytest.raises(IndexFormatError, match=re.escape(f"expected {words}; rebuild")):
        IndexMeta.from_dict(doc)


def test_a_dataset_type_or_cache_out_of_its_choices_is_named() -> None:
    doc = golden_doc()
    doc["spec"]["datasets"][1]["type"] = "xml"
    with pytest.raises(IndexFormatError, match=r"'spec\.datasets\[1\]\.type' is 'xml', expected"):
        IndexMeta.from_dict(doc)
    doc = golden_doc()
    doc["spec"]["datasets"][0]["cache"] = "redis"
    with pytest.raises(IndexFormatError, match=r"'spec\.datasets\[0\]\.cache' is 'redis'"):
        IndexMeta.from_dict(doc)


def test_a_null_where_a_key_may_be_left_out_is_named() -> None:
    doc = golden_doc()
    doc["sources"][0]["content_hash"] = None
    with pytest.raises(IndexFormatError, match=r"'sources\[0\]\.content_hash' is None"):
        IndexMeta.from_dict(doc)


@pytest.mark.parametrize(
    "doc,words",
    [
        ([], "attribute 'mixindex' is []"),
        ({**golden_doc(), "format_version": 1}, "has format version 1"),
        ({**golden_doc(), "sources": []}, "attribute 'sources' is []"),
    ],
)
def test_the_whole_document(doc: Any, words: str) -> None:
    with pytest.raises(IndexFormatError, match=re.escape(words)):
        IndexMeta.from_dict(doc)


# Reading the attributes as a dict: index.meta["block_size"], meta.get("build"),
# group["attributes"][...], attrs.get(ATTR_KEY). Writing them (attrs[ATTR_KEY] = ...) is fine.
DICT_READS = re.compile(
    r"\bmeta\s*\[|\bmeta\.get\(|\[\s*[\"']attributes[\"']\s*\]|\.get\(\s*[\"']attributes[\"']"
    r"|\[\s*ATTR_KEY\s*\](?!\s*=[^=])|\.get\(\s*ATTR_KEY"
)
READERS = {PACKAGE / "store" / "meta.py", PACKAGE / "store" / "attrs.py"}


def test_the_pattern_finds_dict_reads() -> None:
    for line in (
        'b = int(index.meta["block_size"])',
        "seconds = meta.get('build', {})",
        'doc["attributes"]["mixindex"]["digest"]',
        "attrs = group.get('attributes')",
        "doc = attrs[ATTR_KEY]",
        "doc = attrs.get(ATTR_KEY)",
    ):
        assert DICT_READS.search(line), line
    for line in ("self.group.attrs[ATTR_KEY] = meta.to_dict()", "b = index.meta.block_size"):
        assert not DICT_READS.search(line), line


def test_nothing_but_index_meta_reads_the_attributes() -> None:
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{n}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path not in READERS
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if DICT_READS.search(line)
    ]
    assert found == [], "read the attributes through IndexMeta:\n" + "\n".join(found)
