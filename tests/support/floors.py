"""The floors pyproject.toml declares, as pins: what constraints-floor.txt must hold (and is made from).

``python tests/support/floors.py`` prints one ``name==version`` per ``>=`` requirement of the runtime
dependencies and of every extra but ``test`` (``make constraints-floor`` feeds it to the resolver).
"""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_floors() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra, requirements in project["optional-dependencies"].items():
        if extra != "test":
            lines += requirements
    floors: dict[str, str] = {}
    for line in lines:
        req = Requirement(line)
        if normal(req.name) == normal(project["name"]):
            continue  # the [all] extra names the others
        (floor,) = [s.version for s in req.specifier if s.operator == ">="]
        floors[normal(req.name)] = floor
    return floors


if __name__ == "__main__":
    for name, version in sorted(declared_floors().items()):
        print(f"{name}=={version}")
