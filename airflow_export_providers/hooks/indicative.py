"""Indicative (mParticle Analytics) User Segments Export API.

Three calls (list segments, start an export, read an export) under HTTP Basic auth with the project's
API key and access token. A finished export names its result by ``filename``: an ``s3://`` URI read
through an AWS connection, or an ``https://`` URL read with a plain GET. Results live at most 48 hours.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import reprlib
from typing import Any
from urllib.parse import urlsplit

from airflow_export_providers.core.compat import require_extra
from airflow_export_providers.core.errors import ExportError, ExportInputError, VendorHTTPError
from airflow_export_providers.core.hook import ExportHook, SourceStream, require_secure_url
from airflow_export_providers.core.http import Auth, Request
from airflow_export_providers.core.job import ExportFile, ExportJob, JobState, map_state
from airflow_export_providers.core.redact import redact_url, register_secret

log = logging.getLogger(__name__)

LIST_PATH = "/service/v1/segments/list"
EXPORT_PATH = "/service/v1/segments/export/"
OUTPUT_FORMATS = ("csv",)
SEGMENT_TYPES = ("Static", "Dynamic")
RESULT_TTL_HOURS = 48

STATE_MAP = {"PENDING": JobState.PENDING, "COMPLETE": JobState.SUCCESS, "FAILED": JobState.FAILED}

MESSAGES = {
    401: "credentials rejected: check the API key (login) and access token (password) of the connection",
    403: "this project has no Export API access (Pro or Enterprise plan)",
    429: "too many requests",
    500: "internal error at Indicative (they say it raises a ticket on their side; try again later)",
}


class BasicAuth(Auth):
    """``Authorization: Basic base64(apiKey:accessToken)`` on every API call (never on result downloads)."""

    def __init__(self, api_key: str, access_token: str) -> None:
        token = base64.b64encode(f"{api_key}:{access_token}".encode()).decode("ascii")
        register_secret(access_token)
        register_secret(token)
        self._header = "Basic " + token

    def headers(self) -> dict[str, str]:
        return {"Authorization": self._header}


def _vendor_words(body: bytes) -> str:
    """The vendor's own message: a JSON ``message``/``error`` field when there is one, else the text."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        for key in ("message", "error", "errorMessage", "detail"):
            value = data.get(key)
            if isinstance(value, str) and value.strip():
                return " ".join(value.split())[:300]
    return " ".join(text.split())[:300]


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key); one clear error for anything else."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        raise ExportInputError(f"filename: {reprlib.repr(uri)} is not an s3://bucket/key URI") from None
    bucket, key = parts.netloc, parts.path.lstrip("/")
    if parts.scheme != "s3" or not bucket or not key:
        raise ExportInputError(f"filename: {reprlib.repr(uri)} is not an s3://bucket/key URI")
    return bucket, key


class _S3Body:
    """A boto3 StreamingBody whose broken reads surface as ConnectionError, which the landing resumes with Range."""

    def __init__(self, body: Any) -> None:
        self.body = body

    def read(self, n: int) -> bytes:
        from botocore.exceptions import IncompleteReadError, ReadTimeoutError, ResponseStreamingError

        try:
            return bytes(self.body.read(n))
        except (ResponseStreamingError, IncompleteReadError, ReadTimeoutError) as exc:
            raise ConnectionError(f"S3 body read failed: {type(exc).__name__}") from None

    def close(self) -> None:
        self.body.close()


def segment_slug(name: Any) -> str:
    """A file-name-safe form of a segment name ("Recent Registrants (EU)" -> "recent-registrants-eu")."""
    slug = re.sub(r"[^a-z0-9]+", "-", str(name or "").lower()).strip("-")
    return slug[:60].rstrip("-") or "segment"


