"""Storage options reach every object a transfer writes (issue 18): moto's S3 server and Azurite.

Every landing writes three kinds of objects, and each must carry the options: an empty file (S3: one
PutObject; Azure: one Put Blob), a small file (one part / one block) and a file of several parts /
blocks — plus the landing manifest (written with PutObject / Put Blob).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from airflow_export_providers.core.landing import MiB
from airflow_export_providers.core.manifest import MANIFEST_NAME
from tests.support.concurrent_landing import make_transfer, task_context
from tests.support.files_hook import export_file, export_job, random_bytes, set_files_connection

SIZES = {"empty.json": 0, "small.json": 300, "big.json": 11 * MiB}  # 0 parts, 1 part, 3 parts of 5 MiB


@pytest.fixture
def files(sandbox: Any, sandbox_state: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    set_files_connection(monkeypatch, sandbox)
    return sandbox_state


def _job(state: Any) -> dict[str, Any]:
    data = {f"{uuid.uuid4().hex[:6]}-{name}": random_bytes(size, seed=size) for name, size in SIZES.items()}
    state.files.update(data)
    return export_job([export_file(name, body) for name, body in data.items()]).to_dict()


@pytest.mark.parametrize("sse", ["encrypt", "kms"])
def test_s3_encryption_acl_metadata_and_tags_reach_every_object(files: Any, moto_s3: Any, aws_conn: str, sse: str) -> None:
    import boto3

    s3 = moto_s3.client()
    bucket = f"opts-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    extra: dict[str, Any] = {"Metadata": {"team": "data"}, "Tagging": "project=exports&env=test"}
    kwargs: dict[str, Any] = {"acl_policy": "public-read"}
    if sse == "kms":
        key_id = boto3.client("kms", endpoint_url=moto_s3.url, region_name="us-east-1").create_key()["KeyMetadata"]["KeyId"]
        extra.update(ServerSideEncryption="aws:kms", SSEKMSKeyId=key_id)
    else:
        kwargs["encrypt"] = True
    op = make_transfer("s3", bucket, _job(files), "opts", extra_args=extra, **kwargs)
    op.execute(task_context("run-1"))
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    assert len(keys) == len(SIZES) + 1 and f"opts/{MANIFEST_NAME}" in keys
    parts = []
    for key in keys:
        head = s3.head_object(Bucket=bucket, Key=key)
        etag = head["ETag"].strip('"')
        parts.append(int(etag.split("-")[1]) if "-" in etag else 0)
        if sse == "kms":
            assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"].endswith(key_id), key
        else:
            assert head["ServerSideEncryption"] == "AES256", key
        assert head["Metadata"] == {"team": "data"}, key
        tags = {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]}
        assert tags == {"project": "exports", "env": "test"}, key
        grants = {(g["Grantee"].get("URI"), g["Permission"]) for g in s3.get_object_acl(Bucket=bucket, Key=key)["Grants"]}
        assert ("http://acs.amazonaws.com/groups/global/AllUsers", "READ") in grants, key
    assert sorted(parts) == [0, 0, 1, 3], "single PUTs (empty file, manifest), a one-part and a three-part upload"


def test_azure_blob_options_reach_every_blob(files: Any, azurite: Any, wasb_conn: str) -> None:
    from azure.storage.blob import BlobServiceClient

    name = f"opts-{uuid.uuid4().hex[:10]}"
    container = azurite.service().create_container(name)
    options = {
        "content_settings": {"content_type": "application/x-ndjson", "cache_control": "no-cache", "content_language": "en"},
        "metadata": {"team": "data"},
        "tags": {"project": "exports"},
        "standard_blob_tier": "Cool",
        "encryption_scope": "landing-scope",
    }
    scopes: list[str | None] = []

    def record(request: Any) -> None:
        if request.http_request.method == "PUT":
            scopes.append(request.http_request.headers.get("x-ms-encryption-scope"))

    op = make_transfer("azure", name, _job(files), "opts", load_options=options)
    make_writer = op.make_writer

    def writer_seeing_requests() -> Any:
        writer = make_writer()
        writer._service = BlobServiceClient.from_connection_string(azurite.connection_string, raw_request_hook=record)
        return writer

    op.make_writer = writer_seeing_requests  # type: ignore[method-assign]
    op.execute(task_context("run-1"))
    blobs = {b.name: b for b in container.list_blobs(include=["tags", "metadata"])}
    assert len(blobs) == len(SIZES) + 1
    for blob_name in blobs:
        client = container.get_blob_client(blob_name)
        props = client.get_blob_properties()
        assert props.metadata == {"team": "data"} and client.get_blob_tags() == {"project": "exports"}, blob_name
        if blob_name.endswith(MANIFEST_NAME):
            assert props.content_settings.content_type == "application/json"
            assert props.blob_tier == "Hot", "the manifest stays readable in the default tier"
            continue
        settings = props.content_settings
        assert (settings.content_type, settings.cache_control, settings.content_language) == ("application/x-ndjson", "no-cache", "en")
        assert props.blob_tier == "Cool", blob_name
    # Azurite has no encryption scopes: it accepts the header and ignores it, so the request is what can be checked
    assert scopes and all(s == "landing-scope" for s in scopes), scopes
