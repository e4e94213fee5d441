"""One retry policy, a sync client (requests) and an async client (aiohttp) that share it.

Why not tenacity around requests: the rules here are vendor-facing and must be identical in the
worker and in the triggerer (honour Retry-After, refresh a token once on 401, never repeat a submit
that may have reached the vendor, drop credentials on a cross-host redirect, keep gzip bytes as
they are). Keeping them in one place is the point of the engine.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
import requests

from airflow_export_providers.core.errors import (
    ExportError,
    SubmitOutcomeUnknown,
    TransientHTTPError,
    VendorAuthError,
    VendorHTTPError,
)
from airflow_export_providers.core.redact import SECRET_HEADERS, redact_text, redact_url

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_REDIRECTS = 5
KEEPALIVE_SECONDS = 60.0  # async clients: how long an idle pooled connection is kept for the next poll


@dataclass
class RetryPolicy:
    """Jittered exponential backoff with a bounded number of attempts."""

    max_attempts: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    max_retry_after: float = 600.0
    retry_statuses: frozenset[int] = RETRY_STATUSES

    def should_retry_status(self, status: int, idempotent: bool) -> bool:
        if status not in self.retry_statuses:
            return False
        # 429 and 503 say "not processed"; other 5xx on a submit may have created a job.
        return idempotent or status in (429, 503)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1``; Retry-After wins when the vendor sends it."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        cap = min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))
        return random.uniform(cap / 2, cap)


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


@dataclass
class Request:
    """A vendor request, described once and sent by either client."""

    method: str
    url: str
    params: dict[str, Any] | None = None
    data: Any = None
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    auth: bool = True  # attach the hook's credentials (False for presigned links)
    idempotent: bool = True
    stream: bool = False


class Auth:
    """Credentials for a vendor; the default sends nothing."""

    def headers(self) -> dict[str, str]:
        return {}

    async def aheaders(self) -> dict[str, str]:
        return self.headers()

    def invalidate(self) -> bool:
        """Forget cached credentials after a 401; True when a fresh try can succeed."""
        return False

    async def aclose(self) -> None:
        return None


def _same_origin(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.hostname, pa.port) == (pb.scheme, pb.hostname, pb.port)


def _without_credentials(headers: dict[str, str]) -> dict[str, str]:
    """A request's own headers minus those that carry credentials (Authorization, MD-API-KEY, ...)."""
    return {k: v for k, v in headers.items() if k.lower() not in SECRET_HEADERS}


def _certificate_refused(exc: BaseException) -> bool:
    """The server's TLS certificate failed verification: permanent, so never retried."""
    return isinstance(exc, aiohttp.ClientConnectorCertificateError) or "CERTIFICATE_VERIFY_FAILED" in str(exc)


def _excerpt(body: bytes | str, limit: int = 300) -> str:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = " ".join(text.split())
    return text[:limit] + ("…" if len(text) > limit else "")


ErrorDescriber = Callable[[int, bytes], str]


