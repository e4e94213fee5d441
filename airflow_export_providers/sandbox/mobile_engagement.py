"""Sandbox: Azure Mobile Engagement export tasks (ARM, api-version 2014-12-01) and the Azure AD token endpoint.

- Azure AD (``/{tenant}/oauth2/v2.0/token``, client credentials, and the OpenID metadata msal reads)
  is served on a second, TLS-only listener: azure-identity refuses a plain-http authority. Its
  certificate is signed by a CA generated at start-up; the CA file is the connection's ``ca_bundle``.
- ARM routes check the path parameters, ``api-version=2014-12-01`` and the bearer token (expired
  tokens answer 401 ``ExpiredAuthenticationToken``), validate each kind's body as the spec says and
  answer 202 + Location.
- A task goes Queued -> Started -> Succeeded/Failed. While Started it lists and writes REAL blobs
  into the given container through the given SAS URL (Azurite in tests), so the SAS permissions are
  honoured by the storage itself: a SAS without write (or list) fails the task with errorDetails.
- Records follow the export record schema (deviceEvents, session, job, push, token, ...).

Settings in ``state.config["mobile_engagement"]``: token_lifetime (s), pending_seconds,
running_seconds, fail_next, parts (blobs per task), devices, records (per device), aad_host, aad_port,
blob_prefix (where a task's blobs go, a template with ``{task_id}`` and ``{export_type}``; default
``{task_id}/``: the real service's layout is not public, so a test can put them elsewhere).
The sandbox-wide ``public_host`` joins the certificate's names and the authority URL; ``tls_dir``
receives the CA file (``sandbox-ca.pem``) the connection's ``ca_bundle`` names.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import datetime as dt
import hashlib
import io
import ipaddress
import json
import random
import re
import ssl
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit, urlunsplit

import aiohttp
from aiohttp import web

from airflow_export_providers.sandbox.server import SandboxJob, SandboxState, fault_middleware

VENDOR = "mobile_engagement"
API_VERSION = "2014-12-01"
ARM_SCOPE = "https://management.azure.com/.default"
PROVIDER = "Microsoft.MobileEngagement"

DATE_KINDS = ("activities", "crashes", "errors", "events", "jobs", "sessions")
EXPORT_TYPES = {
    "tags": "Tag", "tokens": "Token", "activities": "Activity", "crashes": "Crash", "errors": "Error",
    "events": "Event", "jobs": "Job", "sessions": "Session", "feedbackByDate": "Push", "feedbackByCampaign": "Push",
}
REQUIRED = {
    **{k: ("containerUrl", "startDate", "endDate", "exportFormat") for k in DATE_KINDS},
    "tags": ("containerUrl", "exportFormat"),
    "tokens": ("containerUrl", "exportFormat"),
    "feedbackByDate": ("containerUrl", "campaignType", "campaignWindowStart", "campaignWindowEnd", "exportFormat"),
    "feedbackByCampaign": ("containerUrl", "campaignType", "campaignIds", "exportFormat"),
}
ALLOWED = {
    **{k: ("containerUrl", "description", "startDate", "endDate", "exportFormat") for k in DATE_KINDS},
    "tags": ("containerUrl", "description", "exportFormat"),
    "tokens": ("containerUrl", "description", "exportFormat"),
    "feedbackByDate": ("containerUrl", "description", "campaignType", "campaignWindowStart", "campaignWindowEnd", "exportFormat"),
    "feedbackByCampaign": ("containerUrl", "description", "campaignType", "campaignIds", "exportFormat"),
}
CAMPAIGN_TYPES = ("Announcement", "DataPush", "NativePush", "Poll")
EXPORT_FORMATS = ("JsonBlob", "CsvBlob")
STORAGE_VERSION = "2021-08-06"
TASK_STATES = {"PENDING": "Queued", "RUNNING": "Started"}
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


# ---- settings and runtime ----------------------------------------------------------------------
def _cfg(state: SandboxState) -> dict[str, Any]:
    cfg = state.vendor_config(VENDOR)
    with state.lock:
        cfg.setdefault("tenant_id", "72f988bf-0000-4000-8000-00000000a11e")
        cfg.setdefault("client_id", str(uuid.UUID(int=random.getrandbits(128), version=4)))
        cfg.setdefault("subscription_id", "0f2c3d4e-5a6b-4c7d-8e9f-a0b1c2d3e4f5")
        cfg.setdefault("resource_group", "sandbox-rg")
        cfg.setdefault("app_collection", "sandbox-collection")
        cfg.setdefault("app_name", "sandbox-app")
    return cfg


def runtime(state: SandboxState) -> dict[str, Any]:
    """What the sandbox did (tokens, authorisations seen, requests): for tests to assert on."""
    with state.lock:
        rt = state.vendor.setdefault(VENDOR, {})
        rt.setdefault("tokens", {})  # token -> expires_at
        rt.setdefault("token_requests", [])  # (client_id, ok)
        rt.setdefault("arm_auth", [])  # (method, path, token or None, status)
        rt.setdefault("submits", [])  # (kind, body without containerUrl's signature)
        rt.setdefault("tasks", [])  # task ids in creation order
        return rt


def _now_iso(ts: float | None = None) -> str:
    moment = dt.datetime.fromtimestamp(ts if ts is not None else time.time(), dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _arm_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)


def _aad_error(status: int, error: str, code: str, description: str) -> web.Response:
    return web.json_response(
        {"error": error, "error_description": f"{code}: {description}", "error_codes": [int(code[6:])],
         "timestamp": _now_iso(), "trace_id": str(uuid.uuid4()), "correlation_id": str(uuid.uuid4())},
        status=status,
    )


# ---- TLS for the Azure AD stand-in ------------------------------------------------------------
def make_tls_material(folder: Path, hosts: tuple[str, ...] = ()) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate for localhost/127.0.0.1 (and ``hosts``) signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "airflow-export-providers sandbox CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            + [x509.DNSName(h) for h in hosts if h != "localhost"]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    ca_path, cert_path, key_path = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return ca_path, cert_path, key_path


# ---- Azure AD ---------------------------------------------------------------------------------
_AAD_RUNNER = web.AppKey("mobile_engagement_aad", web.AppRunner)

def _aad_base(request: web.Request, tenant: str) -> str:
    return f"https://{request.host}/{tenant}"


async def _openid_configuration(request: web.Request) -> web.Response:
    state: SandboxState = request.app["state"]
    tenant = request.match_info["tenant"]
    if tenant != _cfg(state)["tenant_id"]:
        return _aad_error(400, "invalid_tenant", "AADSTS90002", f"Tenant '{tenant}' not found.")
    base = _aad_base(request, tenant)
    return web.json_response({
        "token_endpoint": f"{base}/oauth2/v2.0/token",
        "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
        "issuer": f"{base}/v2.0",
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "tenant_region_scope": "EU",
    })


async def _token(request: web.Request) -> web.Response:
    state: SandboxState = request.app["state"]
    cfg = _cfg(state)
    rt = runtime(state)
    tenant = request.match_info["tenant"]
    form = await request.post()
    client_id = str(form.get("client_id", ""))
    if tenant != cfg["tenant_id"]:
        rt["token_requests"].append((client_id, False))
        return _aad_error(400, "invalid_request", "AADSTS90002", f"Tenant '{tenant}' not found.")
    if form.get("grant_type") != "client_credentials":
        rt["token_requests"].append((client_id, False))
        return _aad_error(400, "unsupported_grant_type", "AADSTS70003", "The app requested an unsupported grant type.")
    if client_id != cfg["client_id"]:
        rt["token_requests"].append((client_id, False))
        return _aad_error(400, "unauthorized_client", "AADSTS700016",
                          f"Application with identifier '{client_id}' was not found in the directory.")
    if form.get("client_secret") != state.secret("mobile-engagement-client-secret"):
        rt["token_requests"].append((client_id, False))
        return _aad_error(401, "invalid_client", "AADSTS7000215", "Invalid client secret provided.")
    if form.get("scope") != ARM_SCOPE:
        rt["token_requests"].append((client_id, False))
        return _aad_error(400, "invalid_scope", "AADSTS70011", f"The provided value for scope {str(form.get('scope', ''))} is not valid.")
    lifetime = int(cfg.get("token_lifetime", 3599))
    token = state.issue("aad")
    with state.lock:
        rt["tokens"][token] = time.time() + lifetime
        rt["token_requests"].append((client_id, True))
    return web.json_response({"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": token})


async def _start_aad(app: web.Application) -> None:
    state: SandboxState = app["state"]
    cfg = _cfg(state)
    folder = Path(tempfile.mkdtemp(prefix="aep-sandbox-aad-"))
    public = str(state.config.get("public_host") or "")
    ca_path, cert_path, key_path = make_tls_material(folder, (public,) if public and not _is_ip(public) else ())
    if state.config.get("tls_dir"):  # a folder the clients share (a compose volume): the CA only, never the key
        shared = Path(state.config["tls_dir"]) / "sandbox-ca.pem"
        shared.parent.mkdir(parents=True, exist_ok=True)
        tmp = shared.with_suffix(".tmp")
        tmp.write_bytes(ca_path.read_bytes())
        tmp.replace(shared)
        ca_path = shared
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert_path), str(key_path))
    aad = web.Application(middlewares=[fault_middleware])
    aad["state"] = state
    aad.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", _openid_configuration)
    aad.router.add_post("/{tenant}/oauth2/v2.0/token", _token)
    runner = web.AppRunner(aad, access_log=None)
    await runner.setup()
    host = cfg.get("aad_host", "127.0.0.1")
    site = web.TCPSite(runner, host, int(cfg.get("aad_port", 0)), ssl_context=ctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    cfg["aad_url"] = state.advertised_url("https", host, port)
    cfg["ca_bundle"] = str(ca_path)
    app[_AAD_RUNNER] = runner


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


async def _stop_aad(app: web.Application) -> None:
    runner = app.get(_AAD_RUNNER)
    if runner is not None:
        await runner.cleanup()


# ---- ARM --------------------------------------------------------------------------------------
def _check_arm(request: web.Request) -> web.Response | None:
    """Bearer, api-version and the path's resource names, in ARM's order and words."""
    state: SandboxState = request.app["state"]
    cfg = _cfg(state)
    rt = runtime(state)
    header = request.headers.get("Authorization", "")
    token = header[7:] if header.startswith("Bearer ") else None

    def deny(status: int, code: str, message: str) -> web.Response:
        with state.lock:
            rt["arm_auth"].append((request.method, request.path, token, status))
        return _arm_error(status, code, message)

    if not header:
        return deny(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.")
    if token is None:
        return deny(401, "AuthenticationFailedInvalidHeader", "Authentication failed. The 'Authorization' header is provided in an invalid format.")
    expires_at = rt["tokens"].get(token)
    if expires_at is None:
        return deny(401, "InvalidAuthenticationToken", "The access token is invalid.")
    if time.time() > expires_at + float(cfg.get("token_skew", 0.0)):
        return deny(401, "ExpiredAuthenticationToken", "The access token expiry UTC time is earlier than current UTC time.")
    version = request.query.get("api-version")
    if not version:
        return deny(400, "MissingApiVersionParameter", "The api-version query parameter (?api-version=) is required for all requests.")
    if version != API_VERSION:
        return deny(400, "InvalidApiVersionParameter",
                    f"The api-version '{version}' is invalid. The supported versions are '{API_VERSION}'.")
    m = request.match_info
    if m["subscriptionId"] != cfg["subscription_id"]:
        return deny(404, "SubscriptionNotFound", f"The subscription '{m['subscriptionId']}' could not be found.")
    if m["resourceGroupName"].lower() != cfg["resource_group"].lower():
        return deny(404, "ResourceGroupNotFound", f"Resource group '{m['resourceGroupName']}' could not be found.")
    if m["appCollection"] != cfg["app_collection"] or m["appName"] != cfg["app_name"]:
        return deny(404, "ResourceNotFound",
                    f"The Resource '{PROVIDER}/appcollections/{m['appCollection']}/apps/{m['appName']}' under resource group "
                    f"'{m['resourceGroupName']}' was not found.")
    with state.lock:
        rt["arm_auth"].append((request.method, request.path, token, 200))
    return None


def _task_path(request: web.Request) -> str:
    m = request.match_info
    return (f"/subscriptions/{m['subscriptionId']}/resourceGroups/{m['resourceGroupName']}/providers/{PROVIDER}"
            f"/appcollections/{m['appCollection']}/apps/{m['appName']}/devices/exportTasks")


def _task_result(job: SandboxJob) -> dict[str, Any]:
    outcome = job.data.get("outcome")
    raw = job.state()
    if raw in TASK_STATES:
        state = TASK_STATES[raw]
    elif outcome is None:
        state = "Started"  # the clock says done but the blobs are still being written
    else:
        state = outcome
    result: dict[str, Any] = {
        "id": job.job_id,
        "description": job.params.get("description", ""),
        "state": state,
        "dateCreated": _now_iso(job.created_at),
        "exportType": EXPORT_TYPES[job.params["kind"]],
    }
    if state in ("Succeeded", "Failed"):
        result["dateCompleted"] = _now_iso(job.data.get("completed_at"))
    if state == "Failed":
        result["errorDetails"] = job.data.get("error_details", "")
    return result


def _validate_body(kind: str, body: Any) -> str | None:
    """The spec's rules for each body schema; returns an error message or None."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    missing = [f for f in REQUIRED[kind] if f not in body or body[f] in (None, "")]
    if missing:
        return f"The request body for '{kind}' is missing the required field(s): {', '.join(missing)}."
    unknown = [f for f in body if f not in ALLOWED[kind]]
    if unknown:
        return f"The request body for '{kind}' has unknown field(s): {', '.join(unknown)}."
    if body["exportFormat"] not in EXPORT_FORMATS:
        return f"exportFormat '{body['exportFormat']}' is invalid; expected one of {', '.join(EXPORT_FORMATS)}."
    if "description" in body and not isinstance(body["description"], str):
        return "description must be a string."
    if kind in DATE_KINDS:
        for name in ("startDate", "endDate"):
            value = body[name]
            if not isinstance(value, str) or not _DATE_RE.match(value):
                return f"{name} '{value}' is not an RFC3339 full-date (YYYY-MM-DD)."
            try:
                dt.date.fromisoformat(value)
            except ValueError:
                return f"{name} '{value}' is not a valid date."
        if body["endDate"] < body["startDate"]:
            return "endDate must not be before startDate."
    if kind.startswith("feedback") and body["campaignType"] not in CAMPAIGN_TYPES:
        return f"campaignType '{body['campaignType']}' is invalid; expected one of {', '.join(CAMPAIGN_TYPES)}."
    if kind == "feedbackByDate":
        for name in ("campaignWindowStart", "campaignWindowEnd"):
            if not isinstance(body[name], str) or not _TS_RE.match(body[name]):
                return f"{name} '{body[name]}' is not an RFC3339 date-time."
    if kind == "feedbackByCampaign":
        ids = body["campaignIds"]
        if not isinstance(ids, list) or not ids or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            return "campaignIds must be a non-empty array of integers."
    return None