class IndicativeHook(ExportHook):
    """Talks to the Indicative Export API; reads result files from S3 (``aws_conn_id``) or HTTPS.

    :param conn_id: an ``indicative`` connection: login = API key, password = access token,
        host = API base URL (default ``https://query.indicative.com``), extra ``aws_conn_id``.
    :param aws_conn_id: overrides the connection's ``aws_conn_id`` extra (default ``aws_default``).
    """

    vendor = "indicative"
    conn_type = "indicative"
    default_conn_name = "indicative_default"
    hook_name = "Indicative (mParticle Analytics)"
    default_host = "https://query.indicative.com"

    def __init__(self, conn_id: str | None = None, *, aws_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(conn_id, **kwargs)
        self._aws_conn_id = aws_conn_id

    # ---- connection --------------------------------------------------------------------------
    @property
    def aws_conn_id(self) -> str:
        return self._aws_conn_id or str(self.extras.get("aws_conn_id") or "aws_default")

    def hook_kwargs(self) -> dict[str, Any]:
        return {"aws_conn_id": self._aws_conn_id} if self._aws_conn_id else {}

    def make_auth(self) -> Auth:
        login, password = (self.conn.login or "").strip(), (self.conn.password or "").strip()
        if not login or not password:
            missing = " and ".join(n for n, v in (("login (API key)", login), ("password (access token)", password)) if not v)
            raise ExportInputError(f"{self.conn_id}: connection field {missing} is empty")
        return BasicAuth(login, password)

    def describe_error(self, status: int, body: bytes) -> str:
        words = _vendor_words(body)
        ours = MESSAGES.get(status) or (MESSAGES[500] if status >= 500 else None)
        if ours is None:
            return words or f"HTTP {status}"
        if status in (401, 403):
            return f"{ours} [{self.conn_id}]"
        return f"{ours}: {words}" if words else ours

    # ---- the three API calls -----------------------------------------------------------------
    def list_segments(self) -> list[dict[str, Any]]:
        """Every User Segment of the project (``segmentId``, ``name``, ``type``, ``lastRun``, ...)."""
        payload = self.client.json(Request("GET", self.url(LIST_PATH)))
        return self.parse_segments(payload)

    def parse_segments(self, payload: Any) -> list[dict[str, Any]]:
        if not isinstance(payload, list):
            raise VendorHTTPError(self.vendor, 200, f"segments list: expected a JSON array, got {type(payload).__name__}")
        for i, seg in enumerate(payload):
            if not isinstance(seg, dict):
                raise VendorHTTPError(self.vendor, 200, f"segments list: entry {i} is not an object")
            for field in ("segmentId", "name"):
                if not isinstance(seg.get(field), str) or not seg[field]:
                    raise VendorHTTPError(self.vendor, 200, f"segments list: entry {i} has no '{field}'")
        return payload

    def start_export(self, segment_id: str, output_format: str = "csv") -> dict[str, Any]:
        """Ask for a new export of one segment; answers the export object (``exportId``, status PENDING).

        Never retried on an ambiguous failure (the engine's rule for submits): a 500 may already
        have scheduled an export, so it fails instead of starting a second one.
        """
        if output_format not in OUTPUT_FORMATS:
            raise ExportInputError(f"output_format: {output_format!r} is not supported; accepted: {', '.join(OUTPUT_FORMATS)}")
        payload = self.client.json(
            Request("POST", self.url(EXPORT_PATH), json={"segmentId": segment_id, "outputFormat": output_format}, idempotent=False)
        )
        if not isinstance(payload, dict) or not isinstance(payload.get("exportId"), str) or not payload["exportId"]:
            raise VendorHTTPError(self.vendor, 200, "export request answered without an 'exportId'")
        return payload

    def submit(self, segment_id: str, output_format: str = "csv") -> str:
        return str(self.start_export(segment_id, output_format)["exportId"])

    def get_export(self, export_id: str) -> dict[str, Any]:
        """The raw export object, as Indicative answers it."""
        payload = self.client.json(self.status_request(export_id))
        if not isinstance(payload, dict):
            raise VendorHTTPError(self.vendor, 200, f"export {export_id}: expected a JSON object")
        return payload

    # ---- jobs ----------------------------------------------------------------------------------
    def status_request(self, job_id: str) -> Request:
        if not job_id or "/" in job_id:
            raise ExportInputError(f"export_id: {job_id!r} is not an Indicative exportId")
        return Request("GET", self.url(EXPORT_PATH + job_id))

    def job_from_error(self, job_id: str, error: VendorHTTPError) -> ExportJob:
        if error.status in (404, 410):
            raise VendorHTTPError(
                self.vendor, error.status,
                f"export {job_id} is unknown to Indicative (exports and their files are kept at most "
                f"{RESULT_TTL_HOURS} hours; submit a new export)",
            )
        raise error

    def parse_job(self, job_id: str, payload: Any) -> ExportJob:
        if not isinstance(payload, dict):
            raise VendorHTTPError(self.vendor, 200, f"export {job_id}: expected a JSON object, got {type(payload).__name__}")
        raw = payload.get("status")
        if not isinstance(raw, str) or not raw:
            raise VendorHTTPError(self.vendor, 200, f"export {job_id}: answer has no 'status'")
        seg_obj = payload.get("segment")
        segment: dict[str, Any] = seg_obj if isinstance(seg_obj, dict) else {}
        extra = {
            "export_id": payload.get("exportId") or job_id,
            "segment_id": segment.get("segmentId"),
            "segment_name": segment.get("name"),
            "segment_type": segment.get("type"),
            "last_run": segment.get("lastRun"),
            "project_id": payload.get("projectId") or segment.get("projectId"),
            "start_time": payload.get("startTime"),
            "end_time": payload.get("endTime"),
        }
        state = map_state(raw, STATE_MAP)
        job = ExportJob(vendor=self.vendor, conn_id=self.conn_id, job_id=job_id, state=state, raw_state=raw, extra=extra)
        if state == JobState.SUCCESS:
            filename = payload.get("filename")
            if not isinstance(filename, str) or not filename:
                raise VendorHTTPError(self.vendor, 200, f"export {job_id}: status COMPLETE but no 'filename'")
            job.files = [self._result_file(job_id, filename, segment)]
        elif state == JobState.FAILED:
            detail = next((str(payload[k]) for k in ("message", "error", "errorMessage") if payload.get(k)), "")
            job.message = f"Indicative reported the export of segment {segment.get('name') or segment.get('segmentId')!r} as FAILED" + (
                f": {detail}" if detail else ""
            )
        return job

    def _result_file(self, job_id: str, filename: str, segment: dict[str, Any]) -> ExportFile:
        try:
            parts = urlsplit(filename)
            _ = parts.port  # a bad port raises only when read
        except ValueError:
            raise VendorHTTPError(self.vendor, 200, f"export {job_id}: 'filename' is not a URL") from None
        vendor_name = parts.path.rsplit("/", 1)[-1] or f"{job_id}.csv"
        suffix = vendor_name.rsplit(".", 1)[-1].lower() if "." in vendor_name else None
        # Landed as {prefix}/{name}: a name stable per segment makes a rerun replace, not add, a file
        # (the vendor's own name is the exportId, new on every run).
        seg_id = segment.get("segmentId")
        name = f"{segment_slug(segment.get('name'))}-{str(seg_id)[:8]}.{suffix or 'csv'}" if seg_id else vendor_name
        if parts.scheme == "s3":
            split_s3_uri(filename)
            key, source = filename, "s3"  # an s3 URI carries no secret: keep it
        elif parts.scheme in ("https", "http"):
            key, source = job_id, "https"  # a download URL may be presigned: resolved again at download time
        else:
            raise VendorHTTPError(self.vendor, 200, f"export {job_id}: 'filename' is neither s3:// nor https:// ({parts.scheme}://)")
        return ExportFile(
            vendor=self.vendor, conn_id=self.conn_id, job_id=job_id, key=key, name=name,
            row_format="csv" if suffix == "csv" else None,
            extra={"source": source, "vendor_name": vendor_name, "segment_id": seg_id},
        )

    # ---- files ---------------------------------------------------------------------------------
    def file_request(self, file: ExportFile, refresh: bool = False) -> Request:
        """An https result: re-read the export for its current URL, then a plain GET (no Basic auth)."""
        filename = self.get_export(file.job_id).get("filename")
        if not isinstance(filename, str) or not filename:
            raise VendorHTTPError(self.vendor, 404, self.file_gone_message(file, 404) or "no filename")
        return Request("GET", require_secure_url(filename, f"export {file.job_id} filename"), auth=False)

    def file_gone_message(self, file: ExportFile, status: int) -> str | None:
        if status in (403, 404, 410):
            return (
                f"result file {file.name} of export {file.job_id} is gone or expired (HTTP {status}): Indicative keeps "
                f"results at most {RESULT_TTL_HOURS} hours after the export completes; submit a new export"
            )
        return None

    def open_file(self, file: ExportFile, offset: int = 0) -> SourceStream:
        """``s3://`` results: a streamed S3 GET (with Range) through the AWS connection; others: HTTPS."""
        if not file.key.startswith("s3://"):
            return super().open_file(file, offset)
        return self._open_s3(file, offset)

    def _open_s3(self, file: ExportFile, offset: int) -> SourceStream:
        from botocore.exceptions import ClientError

        bucket, key = split_s3_uri(file.key)
        s3 = self.s3_client()
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if offset:
            kwargs["Range"] = f"bytes={offset}-"
        try:
            obj = s3.get_object(**kwargs)
        except ClientError as exc:
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if code in ("NoSuchKey", "NoSuchBucket", "404") or status == 404:
                raise VendorHTTPError(self.vendor, 404, self.file_gone_message(file, 404) or "gone") from None
            if code in ("AccessDenied", "403") or status == 403:
                raise VendorHTTPError(
                    self.vendor, 403,
                    f"AWS connection {self.aws_conn_id!r} may not read {redact_url(file.key)} (AccessDenied); the result "
                    f"bucket is Indicative's upload bucket configured for your project",
                ) from None
            if code == "InvalidRange" and offset:
                raise ExportError(f"{file.name}: resume at byte {offset} is past the end of the object") from None
            raise ExportError(f"{file.name}: S3 GET of {redact_url(file.key)} failed: {code or status}") from None
        body = _S3Body(obj["Body"])
        start, total = 0, obj.get("ContentLength")
        content_range = str(obj.get("ContentRange") or "")
        if content_range:
            start = offset
            tail = content_range.rsplit("/", 1)[-1]
            total = int(tail) if tail.isdigit() else None
        return SourceStream(body, offset=start, total=total, close=body.close)  # type: ignore[arg-type]

    def s3_client(self) -> Any:
        """A boto3 S3 client built from the AWS connection (endpoint, region, credentials)."""
        require_extra("amazon", f"Reading Indicative's s3:// results through AWS connection {self.aws_conn_id!r}")
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return S3Hook(aws_conn_id=self.aws_conn_id).get_conn()

    # ---- UI ------------------------------------------------------------------------------------
    def check_connection(self) -> str:
        segments = self.list_segments()
        return f"Connected to Indicative: {len(segments)} user segment(s) in this project"
