"""Security of the five vendors: credentials go only where they belong, TLS is verified, secrets leak nowhere.

Real servers on loopback throughout: small recording HTTP(S) servers (two origins for redirects, one
with a self-signed certificate made with ``cryptography``), the sandbox, moto and Azurite, and
``dag.test()`` against the metadata DB. Every secret used here is registered with
``tests.support.secrets`` so the suite-wide scan also looks for it in logs and captured output.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import secrets
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from airflow_export_providers.core.errors import ExportError, ExportInputError
from airflow_export_providers.core.hook import ExportHook
from airflow_export_providers.core.http import AsyncHttpClient, Auth, HttpClient, Request, RetryPolicy
from airflow_export_providers.hooks.indicative import IndicativeHook
from airflow_export_providers.hooks.leanplum import LeanplumHook
from airflow_export_providers.hooks.mobile_engagement import MobileEngagementHook
from airflow_export_providers.hooks.mx import MxSnapshotsHook
from airflow_export_providers.hooks.pond import PondHook
from airflow_export_providers.sandbox.mobile_engagement import make_tls_material
from tests.support.secrets import register

pytestmark = pytest.mark.timeout(180)

NO_RETRY = RetryPolicy(max_attempts=1)
SECRET_HEADER_NAMES = {"authorization", "md-api-key", "x-api-key", "proxy-authorization", "cookie"}


# ---- recording loopback servers ------------------------------------------------------------------------
class Recorder:
    """A tiny HTTP(S) server that records every request and can redirect (``/redirect?to=..&code=..``)."""

    def __init__(self, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        self.seen: list[dict[str, Any]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                recorder.seen.append({"method": self.command, "path": parts.path, "query": parts.query,
                                      "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
                if parts.path == "/redirect":
                    query = parse_qs(parts.query)
                    self.send_response(int(query.get("code", ["302"])[0]))
                    self.send_header("Location", query["to"][0])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                payload = json.dumps({"ok": True, "path": parts.path}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _handle  # http.server calls do_<METHOD>

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer((host, 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.scheme = "https" if tls is not None else "http"
        self.host = host
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def url(self, path: str = "/", host: str | None = None) -> str:
        return f"{self.scheme}://{host or self.host}:{self.port}{path}"

    def start(self) -> Recorder:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def secret_headers(self, path: str) -> list[dict[str, str]]:
        return [{k: v for k, v in r["headers"].items() if k in SECRET_HEADER_NAMES} for r in self.seen if r["path"] == path]


@pytest.fixture
def origin_a() -> Iterator[Recorder]:
    server = Recorder().start()
    yield server
    server.stop()


@pytest.fixture
def origin_b() -> Iterator[Recorder]:
    server = Recorder().start()
    yield server
    server.stop()


class StaticBearer(Auth):
    def __init__(self, token: str) -> None:
        self.token = token

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def a_secret(name: str) -> str:
    return register(f"security:{name}", f"{name}-{secrets.token_urlsafe(18)}")


# ---- no credential across a redirect to another host ---------------------------------------------------
def _redirect_cases(a: Recorder, b: Recorder) -> list[tuple[str, str]]:
    """(start URL, where it ends): another port, another host name for the same address, same origin."""
    return [
        (a.url(f"/redirect?to={b.url('/landing')}&code=302"), "cross"),
        (a.url(f"/redirect?to={b.url('/landing', host='localhost')}&code=307"), "cross"),
        (a.url("/redirect?to=/landing&code=302"), "same"),
    ]


def _request(bearer: bool, static: dict[str, str]) -> Request:
    return Request("GET", "", headers={"Accept": "application/json", **static}, auth=bearer)


@pytest.mark.parametrize("client_kind", ["sync", "async"])
def test_credentials_never_follow_a_redirect_to_another_host(origin_a: Recorder, origin_b: Recorder, client_kind: str) -> None:
    token, api_key, basic = a_secret("bearer"), a_secret("md-api-key"), a_secret("basic")
    static = {"MD-API-KEY": api_key, "X-Api-Key": api_key, "Proxy-Authorization": f"Basic {basic}"}
    for start, where in _redirect_cases(origin_a, origin_b):
        origin_a.seen.clear()
        origin_b.seen.clear()
        for bearer, headers in ((True, static), (False, {"Authorization": f"Basic {basic}"})):  # hook auth; POND token style
            req = _request(bearer, headers)
            req.url = start
            if client_kind == "sync":
                client = HttpClient("sec", auth=StaticBearer(token), policy=NO_RETRY)
                assert client.json(req)["ok"] is True
                client.close()
            else:
                async def go(r: Request = req) -> Any:
                    aclient = AsyncHttpClient("sec", auth=StaticBearer(token), policy=NO_RETRY)
                    try:
                        return await aclient.json(r)
                    finally:
                        await aclient.close()

                assert asyncio.run(go())["ok"] is True
        target = origin_b if where == "cross" else origin_a
        landed = [r for r in target.seen if r["path"] == "/landing"]
        assert len(landed) == 2, f"{where}: {[r['path'] for r in target.seen]}"
        first = origin_a.seen[0]["headers"]
        assert first["authorization"] == f"Bearer {token}" and first["md-api-key"] == api_key  # sent to the origin asked
        for record in landed:
            assert record["headers"].get("accept") == "application/json"  # harmless headers do follow
            leaked = {k: v for k, v in record["headers"].items() if k in SECRET_HEADER_NAMES}
            if where == "cross":
                assert leaked == {}, f"credentials followed a redirect to another host: {sorted(leaked)}"
        if where == "same":
            assert landed[0]["headers"]["authorization"] == f"Bearer {token}"
            assert landed[0]["headers"]["md-api-key"] == api_key
            assert landed[1]["headers"]["authorization"] == f"Basic {basic}"


@pytest.mark.parametrize("client_kind", ["sync", "async"])
def test_a_request_body_is_never_re_sent_to_another_host(origin_a: Recorder, origin_b: Recorder, client_kind: str) -> None:
    """A submit's body may hold a credential (Mobile Engagement's containerUrl SAS): a 307/308 to another
    origin is not followed; on the same origin it is, and a 302/303 turns into a GET without the body."""
    from airflow_export_providers.core.errors import VendorHTTPError

    sas = a_secret("container-sas")

    def post(url: str) -> Any:
        req = Request("POST", url, json={"containerUrl": f"https://acct.blob.core.windows.net/c?sig={sas}"}, idempotent=False)
        if client_kind == "sync":
            client = HttpClient("sec", policy=NO_RETRY)
            try:
                return client.json(req)
            finally:
                client.close()

        async def go() -> Any:
            aclient = AsyncHttpClient("sec", policy=NO_RETRY)
            try:
                return await aclient.json(req)
            finally:
                await aclient.close()

        return asyncio.run(go())

    for code in (307, 308):
        with pytest.raises(VendorHTTPError, match="another origin") as caught:
            post(origin_a.url(f"/redirect?to={origin_b.url('/submit')}&code={code}"))
        assert sas not in str(caught.value)
    assert origin_b.seen == []
    assert post(origin_a.url("/redirect?to=/submit&code=307"))["ok"] is True  # same origin: re-sent as asked
    assert sas.encode() in origin_a.seen[-1]["body"] and origin_a.seen[-1]["method"] == "POST"
    assert post(origin_a.url(f"/redirect?to={origin_b.url('/done')}&code=303"))["ok"] is True
    assert [(r["method"], r["body"]) for r in origin_b.seen] == [("GET", b"")]


def test_mx_api_key_does_not_follow_a_cross_host_redirect(origin_a: Recorder, origin_b: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    """MX's MD-API-KEY (the hook's own auth) reaches the MX host only, not where a redirect points."""
    from tests.conftest import set_connection

    key = a_secret("mx-key")
    set_connection(monkeypatch, "mx_sec", {"conn_type": "mx_snapshots", "host": origin_a.url(""), "password": key,
                                           "extra": {"list_path": "/redirect?guid={guid}&to=" + origin_b.url("/listing")}})
    hook = MxSnapshotsHook("mx_sec", retry_policy=NO_RETRY)
    with pytest.raises(ExportError):
        hook.get_job("CSS-1")  # {"ok": true} is no listing: one clear error, but the headers are what matter here
    assert origin_a.seen[0]["headers"]["md-api-key"] == key
    assert origin_b.secret_headers("/listing") == [{}]
    hook.close()


# ---- TLS verification is on by default -----------------------------------------------------------------
@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A server certificate from a throw-away CA that nothing trusts (the sandbox's own TLS helper)."""
    ca, cert, key = make_tls_material(tmp_path_factory.mktemp("tls"))
    return SimpleNamespace(ca=ca, cert=cert, key=key)


