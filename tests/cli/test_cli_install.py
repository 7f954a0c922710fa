"""How Traza is installed (issue #14): version ranges in pyproject.toml, so that it installs beside other
packages, and the exact versions tested in constraints.txt, which `make` installs with, so that `make demo`
and `make test` stay reproducible."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["test"]]]


def constraints() -> dict[str, str]:
    out = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9._-]+)==([A-Za-z0-9.+!-]+)", line.strip())
        assert m, f"constraints.txt: {line!r} is not name==version"
        out[canonicalize_name(m.group(1))] = m.group(2)
    return out


def test_dependencies_are_version_ranges_not_pins():
    for req in requirements():
        ops = {spec.operator for spec in req.specifier}
        assert "==" not in ops and "===" not in ops, f"pyproject.toml: {req} pins one version; give a range"
        assert ">=" in ops and "<" in ops, f"pyproject.toml: {req}: give a lower and an upper bound"


def test_constraints_pin_every_dependency_within_its_range():
    pinned = constraints()
    assert "traza" not in pinned, "constraints.txt: the project itself is not a constraint"
    for req in requirements():
        version = pinned.get(canonicalize_name(req.name))
        assert version is not None, f"constraints.txt has no version of {req.name} (make constraints)"
        assert req.specifier.contains(version, prereleases=True), \
            f"constraints.txt: {req.name}=={version} is outside pyproject.toml's {req.specifier}"


def test_make_installs_with_the_constraints_and_reinstalls_when_they_change():
    makefile = (ROOT / "Makefile").read_text()
    stamp_rule = re.search(r"^\$\(STAMP\):(.*)$", makefile, re.M)
    assert stamp_rule and "constraints.txt" in stamp_rule.group(1).split(), "the STAMP must depend on constraints.txt"
    assert "pip install --quiet -c constraints.txt -e '.[test]'" in makefile
