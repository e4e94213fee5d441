"""The S3 destination: its writer (through the Amazon provider's S3Hook) and ExportToS3Operator.

Multipart uploads, verified and left open (invisible) until the whole export is published.
Everything destination-agnostic (reading, resuming, inflating, counting, verifying, the export's
manifest) is in ``core``; this module says only how bytes are staged, committed and aborted in S3,
and how a small object is read and conditionally written.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from airflow_export_providers.core.compat import require_extra
from airflow_export_providers.core.errors import ExportError, ExportInputError
from airflow_export_providers.core.landing import MiB, ObjectWriter, PartSender, StoredObject, Upload, WriteConflict
from airflow_export_providers.core.lineage import static_name
from airflow_export_providers.core.redact import redact_text
from airflow_export_providers.transfers.base import ExportTransferOperator

log = logging.getLogger(__name__)

S3_MIN_PART = 5 * MiB  # S3's own minimum for every part but the last
S3_DEFAULT_PART = 8 * MiB
S3_MAX_PARTS = 10_000
S3_MAX_OBJECT = 5 * (1 << 40)
CANNED_ACLS = ("private", "public-read", "public-read-write", "authenticated-read", "aws-exec-read",
               "bucket-owner-read", "bucket-owner-full-control")
# Arguments that only make sense on every request of an upload, not only on the one that creates it.
PER_REQUEST_ARGS = ("RequestPayer", "ExpectedBucketOwner")
# Checksums of a whole object, sizes, SSE-C keys: values for one known body, or secrets that a
# templated field would show in the UI's rendered template.
REFUSED_ARGS = {
    "SSECustomerKey": "a customer-provided key is a secret and would be shown in the rendered template; use SSE-KMS "
                      "(ServerSideEncryption='aws:kms', SSEKMSKeyId=...) or encrypt=True",
    "SSECustomerAlgorithm": "SSE-C is not supported (its key would be shown in the rendered template); use SSE-KMS",
    "SSECustomerKeyMD5": "SSE-C is not supported (its key would be shown in the rendered template); use SSE-KMS",
}


def allowed_extra_args() -> tuple[str, ...]:
    """What PutObject and CreateMultipartUpload both take, as boto3's managed uploads list them."""
    from s3transfer.manager import TransferManager

    per_body = {"MpuObjectSize", "ChecksumType"} | {a for a in TransferManager.ALLOWED_UPLOAD_ARGS
                                                   if a.startswith("Checksum") and a != "ChecksumAlgorithm"}
    names = [a for a in TransferManager.ALLOWED_UPLOAD_ARGS if a not in per_body and a not in REFUSED_ARGS]
    return tuple(sorted({*names, "BucketKeyEnabled"}))


def s3_upload_args(extra_args: Any, *, encrypt: Any = False, acl_policy: Any = None) -> dict[str, Any]:
    """The arguments every object of a landing is created with, or one error naming what is wrong."""
    if extra_args is None:
        extra_args = {}
    if not isinstance(extra_args, dict):
        raise ExportInputError(f"extra_args: expected a dict of PutObject / CreateMultipartUpload arguments, got {type(extra_args).__name__}")
    allowed = allowed_extra_args()
    for name in extra_args:
        if name in REFUSED_ARGS:
            raise ExportInputError(f"extra_args: {name} is refused: {REFUSED_ARGS[name]}")
        if name not in allowed:
            raise ExportInputError(f"extra_args: {name!r} is not an upload argument; accepted: {', '.join(allowed)}")
    if not isinstance(encrypt, bool):
        raise ExportInputError(f"encrypt: expected True or False, got {encrypt!r}")
    if acl_policy is not None and acl_policy not in CANNED_ACLS:
        raise ExportInputError(f"acl_policy: {acl_policy!r} is not a canned ACL; accepted values: None, {', '.join(CANNED_ACLS)}")
    args = dict(extra_args)
    if encrypt:
        if args.get("ServerSideEncryption", "AES256") != "AES256":
            raise ExportInputError(
                f"encrypt=True asks for ServerSideEncryption='AES256' but extra_args says {args['ServerSideEncryption']!r}; "
                "keep one of them"
            )
        args["ServerSideEncryption"] = "AES256"
    if acl_policy is not None:
        if args.get("ACL", acl_policy) != acl_policy:
            raise ExportInputError(f"acl_policy={acl_policy!r} and extra_args ACL={args['ACL']!r} disagree; keep one of them")
        args["ACL"] = acl_policy
    if "SSEKMSKeyId" in args and args.get("ServerSideEncryption") not in ("aws:kms", "aws:kms:dsse"):
        raise ExportInputError("extra_args: SSEKMSKeyId needs ServerSideEncryption='aws:kms' (or 'aws:kms:dsse') beside it")
    return args


