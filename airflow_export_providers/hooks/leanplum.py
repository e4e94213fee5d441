"""Leanplum raw-data export (``action=exportData`` / ``action=getExportResults``).

Leanplum authenticates with the app id and the data-export ``clientKey`` in the query string, so
every request here is built with ``params`` (never a pre-formatted URL) and everything that logs a
URL goes through ``core.redact`` (query values masked, the key registered with Airflow's masker).
Answers are wrapped as ``{"response": [{"success": ..., ...}]}``; ``success: false`` carries the
vendor's words in ``error.message``.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from datetime import datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo

from airflow_export_providers.core.errors import (
    ExportError,
    ExportInputError,
    QuotaExceeded,
    VendorAuthError,
    VendorHTTPError,
)
from airflow_export_providers.core.hook import ExportHook, require_secure_url
from airflow_export_providers.core.http import Request
from airflow_export_providers.core.job import ExportFile, ExportJob, JobState, map_state
from airflow_export_providers.core.redact import register_secret

log = logging.getLogger(__name__)

PACIFIC = ZoneInfo("America/Los_Angeles")
DEFAULT_API_VERSION = "1.0.6"
# How long to wait before trying a refused submit again when the daily quota is used up: the next
# Pacific midnight, but at most this long (the reset rule is not documented; a rolling window would
# otherwise cost a whole extra day).
DEFAULT_QUOTA_RETRY_SECONDS = 3600.0
QUOTA_MIDNIGHT_MARGIN_SECONDS = 60.0

STATES = {
    "PENDING": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
    "FINISHED": JobState.SUCCESS,
    "FAILED": JobState.FAILED,
}
CSV_TYPES = ("sessions", "states", "events", "eventparameters", "userattributes", "experiments")
_CSV_NAME = re.compile(r"-output(" + "|".join(CSV_TYPES) + r")-(\d+)(?:\.csv)?$")
# A refusal of a request we validated counts as the daily quota when it speaks of a limit or a quota
# (Leanplum publishes no wording: "Export limit reached", "Daily quota exceeded", "rate limited", ...),
# unless it names one of our parameters or calls the request invalid: then it is about the request.
_QUOTA_WORDS = re.compile(r"(?i)(quota|limit|too many (exports|requests)|\b(per|a) day\b|\bdaily\b.*\bexceeded\b)")
_REQUEST_WORDS = re.compile(
    r"(?i)(\b(invalid|malformed|required|missing)\b|startDate|endDate|startTime|endTime|exportFormat|callbackUrl|"
    r"s3BucketName|s3AccessId|s3AccessKey|s3ObjectPrefix|compressData|apiVersion|appId|clientKey|jobId)"
)
# What Leanplum may say about a job it no longer has (results are kept about 24 hours).
_GONE_WORDS = re.compile(r"(?i)(not found|no such|unknown|does ?n[o']t exist|expired|no longer)")
_GONE_STATUSES = (404, 410)
# exportData answers no jobId when nothing matches: such an export is done at once, with zero files.
NO_DATA_PREFIX = "leanplum-no-data:"
GONE_STATE = "GONE"


def next_pacific_midnight(now: float | None = None) -> float:
    """Epoch seconds of the next midnight in America/Los_Angeles (DST-aware)."""
    local = datetime.fromtimestamp(time.time() if now is None else now, PACIFIC)
    tomorrow = (local + timedelta(days=1)).date()
    return datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=PACIFIC).timestamp()


def _is_url(value: str) -> bool:
    try:
        _ = urlsplit(value).port  # urlsplit and its port refuse e.g. "https://[" or ":99999"
    except ValueError:
        return False
    return True


def unwrap(payload: Any, what: str) -> dict[str, Any]:
    """The single answer inside Leanplum's ``{"response": [ {...} ]}`` wrapper (one clear error otherwise)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("response"), list) or not payload["response"]:
        raise VendorHTTPError("leanplum", 200, f"{what}: answer has no 'response' list: {str(payload)[:200]!r}")
    inner = payload["response"][0]
    if not isinstance(inner, dict):
        raise VendorHTTPError("leanplum", 200, f"{what}: 'response[0]' is not an object: {str(inner)[:200]!r}")
    return inner


def error_message(inner: dict[str, Any]) -> str:
    err = inner.get("error")
    if isinstance(err, dict) and err.get("message"):
        return str(err["message"])
    if isinstance(err, str) and err:
        return err
    return str(inner.get("message") or "no error message given")