@pytest.fixture
def tls_server(self_signed: SimpleNamespace) -> Iterator[Recorder]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(self_signed.cert, self_signed.key)
    server = Recorder(tls=context).start()
    yield server
    server.stop()


@pytest.mark.parametrize("client_kind", ["sync", "async"])
def test_clients_refuse_an_untrusted_certificate_at_once(tls_server: Recorder, self_signed: SimpleNamespace, client_kind: str) -> None:
    token = a_secret("tls-bearer")
    url = tls_server.url("/status?clientKey=" + token)

    def call(verify: bool | str) -> Any:
        policy = RetryPolicy(max_attempts=3, backoff_base=5)  # a retry would take seconds: there must be none
        if client_kind == "sync":
            client = HttpClient("sec", auth=StaticBearer(token), policy=policy, verify=verify)
            try:
                return client.json(Request("GET", url))
            finally:
                client.close()

        async def go() -> Any:
            aclient = AsyncHttpClient("sec", auth=StaticBearer(token), policy=policy, verify=verify)
            try:
                return await aclient.json(Request("GET", url))
            finally:
                await aclient.close()

        return asyncio.run(asyncio.wait_for(go(), 20))

    with pytest.raises(ExportError) as caught:
        call(True)
    message = str(caught.value)
    assert "not trusted" in message and "ca_bundle" in message and token not in message
    assert tls_server.seen == [], "nothing may be sent over an unverified connection"
    assert call(str(self_signed.ca))["ok"] is True  # the same server, trusted through a CA file
    assert len(tls_server.seen) == 1 and tls_server.seen[0]["headers"]["authorization"] == f"Bearer {token}"