def s3_part_size(size: int | None, minimum: int = S3_DEFAULT_PART) -> int:
    """Part size for a known size: at least ``minimum`` and big enough to stay under 10,000 parts."""
    if not size:
        return minimum
    needed = -(-size // (S3_MAX_PARTS - 1))
    needed = -(-needed // MiB) * MiB  # round up to whole MiB
    return max(minimum, needed)


def _error_code(exc: Exception) -> tuple[str, int]:
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return code, status


class S3Writer(ObjectWriter):
    """S3 through the Amazon provider's S3Hook (boto3 client).

    Every non-empty object is a multipart upload (a small one has one part): it stays invisible until
    ``commit``, however long the rest of its export takes, and holds no memory meanwhile. With an
    unknown size (converted or inflated output) parts start at ``part_size`` and double every 1,000
    parts, which keeps even a 5 TB object under S3's 10,000-part limit. ``extra_args`` go to every
    PutObject / CreateMultipartUpload (encryption, ACL, metadata, tagging, storage class).
    """

    def __init__(self, bucket: str, aws_conn_id: str | None = "aws_default", *, part_size: int | None = None,
                 client: Any = None, extra_args: dict[str, Any] | None = None, concurrency: int = 2) -> None:
        super().__init__()
        self.concurrency = concurrency
        self.bucket = bucket
        self.aws_conn_id = aws_conn_id
        self.min_part = max(int(part_size or S3_DEFAULT_PART), S3_MIN_PART)
        self.extra_args = dict(extra_args or {})
        self.every = {k: v for k, v in self.extra_args.items() if k in PER_REQUEST_ARGS}
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
        minimum = max(int(part_size), S3_MIN_PART) if part_size else self.min_part
        return _S3Upload(self, key, s3_part_size(size_hint, minimum), grow=size_hint is None)

    def abort_left_over(self, uploads: list[tuple[str, str]]) -> None:
        """Abort the multipart uploads an earlier, killed try of this task opened (and only those)."""
        for key, upload_id in uploads:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id, **self.every)
                log.info("aborted the multipart upload of %s left by an earlier try", self.uri(key))
            except Exception as exc:
                code, status = _error_code(exc)
                if code == "NoSuchUpload" or status == 404:
                    continue  # completed or aborted already
                log.warning("could not abort the multipart upload of %s left by an earlier try: %s", self.uri(key), redact_text(exc))

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key, **self.every)

    def read(self, key: str) -> StoredObject | None:
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=key, **self.every)
        except Exception as exc:
            code, status = _error_code(exc)
            if code in ("NoSuchKey", "404") or status == 404:
                return None
            raise
        return StoredObject(bytes(resp["Body"].read()), str(resp["ETag"]))

    def put(self, key: str, data: bytes, *, expect: str | None) -> str:
        condition = {"IfMatch": expect} if expect is not None else {"IfNoneMatch": "*"}
        # the manifest stays readable: JSON, and in the default storage class even when the data goes to Glacier
        args = {k: v for k, v in self.extra_args.items() if k not in ("StorageClass", "ContentEncoding", "ContentDisposition")}
        args["ContentType"] = "application/json"
        try:
            resp = self.client.put_object(Bucket=self.bucket, Key=key, Body=data, **args, **condition)
        except Exception as exc:
            code, status = _error_code(exc)
            # 412: the object changed (or exists); 409: a concurrent conditional write; 404: If-Match on a removed key
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey") or status in (409, 412):
                raise WriteConflict(f"{self.uri(key)} changed since it was read") from None
            raise
        return str(resp["ETag"])


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
        self.parts: list[dict[str, Any]] = []

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
            self.upload_id = str(resp["UploadId"])
            self.w.track(self.key, self.upload_id)  # before any byte goes up: the retry of a killed try finds it
        self.numbers += 1
        number = self.numbers
        if number > S3_MAX_PARTS:
            raise ExportError(f"{self.w.uri(self.key)}: more than {S3_MAX_PARTS} parts; raise part_size")
        self.sender.submit(self._upload_part, client, self.upload_id, number, part)
        if self.grow and number % 1000 == 0:
            self.part_size *= 2

    def _upload_part(self, client: Any, upload_id: str, number: int, part: bytes) -> dict[str, Any]:
        resp = client.upload_part(Bucket=self.w.bucket, Key=self.key, UploadId=upload_id, PartNumber=number, Body=part,
                                  **self.w.every)
        return {"PartNumber": number, "ETag": resp["ETag"]}

    def _finish(self) -> None:
        if self.buf:  # the last (or only) part: after this nothing of the file is in memory
            self._send(bytes(self.buf))
            self.buf = bytearray()
        self.parts = self.sender.drain()

    def _commit(self) -> None:
        client = self.w.client
        if self.upload_id is None:  # an empty object: nothing was staged, one PUT publishes it
            client.put_object(Bucket=self.w.bucket, Key=self.key, Body=b"", **self.w.extra_args)
            return
        client.complete_multipart_upload(
            Bucket=self.w.bucket, Key=self.key, UploadId=self.upload_id, MultipartUpload={"Parts": self.parts}, **self.w.every
        )
        upload_id, self.upload_id = self.upload_id, None
        self.w.untrack(self.key, upload_id)

    def _abort(self) -> None:
        self.buf = bytearray()
        self.sender.close()
        if self.upload_id is not None:
            upload_id, self.upload_id = self.upload_id, None
            try:
                self.w.client.abort_multipart_upload(Bucket=self.w.bucket, Key=self.key, UploadId=upload_id, **self.w.every)
                self.w.untrack(self.key, upload_id)
            except Exception as exc:  # stays tracked: the retry aborts it
                log.warning("could not abort the multipart upload of %s: %s", self.w.uri(self.key), redact_text(exc))

    def landed_size(self) -> int | None:
        return int(self.w.client.head_object(Bucket=self.w.bucket, Key=self.key, **self.w.every)["ContentLength"])


