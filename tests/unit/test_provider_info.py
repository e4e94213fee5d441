"""The provider as Airflow discovers it: entry point, provider info in the apache shape, connection forms."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import airflow_export_providers as pkg
from airflow_export_providers.core import compat

ROOT = Path(__file__).resolve().parents[2]
VENDOR_NAMES = {"MX Snapshots", "SGI POND", "Indicative (mParticle Analytics)", "Leanplum", "Azure Mobile Engagement"}
COMMON_EXTRAS = {"timeout", "retry_max_attempts", "retry_backoff_base", "retry_backoff_max", "ca_bundle"}


def airflow_version() -> tuple[int, int]:
    from airflow import __version__

    major, minor = __version__.split(".")[:2]
    return int(major), int(minor)


def json_output(*args: str) -> Any:
    """Run an ``airflow`` command with ``-o json``; Airflow 3.0 prints log lines on stdout before the JSON."""
    out = subprocess.run([sys.executable, "-m", "airflow", *args, "-o", "json"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if line.startswith("[{") or line == "[]":
            return json.loads(line)
    raise AssertionError(f"no JSON list in the output of airflow {' '.join(args)}: {out[-2000:]}")


def test_airflow_providers_list_shows_the_package() -> None:
    providers = {p["package_name"]: p for p in json_output("providers", "list")}
    assert providers["airflow-export-providers"]["version"] == pkg.__version__


def test_airflow_providers_hooks_lists_every_connection_type() -> None:
    hooks = {h["connection_type"]: h for h in json_output("providers", "hooks")}
    for conn in pkg.CONNECTION_TYPES:
        assert hooks[conn["connection-type"]]["class"] == conn["hook-class-name"]
        assert hooks[conn["connection-type"]]["package_name"] == "airflow-export-providers"
        assert hooks[conn["connection-type"]]["hook_name"] == conn["hook-name"]


def test_provider_info_matches_airflows_schema() -> None:
    import jsonschema

    schema = json.loads((Path(importlib.import_module("airflow").__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(pkg.get_provider_info(), schema)


def test_one_integration_per_vendor_with_its_docs() -> None:
    info = pkg.get_provider_info()
    integrations = {i["integration-name"]: i for i in info["integrations"]}
    assert set(integrations) == VENDOR_NAMES
    for vendor, (name, url) in pkg.INTEGRATIONS.items():
        assert integrations[name]["external-doc-url"] == url and url.startswith("https://")
        (guide,) = integrations[name]["how-to-guide"]
        assert guide.endswith(f"/{vendor}.md") or guide == f"docs/{vendor}.md"
        assert (ROOT / "docs" / f"{vendor}.md").is_file(), f"the how-to guide of {name} must exist"
    for kind in ("hooks", "operators", "sensors"):
        entries = {e["integration-name"]: e["python-modules"] for e in info[kind]}
        assert set(entries) == VENDOR_NAMES, kind
        for modules in entries.values():
            assert len(modules) == 1 and modules[0].startswith(f"airflow_export_providers.{kind}.")
    assert {t["integration-name"] for t in info["triggers"]} == VENDOR_NAMES
    assert {m for t in info["triggers"] for m in t["python-modules"]} == {"airflow_export_providers.triggers.export_job"}
    targets = {(t["source-integration-name"], t["target-integration-name"]) for t in info["transfers"]}
    assert targets == {(v, d) for v in VENDOR_NAMES for d in pkg.DESTINATIONS.values()}


def test_every_declared_module_imports() -> None:
    info = pkg.get_provider_info()
    modules = {m for kind in ("hooks", "operators", "sensors", "triggers") for e in info[kind] for m in e["python-modules"]}
    modules |= {t["python-module"] for t in info["transfers"]}
    assert len(modules) == 5 * 3 + 1 + 2
    for module in modules:
        importlib.import_module(module)
    from airflow_export_providers.triggers.export_job import ExportJobTrigger  # the classpath serialize() writes

    assert ExportJobTrigger.__module__ == "airflow_export_providers.triggers.export_job"
    for conn in info["connection-types"]:
        module, _, cls = conn["hook-class-name"].rpartition(".")
        hook = getattr(importlib.import_module(module), cls)
        assert hook.conn_type == conn["connection-type"]
        assert set(conn["ui-field-behaviour"]["relabeling"]) >= {"login", "password", "host"}


def test_every_form_has_the_common_extras_with_labels_and_placeholders() -> None:
    for conn in pkg.CONNECTION_TYPES:
        fields, behaviour = conn["conn-fields"], conn["ui-field-behaviour"]
        assert set(fields) >= COMMON_EXTRAS, conn["connection-type"]
        for name, field in fields.items():
            assert field["label"] and field["description"] and field["schema"]["type"] == ["string", "null"]
            assert "placeholder" not in field, "Airflow ignores a placeholder inside a conn-field"
            (example,) = field["schema"]["examples"]
            assert behaviour["placeholders"][name] == example


def test_the_common_extras_are_the_ones_every_hook_reads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each common form field changes what the hook does (no field that nothing reads)."""
    from tests.conftest import set_connection
    from tests.support.generic_hook import GenericHook

    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    values = {"timeout": "7", "retry_max_attempts": "3", "retry_backoff_base": "0.5", "retry_backoff_max": "9", "ca_bundle": str(ca)}
    assert set(values) == COMMON_EXTRAS
    set_connection(monkeypatch, "generic_default", {"conn_type": "generic", "host": "https://127.0.0.1:9", "password": "p", "extra": values})
    hook = GenericHook()
    assert hook.timeout == 7.0
    assert (hook.retry_policy.max_attempts, hook.retry_policy.backoff_base, hook.retry_policy.backoff_max) == (3, 0.5, 9.0)
    assert hook.verify == str(ca)


