"""The Asset a transfer declares (one per landing destination, known when the DAG is parsed) and the
URIs that name where the data is — S3, Azure at its real endpoint — without reading anything remote."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_export_providers.core.errors import ExportInputError
from airflow_export_providers.core.lineage import static_prefix
from airflow_export_providers.transfers.export_to_azure_blob import AzureBlobWriter, ExportToAzureBlobOperator
from airflow_export_providers.transfers.export_to_s3 import ExportToS3Operator
from tests.support.files_hook import export_file, export_job

JOB = export_job([export_file("a.csv")]).to_dict()


@pytest.mark.parametrize(("prefix", "static"), [
    ("pond/{{ ds }}", "pond"),
    ("pond/{{ ds }}/", "pond"),
    ("files/{{ ds }}_x", "files"),
    ("a/b/day={{ ds }}", "a/b"),
    ("final", "final"),
    ("/final/", "final"),
    ("{{ params.p }}", ""),
    ("x{% if true %}y{% endif %}", ""),
    ("", ""),
    (None, ""),
])
def test_static_part_of_a_prefix(prefix: Any, static: str) -> None:
    assert static_prefix(prefix) == static


def test_a_downstream_dag_names_the_same_asset_by_its_uri() -> None:
    from airflow.sdk import Asset

    op = ExportToS3Operator(task_id="t", export=JOB, bucket="raw", prefix="pond/{{ ds }}")
    assert op.asset == Asset("s3://raw/pond") and op.asset.name == op.asset.uri == "s3://raw/pond"
    assert op.outlets == [Asset("s3://raw/pond")]


def test_a_templated_bucket_declares_no_asset_and_an_explicit_one_is_kept() -> None:
    from airflow.sdk import Asset

    op = ExportToS3Operator(task_id="t", export=JOB, bucket="{{ params.bucket }}", prefix="p")
    assert op.asset is None and op.outlets == []
    named = ExportToS3Operator(task_id="t", export=JOB, bucket="{{ params.bucket }}", asset=Asset(name="raw", uri="s3://lake/raw"))
    assert named.outlets == [Asset(name="raw", uri="s3://lake/raw")]
    other = Asset("s3://other/x")
    both = ExportToS3Operator(task_id="t", export=JOB, bucket="raw", prefix="p", outlets=[other])
    assert both.outlets == [other, Asset("s3://raw/p")], "the user's outlets are kept, ours added once"


@pytest.mark.parametrize("asset", ["", "s3://raw/{{ ds }}", 42, ["s3://raw/p"]])
def test_a_bad_asset_is_refused_when_the_dag_is_parsed(asset: Any) -> None:
    with pytest.raises(ExportInputError, match=r"^asset: expected"):
        ExportToS3Operator(task_id="t", export=JOB, bucket="raw", asset=asset)


def test_a_mapped_transfer_declares_one_asset_for_every_mapped_instance() -> None:
    from airflow.sdk import DAG, Asset

    with DAG("mapped_lineage", schedule=None):
        mapped = ExportToS3Operator.partial(task_id="land", bucket="raw", prefix="segments/{{ ds }}").expand(export=[JOB, JOB])
    assert mapped.partial_kwargs["outlets"] == [Asset("s3://raw/segments")]
    with DAG("mapped_bucket", schedule=None):
        by_bucket = ExportToS3Operator.partial(task_id="land", export=JOB).expand(bucket=["a", "b"])
    assert by_bucket.partial_kwargs["outlets"] == [], "a mapped bucket: no Asset (pass asset= to name one)"


def service(endpoint: str) -> Any:
    return SimpleNamespace(primary_endpoint=endpoint)


def test_azure_uris_name_the_account_endpoint_and_the_container() -> None:
    """A real account: the blob's URL (no SAS), and the Hadoop ``wasbs://container@host`` OpenLineage namespace."""
    writer = AzureBlobWriter("landing", service=service("https://acct.blob.core.windows.net/?sv=2024-01-01&sig=c2VjcmV0"))
    assert writer.uri("pond/2026-01-01/a.csv") == "https://acct.blob.core.windows.net/landing/pond/2026-01-01/a.csv"
    assert writer.lineage_namespace() == "wasbs://landing@acct.blob.core.windows.net"
    azurite = AzureBlobWriter("landing", service=service("http://127.0.0.1:10000/devstoreaccount1"))
    assert azurite.uri("p/a.csv") == "http://127.0.0.1:10000/devstoreaccount1/landing/p/a.csv"
    assert azurite.lineage_namespace() == "http://127.0.0.1:10000/devstoreaccount1/landing"


def test_the_azure_asset_uri_survives_airflow_as_written() -> None:
    """Airflow 3.0 drops an Asset URI's user-info (wasbs://container@account lost its container): the
    blob URL form is kept whole by every Airflow this package supports."""
    from airflow.sdk import Asset

    for uri in ("https://acct.blob.core.windows.net/landing/pond", "http://127.0.0.1:10000/devstoreaccount1/landing/pond"):
        assert Asset(uri).uri == uri


def test_an_azure_connection_that_cannot_be_read_while_parsing_declares_no_asset(caplog: pytest.LogCaptureFixture,
                                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_NO_SUCH_WASB", raising=False)
    with caplog.at_level(logging.WARNING, logger="airflow_export_providers.core.lineage"):
        op = ExportToAzureBlobOperator(task_id="t", export=JOB, container="landing", prefix="p", wasb_conn_id="no_such_wasb")
    assert op.asset is None and op.outlets == []
    assert "no Asset declared" in caplog.text and "asset='<uri>'" in caplog.text and "no_such_wasb" in caplog.text
    named = ExportToAzureBlobOperator(task_id="t", export=JOB, container="landing", wasb_conn_id="no_such_wasb",
                                      asset="https://acct.blob.core.windows.net/landing/p")
    assert [o.uri for o in named.outlets] == ["https://acct.blob.core.windows.net/landing/p"]