def _check_container_url(value: Any) -> str | None:
    if not isinstance(value, str):
        return "containerUrl must be a string."
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or not parts.path.strip("/"):
        return "containerUrl must be an absolute URL of a blob container."
    query = parse_qs(parts.query)
    if "sig" not in query or "sp" not in query or "se" not in query:
        return "containerUrl must carry a Shared Access Signature (sp, se and sig query parameters)."
    return None


async def _create_task(request: web.Request) -> web.Response:
    state: SandboxState = request.app["state"]
    denied = _check_arm(request)
    if denied is not None:
        return denied
    kind = request.match_info["kind"]
    if kind not in REQUIRED:
        return _arm_error(404, "NotFound", f"No HTTP resource was found that matches the request URI (export kind '{kind}').")
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        return _arm_error(400, "InvalidRequestContent", "The request content was invalid and could not be deserialized.")
    problem = _validate_body(kind, body) or _check_container_url(body.get("containerUrl"))
    if problem:
        return _arm_error(400, "InvalidParameter", problem)
    container_url = body["containerUrl"]
    sig = parse_qs(urlsplit(container_url).query).get("sig", [""])[0]
    if sig:
        state.issued.add(sig)  # the suite's secret scan must never find the SAS signature in any output
    params = {k: v for k, v in body.items() if k != "containerUrl"}
    params["kind"] = kind
    job = state.new_job(VENDOR, params)
    job.data["container_url"] = container_url
    rt = runtime(state)
    with state.lock:
        rt["submits"].append((kind, dict(params), container_url))
        rt["tasks"].append(job.job_id)
    job.data["runner"] = asyncio.get_running_loop().create_task(_run_task(state, job))
    location = f"{request.scheme}://{request.host}{_task_path(request)}/{job.job_id}?api-version={API_VERSION}"
    return web.json_response(_task_result(job), status=202, headers={"Location": location})


