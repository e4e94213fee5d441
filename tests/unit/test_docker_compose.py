"""docker-compose.yaml cannot run here (no docker engine): validate its structure so it cannot rot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW_SERVICES = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "airflow-worker")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yaml").read_text()))


def test_production_shaped_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("postgres", "redis", "airflow-init", *AIRFLOW_SERVICES, "sandbox", "s3", "azurite"):
        assert name in services, f"service {name} missing"
    for name in AIRFLOW_SERVICES:
        svc = services[name]
        assert svc["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert svc["environment"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql")
        assert svc["build"] == "." and "./dags_examples:/opt/airflow/dags" in svc["volumes"]
        assert svc["healthcheck"]["test"], f"{name} has no healthcheck"
        assert svc["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert svc["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
    commands = {n: " ".join(services[n]["command"]) for n in AIRFLOW_SERVICES}
    assert commands["airflow-scheduler"] == "airflow scheduler"
    assert commands["airflow-triggerer"] == "airflow triggerer"
    assert commands["airflow-dag-processor"] == "airflow dag-processor"
    assert commands["airflow-apiserver"] == "airflow api-server"
    assert commands["airflow-worker"] == "airflow celery worker"


def test_offline_stand_ins_are_optional(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("sandbox", "s3", "azurite"):
        assert services[name]["profiles"] == ["local"]
        assert services[name]["healthcheck"]["test"]
    assert "airflow_export_providers.sandbox" in " ".join(services["sandbox"]["command"])


def test_dependencies_exist_and_images_are_pinned(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, svc in services.items():
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown service {dep}"
        image = svc.get("image", "")
        if image and not svc.get("build"):
            assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image tag"


def test_dockerfile_installs_this_provider_with_the_pins() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.startswith("# ") and "FROM apache/airflow:3.3" in dockerfile
    assert "-c /opt/provider/constraints.txt" in dockerfile and "/opt/provider[all]" in dockerfile
    assert "LICENSE NOTICE" in dockerfile, "the build needs the license files pyproject.toml names"