def _vendor_conn(vendor: str, host: str, **extra: Any) -> dict[str, Any]:
    password = a_secret(f"{vendor}-password")
    conn: dict[str, Any] = {"host": host, "login": "client-id", "password": password, "extra": dict(extra)}
    if vendor == "pond":
        conn["extra"].setdefault("token_url", host + "/oauth2/token")
    if vendor == "mobile_engagement":
        conn["extra"] = {"tenant_id": "t", "subscription_id": "s", "resource_group": "g", "app_collection": "c",
                         "app_name": "a", "authority_host": host, **extra}
    return conn


VENDOR_HOOKS: dict[str, type[ExportHook]] = {
    "pond": PondHook, "leanplum": LeanplumHook, "indicative": IndicativeHook, "mx": MxSnapshotsHook,
    "mobile_engagement": MobileEngagementHook,
}


def _hook(monkeypatch: pytest.MonkeyPatch, vendor: str, conn: dict[str, Any]) -> Any:
    from tests.conftest import set_connection

    cls = VENDOR_HOOKS[vendor]
    set_connection(monkeypatch, f"{vendor}_sec", {"conn_type": cls.conn_type, **conn})
    return cls(f"{vendor}_sec", retry_policy=RetryPolicy(max_attempts=3, backoff_base=5))


@pytest.mark.parametrize("vendor", sorted(VENDOR_HOOKS))
def test_every_vendor_refuses_an_untrusted_certificate_by_default(
    tls_server: Recorder, self_signed: SimpleNamespace, monkeypatch: pytest.MonkeyPatch, vendor: str,
) -> None:
    """Host, POND token URL and Azure AD authority all point at a self-signed server: refused, nothing sent."""
    conn = _vendor_conn(vendor, tls_server.url("").rstrip("/"))
    hook = _hook(monkeypatch, vendor, conn)
    assert hook.verify is True and hook.client.verify is True
    with pytest.raises(ExportError) as caught:
        hook.get_job("job-1")
    message = str(caught.value)
    assert "ca_bundle" in message and conn["password"] not in message
    assert tls_server.seen == []
    hook.close()
    if vendor == "mobile_engagement":
        return  # azure-identity's own transport: its CA setting is covered in test_mobile_engagement.py
    trusted = _hook(monkeypatch, vendor, {**conn, "extra": {**conn["extra"], "ca_bundle": str(self_signed.ca)}})
    assert trusted.verify == str(self_signed.ca)
    with pytest.raises(ExportError):  # {"ok": true} is no job, but the request went through
        trusted.get_job("job-1")
    assert tls_server.seen, "with the CA named in ca_bundle the same server is reached"
    trusted.close()