async def _get_task(request: web.Request) -> web.Response:
    state: SandboxState = request.app["state"]
    denied = _check_arm(request)
    if denied is not None:
        return denied
    job = state.jobs.get(request.match_info["id"])
    if job is None or job.vendor != VENDOR:
        return _arm_error(404, "NotFound", f"Export task '{request.match_info['id']}' was not found.")
    return web.json_response(_task_result(job))


_ORDER_KEYS = {"taskid": "id", "errordetails": "errorDetails", "datecreated": "dateCreated", "taskstatus": "state"}


async def _list_tasks(request: web.Request) -> web.Response:
    state: SandboxState = request.app["state"]
    denied = _check_arm(request)
    if denied is not None:
        return denied
    try:
        skip = int(request.query.get("$skip", "0"))
        top = int(request.query.get("$top", "20"))
    except ValueError:
        return _arm_error(400, "InvalidParameter", "$skip and $top must be integers.")
    if skip < 0 or not 1 <= top <= 40:
        return _arm_error(400, "InvalidParameter", "$skip must be >= 0 and $top between 1 and 40.")
    order = request.query.get("$orderby", "taskId asc").split()
    key = _ORDER_KEYS.get(order[0].lower()) if order else None
    direction = order[1].lower() if len(order) > 1 else "asc"
    if key is None or direction not in ("asc", "desc") or len(order) > 2:
        return _arm_error(400, "InvalidParameter", f"$orderby '{request.query.get('$orderby')}' is invalid.")
    tasks = [_task_result(j) for j in list(state.jobs.values()) if j.vendor == VENDOR]
    tasks.sort(key=lambda t: str(t.get(key, "")), reverse=direction == "desc")
    page = tasks[skip: skip + top]
    result: dict[str, Any] = {"value": page}
    if skip + top < len(tasks):
        query = f"api-version={API_VERSION}&$skip={skip + top}&$top={top}"
        result["nextLink"] = f"{request.scheme}://{request.host}{_task_path(request)}?{query}"
    return web.json_response(result)


