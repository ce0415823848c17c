"""What pip sees: runtime dependencies are ranges with a tested lower bound, and the two
constraints files pin exact versions (constraints.txt: what CI installs; constraints-oldest.txt:
every runtime dependency at its lower bound, the second CI run)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
RUNTIME = [Requirement(text) for text in PYPROJECT["dependencies"]]
# The packages the extras name, without the extras that only gather others (mixindex[...]).
EXTRAS = [
    Requirement(text)
    for texts in PYPROJECT["optional-dependencies"].values()
    for text in texts
    if canonicalize_name(Requirement(text).name) != "mixindex"
]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)$")


def read_pins(name: str) -> dict[str, Version]:
    """The exact pins of a constraints file; any other kind of line fails the test."""
    pins: dict[str, Version] = {}
    for number, line in enumerate((ROOT / name).read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        match = PIN.match(line)
        assert match, f"{name}:{number}: not an exact pin: {line!r}"
        key = canonicalize_name(match[1])
        assert key not in pins, f"{name}:{number}: {match[1]} pinned twice"
        pins[key] = Version(match[2])
    return pins


def lower_bound(req: Requirement) -> Version:
    bounds = [Version(s.version) for s in req.specifier if s.operator == ">="]
    assert len(bounds) == 1, f"{req}: needs exactly one lower bound (>=)"
    return bounds[0]


@pytest.mark.parametrize("req", RUNTIME + EXTRAS, ids=str)
def test_requirements_are_ranges_with_a_lower_bound(req: Requirement) -> None:
    # An exact or compatible-release pin would downgrade or refuse a training stack's own copy.
    assert all(s.operator in (">=", "<", "!=") for s in req.specifier), f"{req}: not a range"
    lower_bound(req)


@pytest.mark.parametrize("req", RUNTIME + EXTRAS, ids=str)
def test_ci_pins_every_requirement_inside_its_range(req: Requirement) -> None:
    pins = read_pins("constraints.txt")
    name = canonicalize_name(req.name)
    assert name in pins, f"constraints.txt does not pin {req.name}"
    assert req.specifier.contains(pins[name], prereleases=True), (
        f"constraints.txt pins {req.name}=={pins[name]}, outside {req}"
    )


def test_oldest_pins_every_runtime_dependency_at_its_lower_bound() -> None:
    pins = read_pins("constraints-oldest.txt")
    wrong = {
        req.name: (str(pins.get(canonicalize_name(req.name))), str(lower_bound(req)))
        for req in RUNTIME
        if pins.get(canonicalize_name(req.name)) != lower_bound(req)
    }
    assert wrong == {}, "constraints-oldest.txt: (pinned, lower bound) differ"


def test_oldest_pins_the_extras_inside_their_ranges() -> None:
    # The second CI run installs the test extra under these pins too.
    pins = read_pins("constraints-oldest.txt")
    for req in EXTRAS:
        pinned = pins.get(canonicalize_name(req.name))
        if pinned is not None:
            assert req.specifier.contains(pinned, prereleases=True), f"{req}: {pinned}"


def test_ci_installs_with_both_constraints_files() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install -c constraints.txt -e ".[dev]"' in ci
    assert 'pip install -c constraints-oldest.txt -e ".[test]"' in ci
    assert ci.count("python -m pytest -q") >= 2
