"""Sandbox of the Indicative User Segments Export API (paths, shapes and status codes of the seed).

- ``GET  /service/v1/segments/list``            the project's segments (Static and Dynamic)
- ``POST /service/v1/segments/export/``          JSON ``{"segmentId", "outputFormat": "csv"}``
- ``GET  /service/v1/segments/export/{exportId}`` PENDING -> COMPLETE | FAILED

Every call needs ``Authorization: Basic base64(apiKey:accessToken)`` (401 otherwise). Settings in
``state.config["indicative"]`` (tests flip them at run time):

- ``export_api`` (default True): False answers 403 as for a project without the Export API.
- ``fail_next`` (engine) / ``fail_segments`` (ids or names): exports that end FAILED.
- ``result_scheme``: ``"s3"`` (default when ``state.config["s3_endpoint"]`` is set: the CSV is
  written into that S3 server and ``filename`` is ``s3://bucket/key``) or ``"https"`` (the sandbox
  serves the CSV at a presigned-looking URL).
- ``bucket`` (default ``indicative-upload``).
Results expire with :func:`expire_export` (the 48-hour purge, on demand).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import uuid
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from airflow_export_providers.sandbox.server import SandboxState, serve_bytes

VENDOR = "indicative"
API = "/service/v1/segments"
DEFAULT_BUCKET = "indicative-upload"

# Realistic project: Static and Dynamic segments; "Trial Users" exists twice (names are not unique
# in Indicative) and "Recent Registrants" has a close sibling, so name resolution has real work.
SEGMENTS: list[dict[str, Any]] = [
    {"segmentId": "82200474-c131-4f7b-a35e-381469af31a7", "name": "Recent Registrants",
     "description": "Users who performed Registration in the last 7 days", "category": "Acquisition",
     "type": "Dynamic", "users": 240},
    {"segmentId": "0b7d8f9e-5a14-4c8e-9d59-2f0c1a6b3e11", "name": "Recent Registrants (EU)",
     "description": "Recent Registrants with country in the EU", "category": "Acquisition",
     "type": "Dynamic", "users": 85},
    {"segmentId": "5f3c2b1a-9e8d-4f7c-b6a5-4d3c2b1a0f9e", "name": "Churn Risk",
     "description": "Active last month, no session in the last 14 days", "category": "Retention",
     "type": "Dynamic", "users": 130},
    {"segmentId": "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f", "name": "Trial Users",
     "description": "Started a trial (one-time list from the 2019 campaign)", "category": None,
     "type": "Static", "users": 42},
    {"segmentId": "d4e5f6a7-b8c9-4d0e-9f1a-2b3c4d5e6f70", "name": "Trial Users",
     "description": "Currently in trial", "category": "Monetization",
     "type": "Dynamic", "users": 57},
    {"segmentId": "e7f8a9b0-c1d2-4e3f-8a4b-5c6d7e8f9a0b", "name": "Q3 2019 Promo Redeemers",
     "description": None, "category": "Campaigns",
     "type": "Static", "users": 18},
]

PUBLIC_FIELDS = ("segmentId", "name", "description", "category", "projectId", "type", "lastRun")

MSG_401 = ("Unauthorized: Your request was rejected because we could not validate your credentials. "
           "Please check that your API key and access token are correct.")
MSG_403 = ("Forbidden: Your request was rejected because the specified project does not have access to "
           "the Export API. Please upgrade your account or contact Analytics support to gain access.")


def _iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def _data(state: SandboxState) -> dict[str, Any]:
    """Per-run values: the project's API key (also its projectId, as in the seed) and the segments."""
    with state.lock:
        data = state.vendor.setdefault(VENDOR, {})
        if "api_key" not in data:
            data["api_key"] = str(uuid.uuid4())
            today = datetime.now(timezone.utc).replace(hour=6, minute=0, second=0, microsecond=0)
            segs = []
            for seg in SEGMENTS:
                seg = dict(seg, projectId=data["api_key"])
                # Dynamic segments are refreshed daily; Static ones were computed once.
                seg["lastRun"] = _iso(today) if seg["type"] == "Dynamic" else "2019-04-09T12:25:06.000Z"
                segs.append(seg)
            data["segments"] = segs
            data["expired"] = set()
        return data


