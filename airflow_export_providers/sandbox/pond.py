"""Sandbox of SGI POND snapshots (seeds/pond-snapshots.txt), faithful to the seed's paths and shapes.

* ``POST /oauth2/token`` — the Cognito endpoint: Basic client auth, form body, ``grant_type`` and
  ``scope`` checked; answers ``{"access_token", "expires_in", "token_type": "Bearer"}``.
* ``POST /insights/snapshots`` — bearer; reads ``created_at_from`` / ``created_at_to`` / ``entity``
  ONLY from a form-encoded body (the seed: without the Content-type header "the parameters will be
  ignored" — then the whole range is used); answers 202 with the seed's shape.
* ``GET /insights/snapshots/{id}`` — bearer; items go ``pending`` -> ``complete`` one after another;
  a complete item carries ``href`` (a presigned S3 URL, signed anew on every GET), ``size``, ``count``.
  Snapshots older than the retention (7 days) answer 404.

The CSV files are generated deterministically from the range and uploaded with boto3 into the S3
server at ``state.config["s3_endpoint"]`` (moto in the tests) when the snapshot completes. Item links
are real SigV4 presigned URLs (temporary credentials, see ``rotate_credentials``) for a small S3 *gateway* on its own port in front of that server: moto
neither enforces a presigned URL's expiry nor lets a test see request headers, so the gateway does
what S3 does there (403 "Request has expired" after ``X-Amz-Expires``, 400 when an Authorization
header is sent alongside a presigned query) and records every request's headers in
``state.vendor["pond"]["s3_requests"]``; the bytes themselves are read from the S3 server.

Settings (``state.config["pond"]``): ``token_lifetime`` (s, default 3600), ``link_expiry`` (s, 3600),
``items`` (3), ``rows`` (40), ``pending_seconds`` / ``running_seconds``, ``retention_seconds`` (7 days),
``allowed_scopes``, ``item_state_override`` (e.g. "processing"), ``size_delta`` / ``count_delta``
(announce wrong sizes/counts), ``bucket``, ``proxy_drops_content_type`` (a gateway in front of the
API loses the form Content-type header: the parameters are then ignored, as the seed warns).

The CSV has quoted fields, some with a comma, a quote or a newline inside: ``count`` is the number
of records, which is not the number of newlines.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import hashlib
import io
import logging
import time
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from aiohttp import web

from airflow_export_providers.sandbox.server import SandboxJob, SandboxState, serve_bytes

# botocore logs a presigned URL's signature at DEBUG; the sandbox signs with a per-run secret.
logging.getLogger("botocore.auth").setLevel(logging.INFO)

VENDOR = "pond"
FORM = "application/x-www-form-urlencoded"
DEFAULT_SCOPE = "pond/insights.snapshots"
DEFAULT_BUCKET = "prod-pond-insights-exports"
SIGNING_KEY_ID = "ASIAPONDSANDBOX00001"
EVENT_NAMES = ("app_open", "purchase", "Sign up, web", "screen_view", 'share "story"', "logout",
               "feedback: slow\nthen fine")
EPOCH = "1970-01-01T00:00:00.000Z"


def fmt(ts: datetime) -> str:
    utc = ts.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_ts(value: str) -> datetime:
    ts = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if ts.tzinfo is None:
        raise ValueError("no timezone")
    return ts


def generate_csv(entity: str, start: str, end: str, index: int, rows: int) -> bytes:
    """Item ``index`` of a snapshot of ``[start, end)``: same range, same bytes, every time."""
    t0, t1 = parse_ts(start).timestamp(), parse_ts(end).timestamp()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([f"{entity}_id", "created_at", "user_id", "name", "value"])
    for r in range(rows):
        digest = hashlib.sha256(f"{entity}|{start}|{end}|{index}|{r}".encode()).hexdigest()
        at = t0 + (t1 - t0) * ((index * 1000 + r + 0.5) / ((index + 1) * 1000 + rows))
        writer.writerow([
            digest[:16],
            fmt(datetime.fromtimestamp(at, timezone.utc)),
            f"user-{int(digest[16:20], 16) % 1000:04d}",
            EVENT_NAMES[int(digest[20:22], 16) % len(EVENT_NAMES)],
            f"{int(digest[22:28], 16) % 100000 / 100:.2f}",
        ])
    return out.getvalue().encode()


def item_name(entity: str, index: int) -> str:
    return f"{entity}_{index:03d}"


def config(state: SandboxState) -> dict[str, Any]:
    return state.vendor_config(VENDOR)


def vstate(state: SandboxState) -> dict[str, Any]:
    """Counters and records the tests read."""
    return state.vendor.setdefault(VENDOR, {
        "tokens": {},  # token -> {"expires": epoch, "scopes": [...]}
        "token_requests": 0,
        "rejected_tokens": 0,
        "schedule_requests": [],  # {"content_type", "body"}
        "s3_requests": [],  # {"method", "path", "headers", "status"}
        "signatures": {},  # X-Amz-Signature -> "bucket/key"
        "gateway_url": "",
        "session_token": "",  # the signing credentials are temporary (ASIA...): links die with them
        "bucket_ready": False,
    })


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"result": "ERROR", "message": message}, status=status)


# ---- Cognito token endpoint -------------------------------------------------------------------
async def token(request: web.Request) -> web.Response:
    state: SandboxState = request.app["state"]
    vs, cfg = vstate(state), config(state)
    if request.content_type != FORM:
        return web.json_response({"error": "invalid_request"}, status=400)
    form = await request.post()
    auth = request.headers.get("Authorization", "")
    expected = f"{state.secret('pond-client-id')}:{state.secret('pond-client-secret')}"
    try:
        given = base64.b64decode(auth[6:].strip(), validate=True).decode() if auth.startswith("Basic ") else ""
    except ValueError:
        given = ""
    if given != expected:
        return web.json_response({"error": "invalid_client"}, status=400)
    if form.get("grant_type") != "client_credentials":
        return web.json_response({"error": "unsupported_grant_type"}, status=400)
    allowed = list(cfg.get("allowed_scopes", [DEFAULT_SCOPE]))
    scopes = str(form.get("scope") or " ".join(allowed)).split()
    if any(s not in allowed for s in scopes):
        return web.json_response({"error": "invalid_scope"}, status=400)
    lifetime = cfg.get("token_lifetime", 3600)
    value = state.issue("pond")
    vs["tokens"][value] = {"expires": time.time() + float(lifetime), "scopes": scopes}
    vs["token_requests"] += 1
    return web.json_response({"access_token": value, "expires_in": lifetime, "token_type": "Bearer"})


def _check_bearer(request: web.Request) -> web.Response | None:
    state: SandboxState = request.app["state"]
    vs = vstate(state)
    auth = request.headers.get("Authorization", "")
    entry = vs["tokens"].get(auth[7:].strip()) if auth.startswith("Bearer ") else None
    if entry is None or time.time() >= entry["expires"]:
        vs["rejected_tokens"] += 1
        return web.json_response({"message": "Unauthorized"}, status=401)
    if DEFAULT_SCOPE not in entry["scopes"]:
        return web.json_response({"message": "The access token does not grant pond/insights.snapshots"}, status=403)
    return None


# ---- snapshots API ----------------------------------------------------------------------------
def _href(request: web.Request, job_id: str) -> str:
    return f"{request.scheme}://{request.host}/insights/snapshots/{job_id}"


async def schedule(request: web.Request) -> web.Response:
    state: SandboxState = request.app["state"]
    refused = _check_bearer(request)
    if refused is not None:
        return refused
    vs, cfg = vstate(state), config(state)
    body = await request.read()
    content_type = None if cfg.get("proxy_drops_content_type") else request.content_type
    vs["schedule_requests"].append({"content_type": request.headers.get("Content-Type"), "body": body.decode("utf-8", "replace")})
    # As the seed warns: parameters are read only when the body is declared form-encoded.
    form: dict[str, str] = dict(parse_qsl(body.decode("utf-8", "replace"))) if content_type == FORM else {}
    entity = form.get("entity", "event")
    start = form.get("created_at_from", EPOCH)
    end = form.get("created_at_to", fmt(datetime.now(timezone.utc)))
    for name, value in (("created_at_from", start), ("created_at_to", end)):
        try:
            parse_ts(value)
        except ValueError:
            return _error(400, f"{name} must be an ISO 8601 date with a timezone, got {value!r}")
    if parse_ts(start) >= parse_ts(end):
        return _error(400, "created_at_from must be earlier than created_at_to")
    if not entity.isidentifier():
        return _error(400, f"unknown entity {entity!r}")
    job = state.new_job(VENDOR, {"entity": entity, "created_at": [start, end]})
    job.data["items"] = int(cfg.get("items", 3))
    job.data["rows"] = int(cfg.get("rows", 40))
    items = [_item(job, None, "pending") for _ in range(job.data["items"])]
    return web.json_response({"result": "OK", "snapshot": {"href": _href(request, job.job_id), "items": items}}, status=202)


def _item(job: SandboxJob, href: str | None, item_state: str, size: int | None = None, count: int | None = None) -> dict[str, Any]:
    return {"href": href, "size": size, "count": count, "state": item_state,
            "query": {"entity": job.params["entity"], "created_at": list(job.params["created_at"])}}


def _item_states(job: SandboxJob, cfg: dict[str, Any]) -> list[str]:
    n = job.data["items"]
    override = cfg.get("item_state_override")
    if override:
        return [str(override)] * n
    elapsed = time.time() - job.created_at
    states = []
    for i in range(n):
        if elapsed < job.pending_seconds + job.running_seconds * (i + 1) / n:
            states.append("pending")
        else:
            states.append("failed" if job.fail else "complete")
    return states


async def snapshot(request: web.Request) -> web.Response:
    state: SandboxState = request.app["state"]
    refused = _check_bearer(request)
    if refused is not None:
        return refused
    cfg = config(state)
    job = state.jobs.get(request.match_info["snapshot_id"])
    if job is None or job.vendor != VENDOR:
        return _error(404, "snapshot not found")
    if time.time() - job.created_at > float(cfg.get("retention_seconds", 7 * 86400)):
        return _error(404, "snapshot not found")
    states = _item_states(job, cfg)
    if "complete" in states:
        await _materialise(state, job)
    items = []
    for i, item_state in enumerate(states):
        if item_state != "complete":
            items.append(_item(job, None, item_state))
            continue
        name = item_name(job.params["entity"], i)
        data = job.data["files"][name]
        items.append(_item(
            job, _presign(state, f"{job.job_id}/{name}"), "complete",
            size=len(data) + int(cfg.get("size_delta", 0)),
            count=job.data["rows"] + 7 * i + int(cfg.get("count_delta", 0)),
        ))
    return web.json_response({"href": _href(request, job.job_id), "items": items})


# ---- files: generated, uploaded to S3, presigned for the gateway -------------------------------
def _bucket(state: SandboxState) -> str:
    return str(config(state).get("bucket", DEFAULT_BUCKET))


def _s3_client(state: SandboxState) -> Any:
    import boto3

    return boto3.client(
        "s3", endpoint_url=state.config["s3_endpoint"], region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )


async def _materialise(state: SandboxState, job: SandboxJob) -> None:
    """Generate every item's CSV once and upload it to the S3 server (when one is configured)."""
    lock = job.data.setdefault("lock", asyncio.Lock())
    async with lock:
        if "files" in job.data:
            return
        entity = job.params["entity"]
        start, end = job.params["created_at"]
        files = {
            item_name(entity, i): generate_csv(entity, start, end, i, job.data["rows"] + 7 * i)
            for i in range(job.data["items"])
        }
        if state.config.get("s3_endpoint"):
            await asyncio.get_running_loop().run_in_executor(None, _upload, state, job.job_id, files)
        job.data["files"] = files