@pytest.mark.parametrize("vendor", ["indicative", "mx", "pond"])
def test_trigger_reports_an_untrusted_certificate_as_one_error_event(
    tls_server: Recorder, monkeypatch: pytest.MonkeyPatch, vendor: str,
) -> None:
    import time

    from airflow_export_providers.triggers.export_job import ExportJobTrigger

    conn = _vendor_conn(vendor, tls_server.url("").rstrip("/"))
    hook = _hook(monkeypatch, vendor, conn)
    trigger = ExportJobTrigger(hook_class=f"{type(hook).__module__}.{type(hook).__qualname__}", conn_id=hook.conn_id,
                               job_id="job-1", poll_interval=0.1, deadline=time.time() + 3600)

    async def run() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    (event,) = asyncio.run(asyncio.wait_for(run(), 30))
    assert event["status"] == "error" and "ca_bundle" in event["message"] and conn["password"] not in event["message"]
    assert tls_server.seen == []


# ---- plain http:// is refused for credential-bearing hosts, loopback excepted ------------------------------
from hypothesis import given, settings  # noqa: E402 - used by this section only
from hypothesis import strategies as st  # noqa: E402

from airflow_export_providers.core.hook import is_loopback, require_secure_url  # noqa: E402
from airflow_export_providers.core.job import ExportFile  # noqa: E402

REMOTE_HOSTS = st.one_of(
    st.from_regex(r"[a-z][a-z0-9-]{0,12}(\.[a-z]{2,6}){1,2}", fullmatch=True).filter(lambda h: not h.startswith("localhost")),
    st.ip_addresses(v=4).filter(lambda ip: not ip.is_loopback).map(str),
    st.sampled_from(["localhost.example.com", "127.0.0.1.nip.io", "127.1", "0.0.0.0", "10.0.0.1", "[::ffff:8.8.8.8]"]),
)
LOOPBACK = ["http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:9000", "http://127.255.0.9"]


@settings(max_examples=60, deadline=None)
@given(host=REMOTE_HOSTS)
def test_plain_http_to_a_remote_host_is_refused(host: str) -> None:
    with pytest.raises(ExportInputError, match=r"^field: .*must be an https:// URL"):
        require_secure_url(f"http://{host}/path?key=k", "field")
    assert require_secure_url(f"https://{host}/path", "field") == f"https://{host}/path"


def _plain(vendor: str, **extra: Any) -> dict[str, Any]:
    conn = _vendor_conn(vendor, "https://vendor.example.com", **extra)
    return conn


PLAIN_HTTP_CASES = [
    ("pond", {"host": "http://api.example.com"}, "pond_sec.host"),
    ("pond", {"extra": {"token_url": "http://auth.example.com/oauth2/token"}}, "token_url"),
    ("leanplum", {"host": "http://api.leanplum.example"}, "leanplum_sec.host"),
    ("indicative", {"host": "http://query.example.com"}, "indicative_sec.host"),
    ("mx", {"host": "http://logs.example.com"}, "mx_sec.host"),
    ("mobile_engagement", {"host": "http://management.example.com"}, "mobile_engagement_sec.host"),
    ("mobile_engagement", {"extra": {"authority_host": "http://login.example.com"}}, "authority_host"),
]


@pytest.mark.parametrize(("vendor", "override", "field"), PLAIN_HTTP_CASES, ids=[f"{v}:{f}" for v, _, f in PLAIN_HTTP_CASES])
def test_every_vendor_refuses_plain_http_before_sending_anything(
    monkeypatch: pytest.MonkeyPatch, vendor: str, override: dict[str, Any], field: str,
) -> None:
    conn = _plain(vendor)
    conn = {**conn, **{k: v for k, v in override.items() if k != "extra"}}
    conn["extra"] = {**conn["extra"], **override.get("extra", {})}
    hook = _hook(monkeypatch, vendor, conn)
    with pytest.raises(ExportInputError) as caught:
        hook.get_job("job-1")  # the host is checked before any connection is opened (no server exists there)
    assert field in str(caught.value) and "https://" in str(caught.value) and conn["password"] not in str(caught.value)


@pytest.mark.parametrize("vendor", sorted(VENDOR_HOOKS))
@pytest.mark.parametrize("base", LOOPBACK)
def test_plain_http_to_loopback_is_accepted(monkeypatch: pytest.MonkeyPatch, vendor: str, base: str) -> None:
    assert is_loopback(urlsplit(base).hostname)
    hook = _hook(monkeypatch, vendor, _vendor_conn(vendor, base))
    assert hook.base_url == base
    if vendor == "pond":
        assert hook.token_url == base + "/oauth2/token"


FILE_URL_CASES = ["http://bucket.s3.example.com/k.csv?X-Amz-Signature=abc", "http://cdn.example.net/f.avro.gz?sig=abc"]


