"""MX Snapshots: list a snapshot's files by GUID, then download each gzip'd Avro file.

MX has no export *job* to submit: MX generates a snapshot (it can take days) and hands out a GUID
only once the snapshot exists. The engine's "job" is therefore that GUID: reading its status is the
file listing, which lists no files until the snapshot is ready and answers 410 once it is purged
(30 days after generation). A 404 means an unknown GUID or a wrong path: it fails at once.

The exact Snapshots paths are not public, so they are connection extras with defaults:
``list_path`` (``/snapshots/{guid}/files``) and ``download_path`` (``/snapshots/{guid}/files/{name}``,
used only when the listing gives names instead of URLs); nor is the listing's wrapper key
(``files_key``: a bare list, or an object whose one list holds the file entries, is read without it).
"""

from __future__ import annotations

import base64
import json
import logging
import re
import reprlib
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar
from urllib.parse import parse_qsl, quote, urljoin, urlsplit

from airflow_export_providers.core.errors import ExportError, ExportInputError, VendorHTTPError
from airflow_export_providers.core.hook import ExportHook, require_secure_url
from airflow_export_providers.core.http import Auth, Request
from airflow_export_providers.core.job import ExportFile, ExportJob, JobState
from airflow_export_providers.core.redact import redact_url, register_secret

log = logging.getLogger(__name__)

VENDOR = "mx"
ACCEPT_JSON = "application/vnd.mx.logs.v1+json"
ACCEPT_AVRO = "application/vnd.mx.logs.v1+avro"
DEFAULT_LIST_PATH = "/snapshots/{guid}/files"
DEFAULT_DOWNLOAD_PATH = "/snapshots/{guid}/files/{name}"
AUTH_STYLES = ("md-api-key", "basic")
PURGE_AFTER = timedelta(days=30)

#: Every resource a snapshot may contain (MX's names, as in ``resource_type``).
MX_RESOURCES: tuple[str, ...] = (
    "accounts", "devices", "goals", "members", "notification_profiles", "transactions", "users",
)
#: MX's documented processing order for creates and updates: users, members, accounts, transactions
#: (published by MX); the other resources only reference users/accounts, so they follow.
MX_LOAD_ORDER: tuple[str, ...] = (
    "users", "members", "accounts", "transactions", "goals", "devices", "notification_profiles",
)
#: Deletes go the other way round (children before their parents).
MX_DELETE_ORDER: tuple[str, ...] = tuple(reversed(MX_LOAD_ORDER))

_HEX_ALGORITHMS = {32: "md5", 40: "sha1", 64: "sha256"}
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
#: Wrapper keys earlier MX-shaped listings used: preferred when an answer holds several lists.
_USUAL_KEYS = ("files", "snapshot_files", "urls", "file_urls")
#: What a GUID may not contain: a path separator, whitespace or a control character.
_BAD_GUID = re.compile(r"[/\\\s\x00-\x1f\x7f]")


def normalize_resource(raw: Any) -> str | None:
    """``"Notification Profiles"`` / ``"notification_profile"`` / ``"ACCOUNTS"`` -> MX's plural snake name."""
    if not isinstance(raw, str) or not raw.strip():
        return None
    name = re.sub(r"[\s-]+", "_", raw.strip().lower())
    if name in MX_RESOURCES:
        return name
    if name + "s" in MX_RESOURCES:
        return name + "s"
    return name


def checksum_algorithm(checksum: str) -> str:
    """MX lists a hex digest without naming it; decide by length (32 hex = md5, MX's usual)."""
    return _HEX_ALGORITHMS.get(len(checksum), "md5")