class LeanplumHook(ExportHook):
    """Leanplum data export: login = appId, password = data-export clientKey, extra ``api_version``.

    :param quota_retry_seconds: how long to wait before a submit refused for the daily quota is tried
        again (capped by the next Pacific midnight); also settable as connection extra of the same name.
    """

    vendor: ClassVar[str] = "leanplum"
    conn_type = "leanplum"
    conn_name_attr = "conn_id"
    default_conn_name = "leanplum_default"
    hook_name = "Leanplum"
    default_host: ClassVar[str] = "https://api.leanplum.com"

    def __init__(self, conn_id: str | None = None, *, quota_retry_seconds: float | None = None, **kwargs: Any) -> None:
        super().__init__(conn_id, **kwargs)
        self.quota_retry_seconds = quota_retry_seconds
        self._file_urls: dict[str, list[str]] = {}

    # ---- connection --------------------------------------------------------------------------
    def hook_kwargs(self) -> dict[str, Any]:
        return {"quota_retry_seconds": self.quota_retry_seconds} if self.quota_retry_seconds is not None else {}

    @property
    def api_version(self) -> str:
        return str(self.extras.get("api_version") or DEFAULT_API_VERSION)

    def _credentials(self) -> tuple[str, str]:
        app_id, client_key = self.conn.login, self.conn.password
        if not app_id:
            raise ExportInputError(f"{self.conn_id}: connection field 'login' must hold the Leanplum appId")
        if not client_key:
            raise ExportInputError(f"{self.conn_id}: connection field 'password' must hold the data-export clientKey")
        register_secret(client_key)
        return str(app_id), str(client_key)

    def api_request(self, action: str, params: dict[str, Any] | None = None, *, idempotent: bool = True) -> Request:
        """A GET on ``/api``: credentials and action as query parameters (redacted in every log line)."""
        app_id, client_key = self._credentials()
        query: dict[str, Any] = {"appId": app_id, "clientKey": client_key, "apiVersion": self.api_version, "action": action}
        for key, value in (params or {}).items():
            if value is not None:
                query[key] = value
        return Request("GET", self.url("/api"), params=query, idempotent=idempotent)

    def describe_error(self, status: int, body: bytes) -> str:
        """Leanplum puts its words in ``response[0].error.message``; fall back to the body."""
        try:
            import json

            inner = unwrap(json.loads(body), "error")
            return error_message(inner)
        except Exception:
            return super().describe_error(status, body)

    # ---- submit ------------------------------------------------------------------------------
    def _quota_retry_at(self) -> float:
        backoff = self.quota_retry_seconds
        if backoff is None:
            backoff = float(self.extras.get("quota_retry_seconds") or DEFAULT_QUOTA_RETRY_SECONDS)
        now = time.time()
        return min(next_pacific_midnight(now) + QUOTA_MIDNIGHT_MARGIN_SECONDS, now + float(backoff))

    @staticmethod
    def is_quota_message(message: str) -> bool:
        """Does a refusal of a valid exportData request speak of the daily limit (any wording)?"""
        return bool(_QUOTA_WORDS.search(message)) and not _REQUEST_WORDS.search(message)

    @staticmethod
    def is_no_data(job_id: str) -> bool:
        """Is this the id of an export Leanplum answered without a jobId (nothing matched)?"""
        return job_id.startswith(NO_DATA_PREFIX)

    def submit(
        self,
        *,
        start_date: str,
        end_date: str | None = None,
        start_time: int | None = None,
        end_time: int | None = None,
        export_format: str = "json",
        callback_url: str | None = None,
        s3_bucket_name: str | None = None,
        s3_access_id: str | None = None,
        s3_access_key: str | None = None,
        s3_object_prefix: str | None = None,
        compress_data: bool = False,
    ) -> str:
        """Start an export; return Leanplum's ``jobId``. Quota refusals raise ``QuotaExceeded``.

        An answer without a ``jobId`` means no data matched (the seed: a jobId "if data matching supplied
        arguments is available"): the returned id then starts with ``NO_DATA_PREFIX`` and reads as a
        FINISHED export with zero files, without asking Leanplum.
        """
        register_secret(s3_access_key)
        register_secret(s3_access_id)
        params: dict[str, Any] = {
            "startDate": start_date,
            "endDate": end_date,
            "startTime": start_time,
            "endTime": end_time,
            "exportFormat": export_format,
            "callbackUrl": callback_url,
        }
        if s3_bucket_name:
            params.update(
                s3BucketName=s3_bucket_name,
                s3AccessId=s3_access_id,
                s3AccessKey=s3_access_key,
                s3ObjectPrefix=s3_object_prefix,
                compressData="true" if compress_data else None,
            )
        try:
            payload = self.client.json(self.api_request("exportData", params, idempotent=False))
        except VendorAuthError:
            raise
        except VendorHTTPError as err:
            message = str(err).replace(f" ({err.url})", "") if err.url else str(err)
            if err.status == 429 or (400 <= err.status < 500 and self.is_quota_message(message.split(": ", 2)[-1])):
                raise QuotaExceeded(f"leanplum: export quota used up: {message}", self._quota_retry_at()) from None
            raise
        inner = unwrap(payload, "exportData")
        if inner.get("success") is False:
            message = error_message(inner)
            if self.is_quota_message(message):
                raise QuotaExceeded(f"leanplum: export quota used up: {message}", self._quota_retry_at())
            raise VendorHTTPError(self.vendor, 200, f"exportData refused: {message}")
        job_id = inner.get("jobId")
        if (job_id is None or job_id == "") and inner.get("success") is not True:
            raise VendorHTTPError(self.vendor, 200, f"exportData answer has neither a 'jobId' nor success=true (keys: {sorted(inner)})")
        if job_id is None or job_id == "":
            log.info("Leanplum: no data matches this export (no jobId in the answer): done, with zero files")
            return f"{NO_DATA_PREFIX}{uuid.uuid4().hex}"
        if not isinstance(job_id, str):
            raise VendorHTTPError(self.vendor, 200, f"exportData answer: 'jobId' is not a string: {str(job_id)[:80]!r}")
        return job_id

    # ---- status ------------------------------------------------------------------------------
    def status_request(self, job_id: str) -> Request:
        return self.api_request("getExportResults", {"jobId": job_id})

    def _no_data_job(self, job_id: str) -> ExportJob:
        return self._stamp(ExportJob(
            vendor=self.vendor, conn_id=self.conn_id, job_id=job_id, state=JobState.SUCCESS, raw_state="NO_DATA",
            message="no data matched the export", extra={"numSessions": 0, "numBytes": 0, "no_data": True},
        ))

    def get_job(self, job_id: str) -> ExportJob:
        return self._no_data_job(job_id) if self.is_no_data(job_id) else super().get_job(job_id)

    async def aget_job(self, job_id: str) -> ExportJob:
        return self._no_data_job(job_id) if self.is_no_data(job_id) else await super().aget_job(job_id)

    def _gone_job(self, job_id: str, why: str) -> ExportJob:
        """A job Leanplum no longer knows: FAILED (GONE), so the engine exports again instead of failing forever."""
        return ExportJob(
            vendor=self.vendor, conn_id=self.conn_id, job_id=job_id, state=JobState.FAILED, raw_state=GONE_STATE,
            message=f"Leanplum no longer knows export {job_id} ({why}): it expired or never existed",
        )

    def job_from_error(self, job_id: str, error: VendorHTTPError) -> ExportJob:
        if not isinstance(error, VendorAuthError) and (
            error.status in _GONE_STATUSES or (400 <= error.status < 500 and _GONE_WORDS.search(str(error)))
        ):
            return self._gone_job(job_id, str(error))
        raise error

    def parse_job(self, job_id: str, payload: Any) -> ExportJob:
        inner = unwrap(payload, "getExportResults")
        if inner.get("success") is False:
            if _GONE_WORDS.search(error_message(inner)):
                return self._gone_job(job_id, error_message(inner))
            raise VendorHTTPError(self.vendor, 200, f"getExportResults for {job_id} refused: {error_message(inner)}")
        # The public example calls the field "state", the seed's table "status": read either.
        raw = inner.get("state") if inner.get("state") is not None else inner.get("status")
        if not isinstance(raw, str):
            raise VendorHTTPError(
                self.vendor, 200, f"getExportResults for {job_id}: field 'state' (or 'status') missing or not a string"
            )
        state = map_state(raw, STATES)
        urls = inner.get("files") or []
        if not isinstance(urls, list) or not all(isinstance(u, str) and _is_url(u) for u in urls):
            raise VendorHTTPError(self.vendor, 200, f"getExportResults for {job_id}: field 'files' is not a list of URLs")
        num_sessions = inner.get("numSessions")
        num_bytes = inner.get("numBytes")
        for name, value in (("numSessions", num_sessions), ("numBytes", num_bytes)):
            if value is not None and not isinstance(value, int):
                raise VendorHTTPError(self.vendor, 200, f"getExportResults for {job_id}: field {name!r} is not an integer")
        files: list[ExportFile] = []
        if state == JobState.SUCCESS:
            self._file_urls[job_id] = list(urls)
            files = [self._file(job_id, index, url, len(urls), num_sessions) for index, url in enumerate(urls)]
        message = error_message(inner) if state == JobState.FAILED and (inner.get("error") or inner.get("message")) else None
        return ExportJob(
            vendor=self.vendor,
            conn_id=self.conn_id,
            job_id=job_id,
            state=state,
            raw_state=raw,
            files=files,
            message=message,
            extra={"numSessions": num_sessions, "numBytes": num_bytes},
        )

    def _file(self, job_id: str, index: int, url: str, count: int, num_sessions: int | None) -> ExportFile:
        """Describe one file by its index (the URL may be signed: it is never stored)."""
        base = unquote(urlsplit(url).path.rsplit("/", 1)[-1]) or f"output-{index}"
        csv_match = _CSV_NAME.search(base)
        if csv_match or base.endswith(".csv"):
            resource = csv_match.group(1) if csv_match else "sessions"
            # One folder per data type, as each type is its own table downstream.
            name = f"{resource}/{base if base.endswith('.csv') else base + '.csv'}"
            row_format = "csv"
            rows = None
        else:
            resource = "sessions"
            name = base if base.endswith((".json", ".jsonl")) else base + ".json"
            row_format = "jsonl"
            # One JSON session per line: a single-file export holds exactly numSessions lines.
            rows = num_sessions if count == 1 else None
        return ExportFile(
            vendor=self.vendor,
            conn_id=self.conn_id,
            job_id=job_id,
            key=str(index),
            name=name,
            rows=rows,
            row_format=row_format,
            resource=resource,
        )

    # ---- files -------------------------------------------------------------------------------
    def file_request(self, file: ExportFile, refresh: bool = False) -> Request:
        """Resolve the file's current (signed) URL through getExportResults; the link is not cached in XCom."""
        urls = None if refresh else self._file_urls.get(file.job_id)
        if urls is None:
            job = self.parse_job(file.job_id, self.client.json(self.status_request(file.job_id)))
            if job.state != JobState.SUCCESS:
                raise ExportError(f"leanplum: export {file.job_id} is {job.raw_state}, its files cannot be read")
            urls = self._file_urls.get(file.job_id, [])
        try:
            url = urls[int(file.key)]
        except (ValueError, IndexError):
            raise ExportError(self.file_gone_message(file, 404) or "") from None
        # a signed link is a credential: never over plain http (loopback excepted, e.g. the sandbox)
        return Request("GET", require_secure_url(url, f"export {file.job_id} files[{file.key}]"), auth=False)

    def file_gone_message(self, file: ExportFile, status: int) -> str | None:
        if status in _GONE_STATUSES:
            return (
                f"file {file.name} of Leanplum export {file.job_id} is gone (HTTP {status}): Leanplum deletes export "
                "files 24 hours after the export finished; run the export again"
            )
        return None

    # ---- UI ----------------------------------------------------------------------------------
    def check_connection(self) -> str:
        """Ask for the results of a job id that cannot exist: bad keys are refused before the lookup."""
        try:
            payload = self.client.json(self.status_request("connection_test"))
        except VendorAuthError as err:
            raise ExportError(f"Leanplum refused the appId/clientKey: {err}") from None
        except VendorHTTPError as err:
            if re.search(r"(?i)(client ?key|app ?id|unauthori|forbidden|credential)", str(err)):
                raise ExportError(f"Leanplum refused the appId/clientKey: {err}") from None
            return "Leanplum accepted the appId and clientKey"
        inner = unwrap(payload, "getExportResults")
        if inner.get("success") is False and re.search(r"(?i)(client ?key|app ?id|credential)", error_message(inner)):
            raise ExportError(f"Leanplum refused the appId/clientKey: {error_message(inner)}")
        return "Leanplum accepted the appId and clientKey"
