"""The floors pyproject.toml declares are the versions the floor suite runs on, and the pinned set is in range."""

from __future__ import annotations

import tomllib
from packaging.requirements import Requirement
from packaging.version import Version

from tests.support.floors import ROOT, declared_floors, normal


def pins(name: str) -> dict[str, Version]:
    found: dict[str, Version] = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and "==" in line:
            dist, _, version = line.partition("==")
            found[normal(dist)] = Version(version.strip())
    return found


def test_every_declared_floor_is_what_the_floor_suite_installs() -> None:
    floor = pins("constraints-floor.txt")
    floors = declared_floors()
    assert floors["apache-airflow"].startswith("3.0"), "the floor is an Airflow 3.0 release"
    for name, version in floors.items():
        assert floor[name] == Version(version), f"{name}: pyproject says >={version}, constraints-floor.txt pins {floor.get(name)}"


def test_the_pinned_set_satisfies_every_declared_range() -> None:
    pinned = pins("constraints.txt")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = project["dependencies"] + [r for extra, reqs in project["optional-dependencies"].items() for r in reqs]
    for line in lines:
        req = Requirement(line)
        if normal(req.name) != normal(project["name"]):
            assert req.specifier.contains(pinned[normal(req.name)], prereleases=True), f"{req} vs {pinned[normal(req.name)]}"


def test_the_floor_suite_lists_only_existing_tests() -> None:
    for line in (ROOT / "tests" / "floor.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            path = line.split("::", 1)[0]
            assert (ROOT / path).exists(), f"tests/floor.txt names {path}, which does not exist"
