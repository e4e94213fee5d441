"""Base class of every vendor hook: connection parsing, the two HTTP clients, job reading, file opening.

A vendor subclass says only: how to authenticate (``make_auth``), how to submit, which request reads
a job's status and how to parse it, and how to reach a file (``file_request``). Retries, redaction,
re-signing of expired links and Range resumes live here.
"""

from __future__ import annotations

import difflib
import importlib
import ipaddress
import logging
from collections.abc import Iterator
from typing import IO, Any, ClassVar, cast
from urllib.parse import urlsplit

import requests
from airflow.providers.common.compat.sdk import BaseHook, conf

from airflow_export_providers.core.errors import ExportInputError, VendorHTTPError
from airflow_export_providers.core.http import (
    AsyncHttpClient,
    Auth,
    HttpClient,
    Request,
    RetryPolicy,
)
from airflow_export_providers.core.job import ExportFile, ExportJob
from airflow_export_providers.core.redact import redact_url, register_secret

log = logging.getLogger(__name__)

LINK_EXPIRED_STATUSES = (400, 403)
DEFAULT_TIMEOUT = 60.0
#: Extras every hook reads (see ``timeout``, ``retry_policy``, ``verify``).
ENGINE_EXTRAS = ("timeout", "retry_max_attempts", "retry_backoff_base", "retry_backoff_max", "ca_bundle")


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


PLAIN_HTTP_SETTING = "[export_providers] allow_plain_http_hosts"
_warned_plain_http: set[str] = set()


def plain_http_hosts() -> frozenset[str]:
    """Host names an operator explicitly allowed over plain http (``[export_providers]
    allow_plain_http_hosts``, comma-separated, exact names; env
    ``AIRFLOW__EXPORT_PROVIDERS__ALLOW_PLAIN_HTTP_HOSTS``). Empty by default: meant for a sandbox reached
    by a container-network name (``sandbox`` in docker-compose.yaml), never for a vendor."""
    raw = conf.get("export_providers", "allow_plain_http_hosts", fallback="") or ""
    return frozenset(h.strip().lower() for h in raw.split(",") if h.strip())


def require_secure_url(url: str, field: str) -> str:
    """Credential-bearing hosts must be https, except loopback (the sandbox, a local proxy) and the
    hosts named in ``[export_providers] allow_plain_http_hosts``."""
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.hostname)):
        return url.rstrip("/")
    host = (parts.hostname or "").lower()
    if parts.scheme == "http" and host and host in plain_http_hosts():
        if host not in _warned_plain_http:
            _warned_plain_http.add(host)
            log.warning("plain http:// to %s is allowed by %s: credentials travel unencrypted", host, PLAIN_HTTP_SETTING)
        return url.rstrip("/")
    raise ExportInputError(
        f"{field}: {redact_url(url)!r} must be an https:// URL (plain http:// is accepted only for loopback hosts "
        f"and for hosts named in {PLAIN_HTTP_SETTING})"
    )


class SourceStream:
    """A file being downloaded: raw bytes exactly as the vendor stores them (no transparent gunzip)."""

    def __init__(self, raw: IO[bytes], *, offset: int = 0, total: int | None = None, close: Any = None) -> None:
        self.raw = raw
        self.offset = offset  # where this stream starts in the file (0 when Range was ignored)
        self.total = total  # size of the whole file when known
        self._close = close

    def read(self, n: int) -> bytes:
        return self.raw.read(n)

    def close(self) -> None:
        if self._close is not None:
            self._close()
        else:
            self.raw.close()


class _RequestsRaw:
    """Adapter: read a requests response body without letting urllib3 inflate gzip."""

    def __init__(self, resp: requests.Response) -> None:
        self.resp = resp

    def read(self, n: int) -> bytes:
        return cast(bytes, self.resp.raw.read(n, decode_content=False))

    def close(self) -> None:
        self.resp.close()