# ---- the export itself ------------------------------------------------------------------------
def _guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _days(params: dict[str, Any]) -> list[dt.date]:
    if "startDate" not in params:
        return [dt.date.today()]
    start, end = dt.date.fromisoformat(params["startDate"]), dt.date.fromisoformat(params["endDate"])
    return [start + dt.timedelta(days=i) for i in range(min((end - start).days + 1, 31))]


def _ts(day: dt.date, rng: random.Random) -> str:
    return f"{day.isoformat()}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}Z"


def make_records(kind: str, params: dict[str, Any], seed: str, devices: int, per_device: int) -> list[dict[str, Any]]:
    """Records shaped by the export record schema (one JSON array per blob)."""
    rng = random.Random(seed)
    days = _days(params)
    out: list[dict[str, Any]] = []
    for _ in range(devices):
        device = _guid(rng)
        session = _guid(rng)
        day = rng.choice(days)
        if kind == "events":
            out.append({"deviceId": device, "events": [
                {"name": rng.choice(["purchase", "level_up", "share"]), "timestamp": _ts(day, rng), "infoId": _guid(rng),
                 "sessionId": session, "locationId": _guid(rng), "extras": {"price": rng.randrange(100), "sku": f"sku-{rng.randrange(9)}"}}
                for _ in range(per_device)]})
        elif kind == "activities":
            out.append({"sessionId": session, "activities": [
                {"name": rng.choice(["home", "catalog", "checkout"]), "timestamp": _ts(day, rng), "extras": {"ref": "push"}}
                for _ in range(per_device)]})
        elif kind == "sessions":
            for _ in range(per_device):
                out.append({"sessionId": _guid(rng), "start": _ts(day, rng), "end": _ts(day, rng), "deviceId": device,
                            "infoId": _guid(rng), "locationId": _guid(rng)})
        elif kind == "jobs":
            for _ in range(per_device):
                out.append({"jobId": _guid(rng), "start": _ts(day, rng), "end": _ts(day, rng), "name": "sync",
                            "deviceId": device, "infoId": _guid(rng), "extras": {"items": rng.randrange(50)}})
        elif kind in ("crashes", "errors"):
            key = "crashes" if kind == "crashes" else "errors"
            out.append({"deviceId": device, key: [
                {"name": rng.choice(["NullReference", "Timeout", "OutOfMemory"]), "timestamp": _ts(day, rng),
                 "sessionId": session, "infoId": _guid(rng), "extras": {"build": "1.2.3"}} for _ in range(per_device)]})
        elif kind.startswith("feedback"):
            ids = params.get("campaignIds") or [rng.randrange(1, 500)]
            for campaign in ids:
                out.append({"deviceId": device, "campaignType": params["campaignType"], "campaignId": int(campaign),
                            "status": sorted(rng.sample(["Queued", "SystemNotificationDisplayed", "ContentDisplayed", "ContentActioned"], 2))})
        elif kind == "tokens":
            out.append({"deviceId": device, "token": rng.randbytes(16).hex(), "type": rng.choice(["apns", "gcm", "wns"])})
        elif kind == "tags":
            out.append({"deviceId": device, "tags": {"plan": rng.choice(["free", "pro"]), "age": rng.randrange(18, 70)}})
    return out


