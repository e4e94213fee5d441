"""Bad input to the transfer operators: one clear error naming the parameter, before anything is written."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_export_providers.core.errors import ExportError, ExportInputError
from airflow_export_providers.transfers.export_to_azure_blob import ExportToAzureBlobOperator
from airflow_export_providers.transfers.export_to_s3 import ExportToS3Operator
from tests.support.files_hook import export_file, export_job

JOB = export_job([export_file("a.avro.gz", rows=1, row_format="avro", compression="gzip", resource="accounts"),
                  export_file("b.avro.gz", resource="users")]).to_dict()


def s3(**kwargs: Any) -> ExportToS3Operator:
    kwargs.setdefault("export", JOB)
    kwargs.setdefault("bucket", "raw")
    return ExportToS3Operator(task_id="t", **kwargs)


def test_valid_input_passes_and_keys_are_deterministic() -> None:
    op = s3(prefix="mx/2026-01-01/", convert="parquet")
    job = op.validate()
    assert [op.key_for(f) for f in job.files] == ["mx/2026-01-01/a.parquet", "mx/2026-01-01/b.parquet"]
    assert s3(export=json.dumps(JOB)).validate().job_id == "job-1"  # a rendered JSON string is accepted


def test_unknown_convert() -> None:
    with pytest.raises(ExportInputError, match=r"convert: 'xlsx' is not supported; accepted values: None, 'jsonl', 'csv', 'parquet'"):
        s3(convert="xlsx").validate()


@pytest.mark.parametrize("bucket", ["", None, "a/b"])
def test_missing_bucket(bucket: Any) -> None:
    with pytest.raises(ExportInputError, match=r"^bucket: expected a bucket name"):
        s3(bucket=bucket).validate()


def test_missing_container() -> None:
    op = ExportToAzureBlobOperator(task_id="t", export=JOB, container="  ")
    with pytest.raises(ExportInputError, match=r"^container: expected a container name"):
        op.validate()


@pytest.mark.parametrize("export", [None, 42, "not json", {"files": []}, ["a"]])
def test_export_not_an_export_job(export: Any) -> None:
    with pytest.raises(ExportInputError, match=r"^export: expected an ExportJob"):
        s3(export=export).validate()


def test_unfinished_job_and_missing_hook_class() -> None:
    with pytest.raises(ExportInputError, match=r"export: job job-1 is RUNNING"):
        s3(export={**JOB, "state": "RUNNING"}).validate()
    with pytest.raises(ExportInputError, match=r"export: the ExportJob has no hook_class"):
        s3(export={**JOB, "hook_class": None}).validate()


def test_convert_of_a_file_known_not_to_be_avro() -> None:
    job = export_job([export_file("snap.csv.gz", row_format="csv", compression="gzip")]).to_dict()
    with pytest.raises(ExportInputError, match=r"convert='jsonl': snap.csv.gz \(csv\) not Avro.*convert=None"):
        s3(export=job, convert="jsonl").validate()


def test_two_files_on_one_key_refused() -> None:
    job = export_job([export_file("x.gz", compression="gzip"), export_file("x", compression=None)]).to_dict()
    with pytest.raises(ExportError, match=r"would both land at 'p/x'"):
        s3(export=job, prefix="p", decompress=True).validate()


def test_positive_sizes_and_order() -> None:
    with pytest.raises(ExportInputError, match=r"^part_size: expected a positive integer"):
        s3(part_size=0).validate()
    with pytest.raises(ExportInputError, match=r"^upload_concurrency: expected a positive integer, got True \(bool\)"):
        s3(upload_concurrency=True).validate()
    op = s3(order=["users", "accounts"])
    assert [f.resource for f in op.ordered(op.validate().files)] == ["users", "accounts"]


def test_outlets_carry_one_asset_per_destination() -> None:
    from airflow.sdk import Asset, AssetAlias

    op = s3(prefix="pond/{{ ds }}")
    assert op.outlets == [Asset("s3://raw/pond")] and op.asset == Asset("s3://raw/pond")
    assert not any(isinstance(o, AssetAlias) for o in op.outlets)
    assert not s3(asset=False).outlets
    assert s3(asset="s3://elsewhere/x/").outlets == [Asset("s3://elsewhere/x")]


# ---- storage options (issue 18) -------------------------------------------------------------------
def azure(**kwargs: Any) -> ExportToAzureBlobOperator:
    kwargs.setdefault("export", JOB)
    kwargs.setdefault("container", "raw")
    return ExportToAzureBlobOperator(task_id="t", **kwargs)


def test_s3_options_as_the_amazon_transfers_name_them() -> None:
    op = s3(encrypt=True, acl_policy="bucket-owner-full-control", extra_args={"Metadata": {"team": "data"}})
    op.validate()
    writer = op.make_writer()
    assert writer.extra_args == {"ServerSideEncryption": "AES256", "ACL": "bucket-owner-full-control", "Metadata": {"team": "data"}}
    kms = s3(extra_args={"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/landing", "Tagging": "a=b"})
    assert kms.make_writer().extra_args["SSEKMSKeyId"] == "alias/landing"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"extra_args": {"ServerSideEncyption": "AES256"}}, r"^extra_args: 'ServerSideEncyption' is not an upload argument; accepted: ACL, "),
    ({"extra_args": "AES256"}, r"^extra_args: expected a dict"),
    ({"extra_args": {"SSECustomerKey": "k" * 32}}, r"^extra_args: SSECustomerKey is refused: a customer-provided key is a secret"),
    ({"extra_args": {"ContentMD5": "x"}}, r"^extra_args: 'ContentMD5' is not an upload argument"),
    ({"extra_args": {"SSEKMSKeyId": "alias/x"}}, r"^extra_args: SSEKMSKeyId needs ServerSideEncryption='aws:kms'"),
    ({"encrypt": "yes"}, r"^encrypt: expected True or False, got 'yes'"),
    ({"acl_policy": "everyone"}, r"^acl_policy: 'everyone' is not a canned ACL; accepted values: None, private, public-read"),
    ({"encrypt": True, "extra_args": {"ServerSideEncryption": "aws:kms"}}, r"^encrypt=True asks for ServerSideEncryption='AES256' but"),
    ({"acl_policy": "private", "extra_args": {"ACL": "public-read"}}, r"^acl_policy='private' and extra_args ACL='public-read' disagree"),
    ({"count_rows": "false"}, r"^count_rows: expected True or False, got 'false'"),
])
def test_bad_s3_options_are_named(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ExportInputError, match=message):
        s3(**kwargs).validate()


@pytest.mark.parametrize(("options", "message"), [
    ({"overwrite": False}, r"^load_options: 'overwrite' not supported; accepted keys: content_settings, metadata, tags"),
    ({"standard_blob_tier": "Frozen"}, r"^load_options.standard_blob_tier: 'Frozen' not supported; accepted values: Hot, Cool, Cold, Archive"),
    ({"content_settings": {"content_typ": "x"}}, r"^load_options.content_settings: 'content_typ' not supported; accepted: content_type"),
    ({"metadata": {"n": 1}}, r"^load_options.metadata: expected a dict of strings to strings"),
    ({"tags": "a=b"}, r"^load_options.tags: expected a dict of strings to strings"),
    ({"encryption_scope": ""}, r"^load_options.encryption_scope: expected the name of an encryption scope"),
    ("Hot", r"^load_options: expected a dict"),
])
def test_bad_azure_blob_options_are_named(options: Any, message: str) -> None:
    with pytest.raises(ExportInputError, match=message):
        azure(load_options=options).validate()


def test_azure_blob_options_become_sdk_arguments() -> None:
    from azure.storage.blob import ContentSettings, StandardBlobTier

    op = azure(load_options={"content_settings": {"content_type": "text/csv"}, "metadata": {"a": "b"}, "tags": {"t": "1"},
                             "standard_blob_tier": "Cool", "encryption_scope": "scope"})
    op.validate()
    options = op.make_writer().options
    assert isinstance(options["content_settings"], ContentSettings) and options["content_settings"].content_type == "text/csv"
    assert options["standard_blob_tier"] == StandardBlobTier.COOL
    assert {k: options[k] for k in ("metadata", "tags", "encryption_scope")} == {"metadata": {"a": "b"}, "tags": {"t": "1"},
                                                                               "encryption_scope": "scope"}


def test_storage_options_are_templated() -> None:
    op = s3(extra_args={"Metadata": {"day": "{{ ds }}"}, "Tagging": "day={{ ds }}"})
    blob = azure(load_options={"metadata": {"day": "{{ ds }}"}})
    assert "extra_args" in op.template_fields and "load_options" in blob.template_fields
    for task in (op, blob):
        task.render_template_fields({"ds": "2026-01-02"})  # type: ignore[arg-type]
    assert op.extra_args == {"Metadata": {"day": "2026-01-02"}, "Tagging": "day=2026-01-02"}
    assert blob.load_options == {"metadata": {"day": "2026-01-02"}}


@pytest.mark.parametrize("name", ["../escape.csv", "/etc/passwd", "", "a/./b", "x\\..\\y"])
def test_a_vendor_file_name_that_leaves_the_prefix_is_refused(name: str) -> None:
    job = export_job([export_file("ok.csv"), export_file(name)], job_id="job-7").to_dict()
    with pytest.raises(ExportInputError, match=r"^export: job job-7: file name .*a landed name must be a relative path under the prefix"):
        s3(export=job, prefix="p").validate()


def test_prefix_with_dot_segments_is_refused() -> None:
    with pytest.raises(ExportInputError, match=r"^prefix: 'a/../b' has a '.' or '..' segment"):
        s3(prefix="a/../b").validate()


def test_a_file_named_like_the_manifest_is_refused() -> None:
    job = export_job([export_file("_manifest.json")]).to_dict()
    with pytest.raises(ExportError, match=r"files '<the landing manifest>' and '_manifest.json' would both land at 'p/_manifest.json'"):
        s3(export=job, prefix="p").validate()