def api_key(state: SandboxState) -> str:
    return str(_data(state)["api_key"])


def access_token(state: SandboxState) -> str:
    return state.secret("indicative-access-token")


def segments(state: SandboxState) -> list[dict[str, Any]]:
    return list(_data(state)["segments"])


def segment_rows(segment_id: str) -> list[str]:
    """The user ids a segment export holds (deterministic, so tests know what must land)."""
    seg = next(s for s in SEGMENTS if s["segmentId"] == segment_id)
    return [f"u-{hashlib.sha1(f'{segment_id}:{i}'.encode()).hexdigest()[:16]}" for i in range(seg["users"])]


def segment_csv(segment_id: str) -> bytes:
    seg = next(s for s in SEGMENTS if s["segmentId"] == segment_id)
    lines = ["userId,segmentName"] + [f'{uid},"{seg["name"]}"' for uid in segment_rows(segment_id)]
    return ("\r\n".join(lines) + "\r\n").encode()


def expire_export(state: SandboxState, export_id: str) -> None:
    """The 48-hour purge, now: the result file disappears (S3 object deleted or link refused)."""
    job = state.jobs[export_id]
    _data(state)["expired"].add(export_id)
    s3 = job.data.get("s3")
    if s3:
        _s3_client(state).delete_object(Bucket=s3[0], Key=s3[1])


def _s3_client(state: SandboxState) -> Any:
    import boto3

    return boto3.client(
        "s3", endpoint_url=state.config["s3_endpoint"], region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )


def _cfg(state: SandboxState) -> dict[str, Any]:
    return state.vendor_config(VENDOR)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"status": status, "message": message}, status=status)


def _check(request: web.Request) -> web.Response | None:
    state: SandboxState = request.app["state"]
    expected = base64.b64encode(f"{api_key(state)}:{access_token(state)}".encode()).decode()
    if request.headers.get("Authorization", "") != f"Basic {expected}":
        return _error(401, MSG_401)
    if not _cfg(state).get("export_api", True):
        return _error(403, MSG_403)
    return None


async def _list(request: web.Request) -> web.Response:
    refused = _check(request)
    if refused is not None:
        return refused
    state: SandboxState = request.app["state"]
    return web.json_response([{k: s.get(k) for k in PUBLIC_FIELDS} for s in segments(state)])


async def _start(request: web.Request) -> web.Response:
    refused = _check(request)
    if refused is not None:
        return refused
    state: SandboxState = request.app["state"]
    try:
        body = json.loads(await request.read())
    except ValueError:
        return _error(400, "Bad Request: the body must be a JSON object")
    if not isinstance(body, dict):
        return _error(400, "Bad Request: the body must be a JSON object")
    seg = next((s for s in segments(state) if s["segmentId"] == body.get("segmentId")), None)
    if seg is None:
        return _error(400, f"Bad Request: unknown segmentId {body.get('segmentId')!r}")
    fmt = body.get("outputFormat", "csv")
    if fmt != "csv":
        return _error(400, f"Bad Request: unsupported outputFormat {fmt!r}")
    kwargs: dict[str, Any] = {}
    failing = _cfg(state).get("fail_segments") or ()
    if seg["segmentId"] in failing or seg["name"] in failing:
        kwargs["fail"] = True
    job = state.new_job(VENDOR, {"segmentId": seg["segmentId"], "outputFormat": fmt}, job_id=str(uuid.uuid4()), **kwargs)
    job.data["startTime"] = _iso(datetime.fromtimestamp(job.created_at, timezone.utc))
    return web.json_response(_export(state, job, "PENDING"))