class _Base:
    def __init__(
        self,
        vendor: str,
        auth: Auth | None = None,
        policy: RetryPolicy | None = None,
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
        verify: bool | str = True,
        describe_error: ErrorDescriber | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.vendor = vendor
        self.auth = auth or Auth()
        self.policy = policy or RetryPolicy()
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.verify = verify
        self.describe_error = describe_error or (lambda status, body: _excerpt(body))
        self.sleep = sleep

    def _error(self, status: int, body: bytes, url: str, retry_after: float | None) -> VendorHTTPError:
        message = self.describe_error(status, body)
        cls = VendorAuthError if status == 401 else VendorHTTPError
        return cls(self.vendor, status, message, url=url, retry_after=retry_after)

    def _tls_error(self, url: str, exc: BaseException) -> ExportError:
        return ExportError(
            f"{self.vendor}: the TLS certificate of {redact_url(url)} is not trusted ({type(exc).__name__}: "
            f"certificate verify failed); verification stays on: if the host uses a private CA, name its CA file "
            f"in the connection extra ca_bundle"
        )

    def _body_redirect_error(self, status: int, url: str, target: str) -> VendorHTTPError:
        """A 307/308 to another origin would re-send the body there, and bodies may carry credentials (a SAS)."""
        return VendorHTTPError(
            self.vendor, status,
            f"redirected to another origin ({redact_url(target)}) that would receive the request body again; not followed",
            url=url,
        )

    def _after_network_error(self, req: Request, exc: BaseException, attempt: int, unsent: bool) -> float:
        """A send failed below HTTP: raise, or return the seconds to wait before the next attempt."""
        if _certificate_refused(exc):
            raise self._tls_error(req.url, exc) from None
        if not req.idempotent and not unsent:
            raise SubmitOutcomeUnknown(
                f"{self.vendor}: {req.method} {redact_url(req.url)} failed after it may have reached "
                f"the vendor ({type(exc).__name__}); not repeated to avoid a second export"
            ) from None
        if attempt >= self.policy.max_attempts:
            raise TransientHTTPError(
                f"{self.vendor}: {req.method} {redact_url(req.url)} failed {attempt} times: "
                f"{type(exc).__name__}: {redact_text(exc)}"
            ) from None
        delay = self.policy.delay(attempt)
        self._log_retry(type(exc).__name__, req.url, attempt, delay)
        return delay

    def _after_status(
        self, req: Request, status: int, headers: Any, attempt: int, refreshed: bool
    ) -> tuple[str, float | None]:
        """What to do with an answer: ("ok", None), ("refresh", None), ("retry", delay) or ("fail", retry_after)."""
        if status == 401 and req.auth and not refreshed and self.auth.invalidate():
            log.info("%s: 401 from %s, refreshing credentials once", self.vendor, redact_url(req.url))
            return "refresh", None
        if status < 400:
            return "ok", None
        retry_after = parse_retry_after(headers.get("Retry-After"))
        if self.policy.should_retry_status(status, req.idempotent) and attempt < self.policy.max_attempts:
            delay = self.policy.delay(attempt, retry_after)
            self._log_retry(f"HTTP {status}", req.url, attempt, delay)
            return "retry", delay
        return "fail", retry_after

    def _log_retry(self, what: str, url: str, attempt: int, delay: float) -> None:
        log.warning(
            "%s: %s on %s, attempt %d/%d, retrying in %.1fs",
            self.vendor, what, redact_url(url), attempt, self.policy.max_attempts, delay,
        )


class HttpClient(_Base):
    """Synchronous client used in workers (submits, status checks, streamed downloads)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.session = requests.Session()
        self.session.trust_env = False  # proxies/netrc must not add or leak credentials

    def close(self) -> None:
        self.session.close()

    def send(self, req: Request) -> requests.Response:
        attempt = 0
        refreshed = False
        while True:
            attempt += 1
            try:
                resp = self._send_following_redirects(req)
            except (requests.ConnectionError, requests.Timeout) as exc:
                unsent = isinstance(exc, requests.ConnectTimeout) or "NewConnectionError" in repr(exc)
                self.sleep(self._after_network_error(req, exc, attempt, unsent))
                continue
            action, value = self._after_status(req, resp.status_code, resp.headers, attempt, refreshed)
            if action == "ok":
                return resp
            if action == "fail":
                body = resp.content[:4096] if not req.stream else resp.raw.read(4096, decode_content=True)
                resp.close()
                raise self._error(resp.status_code, body, req.url, value)
            resp.close()
            refreshed = refreshed or action == "refresh"
            if action == "retry" and value is not None:
                self.sleep(value)

    def _send_following_redirects(self, req: Request) -> requests.Response:
        url = req.url
        send_auth = req.auth
        method = req.method
        data, json_body, params = req.data, req.json, req.params
        static = dict(req.headers)
        for _ in range(MAX_REDIRECTS + 1):
            headers = dict(static)
            if send_auth:
                headers.update(self.auth.headers())
            resp = self.session.request(
                method,
                url,
                params=params,
                data=data,
                json=json_body,
                headers=headers,
                timeout=(self.connect_timeout, self.timeout),
                stream=req.stream,
                allow_redirects=False,
                verify=self.verify,
            )
            if resp.status_code in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                target = urljoin(url, resp.headers["Location"])
                resp.close()
                cross = not _same_origin(url, target)
                if cross:
                    send_auth = False  # never carry credentials to another host, ours or the request's own
                    static = _without_credentials(static)
                if resp.status_code == 303 or (resp.status_code in (301, 302) and method == "POST"):
                    method, data, json_body = "GET", None, None
                if cross and (data is not None or json_body is not None):
                    raise self._body_redirect_error(resp.status_code, req.url, target)
                url, params = target, None
                continue
            return resp
        raise VendorHTTPError(self.vendor, 310, "too many redirects", url=req.url)

    def json(self, req: Request) -> Any:
        resp = self.send(req)
        try:
            return parse_json(self.vendor, resp.content, req.url)
        finally:
            resp.close()


def parse_json(vendor: str, body: bytes, url: str = "") -> Any:
    """Decode a JSON body or raise one clear error quoting what came instead (e.g. an HTML page)."""
    if not body or not body.strip():
        raise VendorHTTPError(vendor, 200, "empty body where JSON was expected", url=url)
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise VendorHTTPError(vendor, 200, f"invalid JSON answer: {_excerpt(body, 120)!r}", url=url) from None


@dataclass
class AsyncResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self, vendor: str, url: str = "") -> Any:
        return parse_json(vendor, self.body, url)


class _SharedPool:
    """One aiohttp connector per event loop, shared by every async client on it, closed with its last user.

    A triggerer runs thousands of triggers on one loop, each with its own client: with a connector
    each, every poll opened its own connection (idle ones close after 15 s, polls come every 30 s or
    more) and held its own socket and buffers. Shared, polls reuse the connections other triggers
    just used. Only the pool is shared: cookies, headers and auth stay per client, per request.
    """

    def __init__(self) -> None:
        self.connector: aiohttp.TCPConnector | None = None
        self.users = 0

    def acquire(self) -> aiohttp.TCPConnector:
        if self.connector is None or self.connector.closed:
            # no queue (as many connections as requests in flight); idle connections kept for 60 s instead of
            # 15 s, so that polls every 30-60 s reuse them instead of connecting again each time
            self.connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE_SECONDS)
        self.users += 1
        return self.connector

    async def release(self) -> None:
        self.users -= 1
        if self.users <= 0 and self.connector is not None:
            connector, self.connector, self.users = self.connector, None, 0
            await connector.close()


_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _SharedPool] = weakref.WeakKeyDictionary()


def _pool() -> _SharedPool:
    loop = asyncio.get_running_loop()
    pool = _POOLS.get(loop)
    if pool is None:
        pool = _POOLS[loop] = _SharedPool()
    return pool


class AsyncHttpClient(_Base):
    """Asynchronous twin for triggers: same policy, never blocks the event loop."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._session: aiohttp.ClientSession | None = None
        self._pool: _SharedPool | None = None  # the loop's shared connector this client holds a share of

    async def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            await self.close()  # gives back the share of a session closed elsewhere
            timeout = aiohttp.ClientTimeout(total=None, connect=self.connect_timeout, sock_read=self.timeout)
            self._pool = _pool()
            self._session = aiohttp.ClientSession(timeout=timeout, trust_env=False, auto_decompress=False,
                                                  connector=self._pool.acquire(), connector_owner=False)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.release()

    async def send(self, req: Request) -> AsyncResponse:
        attempt = 0
        refreshed = False
        while True:
            attempt += 1
            try:
                resp = await self._send_following_redirects(req)
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                unsent = isinstance(exc, aiohttp.ClientConnectorError)
                await asyncio.sleep(self._after_network_error(req, exc, attempt, unsent))
                continue
            action, value = self._after_status(req, resp.status, resp.headers, attempt, refreshed)
            if action == "ok":
                return resp
            if action == "fail":
                raise self._error(resp.status, resp.body[:4096], req.url, value)
            refreshed = refreshed or action == "refresh"
            if action == "retry" and value is not None:
                await asyncio.sleep(value)

    async def _send_following_redirects(self, req: Request) -> AsyncResponse:
        session = await self._get_session()
        url, method, send_auth = req.url, req.method, req.auth
        data, json_body, params = req.data, req.json, req.params
        static = dict(req.headers)
        for _ in range(MAX_REDIRECTS + 1):
            headers = dict(static)
            if send_auth:
                headers.update(await self.auth.aheaders())
            ssl: Any = None if self.verify is True else (False if self.verify is False else _ssl_context(self.verify))
            async with session.request(
                method, url, params=params, data=data, json=json_body, headers=headers,
                allow_redirects=False, ssl=ssl,
            ) as resp:
                body = await resp.read()
                if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                    target = urljoin(url, resp.headers["Location"])
                    cross = not _same_origin(url, target)
                    if cross:
                        send_auth = False
                        static = _without_credentials(static)
                    if resp.status == 303 or (resp.status in (301, 302) and method == "POST"):
                        method, data, json_body = "GET", None, None
                    if cross and (data is not None or json_body is not None):
                        raise self._body_redirect_error(resp.status, req.url, target)
                    url, params = target, None
                    continue
                if resp.headers.get("Content-Encoding", "").lower() == "gzip" and not req.stream:
                    import gzip

                    body = gzip.decompress(body)
                return AsyncResponse(resp.status, dict(resp.headers), body)
        raise VendorHTTPError(self.vendor, 310, "too many redirects", url=req.url)

    async def json(self, req: Request) -> Any:
        resp = await self.send(req)
        return resp.json(self.vendor, req.url)


def _ssl_context(cafile: str) -> Any:
    import ssl

    return ssl.create_default_context(cafile=cafile)