def parse_time(value: Any) -> datetime | None:
    """ISO 8601 (``Z`` or offset) or epoch seconds; None when absent or unreadable."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(float(value), timezone.utc)
        except (OverflowError, OSError, ValueError):  # NaN, infinities, years beyond 9999
            return None
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        return when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    return None


class MdApiKeyAuth(Auth):
    """MX Reporting API style: ``MD-API-KEY: <api key>``."""

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key

    def headers(self) -> dict[str, str]:
        return {"MD-API-KEY": self.api_key}


class MxBasicAuth(Auth):
    """MX Platform API style: ``Authorization: Basic base64(client_id:api_key)``."""

    def __init__(self, client_id: str, api_key: str) -> None:
        self.value = "Basic " + base64.b64encode(f"{client_id}:{api_key}".encode()).decode("ascii")
        register_secret(self.value.split(" ", 1)[1])

    def headers(self) -> dict[str, str]:
        return {"Authorization": self.value}


class MxSnapshotsHook(ExportHook):
    """MX Snapshots API: ``login`` = client id, ``password`` = API key, ``host`` = the logs host.

    Extras: ``auth_style`` (``md-api-key`` default, or ``basic``), ``list_path``, ``download_path``,
    ``files_key``.
    """

    vendor: ClassVar[str] = VENDOR
    conn_type = "mx_snapshots"
    default_conn_name = "mx_snapshots_default"
    hook_name = "MX Snapshots"
    default_host: ClassVar[str] = "https://logs.moneydesktop.com"
    known_extras: ClassVar[tuple[str, ...] | None] = ("auth_style", "list_path", "download_path", "files_key")

    # ---- settings ----------------------------------------------------------------------------
    @property
    def auth_style(self) -> str:
        style = str(self.extras.get("auth_style") or "md-api-key").strip().lower()
        if style not in AUTH_STYLES:
            raise ExportInputError(
                f"{self.conn_id}: extra 'auth_style' is {style!r}; accepted values: {', '.join(AUTH_STYLES)}"
            )
        return style

    def _path(self, extra: str, default: str, needs: tuple[str, ...]) -> str:
        path = str(self.extras.get(extra) or default)
        missing = [f"{{{n}}}" for n in needs if f"{{{n}}}" not in path]
        if missing:
            raise ExportInputError(f"{self.conn_id}: extra {extra!r} ({path!r}) must contain {' and '.join(missing)}")
        return path

    @property
    def list_path(self) -> str:
        return self._path("list_path", DEFAULT_LIST_PATH, ("guid",))

    @property
    def download_path(self) -> str:
        return self._path("download_path", DEFAULT_DOWNLOAD_PATH, ("guid", "name"))

    @property
    def files_key(self) -> str | None:
        """The listing's key of the file entries when the connection names it (extra ``files_key``).

        Read from the connection already loaded (a listing is parsed only after it was fetched).
        """
        key = self.extras_of(self._conn).get("files_key")
        if key is None or key == "":
            return None
        if not isinstance(key, str) or not key.strip():
            raise ExportInputError(f"{self.conn_id}: extra 'files_key' must be the name of the listing's list of files, got {key!r}")
        return key.strip()

    def make_auth(self) -> Auth:
        api_key = self.conn.password
        if not api_key:
            raise ExportInputError(f"{self.conn_id}: connection field 'password' (the MX API key) is empty")
        if self.auth_style == "basic":
            if not self.conn.login:
                raise ExportInputError(f"{self.conn_id}: auth_style 'basic' needs the client id in the connection field 'login'")
            return MxBasicAuth(self.conn.login, api_key)
        return MdApiKeyAuth(api_key)

    def describe_error(self, status: int, body: bytes) -> str:
        detail = super().describe_error(status, body)
        try:
            payload = json.loads(body)
            if isinstance(payload, dict):
                err = payload.get("error")
                detail = str(err.get("message") if isinstance(err, dict) else err or payload.get("message") or detail)
        except (ValueError, UnicodeDecodeError):
            pass
        words = {
            401: f"MX rejected the credentials (auth_style {self._style_or_unknown()}: check the client id / API key)",
            403: "MX refused access to this snapshot (is the client allowed to use the Snapshots API?)",
            404: "not found",
            406: "MX does not serve this media type (Accept header)",
            410: "the snapshot was purged (MX deletes snapshot files 30 days after generation)",
        }
        if status in words:
            return f"{words[status]}: {detail}" if detail else words[status]
        return detail

    def _style_or_unknown(self) -> str:
        try:
            return self.auth_style
        except ExportInputError:
            return "unknown"

    # ---- the "job" is the snapshot GUID --------------------------------------------------------
    @staticmethod
    def check_guid(guid: Any) -> str:
        """The GUID as MX handed it out; one error for what cannot be one (before any call to MX).

        A template that rendered nothing (``''``, ``'None'``), a path separator or ``..`` (it would
        move the listing to another path), whitespace and control characters are refused.
        """
        expected = "expected the GUID MX handed out, e.g. 'CSS-1234'"
        if not isinstance(guid, str) or not guid.strip() or guid.strip() in ("None", "null"):
            raise ExportInputError(
                f"snapshot_guid: {expected}, got {guid!r} (an empty value or a template that rendered None)"
            )
        if _BAD_GUID.search(guid) or ".." in guid:
            raise ExportInputError(
                f"snapshot_guid: {reprlib.repr(guid)} is not a GUID: {expected}, without '/', '\\', '..', "
                "whitespace or control characters"
            )
        return guid

    def listing_url(self, guid: str) -> str:
        return self.url(self.list_path.format(guid=quote(self.check_guid(guid), safe="")))

    def status_request(self, job_id: str) -> Request:
        return Request("GET", self.listing_url(job_id), headers={"Accept": ACCEPT_JSON})

    # ---- paginated listings ------------------------------------------------------------------
    # MX's APIs page long lists (``?page=N`` and an answer carrying ``pagination.total_pages``):
    # reading only the first page would silently drop files, so every page is read and merged.
    def _page_request(self, guid: str, page: int) -> Request:
        req = self.status_request(guid)
        req.params = {"page": page}
        return req

    def get_job(self, job_id: str) -> ExportJob:
        try:
            first = self.client.json(self.status_request(job_id))
            pages = [self.client.json(self._page_request(job_id, n)) for n in _more_pages(first)]
        except VendorHTTPError as err:
            return self._stamp(self.job_from_error(job_id, err))
        return self._stamp(self._parse_listing(job_id, *self._merge_pages(first, pages)))

    async def aget_job(self, job_id: str) -> ExportJob:
        await self.aconnect()
        try:
            first = await self.aclient.json(self.status_request(job_id))
            pages = [await self.aclient.json(self._page_request(job_id, n)) for n in _more_pages(first)]
        except VendorHTTPError as err:
            return self._stamp(self.job_from_error(job_id, err))
        return self._stamp(self._parse_listing(job_id, *self._merge_pages(first, pages)))

    def job_from_error(self, job_id: str, error: VendorHTTPError) -> ExportJob:
        if error.status == 404:
            raise VendorHTTPError(VENDOR, 404, self.unknown_guid_message(job_id)) from None
        if error.status == 410:
            return self._job(job_id, JobState.FAILED, "purged", self.purged_message(job_id))
        raise error

    def unknown_guid_message(self, guid: str) -> str:
        """One line for a 404 on the listing: MX hands out a GUID only once its snapshot exists."""
        return (
            f"MX has no snapshot {guid!r} at listing path {self.list_path!r} on {redact_url(self.base_url)} (404 Not Found): "
            "MX hands out a GUID only once the snapshot exists, so the GUID may be mistyped, or the connection "
            f"{self.conn_id!r} has a wrong host or path extras (list_path)"
        )

    @staticmethod
    def purged_message(guid: str, generated: datetime | None = None) -> str:
        when = f" (generated {generated.isoformat()})" if generated else ""
        return (
            f"MX snapshot {guid}{when} was purged: MX deletes snapshot files 30 days after generation; "
            "ask MX for a new snapshot"
        )

    def _job(self, guid: str, state: JobState, raw: str, message: str | None = None, **kwargs: Any) -> ExportJob:
        return ExportJob(vendor=VENDOR, conn_id=self.conn_id, job_id=guid, state=state, raw_state=raw, message=message, **kwargs)

    def parse_job(self, job_id: str, payload: Any) -> ExportJob:
        return self._parse_listing(job_id, *self._entries(payload))

    def _parse_listing(self, job_id: str, entries: list[Any], meta: dict[str, Any]) -> ExportJob:
        generated = parse_time(meta.get("generated_at") or meta.get("created_at"))
        extra: dict[str, Any] = {"snapshot_guid": job_id}
        if generated is not None:
            extra["generated_at"] = generated.isoformat()
            if datetime.now(timezone.utc) - generated > PURGE_AFTER:
                return self._job(job_id, JobState.FAILED, "purged", self.purged_message(job_id, generated), extra=extra)
        if not entries:
            return self._job(job_id, JobState.PENDING, "not_ready", "snapshot lists no files yet", extra=extra)
        files = [self._file(job_id, i, entry) for i, entry in enumerate(entries)]
        names = [f.name for f in files]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise VendorHTTPError(VENDOR, 200, f"snapshot {job_id} lists the same file name twice: {', '.join(duplicates)}")
        extra["resources"] = sorted({f.resource for f in files if f.resource})
        return self._job(job_id, JobState.SUCCESS, "ready", None, files=order_files(files), extra=extra)

    def _entries(self, payload: Any) -> tuple[list[Any], dict[str, Any]]:
        """The file entries and the snapshot metadata, from a bare list or an object holding one.

        MX does not publish the wrapper key: with the extra ``files_key`` that key is read; without
        it, the one list in the object is the list of files (when there are several, the usual
        ``files`` / ``snapshot_files`` / ``urls`` / ``file_urls``, else an error asking for the extra).
        """
        if isinstance(payload, list):
            return payload, {}
        if not isinstance(payload, dict):
            raise VendorHTTPError(VENDOR, 200, f"listing: expected a JSON object or list, got {type(payload).__name__}")
        meta: dict[str, Any] = {k: v for k, v in payload.items() if not isinstance(v, (list, dict))}
        snapshot = payload.get("snapshot")
        if isinstance(snapshot, dict):
            meta.update(snapshot)
        key = self.files_key
        if key is None:
            lists = [k for k, v in payload.items() if isinstance(v, list)]
            usual = [k for k in _USUAL_KEYS if k in payload]
            if len(lists) == 1:
                key = lists[0]
            elif len(usual) == 1:
                key = usual[0]
            else:
                fields = ", ".join(repr(k) for k in payload) or "none"
                why = f"several lists ({', '.join(map(repr, lists))})" if lists else "no list of file entries (such as 'files')"
                raise VendorHTTPError(
                    VENDOR, 200,
                    f"listing: the answer has {why} (fields: {fields}); name the key of the file entries in the "
                    f"connection extra 'files_key'",
                )
        if key not in payload:
            fields = ", ".join(repr(k) for k in payload) or "none"
            raise VendorHTTPError(VENDOR, 200, f"listing: no {key!r} field in the answer (fields: {fields}; extra 'files_key')")
        entries = payload[key]
        if entries is None:
            return [], meta
        if not isinstance(entries, list):
            raise VendorHTTPError(VENDOR, 200, f"listing: field {key!r} should be a list, got {type(entries).__name__}")
        return entries, meta

    def _merge_pages(self, first: Any, pages: list[Any]) -> tuple[list[Any], dict[str, Any]]:
        """One listing from several pages: the entries of all pages, the metadata of the first."""
        entries, meta = self._entries(first)
        merged = list(entries)
        for page in pages:
            merged.extend(self._entries(page)[0])
        return merged, meta

    def _file(self, guid: str, index: int, entry: Any) -> ExportFile:
        where = f"listing: files[{index}]"
        if isinstance(entry, str):
            entry = {"url": entry}
        if not isinstance(entry, dict):
            raise VendorHTTPError(VENDOR, 200, f"{where}: expected an object or a URL, got {type(entry).__name__}")
        location = entry.get("url") or entry.get("href") or entry.get("download_url")
        raw_name = entry.get("name")
        if location is not None and not isinstance(location, str):
            raise VendorHTTPError(VENDOR, 200, f"{where}: field 'url' should be a string")
        if location:
            try:
                _ = urlsplit(location).port  # urlsplit and its port refuse e.g. "https://[" or ":99999"
            except ValueError:
                raise VendorHTTPError(VENDOR, 200, f"{where}: field 'url' is not a URL") from None
        if not location and not raw_name:
            raise VendorHTTPError(VENDOR, 200, f"{where}: neither 'url' nor 'name' is present")
        if location and urlsplit(location).query:
            # A signed link: never store it (XCom); resolve it again from the listing at download time.
            _register_query_secrets(location)
            key, by = str(raw_name or index), "relist"
        elif location:
            key, by = location, "url"
        else:
            key, by = str(raw_name), "name"
        base = str(raw_name) if raw_name else urlsplit(location or "").path.rstrip("/").rsplit("/", 1)[-1]
        base = _SAFE_NAME.sub("_", base.rsplit("/", 1)[-1]).lstrip(".") or f"file-{index}"
        resource = normalize_resource(entry.get("resource_type") or entry.get("resource"))
        checksum = entry.get("checksum")
        if checksum is not None and not isinstance(checksum, str):
            raise VendorHTTPError(VENDOR, 200, f"{where}: field 'checksum' should be a hex string")
        return ExportFile(
            vendor=VENDOR,
            conn_id=self.conn_id,
            job_id=guid,
            key=key,
            name=f"{resource}/{base}" if resource else base,
            size=_count(entry.get("file_size"), f"{where}.file_size"),
            rows=_count(entry.get("number_of_records"), f"{where}.number_of_records"),
            checksum=checksum.lower() if checksum else None,
            checksum_algorithm=checksum_algorithm(checksum) if checksum else None,
            row_format="avro",
            compression="gzip",
            resource=resource,
            extra={"locate_by": by, "file_guid": entry.get("guid"), "file_name": raw_name},
        )

    # ---- files -------------------------------------------------------------------------------
    def file_request(self, file: ExportFile, refresh: bool = False) -> Request:
        by = file.extra.get("locate_by", "url")
        if by == "relist":
            target = self._relisted_url(file)
        elif by == "name":
            target = self.url(self.download_path.format(guid=quote(file.job_id, safe=""), name=quote(file.key, safe="")))
        else:
            target = urljoin(self.base_url + "/", file.key)
        target = require_secure_url(target, f"{self.conn_id}: file URL")
        # Credentials go only to the MX host itself, never to another origin a listing names.
        same = _origin(target) == _origin(self.base_url)
        return Request("GET", target, headers={"Accept": ACCEPT_AVRO}, auth=same)

    def _relisted_url(self, file: ExportFile) -> str:
        first = self.client.json(self.status_request(file.job_id))
        pages = [self.client.json(self._page_request(file.job_id, n)) for n in _more_pages(first)]
        entries, _ = self._merge_pages(first, pages)
        for i, entry in enumerate(entries):
            if isinstance(entry, dict) and str(entry.get("name") or i) == file.key:
                url = entry.get("url") or entry.get("href") or entry.get("download_url")
                if isinstance(url, str) and url:
                    _register_query_secrets(url)
                    return urljoin(self.base_url + "/", url)
        raise VendorHTTPError(VENDOR, 404, f"file {file.name} is no longer listed in snapshot {file.job_id}")

    def file_gone_message(self, file: ExportFile, status: int) -> str | None:
        if status == 410:
            return f"{file.name}: " + self.purged_message(file.job_id)
        return None

    def check_connection(self) -> str:
        """GET the listing root (the list path before ``{guid}``); if that is not served (404), list a
        probe GUID instead. Only a 2xx proves the credentials were accepted; 401/403 raise MX's words,
        and a 404 on both says MX was reached but the credentials could not be checked."""
        root = self.list_path.split("{guid}", 1)[0].rstrip("/") or "/"
        try:
            self.client.send(Request("GET", self.url(root), headers={"Accept": ACCEPT_JSON})).close()
        except VendorHTTPError as err:
            if err.status != 404:
                raise
            try:
                self.client.send(self.status_request("CONNECTION-TEST")).close()
            except VendorHTTPError as probe:
                if probe.status not in (404, 410):
                    raise
                raise ExportError(
                    f"reached MX at {redact_url(self.base_url)}, but could not check the credentials: the listing root "
                    f"{root!r} and a probe listing ({self.list_path!r}) both answered HTTP {probe.status}, and MX checks "
                    "them only on a snapshot that exists; list a real snapshot GUID to be sure (wrong credentials then "
                    "answer 401/403)"
                ) from None
        return f"MX accepted the credentials ({self.auth_style}) at {self.base_url}"


MAX_PAGES = 10_000


def _more_pages(payload: Any) -> range:
    """Pages still to read after ``payload`` (none when the answer carries no pagination)."""
    info = payload.get("pagination") if isinstance(payload, dict) else None
    if not isinstance(info, dict):
        return range(0)
    try:
        current = int(info.get("current_page") or 1)
        total = int(info.get("total_pages") or 1)
    except (TypeError, ValueError, OverflowError):
        raise VendorHTTPError(VENDOR, 200, f"listing: unreadable pagination {reprlib.repr(info)}") from None
    if total > MAX_PAGES:
        raise VendorHTTPError(VENDOR, 200, f"listing: pagination.total_pages {total} is beyond {MAX_PAGES}")
    if current < 1:  # else range() below would ask for billions of pages
        raise VendorHTTPError(VENDOR, 200, f"listing: pagination.current_page {reprlib.repr(current)} is not a page number")
    return range(current + 1, total + 1)


def _register_query_secrets(url: str) -> None:
    """Query values of a listed link are signatures: mask them in every log line (urllib3 logs paths)."""
    for _key, value in parse_qsl(urlsplit(url).query, keep_blank_values=False):
        register_secret(value)


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    return parts.scheme, parts.hostname, port


def _count(value: Any, field: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise VendorHTTPError(VENDOR, 200, f"{field} should be a whole number, got {reprlib.repr(value)}")
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        raise VendorHTTPError(VENDOR, 200, f"{field} should be a whole number, got {reprlib.repr(value)}") from None
    if number < 0 or (isinstance(value, float) and value != number):
        raise VendorHTTPError(VENDOR, 200, f"{field} should be a whole number >= 0, got {reprlib.repr(value)}")
    return number


def order_files(files: list[ExportFile], order: tuple[str, ...] = MX_LOAD_ORDER) -> list[ExportFile]:
    """Files sorted by MX's load order (stable within a resource; unknown resources last)."""
    rank = {name: i for i, name in enumerate(order)}
    return sorted(files, key=lambda f: rank.get(f.resource or "", len(rank)))