def _export(state: SandboxState, job: Any, status: str) -> dict[str, Any]:
    seg = next(s for s in segments(state) if s["segmentId"] == job.params["segmentId"])
    return {
        "exportId": job.job_id,
        "segment": {k: seg.get(k) for k in PUBLIC_FIELDS},
        "status": status,
        "projectId": seg["projectId"],
        "startTime": job.data["startTime"],
        "endTime": job.data.get("endTime"),
        "filename": job.data.get("filename") if status == "COMPLETE" else None,
    }


def _finish(state: SandboxState, job: Any) -> None:
    """Upload the result once (as Indicative does at completion) and remember its filename."""
    if "filename" in job.data:
        return
    ended = datetime.fromtimestamp(job.created_at + job.pending_seconds + job.running_seconds, timezone.utc)
    data = segment_csv(job.params["segmentId"])
    scheme = _cfg(state).get("result_scheme") or ("s3" if state.config.get("s3_endpoint") else "https")
    if scheme == "s3":
        bucket = _cfg(state).get("bucket", DEFAULT_BUCKET)
        key = f"segment-exports/{api_key(state)}/{job.job_id}.csv"
        s3 = _s3_client(state)
        try:
            s3.create_bucket(Bucket=bucket)
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass
        s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType="text/csv")
        job.data["s3"] = (bucket, key)
        filename = f"s3://{bucket}/{key}"
    else:
        sig = state.issue("sig")
        job.data["sig"] = sig
        filename = (f"{state.base_url}/indicative-results/{job.job_id}.csv?X-Amz-Algorithm=AWS4-HMAC-SHA256"
                    f"&X-Amz-Expires=172800&X-Amz-Signature={sig}")
    job.data["endTime"] = _iso(ended)
    job.data["filename"] = filename


async def _status(request: web.Request) -> web.Response:
    refused = _check(request)
    if refused is not None:
        return refused
    state: SandboxState = request.app["state"]
    job = state.jobs.get(request.match_info["export_id"])
    if job is None or job.vendor != VENDOR:
        return _error(404, "Not Found: no export with this exportId")
    raw = job.state()
    if raw == "SUCCESS":
        await asyncio.to_thread(_finish, state, job)
        return web.json_response(_export(state, job, "COMPLETE"))
    if raw == "FAILED":
        job.data.setdefault("endTime", _iso(datetime.now(timezone.utc)))
        return web.json_response(_export(state, job, "FAILED"))
    return web.json_response(_export(state, job, "PENDING"))


async def _result(request: web.Request) -> web.StreamResponse:
    """An https result URL (when not writing to S3): a presigned-style link, refused once expired."""
    state: SandboxState = request.app["state"]
    export_id = request.match_info["name"].removesuffix(".csv")
    job = state.jobs.get(export_id)
    if job is None or "sig" not in job.data:
        return web.Response(status=404, text="<Error><Code>NoSuchKey</Code></Error>", content_type="application/xml")
    if request.headers.get("Authorization"):
        return web.Response(status=400, text="<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed"
                            "</Message></Error>", content_type="application/xml")
    if request.query.get("X-Amz-Signature") != job.data["sig"] or export_id in _data(state)["expired"]:
        return web.Response(status=403, text="<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>",
                            content_type="application/xml")
    return await serve_bytes(request, segment_csv(job.params["segmentId"]), content_type="text/csv")


def setup(app: web.Application, state: SandboxState) -> None:
    app.router.add_get(f"{API}/list", _list)
    app.router.add_post(f"{API}/export/", _start)
    app.router.add_post(f"{API}/export", _start)
    app.router.add_get(f"{API}/export/{{export_id}}", _status)
    app.router.add_get("/indicative-results/{name}", _result)


def connections(base_url: str, state: SandboxState) -> dict[str, dict[str, Any]]:
    return {
        "indicative_default": {
            "conn_type": "indicative",
            "host": base_url,
            "login": api_key(state),
            "password": access_token(state),
            "extra": {"aws_conn_id": "aws_default"},
        }
    }

