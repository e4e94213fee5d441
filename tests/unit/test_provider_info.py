"""The provider is discovered by Airflow through its entry point, with version and connection forms."""

from __future__ import annotations

import json
import subprocess
import sys

import airflow_export_providers as pkg


def test_airflow_providers_list_shows_the_package() -> None:
    out = subprocess.run([sys.executable, "-m", "airflow", "providers", "list", "-o", "json"],
                         capture_output=True, text=True, check=True).stdout
    providers = {p["package_name"]: p for p in json.loads(out[out.index("["):])}
    assert providers["airflow-export-providers"]["version"] == pkg.__version__


def test_every_declared_module_imports() -> None:
    import importlib

    info = pkg.get_provider_info()
    for kind in ("hooks", "operators", "sensors", "triggers"):
        for module in info[kind][0]["python-modules"]:
            importlib.import_module(module)
    for conn in info["connection-types"]:
        module, _, cls = conn["hook-class-name"].rpartition(".")
        hook = getattr(importlib.import_module(module), cls)
        assert hook.conn_type == conn["connection-type"]
        assert set(conn["ui-field-behaviour"]["relabeling"]) >= {"login", "password", "host"}
        for field in conn["conn-fields"].values():
            assert field["label"] and field["schema"]["type"] == ["string", "null"]