def _flatten(kind: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One CSV row per leaf record (nested lists spread out, property bags as JSON)."""
    rows: list[dict[str, Any]] = []
    nested = {"events": "events", "activities": "activities", "crashes": "crashes", "errors": "errors"}.get(kind)
    for record in records:
        leaves = [{**{k: v for k, v in record.items() if k != nested}, **leaf} for leaf in record[nested]] if nested else [record]
        for leaf in leaves:
            rows.append({k: json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v for k, v in leaf.items()})
    return rows


def render_part(kind: str, fmt: str, records: list[dict[str, Any]]) -> bytes:
    if fmt == "JsonBlob":
        return json.dumps(records, separators=(",", ":")).encode()
    rows = _flatten(kind, records)
    buf = io.StringIO()
    columns = list(dict.fromkeys(k for row in rows for k in row))
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode()


def _blob_url(container_url: str, name: str, extra_query: str = "") -> str:
    parts = urlsplit(container_url)
    path = parts.path.rstrip("/") + "/" + quote(name) if name else parts.path
    query = parts.query + ("&" + extra_query if extra_query else "")
    return urlunsplit((parts.scheme, parts.netloc, path, query, ""))


def _storage_error(status: int, body: bytes) -> str:
    text = body.decode("utf-8", "replace")
    code = re.search(r"<Code>(.*?)</Code>", text)
    message = re.search(r"<Message>(.*?)</Message>", text, re.S)
    words = (message.group(1).split("\n")[0].strip() if message else text[:120]).strip()
    return f"{status} {code.group(1) if code else 'StorageError'}: {words}"


async def _write_blobs(job: SandboxJob, cfg: dict[str, Any]) -> None:
    """List the container, then PUT each part through the SAS URL; storage decides what the SAS allows."""
    params = job.params
    kind, fmt = params["kind"], params["exportFormat"]
    container_url = job.data["container_url"]
    parts = max(1, int(cfg.get("parts", 2)))
    records = make_records(kind, params, job.job_id, int(cfg.get("devices", 4)) * parts, int(cfg.get("records", 3)))
    ext = "json" if fmt == "JsonBlob" else "csv"
    export_type = EXPORT_TYPES[kind].lower()
    timeout = aiohttp.ClientTimeout(total=60)
    headers = {"x-ms-version": STORAGE_VERSION}
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.get(_blob_url(container_url, "", "restype=container&comp=list&maxresults=1"), headers=headers) as resp:
            if resp.status != 200:
                raise RuntimeError(f"the export service could not list the storage container: {_storage_error(resp.status, await resp.read())}")
        size = -(-len(records) // parts)
        for index in range(parts):
            data = render_part(kind, fmt, records[index * size:(index + 1) * size])
            # Where the real service puts a task's blobs is not public: the layout is a setting.
            prefix = str(cfg.get("blob_prefix", "{task_id}/")).format(task_id=job.job_id, export_type=EXPORT_TYPES[kind])
            name = f"{prefix}{export_type}-{index:05d}.{ext}"
            put_headers = {
                **headers, "x-ms-blob-type": "BlockBlob",
                "Content-Type": "application/json" if ext == "json" else "text/csv",
                "Content-MD5": base64.b64encode(hashlib.md5(data).digest()).decode(),
            }
            async with session.put(_blob_url(container_url, name), data=data, headers=put_headers) as resp:
                if resp.status not in (200, 201):
                    raise RuntimeError(f"the export service could not write {name}: {_storage_error(resp.status, await resp.read())}")
            job.data.setdefault("blobs", []).append(name)


async def _run_task(state: SandboxState, job: SandboxJob) -> None:
    """Queued for pending_seconds, Started while writing (at least running_seconds), then the outcome."""
    cfg = _cfg(state)
    await asyncio.sleep(job.pending_seconds)
    started = time.time()
    try:
        if job.fail:
            raise RuntimeError("Export failed: an internal error occurred while reading the application's data; retry the export")
        await _write_blobs(job, cfg)
        outcome, details = "Succeeded", ""
    except Exception as exc:  # the task fails as Azure's would, with the reason in errorDetails
        outcome, details = "Failed", str(exc) if isinstance(exc, RuntimeError) else f"Export failed: {type(exc).__name__}: {exc}"
    await asyncio.sleep(max(0.0, job.running_seconds - (time.time() - started)))
    job.data["error_details"] = details
    job.data["completed_at"] = time.time()
    job.data["outcome"] = outcome


# ---- wiring -----------------------------------------------------------------------------------
def setup(app: web.Application, state: SandboxState) -> None:
    _cfg(state)
    runtime(state)
    base = (r"/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.MobileEngagement"
            r"/appcollections/{appCollection}/apps/{appName}/devices/exportTasks")
    app.router.add_get(base, _list_tasks)
    app.router.add_post(base + "/{kind}", _create_task)
    app.router.add_get(base + "/{id}", _get_task)
    app.on_startup.append(_start_aad)
    app.on_cleanup.append(_stop_aad)


def connections(base_url: str, state: SandboxState) -> dict[str, dict[str, Any]]:
    cfg = _cfg(state)
    return {
        "azure_mobile_engagement_default": {
            "conn_type": "azure_mobile_engagement",
            "host": base_url,
            "login": cfg["client_id"],
            "password": state.secret("mobile-engagement-client-secret"),
            "extra": {
                "tenant_id": cfg["tenant_id"],
                "subscription_id": cfg["subscription_id"],
                "resource_group": cfg["resource_group"],
                "app_collection": cfg["app_collection"],
                "app_name": cfg["app_name"],
                "authority_host": cfg.get("aad_url", "https://127.0.0.1:0"),
                "ca_bundle": cfg.get("ca_bundle", ""),
            },
        }
    }
