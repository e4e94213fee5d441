"""The built wheel, installed as a user would into an Airflow 3.1 deployment that has none of our extras.

One module-scoped virtualenv for every test here: Airflow 3.1.8 pinned by constraints-airflow-3.1.txt
(what PyPI held when 3.1.8 was released), then ``pip install <wheel>`` with pip's ordinary resolver.
uv builds the venv from its cache in seconds; pip and uv both reuse their download caches.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import airflow_export_providers as pkg

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[2]
UV = Path(sys.executable).with_name("uv")
AIRFLOW = "3.1.8"
CORE = ("apache-airflow", "apache-airflow-core", "apache-airflow-task-sdk")


@dataclass
class Deployment:
    venv: Path
    home: Path
    wheel: Path
    before: dict[str, str] = field(default_factory=dict)
    after: dict[str, str] = field(default_factory=dict)

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def run(self, *args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTHON", "VIRTUAL_ENV"))}
        env.update(AIRFLOW_HOME=str(self.home), AIRFLOW__CORE__LOAD_EXAMPLES="False", PATH=f"{self.venv / 'bin'}:{env['PATH']}")
        result = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env, cwd=self.home)
        if check and result.returncode:
            raise AssertionError(f"{args} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    def versions(self) -> dict[str, str]:
        out = self.run(self.python, "-m", "pip", "list", "--format", "json", "--disable-pip-version-check").stdout
        return {p["name"].lower(): p["version"] for p in json.loads(out)}

    def airflow_json(self, *args: str) -> list[dict[str, str]]:
        out = self.run(self.venv / "bin" / "airflow", *args, "-o", "json").stdout
        return next(json.loads(line) for line in out.splitlines() if line.startswith("[{"))


def build_wheel(out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--installer", "uv", "--outdir", str(out), str(ROOT)],
                   check=True, capture_output=True)
    (wheel,) = out.glob("airflow_export_providers-*.whl")
    return wheel


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    tmp = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(tmp / "dist")
    venv, home = tmp / "venv", tmp / "home"
    home.mkdir()
    subprocess.run([str(UV), "venv", "--quiet", "--seed", "--python", sys.executable, str(venv)], check=True)
    subprocess.run([str(UV), "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
                    "-c", str(ROOT / "constraints-airflow-3.1.txt"), f"apache-airflow=={AIRFLOW}"], check=True)
    dep = Deployment(venv, home, wheel)
    dep.before = dep.versions()
    assert dep.before["apache-airflow"] == AIRFLOW
    dep.run(dep.python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", wheel)
    dep.after = dep.versions()
    yield dep


def test_the_wheel_is_a_provider_package(deployment: Deployment) -> None:
    names = zipfile.ZipFile(deployment.wheel).namelist()
    info = f"airflow_export_providers-{pkg.__version__}.dist-info"
    assert {"airflow_export_providers/py.typed", f"{info}/licenses/LICENSE", f"{info}/licenses/NOTICE"} <= set(names)
    assert not [n for n in names if n.startswith(("tests/", "dags_examples/", "bench/"))]
    meta = zipfile.ZipFile(deployment.wheel).read(f"{info}/METADATA").decode()
    assert "Classifier: Framework :: Apache Airflow :: Provider" in meta
    assert "License-Expression: Apache-2.0" in meta
    for label in ("Homepage", "Documentation", "Changelog", "Source Code", "Bug Tracker"):
        assert f"Project-URL: {label}, https://" in meta
    for extra in ("amazon", "microsoft-azure", "openlineage", "parquet", "all"):
        assert f"Provides-Extra: {extra}" in meta
    assert "Apache License" in zipfile.ZipFile(deployment.wheel).read(f"{info}/licenses/LICENSE").decode()[:200]


def test_installing_the_wheel_leaves_airflow_and_everything_installed_untouched(deployment: Deployment) -> None:
    for dist in CORE:
        assert deployment.after[dist] == deployment.before[dist], f"{dist} changed"
    changed = {d: (v, deployment.after.get(d)) for d, v in deployment.before.items() if deployment.after.get(d) != v}
    assert changed == {}, f"pip changed what the deployment had: {changed}"
    added = set(deployment.after) - set(deployment.before)
    assert "airflow-export-providers" in added
    assert not {d for d in added if d.startswith(("apache-airflow", "azure", "boto"))}, f"extras came without asking: {added}"
    deployment.run(deployment.python, "-m", "pip", "check", "--disable-pip-version-check")
    version = deployment.run(deployment.venv / "bin" / "airflow", "version").stdout.strip().splitlines()[-1]
    assert version == AIRFLOW


def test_airflow_lists_the_provider_and_its_hooks(deployment: Deployment) -> None:
    providers = {p["package_name"]: p for p in deployment.airflow_json("providers", "list")}
    assert providers["airflow-export-providers"]["version"] == pkg.__version__
    hooks = {h["connection_type"]: h for h in deployment.airflow_json("providers", "hooks")}
    for conn in pkg.CONNECTION_TYPES:
        assert hooks[conn["connection-type"]]["class"] == conn["hook-class-name"]


IMPORT_ALL = """
import importlib, json, pkgutil, sys
import airflow_export_providers as pkg
assert "site-packages" in pkg.__file__, pkg.__file__  # the installed wheel, not the source tree
names = sorted(m.name for m in pkgutil.walk_packages(pkg.__path__, "airflow_export_providers."))
for name in names:
    importlib.import_module(name)
