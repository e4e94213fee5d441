"""One landing destination per test (an S3 bucket in moto, or an Azure container in Azurite), read back raw.

The fixtures are in tests/support/destination_fixtures.py (load them with ``pytest_plugins``).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from airflow_export_providers.core.landing import MiB
from airflow_export_providers.core.manifest import MANIFEST_NAME
from airflow_export_providers.transfers.export_to_azure_blob import AzureBlobWriter
from airflow_export_providers.transfers.export_to_s3 import S3Writer

PART = 5 * MiB  # moto enforces S3's 5 MiB minimum for every part but the last


class Dest:
    """One destination (an S3 bucket or an Azure container) created for one test."""

    def __init__(self, kind: str, name: str, writer: Any, raw: Any) -> None:
        self.kind, self.name, self.writer, self.raw = kind, name, writer, raw

    def new_writer(self) -> Any:
        """Another writer on the same destination (what a second, concurrent landing uses)."""
        if self.kind == "s3":
            return S3Writer(self.name, "aws_default", part_size=PART)
        return AzureBlobWriter(self.name, "wasb_default", block_size=PART)

    def read(self, key: str) -> bytes:
        if self.kind == "s3":
            return bytes(self.raw.get_object(Bucket=self.name, Key=key)["Body"].read())
        return bytes(self.raw.get_blob_client(key).download_blob().readall())

    def write(self, key: str, data: bytes) -> None:
        """An object this package did not write (a user's, another tool's)."""
        if self.kind == "s3":
            self.raw.put_object(Bucket=self.name, Key=key, Body=data)
        else:
            self.raw.get_blob_client(key).upload_blob(data, overwrite=True)

    def keys(self) -> list[str]:
        if self.kind == "s3":
            return sorted(o["Key"] for o in self.raw.list_objects_v2(Bucket=self.name).get("Contents", []))
        return sorted(b.name for b in self.raw.list_blobs())

    def exists(self, key: str) -> bool:
        return key in self.keys()

    def manifest(self, prefix: str) -> dict[str, Any] | None:
        key = f"{prefix}/{MANIFEST_NAME}" if prefix else MANIFEST_NAME
        return json.loads(self.read(key)) if self.exists(key) else None

    def parts_or_blocks(self, key: str) -> int:
        if self.kind == "s3":
            etag = self.raw.head_object(Bucket=self.name, Key=key)["ETag"].strip('"')
            return int(etag.split("-")[1]) if "-" in etag else 1
        committed, _ = self.raw.get_blob_client(key).get_block_list("committed")
        return len(committed)

    def pending_uploads(self) -> list[str]:
        """S3: multipart uploads still open (nothing else may linger after a failure)."""
        if self.kind == "s3":
            return [u["Key"] for u in self.raw.list_multipart_uploads(Bucket=self.name).get("Uploads", [])]
        return []


def put(state: Any, data: bytes, name: str | None = None) -> str:
    name = name or f"f-{uuid.uuid4().hex[:10]}"
    state.files[name] = data
    return name
