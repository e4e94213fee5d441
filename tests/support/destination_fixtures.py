"""Fixtures: ``dest`` (parametrised: an S3 bucket in moto, an Azure container in Azurite) and ``files``.

``files`` points the test vendor hook (tests/support/files_hook.py) at the sandbox's generic file
route. A test module loads them with ``pytest_plugins = ("tests.support.destination_fixtures",)``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_export_providers.transfers.export_to_azure_blob import AzureBlobWriter
from airflow_export_providers.transfers.export_to_s3 import S3Writer
from tests.support.destinations import PART, Dest
from tests.support.files_hook import set_files_connection


@pytest.fixture
def files(sandbox: Any, sandbox_state: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    set_files_connection(monkeypatch, sandbox)
    return sandbox_state


@pytest.fixture(params=["s3", "azure"])
def dest(request: pytest.FixtureRequest) -> Iterator[Dest]:
    name = f"land-{uuid.uuid4().hex[:12]}"
    if request.param == "s3":
        moto = request.getfixturevalue("moto_s3")
        request.getfixturevalue("aws_conn")
        client = moto.client()
        client.create_bucket(Bucket=name)
        yield Dest("s3", name, S3Writer(name, "aws_default", part_size=PART), client)
    else:
        azurite = request.getfixturevalue("azurite")
        request.getfixturevalue("wasb_conn")
        container = azurite.service().create_container(name)
        yield Dest("azure", name, AzureBlobWriter(name, "wasb_default", block_size=PART), container)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Record the outcome of the tests docs/reliability.md's landing cells name (tests/support/landing_matrix.py)."""
    from tests.support import landing_matrix

    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        landing_matrix.record(report.nodeid, report.outcome)