errors = {}
from airflow_export_providers.transfers.export_to_s3 import ExportToS3Operator
from airflow_export_providers.transfers.export_to_azure_blob import ExportToAzureBlobOperator
for cls, kwargs in ((ExportToS3Operator, {"bucket": "b"}), (ExportToAzureBlobOperator, {"container": "c"})):
    try:
        cls(task_id="t", export={}, **kwargs)
    except Exception as exc:
        errors[cls.__name__] = f"{type(exc).__name__}: {exc}"
print(json.dumps({"modules": names, "errors": errors}))
"""


def test_every_public_module_imports_without_any_destination_provider(deployment: Deployment) -> None:
    result = json.loads(deployment.run(deployment.python, "-c", IMPORT_ALL).stdout.splitlines()[-1])
    modules = set(result["modules"])
    info = pkg.get_provider_info()
    declared = {m for kind in ("hooks", "operators", "sensors", "triggers") for e in info[kind] for m in e["python-modules"]}
    assert declared | {t["python-module"] for t in info["transfers"]} <= modules
    assert {"airflow_export_providers.core.compat", "airflow_export_providers.sandbox.server"} <= modules
    # a transfer whose provider is missing: one error naming the extra to install
    assert result["errors"] == {
        "ExportToS3Operator": "MissingExtraError: ExportToS3Operator needs the Amazon provider "
        "(apache-airflow-providers-amazon), which is not installed: pip install 'airflow-export-providers[amazon]'",
        "ExportToAzureBlobOperator": "MissingExtraError: ExportToAzureBlobOperator needs the Microsoft Azure provider "
        "(apache-airflow-providers-microsoft-azure), which is not installed: pip install 'airflow-export-providers[microsoft.azure]'",
    }


def test_adding_the_amazon_extra_keeps_airflow_and_enables_the_s3_transfer(deployment: Deployment) -> None:
    before = deployment.versions()
    deployment.run(deployment.python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", f"{deployment.wheel}[amazon]")
    after = deployment.versions()
    for dist in CORE:
        assert after[dist] == before[dist] == deployment.before[dist], f"{dist} changed"
    assert "apache-airflow-providers-amazon" in after
    deployment.run(deployment.python, "-m", "pip", "check", "--disable-pip-version-check")
    script = ("from airflow_export_providers.transfers.export_to_s3 import ExportToS3Operator;"
              "print(type(ExportToS3Operator(task_id='t', export={}, bucket='b')).__name__)")
    assert deployment.run(deployment.python, "-c", script).stdout.strip().splitlines()[-1] == "ExportToS3Operator"