class ExportHook(BaseHook):
    """Shared behaviour of the five vendor hooks."""

    vendor: ClassVar[str] = ""
    conn_name_attr = "conn_id"
    default_conn_name: str = ""
    conn_type: str = ""
    hook_name: str = ""
    default_host: ClassVar[str] = ""
    # Secret-bearing extras that must be registered with the masker when the connection is read.
    secret_extras: ClassVar[tuple[str, ...]] = ()
    # The vendor's own extras (besides ENGINE_EXTRAS): any other extra is named in a warning, since a
    # misspelt one is otherwise silently ignored. None: the vendor does not declare them (no check).
    known_extras: ClassVar[tuple[str, ...] | None] = None

    def __init__(
        self,
        conn_id: str | None = None,
        *,
        timeout: float | None = None,
        retry_policy: RetryPolicy | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self.conn_id = conn_id or self.default_conn_name
        # None: read from the connection extras when first needed (``timeout``, ``retry_*``), else defaults.
        self._timeout = timeout
        self._retry_policy = retry_policy
        self._conn: Any = None
        self._auth: Auth | None = None
        self._client: HttpClient | None = None
        self._aclient: AsyncHttpClient | None = None

    # ---- connection -------------------------------------------------------------------------
    @property
    def conn(self) -> Any:
        if self._conn is None:
            self._set_conn(self.get_connection(self.conn_id))
        return self._conn

    async def aconnect(self) -> None:
        """Load the connection without blocking the event loop (used inside triggers)."""
        if self._conn is None:
            from airflow_export_providers.core.compat import get_async_connection

            self._set_conn(await get_async_connection(self, self.conn_id))

    def _set_conn(self, conn: Any) -> None:
        register_secret(conn.password)
        for key in self.secret_extras:
            register_secret(self.extras_of(conn).get(key))
        self._conn = conn
        self._warn_unknown_extras(self.extras_of(conn))

    def _warn_unknown_extras(self, extras: dict[str, Any]) -> None:
        if self.known_extras is None:
            return
        known = (*self.known_extras, *ENGINE_EXTRAS)
        unknown = sorted(k for k in extras if k not in known)
        if unknown:
            hints = [f"{k!r} (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(k, known, n=1)) else repr(k) for k in unknown]
            log.warning(
                "%s: connection extra(s) %s are not read by the %s hook and are ignored; known extras: %s",
                self.conn_id, ", ".join(hints), self.vendor, ", ".join(known),
            )

    @staticmethod
    def extras_of(conn: Any) -> dict[str, Any]:
        extra = conn.extra_dejson if conn is not None else {}
        return dict(extra or {})

    @property
    def extras(self) -> dict[str, Any]:
        return self.extras_of(self.conn)

    def _extra_number(self, name: str, kind: type[float] | type[int]) -> float | int | None:
        value = self.extras.get(name)
        if value is None or value == "":
            return None
        try:
            number = kind(value)
        except (TypeError, ValueError):
            number = 0
        if isinstance(value, bool) or number <= 0:
            raise ExportInputError(f"{self.conn_id}: extra {name!r} must be a positive number, got {value!r}")
        return number

    @property
    def timeout(self) -> float:
        """Read timeout (s) of every vendor call: the ``timeout`` argument, else the extra ``timeout``, else 60."""
        if self._timeout is None:
            self._timeout = float(self._extra_number("timeout", float) or DEFAULT_TIMEOUT)
        return self._timeout

    @timeout.setter
    def timeout(self, value: float) -> None:
        self._timeout = value

    @property
    def retry_policy(self) -> RetryPolicy:
        """The ``retry_policy`` argument, else one built from the extras ``retry_max_attempts``,
        ``retry_backoff_base`` and ``retry_backoff_max`` (the policy's defaults for those not set).

        Extras reach every place the hook is rebuilt (triggerer, landing), which constructor
        arguments do not.
        """
        if self._retry_policy is None:
            settings: dict[str, Any] = {}
            for field, kind in (("max_attempts", int), ("backoff_base", float), ("backoff_max", float)):
                number = self._extra_number(f"retry_{field}", kind)
                if number is not None:
                    settings[field] = number
            self._retry_policy = RetryPolicy(**settings)
        return self._retry_policy

    @retry_policy.setter
    def retry_policy(self, value: RetryPolicy) -> None:
        self._retry_policy = value

    @property
    def verify(self) -> bool | str:
        """TLS verification: on by default; the extra ``ca_bundle`` names a CA file (e.g. a private CA)."""
        return cast("bool | str", self.extras.get("ca_bundle") or True)

    @property
    def base_url(self) -> str:
        host = (self.conn.host or self.default_host or "").strip()
        if not host:
            raise ExportInputError(f"{self.conn_id}: connection field 'host' is empty and {self.vendor} has no default")
        if "://" not in host:
            host = "https://" + host
        if self.conn.port:
            parts = urlsplit(host)
            if parts.port is None:
                host = f"{parts.scheme}://{parts.hostname}:{self.conn.port}{parts.path}"
        return require_secure_url(host, f"{self.conn_id}.host")

    def url(self, path: str) -> str:
        return self.base_url + "/" + path.lstrip("/")

    # ---- HTTP --------------------------------------------------------------------------------
    def make_auth(self) -> Auth:
        """Vendor credentials; static header auth or a TokenAuth."""
        return Auth()

    def describe_error(self, status: int, body: bytes) -> str:
        """Turn an error answer into the vendor's words; override to map status codes."""
        text = body.decode("utf-8", "replace")
        return " ".join(text.split())[:300]

    @property
    def auth(self) -> Auth:
        if self._auth is None:
            self._auth = self.make_auth()
        return self._auth

    @property
    def client(self) -> HttpClient:
        if self._client is None:
            self._client = HttpClient(
                self.vendor, auth=self.auth, policy=self.retry_policy, timeout=self.timeout,
                verify=self.verify, describe_error=self.describe_error,
            )
        return self._client

    @property
    def aclient(self) -> AsyncHttpClient:
        if self._aclient is None:
            self._aclient = AsyncHttpClient(
                self.vendor, auth=self.auth, policy=self.retry_policy, timeout=self.timeout,
                verify=self.verify, describe_error=self.describe_error,
            )
        return self._aclient

    async def aclose(self) -> None:
        if self._aclient is not None:
            await self._aclient.close()
            self._aclient = None
        if self._auth is not None:
            await self._auth.aclose()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # ---- jobs (vendor part) ------------------------------------------------------------------
    def status_request(self, job_id: str) -> Request:
        raise NotImplementedError

    def parse_job(self, job_id: str, payload: Any) -> ExportJob:
        raise NotImplementedError

    def job_from_error(self, job_id: str, error: VendorHTTPError) -> ExportJob:
        """Some vendors answer a status read with an error that means a state (MX: 404 = not ready)."""
        raise error

    def cancel(self, job_id: str) -> None:
        """Cancel a vendor job where the vendor can; the default says it cannot."""
        log.info("%s: the vendor has no cancel call; job %s keeps running on its side", self.vendor, job_id)

    # ---- jobs (engine part) ------------------------------------------------------------------
    def _stamp(self, job: ExportJob) -> ExportJob:
        job.hook_class = f"{type(self).__module__}.{type(self).__qualname__}"
        job.hook_kwargs = {**self.hook_kwargs(), **job.hook_kwargs}
        return job

    def hook_kwargs(self) -> dict[str, Any]:
        """Primitive constructor arguments (besides conn_id) needed to rebuild this hook elsewhere."""
        return {}

    def get_job(self, job_id: str) -> ExportJob:
        try:
            payload = self.client.json(self.status_request(job_id))
        except VendorHTTPError as err:
            return self._stamp(self.job_from_error(job_id, err))
        return self._stamp(self.parse_job(job_id, payload))

    async def aget_job(self, job_id: str) -> ExportJob:
        await self.aconnect()
        try:
            payload = await self.aclient.json(self.status_request(job_id))
        except VendorHTTPError as err:
            return self._stamp(self.job_from_error(job_id, err))
        return self._stamp(self.parse_job(job_id, payload))

    # ---- files -------------------------------------------------------------------------------
    def file_request(self, file: ExportFile, refresh: bool = False) -> Request:
        """The GET that downloads ``file``; ``refresh`` asks for a freshly signed link."""
        raise NotImplementedError

    def file_gone_message(self, file: ExportFile, status: int) -> str | None:
        """A clear message when a status means the file is gone for good (purged, expired export)."""
        return None

    def open_file(self, file: ExportFile, offset: int = 0) -> SourceStream:
        """Open ``file`` at byte ``offset`` (Range), re-signing once if the link has expired."""
        refresh = False
        for attempt in (1, 2):
            req = self.file_request(file, refresh=refresh)
            req.stream = True
            req.headers = {**req.headers, "Accept-Encoding": "identity"}
            if offset:
                req.headers["Range"] = f"bytes={offset}-"
            try:
                resp = self.client.send(req)
            except VendorHTTPError as err:
                gone = self.file_gone_message(file, err.status)
                if gone:
                    raise VendorHTTPError(self.vendor, err.status, gone) from None
                if err.status in LINK_EXPIRED_STATUSES and attempt == 1 and not req.auth:
                    log.info("%s: link for %s refused (HTTP %s), asking for a fresh one", self.vendor, file.name, err.status)
                    refresh = True
                    continue
                raise
            start = 0
            total: int | None = file.size
            if resp.status_code == 206:
                start = offset
                content_range = resp.headers.get("Content-Range", "")
                if "/" in content_range and content_range.rsplit("/", 1)[1].isdigit():
                    total = int(content_range.rsplit("/", 1)[1])
            elif resp.headers.get("Content-Length", "").isdigit():
                total = int(resp.headers["Content-Length"])
            return SourceStream(_RequestsRaw(resp), offset=start, total=total)  # type: ignore[arg-type]
        raise AssertionError("unreachable")

    # ---- UI ----------------------------------------------------------------------------------
    def test_connection(self) -> tuple[bool, str]:
        try:
            return True, self.check_connection()
        except Exception as exc:  # the UI shows this text
            from airflow_export_providers.core.redact import redact_text

            return False, redact_text(exc)

    def check_connection(self) -> str:
        """One cheap authenticated call; return a short success message."""
        raise NotImplementedError


def iter_stream(stream: SourceStream, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    while True:
        chunk = stream.read(chunk_size)
        if not chunk:
            return
        yield chunk

def import_hook(path: str) -> type:
    """Import a hook class by path; only ExportHook subclasses are accepted."""
    module, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module), name, None)
    if not (isinstance(cls, type) and issubclass(cls, ExportHook)):
        raise ValueError(f"hook_class: {path!r} is not an ExportHook subclass")
    return cls