@pytest.mark.skipif(airflow_version() < (3, 2), reason="Airflow 3.0 and 3.1 build forms only from WTForms hook methods")
def test_the_ui_receives_labels_examples_and_placeholders() -> None:
    """What the Add Connection form is built from (the api-server's hook_meta), computed by Airflow itself."""
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService
    from airflow.providers_manager import ProvidersManager

    meta = {m.connection_type: m for m in HookMetaService.hook_meta_data()}
    behaviours = ProvidersManager().field_behaviours
    for conn in pkg.CONNECTION_TYPES:
        conn_type = conn["connection-type"]
        extra = meta[conn_type].extra_fields
        assert extra is not None and set(extra) == set(conn["conn-fields"])
        for name, field in conn["conn-fields"].items():
            assert extra[name]["schema"]["title"] == field["label"]
            assert extra[name]["schema"]["examples"] == field["schema"]["examples"]
            assert extra[name]["description"] == field["description"]
            # Airflow keeps extra-field placeholders under their prefixed name
            assert behaviours[conn_type]["placeholders"][f"extra__{conn_type}__{name}"] == field["schema"]["examples"][0]
        assert meta[conn_type].standard_fields.host.placeholder == conn["ui-field-behaviour"]["placeholders"]["host"]


def test_missing_destination_provider_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """A transfer whose provider is absent fails at construction, before any call, with the pip line."""
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "airflow.providers.amazon" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    from airflow_export_providers.transfers.export_to_s3 import ExportToS3Operator

    with pytest.raises(compat.MissingExtraError, match=r"pip install 'airflow-export-providers\[amazon\]'") as err:
        ExportToS3Operator(task_id="t", export={}, bucket="b")
    assert "ExportToS3Operator needs the Amazon provider (apache-airflow-providers-amazon)" in str(err.value)


def test_missing_parent_package_is_a_missing_extra_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without any Azure provider even ``airflow.providers.microsoft`` is absent: find_spec raises, not None."""
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        if name.startswith("airflow.providers.microsoft"):
            raise ModuleNotFoundError("No module named 'airflow.providers.microsoft'", name="airflow.providers.microsoft")
        return real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    from airflow_export_providers.transfers.export_to_azure_blob import ExportToAzureBlobOperator

    with pytest.raises(compat.MissingExtraError, match=r"pip install 'airflow-export-providers\[microsoft.azure\]'"):
        ExportToAzureBlobOperator(task_id="t", export={}, container="c")


def test_too_old_provider_is_named_with_its_version(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import metadata

    real_version = metadata.version
    monkeypatch.setattr(metadata, "version", lambda dist: "1.0.0" if dist == "apache-airflow-providers-microsoft-azure" else real_version(dist))
    with pytest.raises(compat.MissingExtraError, match=r"installed at 1\.0\.0, older than this package supports \(>=12"):
        compat.require_extra("microsoft.azure", "ExportToAzureBlobOperator")
