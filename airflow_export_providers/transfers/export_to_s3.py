"""The S3 destination: its writer (through the Amazon provider's S3Hook) and ExportToS3Operator.

Multipart uploads, verified before the object becomes visible. Everything destination-agnostic
(reading, resuming, inflating, counting, verifying) is in ``core.landing``; this module says only
how bytes are staged, committed and aborted in S3.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from airflow_export_providers.core.compat import require_extra
from airflow_export_providers.core.errors import ExportError
from airflow_export_providers.core.landing import MiB, ObjectWriter, PartSender, Upload
from airflow_export_providers.core.redact import redact_text
from airflow_export_providers.transfers.base import ExportTransferOperator

log = logging.getLogger(__name__)

S3_MIN_PART = 5 * MiB  # S3's own minimum for every part but the last
S3_DEFAULT_PART = 8 * MiB
S3_MAX_PARTS = 10_000
S3_MAX_OBJECT = 5 * (1 << 40)


def s3_part_size(size: int | None, minimum: int = S3_DEFAULT_PART) -> int:
    """Part size for a known size: at least ``minimum`` and big enough to stay under 10,000 parts."""
    if not size:
        return minimum
    needed = -(-size // (S3_MAX_PARTS - 1))
    needed = -(-needed // MiB) * MiB  # round up to whole MiB
    return max(minimum, needed)


class S3Writer(ObjectWriter):
    """S3 through the Amazon provider's S3Hook (boto3 client): multipart, or one PUT for small files.

    With an unknown size (converted or inflated output) parts start at ``part_size`` and double every
    1,000 parts, which keeps even a 5 TB object under S3's 10,000-part limit.
    """

    def __init__(self, bucket: str, aws_conn_id: str | None = "aws_default", *, part_size: int | None = None,
                 client: Any = None, extra_args: dict[str, Any] | None = None, concurrency: int = 2) -> None:
        super().__init__()
        self.concurrency = concurrency
        self.bucket = bucket
        self.aws_conn_id = aws_conn_id
        self.min_part = max(int(part_size or S3_DEFAULT_PART), S3_MIN_PART)
        self.extra_args = dict(extra_args or {})
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            require_extra("amazon", "The S3 destination")
            from airflow.providers.amazon.aws.hooks.s3 import S3Hook

            self._client = S3Hook(aws_conn_id=self.aws_conn_id).get_conn()
        return self._client

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def _begin(self, key: str, size_hint: int | None, part_size: int | None) -> Upload:
        self.abort_stale(key)
        minimum = max(int(part_size), S3_MIN_PART) if part_size else self.min_part
        return _S3Upload(self, key, s3_part_size(size_hint, minimum), grow=size_hint is None)

    def abort_stale(self, key: str) -> None:
        """Abort multipart uploads an earlier, killed try left for this exact key."""
        try:
            resp = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=key)
        except Exception as exc:  # listing may be denied by policy; that is not fatal
            log.debug("could not list multipart uploads for %s: %s", key, redact_text(exc))
            return
        for upload in resp.get("Uploads", []):
            if upload.get("Key") == key:
                log.info("aborting a multipart upload of %s left by an earlier try", self.uri(key))
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload["UploadId"])

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)


class _S3Upload(Upload):
    def __init__(self, writer: S3Writer, key: str, part_size: int, grow: bool) -> None:
        super().__init__(key, writer)
        self.w = writer
        self.part_size = part_size
        self.grow = grow
        self.buf = bytearray()
        self.upload_id: str | None = None
        self.sender = PartSender(writer.concurrency)
        self.numbers = 0

    def _write(self, data: bytes) -> None:
        self.buf += data
        self.written += len(data)
        # the last part may be small, so a full buffer is only sent once more bytes are known to follow
        while len(self.buf) > self.part_size:
            self.sender.make_room()
            with memoryview(self.buf) as view:  # one copy, not two (a bytearray slice, then bytes of it)
                part = bytes(view[: self.part_size])
            del self.buf[: self.part_size]
            self._send(part)

    def _send(self, part: bytes) -> None:
        client = self.w.client
        if self.upload_id is None:
            resp = client.create_multipart_upload(Bucket=self.w.bucket, Key=self.key, **self.w.extra_args)
            self.upload_id = resp["UploadId"]
        self.numbers += 1
        number = self.numbers
        if number > S3_MAX_PARTS:
            raise ExportError(f"{self.w.uri(self.key)}: more than {S3_MAX_PARTS} parts; raise part_size")
        self.sender.submit(self._upload_part, client, self.upload_id, number, part)
        if self.grow and number % 1000 == 0:
            self.part_size *= 2

    def _upload_part(self, client: Any, upload_id: str, number: int, part: bytes) -> dict[str, Any]:
        resp = client.upload_part(Bucket=self.w.bucket, Key=self.key, UploadId=upload_id, PartNumber=number, Body=part)
        return {"PartNumber": number, "ETag": resp["ETag"]}

    def _commit(self) -> None:
        client = self.w.client
        if self.upload_id is None:
            client.put_object(Bucket=self.w.bucket, Key=self.key, Body=bytes(self.buf), **self.w.extra_args)
            self.buf = bytearray()
            return
        if self.buf:
            self._send(bytes(self.buf))
            self.buf = bytearray()
        parts = self.sender.drain()
        client.complete_multipart_upload(
            Bucket=self.w.bucket, Key=self.key, UploadId=self.upload_id, MultipartUpload={"Parts": parts}
        )
        self.upload_id = None

    def _abort(self) -> None:
        self.buf = bytearray()
        self.sender.close()
        if self.upload_id is not None:
            upload_id, self.upload_id = self.upload_id, None
            try:
                self.w.client.abort_multipart_upload(Bucket=self.w.bucket, Key=self.key, UploadId=upload_id)
            except Exception as exc:
                log.warning("could not abort the multipart upload of %s: %s", self.w.uri(self.key), redact_text(exc))

    def landed_size(self) -> int | None:
        return int(self.w.client.head_object(Bucket=self.w.bucket, Key=self.key)["ContentLength"])


class ExportToS3Operator(ExportTransferOperator):
    """Stream every file of an ExportJob into ``s3://{bucket}/{prefix}/{file name}``.

    :param export: the ExportJob (``export_task.output``); templated.
    :param bucket: target bucket; templated.
    :param prefix: key prefix; templated (e.g. ``"leanplum/{{ ds }}"``).
    :param aws_conn_id: the Amazon connection used through S3Hook.
    :param convert: None, ``"jsonl"``, ``"csv"`` or ``"parquet"`` (Avro sources only).
    :param decompress: land gzip files inflated.
    :param extra_args: extra arguments for the PUT / CreateMultipartUpload (e.g. ``ServerSideEncryption``).

    Other parameters: see ``ExportTransferOperator``. Returns ``[{"uri", "size", "rows", "file"}, ...]``.
    """

    template_fields: Sequence[str] = ("export", "bucket", "prefix")
    destination_field = "bucket"

    def __init__(
        self,
        *,
        export: Any,
        bucket: str,
        prefix: str = "",
        aws_conn_id: str | None = "aws_default",
        convert: str | None = None,
        decompress: bool = False,
        extra_args: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        require_extra("amazon", type(self).__name__)
        super().__init__(export=export, prefix=prefix, convert=convert, decompress=decompress, **kwargs)
        self.bucket = bucket
        self.aws_conn_id = aws_conn_id
        self.extra_args = dict(extra_args or {})

    def destination(self) -> str:
        return self.bucket

    def make_writer(self) -> ObjectWriter:
        return S3Writer(self.bucket, self.aws_conn_id, part_size=self.part_size, extra_args=self.extra_args,
                        concurrency=self.upload_concurrency)