@pytest.mark.parametrize("url", FILE_URL_CASES)
def test_signed_file_links_are_refused_over_plain_http(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """POND, Leanplum and MX never fetch a file (a signed link or with MX's key) over plain http to a remote host."""
    pond = _hook(monkeypatch, "pond", _vendor_conn("pond", "https://api.example.com"))
    pond._links[("snap-1", "0")] = url
    leanplum = _hook(monkeypatch, "leanplum", _vendor_conn("leanplum", "https://api.example.com"))
    leanplum._file_urls["job-1"] = [url]
    mx = _hook(monkeypatch, "mx", _vendor_conn("mx", "https://logs.example.com"))
    cases: list[tuple[ExportHook, ExportFile]] = [
        (pond, ExportFile("pond", "pond_sec", "snap-1", key="0", name="a.csv")),
        (leanplum, ExportFile("leanplum", "leanplum_sec", "job-1", key="0", name="a.json")),
        (mx, ExportFile("mx", "mx_sec", "CSS-1", key=url, name="a.avro.gz", extra={"locate_by": "url"})),
    ]
    for hook, file in cases:
        with pytest.raises(ExportInputError, match="must be an https:// URL") as caught:
            hook.file_request(file)
        assert "abc" not in str(caught.value), "the signature is redacted from the message"


# ---- secrets never in exception text (a vendor that echoes them back) ----------------------------------
# vendor -> (regex of its status route in the sandbox, a job id)
STATUS_ROUTES_AND_IDS = {
    "pond": (r"^/insights/snapshots/", "c5e99fed-e2d4"),
    "leanplum": (r"^/api$", "export_1"),
    "indicative": (r"^/service/v1/segments/export/", "e1"),
    "mx": (r"^/snapshots/[^/]+/files$", "CSS-1"),
    "mobile_engagement": (r"/devices/exportTasks/", "t1"),
}
STATUS_ROUTES = {vendor: route for vendor, (route, _id) in STATUS_ROUTES_AND_IDS.items()}


@pytest.fixture
def sandbox_secrets(sandbox: Any, sandbox_state: Any, vendor_conns: dict[str, Any]) -> dict[str, str]:
    for conn_id, conn in vendor_conns.items():
        if conn.get("password"):
            register(f"{conn_id}:password", str(conn["password"]))
    return {conn_id: str(conn.get("password") or "") for conn_id, conn in vendor_conns.items()}


@pytest.mark.parametrize("status", [400, 500])
@pytest.mark.parametrize("vendor", sorted(STATUS_ROUTES_AND_IDS))
def test_secrets_echoed_by_the_vendor_never_reach_exception_text(
    sandbox_state: Any, sandbox_secrets: dict[str, str], vendor: str, status: int,
) -> None:
    import time

    from airflow_export_providers.triggers.export_job import ExportJobTrigger

    route, job_id = STATUS_ROUTES_AND_IDS[vendor]
    cls = VENDOR_HOOKS[vendor]
    password = sandbox_secrets[cls.default_conn_name]
    shaped = {"bearer": a_secret("echo-bearer"), "sig": a_secret("echo-sig"), "amz": a_secret("echo-amz")}
    body = json.dumps({"error": {"code": "Echo", "message": (
        f"request https://h.example.com/x?clientKey={password}&sig={shaped['sig']}&X-Amz-Signature={shaped['amz']} "
        f"with Authorization: Bearer {shaped['bearer']} refused; key {password}")}})
    sandbox_state.add_fault(path=route, method="GET", status=status, body=body, times=-1)
    hook = cls(retry_policy=RetryPolicy(max_attempts=2, backoff_base=0.05, backoff_max=0.1))
    with pytest.raises(ExportError) as caught:
        hook.get_job(job_id)
    texts = [str(caught.value), repr(caught.value)]
    if status >= 500:  # the triggerer would keep retrying with the default backoff: its path is proven on 400
        texts.append("")
        status_words_and_secrets(texts, status, vendor, [password, *shaped.values()], sandbox_state)
        hook.close()
        return
    trigger = ExportJobTrigger(hook_class=f"{cls.__module__}.{cls.__qualname__}", conn_id=hook.conn_id, job_id=job_id,
                               poll_interval=0.05, deadline=time.time() + 1.5, hook_kwargs=hook.hook_kwargs())

    async def run() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    (event,) = asyncio.run(asyncio.wait_for(run(), 30))
    assert event["status"] == "error"
    texts.append(json.dumps(event))
    status_words_and_secrets(texts, status, vendor, [password, *shaped.values()], sandbox_state)
    hook.close()


def status_words_and_secrets(texts: list[str], status: int, vendor: str, values: list[str], state: Any) -> None:
    issued = [v for v in state.issued if len(v) >= 12]  # tokens and signatures the sandbox handed out
    for text in texts:
        for value in (*values, *issued):
            assert value not in text, f"a secret reached the {vendor} error text: {text[:200]}"
    assert f"HTTP {status}" in texts[0]


# ---- a real run of every vendor: no secret in XCom, rendered fields, trigger rows, the DB or the logs -------
FAST_VENDORS = ("pond", "leanplum", "indicative", "mobile_engagement", "generic")


def _all_secret_values(state: Any, conns: dict[str, Any]) -> dict[str, str]:
    """Every credential of this run: connection passwords, sandbox secrets, issued tokens and signatures,
    and what the hooks registered with the redactor at runtime (SAS, signed-link values, tokens)."""
    from airflow_export_providers.core import redact

    values = {f"conn:{k}": str(v.get("password")) for k, v in conns.items() if v.get("password")}
    values.update({f"sandbox:{k}": v for k, v in state.secrets.items()})
    values.update({f"issued:{v[:8]}": v for v in state.issued})
    with redact._lock:
        registered = set(redact._registered)
    # hooks also register harmless values of signed links (X-Amz-Date, X-Amz-Algorithm, the credential
    # scope naming moto's test key): only token-sized values are credentials
    values.update({f"registered:{v[:6]}": v for v in registered if len(v) >= 20 and "aws4_request" not in v})
    return {k: v for k, v in values.items() if len(v) >= 12 and not v.isdigit()}


def _db_texts(dag_id: str) -> dict[str, list[str]]:
    """The rows a run leaves in the metadata DB that could carry a value of the task (as text)."""
    from airflow.settings import engine
    from sqlalchemy import text

    queries = {
        "rendered_task_instance_fields": "SELECT * FROM rendered_task_instance_fields WHERE dag_id = :d",
        "xcom": "SELECT * FROM xcom WHERE dag_id = :d",
        "task_instance": "SELECT * FROM task_instance WHERE dag_id = :d",
        "task_instance_history": "SELECT * FROM task_instance_history WHERE dag_id = :d",
        "trigger": "SELECT * FROM trigger",
        "log": "SELECT * FROM log WHERE dag_id = :d",
        "dag_run": "SELECT * FROM dag_run WHERE dag_id = :d",
        "asset_event": "SELECT * FROM asset_event",
        "variable": "SELECT * FROM variable",
    }
    found: dict[str, list[str]] = {}
    assert engine is not None, "the metadata DB is configured (airflow_db fixture)"
    with engine.connect() as connection:
        for table, sql in queries.items():
            rows = connection.execute(text(sql), {"d": dag_id}).fetchall()
            found[table] = [" | ".join(str(c) for c in row) for row in rows]
    return found


@pytest.fixture
def all_vendors(sandbox: Any, sandbox_state: Any, vendor_conns: dict[str, Any], aws_conn: str, wasb_conn: str,
                moto_s3: Any, azurite: Any) -> Iterator[Any]:
    from airflow_export_providers.sandbox.mx import add_snapshot

    saved = {v: dict(sandbox_state.vendor_config(v)) for v in FAST_VENDORS}
    for vendor in FAST_VENDORS:
        sandbox_state.vendor_config(vendor).update(pending_seconds=0.2, running_seconds=0.3)
    add_snapshot(sandbox_state, "CSS-SECURITY", ready_after=1.0, clock_on_first_request=True, url_style="signed")
    s3 = moto_s3.client()
    if "security-landing" not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
        s3.create_bucket(Bucket="security-landing")
    for conn_id, conn in vendor_conns.items():
        if conn.get("password"):
            register(f"{conn_id}:password", str(conn["password"]))
    yield SimpleNamespace(state=sandbox_state, conns=vendor_conns, s3=s3)
    for vendor, cfg in saved.items():
        sandbox_state.vendor_config(vendor).clear()
        sandbox_state.vendor_config(vendor).update(cfg)


@pytest.mark.timeout(600)
def test_a_real_run_of_every_vendor_leaves_no_secret_in_the_db(
    airflow_db: Path, all_vendors: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.support.airflow import load_dag, run_dag, task_states, xcom

    monkeypatch.setenv("SECURITY_DAGS", "1")

    before = len(all_vendors.state.requests)
    run = run_dag(load_dag("security_all_vendors.py", folder="tests/dags"))
    states = task_states(run)
    assert set(states.values()) == {"success"}, states
    rows = _db_texts("security_all_vendors")
    # the check below means something only if the values are there to be searched
    assert len(rows["rendered_task_instance_fields"]) == len(states)
    assert any("2026-03-14T00:00:00Z" in r for r in rows["rendered_task_instance_fields"])
    assert any("security-landing" in r for r in rows["rendered_task_instance_fields"])
    for task in ("pond", "leanplum", "indicative", "mx", "mobile_engagement"):
        job = xcom(run, task)
        assert job and job["state"] == "SUCCESS", task
        assert job["files"] or task == "mobile_engagement", task
    assert xcom(run, "land_mx") and xcom(run, "land_leanplum")
    polled_by_trigger = {vendor for vendor, route in STATUS_ROUTES.items() for r in all_vendors.state.requests[before:]
                         if re.search(route, r["path"]) and "aiohttp" in r["headers"].get("User-Agent", "")}
    assert polled_by_trigger == set(STATUS_ROUTES), f"every export was deferred to the trigger: {polled_by_trigger}"

    secrets_ = _all_secret_values(all_vendors.state, all_vendors.conns)
    assert any(k.startswith("registered:") for k in secrets_)  # tokens / signed-link values of this run
    for name, value in secrets_.items():
        register(f"security-run:{name}", value)  # the suite-wide scan looks for them everywhere too
    hits = [(table, name) for table, texts in rows.items() for text in texts for name, value in secrets_.items() if value in text]
    assert not hits, f"secrets stored in the metadata DB: {hits[:10]}"
    # task logs of dag.test() go to the captured output, which the suite-wide scan searches for these values


def _deferring_operators() -> dict[str, Any]:
    from airflow_export_providers.hooks.leanplum import PACIFIC
    from airflow_export_providers.operators.indicative import IndicativeSegmentExportOperator
    from airflow_export_providers.operators.leanplum import LeanplumExportOperator
    from airflow_export_providers.operators.mobile_engagement import MobileEngagementExportOperator
    from airflow_export_providers.operators.mx import MxSnapshotOperator
    from airflow_export_providers.operators.pond import PondSnapshotOperator

    recent = dt.datetime.now(PACIFIC).date()
    fast: dict[str, Any] = {"deferrable": True, "poll_interval": 0.2}
    return {
        "pond": PondSnapshotOperator(task_id="pond", created_at_from="2026-03-13T00:00:00Z", created_at_to="2026-03-14T00:00:00Z", **fast),
        "leanplum": LeanplumExportOperator(task_id="leanplum", export_start_date=f"{recent - dt.timedelta(days=3):%Y%m%d}", **fast),
        "indicative": IndicativeSegmentExportOperator(task_id="indicative", segment="Churn Risk", **fast),
        "mx": MxSnapshotOperator(task_id="mx", snapshot_guid="CSS-SECURITY-DEFER", **fast),
        "mobile_engagement": MobileEngagementExportOperator(task_id="me", kind="tags", container="security-defer", **fast),
    }


@pytest.mark.parametrize("vendor", sorted(STATUS_ROUTES))
@pytest.mark.timeout(120)
def test_trigger_kwargs_events_and_xcom_of_a_deferral_hold_no_secret(all_vendors: Any, vendor: str) -> None:
    """What the triggerer stores (serialize()), the event it hands back and the XCom carry no credential."""
    from airflow.providers.common.compat.sdk import TaskDeferred

    from airflow_export_providers.sandbox.mx import add_snapshot

    add_snapshot(all_vendors.state, "CSS-SECURITY-DEFER", ready_after=1.0, clock_on_first_request=True, url_style="signed")
    op = _deferring_operators()[vendor]
    day = dt.datetime(2026, 3, 14, tzinfo=dt.timezone.utc)
    context: dict[str, Any] = {"data_interval_start": day, "data_interval_end": day + dt.timedelta(days=1), "run_id": "manual__sec"}
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    classpath, kwargs = deferred.value.trigger.serialize()
    stored = json.dumps({"classpath": classpath, "kwargs": kwargs, "method": deferred.value.method_name,
                         "next_kwargs": deferred.value.kwargs}, default=str)
    trigger = type(deferred.value.trigger)(**json.loads(json.dumps(kwargs)))

    async def run() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    (event,) = asyncio.run(asyncio.wait_for(run(), 60))
    assert event["status"] == "success", event
    result = op.execute_complete(context, event)
    assert result["state"] == "SUCCESS" and result["job_id"] == kwargs["job_id"]
    secrets_ = _all_secret_values(all_vendors.state, all_vendors.conns)
    assert all_vendors.conns[VENDOR_HOOKS[vendor].default_conn_name]["password"] in secrets_.values()
    for where, text in (("trigger kwargs", stored), ("trigger event", json.dumps(event)), ("XCom", json.dumps(result))):
        leaked = [name for name, value in secrets_.items() if value in text]
        assert not leaked, f"{vendor}: secrets in the {where}: {leaked}"


# ---- no credential to presigned / other hosts ----------------------------------------------------------
def test_file_downloads_send_no_credential_to_the_file_host(all_vendors: Any, origin_b: Recorder) -> None:
    """POND and Leanplum signed links and an MX file on another origin: the GET carries the signature only.

    Each hook is a working one (POND has fetched a bearer token, MX has its key) so a credential is at
    hand; the file host is a recording server on another origin than the vendor API (the sandbox).
    """
    from airflow_export_providers.core.hook import iter_stream

    pond = PondHook(retry_policy=NO_RETRY)
    token = pond.token_auth.token()
    pond._links[("snap-1", "0")] = origin_b.url("/pond/event_000.csv?X-Amz-Signature=" + a_secret("pond-sig"))
    leanplum = LeanplumHook(retry_policy=NO_RETRY)
    leanplum._file_urls["job-1"] = [origin_b.url("/leanplum/export-1-output-0?sig=" + a_secret("lp-sig"))]
    mx = MxSnapshotsHook(retry_policy=NO_RETRY)
    assert mx.auth.headers()  # the MD-API-KEY is there to be (wrongly) sent
    files: list[tuple[ExportHook, ExportFile]] = [
        (pond, ExportFile("pond", pond.conn_id, "snap-1", key="0", name="event_000.csv")),
        (leanplum, ExportFile("leanplum", leanplum.conn_id, "job-1", key="0", name="export.json")),
        (mx, ExportFile("mx", mx.conn_id, "CSS-1", key=origin_b.url("/mx/users-1.avro.gz"), name="users-1.avro.gz",
                        extra={"locate_by": "url"})),
    ]
    for hook, file in files:
        stream = hook.open_file(file)
        assert b"".join(iter_stream(stream))
        stream.close()
    credentials = {token, str(all_vendors.conns["leanplum_default"]["password"]), str(all_vendors.conns["mx_snapshots_default"]["password"])}
    assert [r["path"] for r in origin_b.seen] == ["/pond/event_000.csv", "/leanplum/export-1-output-0", "/mx/users-1.avro.gz"]
    for record in origin_b.seen:
        assert not {k for k in record["headers"] if k in SECRET_HEADER_NAMES}, record["path"]
        sent = json.dumps(record["headers"]) + record["query"]
        assert not [c for c in credentials if c in sent], f"a credential went to the file host with {record['path']}"
    for hook, _file in files:
        hook.close()


@pytest.mark.timeout(120)
def test_indicative_https_result_is_fetched_without_basic_auth(all_vendors: Any) -> None:
    import time

    from airflow_export_providers.core.hook import iter_stream

    cfg = all_vendors.state.vendor_config("indicative")
    cfg["result_scheme"] = "https"
    try:
        hook = IndicativeHook(retry_policy=NO_RETRY)
        segment = next(s for s in hook.list_segments() if s["name"] == "Churn Risk")
        job_id = hook.submit(segment["segmentId"])
        deadline = time.time() + 30
        job = hook.get_job(job_id)
        while not job.state.is_final and time.time() < deadline:
            time.sleep(0.2)
            job = hook.get_job(job_id)
        since = len(all_vendors.state.requests)
        stream = hook.open_file(job.files[0])
        assert b"".join(iter_stream(stream))
        stream.close()
    finally:
        cfg.pop("result_scheme", None)
    calls = all_vendors.state.requests[since:]
    download = [r for r in calls if r["path"].startswith("/indicative-results/")]
    api = [r for r in calls if r["path"].startswith("/service/v1/")]
    assert len(download) == 1 and not {k.lower() for k in download[0]["headers"]} & SECRET_HEADER_NAMES
    assert api and all(r["headers"]["Authorization"].startswith("Basic ") for r in api)  # the API call does carry it
    hook.close()