def _upload(state: SandboxState, job_id: str, files: dict[str, bytes]) -> None:
    client = _s3_client(state)
    vs = vstate(state)
    if not vs["bucket_ready"]:
        try:
            client.create_bucket(Bucket=_bucket(state))
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass
        vs["bucket_ready"] = True
    for name, data in files.items():
        client.put_object(Bucket=_bucket(state), Key=f"{job_id}/{name}", Body=data, ContentType="text/csv")


def rotate_credentials(state: SandboxState) -> None:
    """POND's signing credentials are temporary (the seed's links carry an ``ASIA...`` key id): when
    they rotate, every link signed with them fails before its own ``X-Amz-Expires``, as on S3."""
    vstate(state)["session_token"] = state.issue("pond-sts")


def _presign(state: SandboxState, key: str) -> str:
    import boto3
    from botocore.config import Config

    vs = vstate(state)
    if not vs["session_token"]:
        rotate_credentials(state)
    client = boto3.client(
        "s3", endpoint_url=vs["gateway_url"], region_name="us-west-2",
        aws_access_key_id=SIGNING_KEY_ID, aws_secret_access_key=state.secret("pond-s3-signing-key"),
        aws_session_token=vs["session_token"],
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    url: str = client.generate_presigned_url(
        "get_object", Params={"Bucket": _bucket(state), "Key": key},
        ExpiresIn=int(config(state).get("link_expiry", 3600)),
    )
    signature = dict(parse_qsl(urlsplit(url).query))["X-Amz-Signature"]
    state.issued.add(signature)
    vs["signatures"][signature] = f"{_bucket(state)}/{key}"
    return url


def _s3_error(status: int, code: str, message: str) -> web.Response:
    body = f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>'
    return web.Response(status=status, text=body, content_type="application/xml")


@web.middleware
async def _record(request: web.Request, handler: Any) -> web.StreamResponse:
    state: SandboxState = request.app["state"]
    entry: dict[str, Any] = {"method": request.method, "path": request.path, "headers": dict(request.headers), "status": None}
    vstate(state)["s3_requests"].append(entry)
    request["pond_entry"] = entry
    return await handler(request)  # type: ignore[no-any-return]


async def _record_status(request: web.Request, response: web.StreamResponse) -> None:
    """Set the status before the first byte leaves, so a client that has its answer sees it recorded."""
    entry = request.get("pond_entry")
    if entry is not None:
        entry["status"] = response.status


async def gateway_get(request: web.Request) -> web.StreamResponse:
    """S3's answers for a presigned GET: refuse a second auth mechanism, bad or expired signatures."""
    state: SandboxState = request.app["state"]
    vs = vstate(state)
    if "Authorization" in request.headers:
        return _s3_error(400, "InvalidArgument", "Only one auth mechanism allowed; only the X-Amz-Algorithm query "
                         "parameter, Signature query string parameter or the Authorization header should be specified")
    query = request.query
    path = request.path.lstrip("/")
    if vs["signatures"].get(query.get("X-Amz-Signature", "")) != path:
        return _s3_error(403, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided.")
    try:
        signed = datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc).timestamp()
        expires = signed + int(query["X-Amz-Expires"])
    except (KeyError, ValueError):
        return _s3_error(403, "AccessDenied", "Query-string authentication requires the X-Amz-Date and X-Amz-Expires parameters")
    if time.time() > expires:
        return _s3_error(403, "AccessDenied", "Request has expired")
    if query.get("X-Amz-Security-Token") != vs["session_token"]:
        return _s3_error(400, "ExpiredToken", "The provided token has expired.")
    bucket, _, key = path.partition("/")
    job = state.jobs.get(key.split("/", 1)[0])
    if state.config.get("s3_endpoint"):
        try:
            data = await asyncio.get_running_loop().run_in_executor(None, _read_object, state, bucket, key)
        except LookupError:
            return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
    elif job is not None and key.split("/", 1)[-1] in job.data.get("files", {}):
        data = job.data["files"][key.split("/", 1)[-1]]
    else:
        return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
    return await serve_bytes(request, data, content_type="text/csv")


def _read_object(state: SandboxState, bucket: str, key: str) -> bytes:
    client = _s3_client(state)
    try:
        return bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    except client.exceptions.NoSuchKey:
        raise LookupError(key) from None


async def _start_gateway(app: web.Application) -> None:
    state: SandboxState = app["state"]
    gateway = web.Application(middlewares=[_record])
    gateway["state"] = state
    gateway.on_response_prepare.append(_record_status)
    gateway.router.add_get("/{bucket}/{key:.+}", gateway_get)
    runner = web.AppRunner(gateway, access_log=None, handler_cancellation=True)
    await runner.setup()
    host = str(config(state).get("gateway_host", "127.0.0.1"))
    site = web.TCPSite(runner, host, int(config(state).get("gateway_port", 0)))
    await site.start()
    sockets = site._server.sockets if site._server else []  # type: ignore[union-attr,attr-defined]
    vstate(state)["gateway_url"] = state.advertised_url("http", host, sockets[0].getsockname()[1])
    app["pond_gateway"] = runner


async def _stop_gateway(app: web.Application) -> None:
    runner = app.get("pond_gateway")
    if runner is not None:
        await runner.cleanup()


def setup(app: web.Application, state: SandboxState) -> None:
    vstate(state)
    app.router.add_post("/oauth2/token", token)
    app.router.add_post("/insights/snapshots", schedule)
    app.router.add_get("/insights/snapshots/{snapshot_id}", snapshot)
    app.on_startup.append(_start_gateway)
    app.on_cleanup.append(_stop_gateway)


def connections(base_url: str, state: SandboxState) -> dict[str, dict[str, Any]]:
    return {
        "pond_default": {
            "conn_type": "pond",
            "host": base_url,
            "login": state.secret("pond-client-id"),
            "password": state.secret("pond-client-secret"),
            "extra": {"token_url": f"{base_url}/oauth2/token", "scope": DEFAULT_SCOPE},
        }
    }
