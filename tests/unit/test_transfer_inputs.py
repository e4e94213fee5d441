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
    op = s3(order=["users", "accounts"])
    assert [f.resource for f in op.ordered(op.validate().files)] == ["users", "accounts"]


def test_outlets_carry_an_asset_alias() -> None:
    from airflow.sdk import AssetAlias

    assert any(isinstance(o, AssetAlias) and o.name == "export-landing/no-dag/t" for o in s3().outlets)
    assert not s3(asset_alias=False).outlets