class ExportToS3Operator(ExportTransferOperator):
    """Stream every file of an ExportJob into ``s3://{bucket}/{prefix}/{file name}``, published whole.

    :param export: the ExportJob (``export_task.output``); templated.
    :param bucket: target bucket; templated.
    :param prefix: key prefix; templated (e.g. ``"leanplum/{{ ds }}"``).
    :param aws_conn_id: the Amazon connection used through S3Hook.
    :param convert: None, ``"jsonl"``, ``"csv"`` or ``"parquet"`` (Avro sources only).
    :param decompress: land gzip files inflated.
    :param encrypt: server-side encryption with S3-managed keys (``ServerSideEncryption="AES256"``),
        as the Amazon provider's transfers name it.
    :param acl_policy: a canned ACL for every object (e.g. ``"bucket-owner-full-control"``).
    :param extra_args: more PutObject / CreateMultipartUpload arguments for every object (SSE-KMS:
        ``{"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": ...}``, ``Metadata``, ``Tagging``,
        ``StorageClass``, ...); templated.

    Other parameters: see ``ExportTransferOperator``. Returns ``[{"uri", "size", "rows", "file"}, ...]``.
    """

    template_fields: Sequence[str] = ("export", "bucket", "prefix", "extra_args")
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
        encrypt: bool = False,
        acl_policy: str | None = None,
        extra_args: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        require_extra("amazon", type(self).__name__)
        super().__init__(export=export, prefix=prefix, convert=convert, decompress=decompress, **kwargs)
        self.bucket = bucket
        self.aws_conn_id = aws_conn_id
        self.encrypt = encrypt
        self.acl_policy = acl_policy
        self.extra_args = extra_args if extra_args is not None else {}
        self.declare_asset({"bucket": bucket, "prefix": prefix})

    @classmethod
    def static_writer(cls, args: Mapping[str, Any]) -> ObjectWriter | None:
        bucket = args.get("bucket")
        return S3Writer(str(bucket)) if static_name(bucket) else None

    def destination(self) -> str:
        return self.bucket

    def validate_destination(self) -> None:
        s3_upload_args(self.extra_args, encrypt=self.encrypt, acl_policy=self.acl_policy)

    def make_writer(self) -> ObjectWriter:
        args = s3_upload_args(self.extra_args, encrypt=self.encrypt, acl_policy=self.acl_policy)
        return S3Writer(self.bucket, self.aws_conn_id, part_size=self.part_size, extra_args=args,
                        concurrency=self.upload_concurrency)
