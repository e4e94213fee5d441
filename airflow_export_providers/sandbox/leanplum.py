"""Leanplum exportData / getExportResults, as the seed describes them, on loopback.

What is simulated faithfully:
- ``GET|POST /api`` with ``appId``, ``clientKey``, ``apiVersion``, ``action`` (query or form body);
  answers wrapped as ``{"response": [{"success": ..., ...}]}``; refusals are ``success: false`` with
  ``error.message`` (HTTP 400, or 401 for bad keys).
- The rules: dates are Pacific (America/Los_Angeles) YYYYMMDD; nothing older than 60 days; 24 valid
  exports per day per app (invalid calls do not count); jobs go PENDING -> RUNNING -> FINISHED (or
  FAILED when ``config["leanplum"]["fail_next"]`` is a positive count); files of one JSON session per
  line, or the CSV family (sessions, states, events, eventparameters, userattributes, experiments);
  files are split at ``max_sessions_per_file``, deleted ``file_ttl_seconds`` after the export finished
  (404 NoSuchKey), and served at signed URLs (``Expires`` + ``Signature``) that expire.
- Sessions are generated deterministically; each has a fractional "available at" time (when
  Leanplum made it exportable), so ``startTime``/``endTime`` filtering is real and exact: historical
  sessions every ``history_step_seconds`` before the sandbox started, then ``live_sessions_per_second``
  for ``live_seconds`` (streaming tests), then one every ``history_step_seconds`` again. The window is
  ``[startTime, endTime)`` (``time_window="half-open"``, default) or ``[startTime, endTime]``
  (``"inclusive"``); ``quiet`` ([[from, to], ...]) are periods in which nothing becomes available.
- An export that matches nothing answers ``{"success": true}`` without a ``jobId`` (the seed: a jobId
  "if data matching supplied arguments is available"); it counts against the quota.
- ``getExportResults`` of an unknown job, or of one older than ``job_ttl_seconds``, is refused with
  HTTP ``unknown_job_status`` (404); ``status_field="status"`` names the state field ``status`` as the
  seed's table does.
- Direct-to-S3: with ``s3BucketName`` + ``s3AccessId`` + ``s3AccessKey`` the files are also written
  to ``config["s3_endpoint"]`` (moto) under ``s3ObjectPrefix``, gzip'd with ``.gz`` when
  ``compressData=true``. A failed copy fails the job.
- ``callbackUrl`` receives a POST of the getExportResults answer when the job is final.

Test hooks: ``state.vendor["leanplum"]`` holds ``app_id``, the session generator (``sessions_between``)
and ``callbacks`` (bodies POSTed to ``/_sandbox/leanplum/callback``); ``GET /_sandbox/leanplum/sessions
?startTime=&endTime=`` (and ``ground_truth()``) lists the sessions a gapless stream over that window
exports; ``status_reads`` counts getExportResults calls per job. Config: ``quota_message`` /
``quota_status`` (the words of the quota refusal), ``refuse_message`` / ``refuse_status`` (refuse
every export in those words), ``export_barrier`` (hold exportData answers until that many arrived:
overlapping runs submit at the same time).
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import json
import math
import random
import threading
import time
import uuid
from datetime import date, datetime, timedelta
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from airflow_export_providers.sandbox.server import SandboxJob, SandboxState, serve_bytes

VENDOR = "leanplum"
PACIFIC = ZoneInfo("America/Los_Angeles")
CSV_TYPES = ("sessions", "states", "events", "eventparameters", "userattributes", "experiments")
DEFAULTS: dict[str, Any] = {
    "quota_per_day": 24,
    "quota_window_seconds": 86400.0,
    "window_days": 60,
    "file_ttl_seconds": 86400.0,
    "url_ttl_seconds": 3600.0,
    "max_sessions_per_file": 1000,
    "history_days": 70,
    "history_step_seconds": 1800,
    "live_sessions_per_second": 2,
    "live_seconds": 4 * 3600,
    "max_delay_seconds": 6 * 3600,
}
COUNTRIES = [("US", "CA", "San Francisco", "America/Los_Angeles"), ("US", "NY", "New York", "America/New_York"),
             ("DE", "BE", "Berlin", "Europe/Berlin"), ("FR", "IDF", "Paris", "Europe/Paris"),
             ("BR", "SP", "Sao Paulo", "America/Sao_Paulo"), ("JP", "13", "Tokyo", "Asia/Tokyo")]
DEVICES = [("iOS", "17.5", "iPhone 14"), ("iOS", "16.7", "iPhone 12"), ("Android", "14", "Pixel 8"),
           ("Android", "13", "Galaxy S22")]
EVENTS = ["Opened App", "Viewed Item", "Added To Cart", "Purchase", "Shared", "Search"]
STATES = ["Home", "Catalog", "Checkout", "Settings"]


def _settings(state: SandboxState) -> dict[str, Any]:
    cfg = state.vendor_config(VENDOR)
    return {**DEFAULTS, **{k: v for k, v in cfg.items() if k in DEFAULTS}}


def _vstate(state: SandboxState) -> dict[str, Any]:
    return state.vendor.setdefault(VENDOR, {})


def _wrap(success: bool, status: int = 200, **fields: Any) -> web.Response:
    return web.json_response({"response": [{"success": success, **fields}]}, status=status)


def _refuse(message: str, status: int = 400) -> web.Response:
    return _wrap(False, status=status, error={"message": message})


def pacific_day(ts: float) -> date:
    return datetime.fromtimestamp(ts, PACIFIC).date()


def pacific_midnight(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=PACIFIC).timestamp()


# ---- the session generator ---------------------------------------------------------------------
class SessionSource:
    """Deterministic sessions indexed by k, each with a fractional ``available_at`` time.

    Leanplum's ``startTime``/``endTime`` are "when data became available", a Number of seconds: the
    live burst makes ``live_sessions_per_second`` sessions available per second at ``anchor + k/rate``
    (with 2 a second, every other one sits exactly on a whole second), the history before it and the
    tail after it are spaced ``history_step_seconds`` apart, a quarter second off the whole second.
    A window is ``[startTime, endTime)`` (``time_window="half-open"``, the default) or
    ``[startTime, endTime]`` (``"inclusive"``, the other reading of the seed's "First/Last time to
    include"); chained exports must lose nothing under either.
    """

    HISTORY_OFFSET = 0.25

    def __init__(self, anchor: int, settings: dict[str, Any], seed: str) -> None:
        self.anchor = anchor
        self.step = int(settings["history_step_seconds"])
        self.rate = max(1, int(settings["live_sessions_per_second"]))
        self.live = int(settings["live_seconds"])
        self.history = int(settings["history_days"]) * 86400
        self.max_delay = int(settings["max_delay_seconds"])
        self.seed = seed
        self.live_count = self.live * self.rate

    def available_at(self, k: int) -> float:
        if k < 0:
            return self.anchor + k * self.step + self.HISTORY_OFFSET
        if k < self.live_count:
            return self.anchor + k / self.rate
        return self.anchor + self.live + (k - self.live_count + 1) * self.step + self.HISTORY_OFFSET

    def indices(self, t0: float, t1: float, include_end: bool = False) -> list[int]:
        """Every k whose available_at lies in [t0, t1) — or [t0, t1] with ``include_end``."""
        if t1 < t0 or (t1 == t0 and not include_end):
            return []

        lo_t, hi_t = Fraction(t0), Fraction(t1)  # exact: a boundary session is in or out, never rounded

        def k_range(base: Fraction, unit: Fraction, k_min: int, k_max: int) -> range:
            # k with base + k*unit in the window
            lo = math.ceil((lo_t - base) / unit)
            top = (hi_t - base) / unit
            hi = math.floor(top) if include_end else math.ceil(top) - 1
            return range(max(k_min, lo), min(k_max, hi) + 1)

        first_hist = -(self.history // self.step)
        offset, step = Fraction(self.HISTORY_OFFSET), Fraction(self.step)
        out: list[int] = list(k_range(self.anchor + offset, step, first_hist, -1))
        out.extend(k_range(Fraction(self.anchor), Fraction(1, self.rate), 0, self.live_count - 1))
        tail = k_range(self.anchor + self.live + offset, step, 1, 1 << 62)
        out.extend(self.live_count - 1 + j for j in tail)
        return out

    def session(self, k: int) -> dict[str, Any]:
        rng = random.Random(f"{self.seed}:{k}")
        available = self.available_at(k)
        late = rng.random() < 0.05  # offline sessions arrive days later
        delay = rng.uniform(3 * 86400, 7 * 86400) if late else rng.uniform(600, self.max_delay)
        duration = round(rng.uniform(5, 1800), 3)
        start = available - delay - duration
        user = rng.randrange(500)
        country, region, city, tz = COUNTRIES[user % len(COUNTRIES)]
        system, version, model = DEVICES[user % len(DEVICES)]
        states = []
        t = start
        for s in range(rng.randint(1, 3)):
            state_id = rng.getrandbits(62)
            events = []
            for _ in range(rng.randint(0, 4)):
                t += rng.uniform(1, 60)
                event: dict[str, Any] = {"eventId": rng.getrandbits(62), "name": rng.choice(EVENTS), "time": round(t, 3),
                                         "value": round(rng.choice([0.0, 0.0, rng.uniform(1, 99)]), 2)}
                if rng.random() < 0.5:
                    event["parameters"] = {"item": f"sku-{rng.randrange(100)}", "source": rng.choice(["push", "organic"])}
                events.append(event)
            states.append({"stateId": state_id, "name": STATES[(user + s) % len(STATES)], "time": round(start + s, 3),
                           "duration": round(duration / 3, 3), "events": events})
        return {
            "sessionId": str(7_000_000_000_000_000 + k),
            "userId": f"user-{user}",
            "deviceId": f"device-{user:04d}",
            "time": round(start, 3),
            "duration": duration,
            "country": country,
            "region": region,
            "city": city,
            "timezone": tz,
            "timezoneOffsetSeconds": int(datetime.now(ZoneInfo(tz)).utcoffset().total_seconds()),  # type: ignore[union-attr]
            "locale": "en_US",
            "lat": round(rng.uniform(-60, 60), 4),
            "lon": round(rng.uniform(-150, 150), 4),
            "appVersion": f"3.{user % 7}.0",
            "sdkVersion": "7.2.0",
            "client": system.lower(),
            "systemName": system,
            "systemVersion": version,
            "deviceModel": model,
            "isSession": True,
            "isDeveloper": False,
            "firstRun": round(start - rng.uniform(86400, 400 * 86400), 3),
            "userBucket": user % 1000,
            "priorSessions": rng.randrange(0, 300),
            "priorEvents": rng.randrange(0, 3000),
            "priorStates": rng.randrange(0, 500),
            "priorTimeSpentInApp": round(rng.uniform(0, 100000), 3),
            "sourcePublisher": rng.choice(["Organic", "Ad network A", "Referral"]),
            "sourceCampaign": rng.choice(["spring", "retargeting", "none"]),
            "userAttributes": {"plan": rng.choice(["free", "plus", "pro"]), "newsletter": rng.choice(["True", "False"])},
            "experiments": [{"id": 800315004 + e, "variantId": 796675005 + rng.randrange(3), "impressed": rng.random() < 0.7}
                            for e in range(rng.randint(0, 2))],
            "states": states,
        }

    def sessions_between(self, t0: float, t1: float, include_end: bool = False) -> list[tuple[float, dict[str, Any]]]:
        """(available_at, session) for every session available in [t0, t1) (or [t0, t1])."""
        return [(self.available_at(k), self.session(k)) for k in self.indices(t0, t1, include_end)]


def source(state: SandboxState) -> SessionSource:
    vs = _vstate(state)
    if "source" not in vs:
        vs["source"] = SessionSource(int(vs.get("anchor") or time.time()), _settings(state), seed=vs.get("seed", "leanplum"))
    return vs["source"]  # type: ignore[no-any-return]


def include_end(state: SandboxState) -> bool:
    """Is ``endTime`` part of the window (``time_window="inclusive"``) or its open end (the default)?"""
    mode = str(state.vendor_config(VENDOR).get("time_window") or "half-open")
    if mode not in ("half-open", "inclusive"):
        raise ValueError(f"sandbox leanplum time_window: {mode!r}; use 'half-open' or 'inclusive'")
    return mode == "inclusive"


def _quiet(state: SandboxState, available: float) -> bool:
    """Inside a test-set quiet period (``config["leanplum"]["quiet"]``: [[from, to], ...]): nothing arrives then."""
    return any(q0 <= available < q1 for q0, q1 in state.vendor_config(VENDOR).get("quiet") or ())


def available_sessions(state: SandboxState, start_time: float | None, end_time: float | None,
                       now: float) -> list[tuple[float, dict[str, Any]]]:
    """(available_at, session) of every session an export of [start_time, end_time) holds as of ``now``.

    ``endTime`` follows the ``time_window`` reading; "as of now" always includes what became available
    at ``now`` itself. Nothing older than the 60-day window. No date filter: this is availability only.
    """
    st = _settings(state)
    t0 = now - st["window_days"] * 86400
    if start_time is not None:
        t0 = max(t0, start_time)
    if end_time is not None and end_time <= now:
        t1, closed = float(end_time), include_end(state)
    else:
        t1, closed = now, True
    return [(avail, session) for avail, session in source(state).sessions_between(t0, t1, closed)
            if not _quiet(state, avail)]


def select_sessions(state: SandboxState, params: dict[str, Any], now: float) -> list[dict[str, Any]]:
    """What an export with these (already validated) parameters contains, as of ``now``.

    Sessions that started between 00:00 Pacific on startDate and the end of endDate, among those
    available in the time window.
    """
    lo_start = pacific_midnight(params["start_day"])
    hi_start = pacific_midnight(params["end_day"] + timedelta(days=1))
    # A session becomes available after it started (and, here, within 8 days of it).
    start_time = max(lo_start, params["start_time"]) if params["start_time"] is not None else lo_start
    end_time = params["end_time"]
    if end_time is None or end_time > hi_start + 8 * 86400:
        end_time = min(now, hi_start + 8 * 86400)
    out = [session for _avail, session in available_sessions(state, start_time, end_time, now)
           if lo_start <= session["time"] < hi_start]
    random.Random(params["job_id"]).shuffle(out)  # "not necessarily ordered"
    return out


def ground_truth(state: SandboxState, start_time: float, end_time: float, now: float | None = None) -> list[dict[str, Any]]:
    """``sessionId`` and ``availableAt`` of every session a gapless stream over [start_time, end_time) exports."""
    at = time.time() if now is None else now
    return [{"sessionId": s["sessionId"], "availableAt": avail}
            for avail, s in available_sessions(state, start_time, end_time, at)]


# ---- file rendering ----------------------------------------------------------------------------
def render_json(sessions: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(s, separators=(",", ":")).encode() + b"\n" for s in sessions)


CSV_COLUMNS = {
    "sessions": ["sessionId", "userId", "userBucket", "userStart", "country", "region", "city", "start", "duration",
                 "lat", "lon", "locale", "timezone", "timezoneOffset", "appVersion", "client", "sdkVersion", "osName",
                 "osVersion", "deviceModel", "deviceId", "priorEvents", "priorSessions", "priorTimeSpentInApp",
                 "priorStates", "isDeveloper", "isSession", "sourcePublisher", "sourceCampaign"],
    "states": ["stateId", "sessionId", "stateName", "start", "duration"],
    "events": ["eventId", "sessionId", "stateId", "eventName", "start", "value"],
    "eventparameters": ["eventId", "name", "value"],
    "userattributes": ["sessionId", "name", "value"],
    "experiments": ["sessionId", "experimentId", "variantId", "impressed"],
}


def csv_rows(kind: str, s: dict[str, Any]) -> list[list[Any]]:
    sid = s["sessionId"]
    if kind == "sessions":
        return [[sid, s["userId"], s["userBucket"], s["firstRun"], s["country"], s["region"], s["city"], s["time"],
                 s["duration"], s["lat"], s["lon"], s["locale"], s["timezone"], s["timezoneOffsetSeconds"],
                 s["appVersion"], s["client"], s["sdkVersion"], s["systemName"], s["systemVersion"], s["deviceModel"],
                 s["deviceId"], s["priorEvents"], s["priorSessions"], s["priorTimeSpentInApp"], s["priorStates"],
                 s["isDeveloper"], s["isSession"], s["sourcePublisher"], s["sourceCampaign"]]]
    if kind == "states":
        return [[st["stateId"], sid, st["name"], st["time"], st["duration"]] for st in s["states"]]
    if kind == "events":
        return [[e["eventId"], sid, st["stateId"], e["name"], e["time"], e["value"]] for st in s["states"] for e in st["events"]]
    if kind == "eventparameters":
        return [[e["eventId"], k, v] for st in s["states"] for e in st["events"] for k, v in (e.get("parameters") or {}).items()]
    if kind == "userattributes":
        return [[sid, k, v] for k, v in s["userAttributes"].items()]
    return [[sid, x["id"], x["variantId"], x["impressed"]] for x in s["experiments"]]


def render_csv(kind: str, sessions: list[dict[str, Any]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS[kind])
    for s in sessions:
        writer.writerows(csv_rows(kind, s))
    return buf.getvalue().encode()


def build_files(job: SandboxJob, max_per_file: int) -> list[tuple[str, bytes]]:
    sessions: list[dict[str, Any]] = job.data["sessions"]
    chunks = [sessions[i:i + max_per_file] for i in range(0, len(sessions), max_per_file)] or [[]]
    stem = "export-" + job.job_id.removeprefix("export_").replace("_", "-")
    if job.params["exportFormat"] == "csv":
        return [(f"{stem}-output{kind}-{n}", render_csv(kind, chunk)) for kind in CSV_TYPES for n, chunk in enumerate(chunks)]
    return [(f"{stem}-output-{n}", render_json(chunk)) for n, chunk in enumerate(chunks)]


# ---- job lifecycle -----------------------------------------------------------------------------
_finalize_lock = threading.Lock()


def finalize(state: SandboxState, job: SandboxJob) -> None:
    """Build the files once the job is done (and copy them to S3 when asked); idempotent."""
    with _finalize_lock:
        if job.data.get("finalized") or job.state() != "SUCCESS":
            return
        st = _settings(state)
        files = build_files(job, int(st["max_sessions_per_file"]))
        job.data["files"] = dict(files)
        job.data["order"] = [name for name, _ in files]
        job.data["finished_at"] = time.time()
        job.data["ttl"] = float(st["file_ttl_seconds"])
        if job.params.get("s3BucketName"):
            try:
                copy_to_s3(state, job, files)
            except Exception as exc:  # Leanplum reports a failed copy as a failed export
                job.fail = True
                job.data["error"] = f"Could not write to S3 bucket {job.params['s3BucketName']}: {type(exc).__name__}"
        job.data["finalized"] = True


def copy_to_s3(state: SandboxState, job: SandboxJob, files: list[tuple[str, bytes]]) -> None:
    import boto3

    endpoint = state.config.get("s3_endpoint")
    if not endpoint:
        raise RuntimeError("sandbox has no s3_endpoint configured")
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id=job.params["s3AccessId"], aws_secret_access_key=job.params["s3AccessKey"])
    prefix = job.params.get("s3ObjectPrefix") or ""
    compress = job.params.get("compressData")
    keys = []
    for name, data in files:
        key = prefix + name + (".gz" if compress else "")
        body = gzip.compress(data, mtime=0) if compress else data
        client.put_object(Bucket=job.params["s3BucketName"], Key=key, Body=body)
        keys.append(key)
    job.data["s3_keys"] = keys


def results(state: SandboxState, job: SandboxJob, base_url: str) -> dict[str, Any]:
    finalize(state, job)
    raw = job.state()
    answer: dict[str, Any] = {"success": True, "jobId": job.job_id}
    if raw == "SUCCESS":
        st = _settings(state)
        expires = math.ceil(time.time() + float(st["url_ttl_seconds"]))
        urls = []
        sigs = _vstate(state).setdefault("signatures", {})
        for name in job.data["order"]:
            sig = state.issue("lpsig")
            sigs[sig] = (job.job_id, name)
            urls.append(f"{base_url}/leanplum_export/{name}?GoogleAccessId=export%40leanplum.iam.gserviceaccount.com"
                        f"&Expires={expires}&Signature={sig}")
        answer.update(state="FINISHED", files=urls, numSessions=len(job.data["sessions"]),
                      numBytes=sum(len(b) for b in job.data["files"].values()))
    elif raw == "FAILED":
        answer["state"] = "FAILED"
        if job.data.get("error"):
            answer["error"] = {"message": job.data["error"]}
    else:
        answer["state"] = raw
    return answer


async def _callback_when_done(state: SandboxState, job: SandboxJob, url: str, base_url: str) -> None:
    import aiohttp

    while job.state() not in ("SUCCESS", "FAILED"):
        await asyncio.sleep(0.05)
    loop = asyncio.get_running_loop()
    body = await loop.run_in_executor(None, results, state, job, base_url)
    try:
        async with aiohttp.ClientSession() as session:
            await session.post(url, json={"response": [body]}, timeout=aiohttp.ClientTimeout(total=10))
    except Exception:  # the vendor does not retry callbacks either
        pass


# ---- request handling --------------------------------------------------------------------------
def _parse_day(value: str | None, field: str) -> date:
    if not value or len(value) != 8 or not value.isdigit():
        raise ValueError(f"Invalid {field}: expected YYYYMMDD, got '{value}'.")
    try:
        return datetime.strptime(value, "%Y%m%d").date()
    except ValueError:
        raise ValueError(f"Invalid {field}: '{value}' is not a date.") from None


def _parse_time(value: str | None, field: str) -> float | None:
    """A Number of epoch seconds (fractions kept: availability times are not whole seconds)."""
    if value in (None, ""):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise ValueError(f"Invalid {field}: expected seconds since the epoch, got '{value}'.")
    return number


def validate_export(state: SandboxState, q: dict[str, str], now: float) -> dict[str, Any]:
    st = _settings(state)
    start_day = _parse_day(q.get("startDate"), "startDate")
    end_day = _parse_day(q["endDate"], "endDate") if q.get("endDate") else start_day
    if end_day < start_day:
        raise ValueError("endDate must not be before startDate.")
    oldest = pacific_day(now) - timedelta(days=int(st["window_days"]))
    if start_day < oldest:
        raise ValueError(f"You cannot export data older than {st['window_days']} days (startDate must be "
                         f"{oldest:%Y%m%d} or later).")
    fmt = (q.get("exportFormat") or "json").lower()
    if fmt not in ("json", "csv"):
        raise ValueError(f"Invalid exportFormat '{q.get('exportFormat')}': must be json or csv.")
    start_time, end_time = _parse_time(q.get("startTime"), "startTime"), _parse_time(q.get("endTime"), "endTime")
    if start_time is not None and end_time is not None and end_time < start_time:
        raise ValueError("endTime must not be before startTime.")
    bucket = q.get("s3BucketName")
    if bucket and not (q.get("s3AccessId") and q.get("s3AccessKey")):
        raise ValueError("s3AccessId and s3AccessKey are required when s3BucketName is set.")
    return {
        "start_day": start_day, "end_day": end_day, "start_time": start_time, "end_time": end_time,
        "exportFormat": fmt, "s3BucketName": bucket or None, "s3AccessId": q.get("s3AccessId"),
        "s3AccessKey": q.get("s3AccessKey"), "s3ObjectPrefix": q.get("s3ObjectPrefix") or "",
        "compressData": bool(bucket) and (q.get("compressData") or "").lower() == "true",
        "callbackUrl": q.get("callbackUrl"),
    }


def _quota_ok(state: SandboxState, app_id: str, now: float) -> bool:
    st = _settings(state)
    used = _vstate(state).setdefault("quota", {}).setdefault(app_id, [])
    used[:] = [t for t in used if t > now - float(st["quota_window_seconds"])]
    return len(used) < int(st["quota_per_day"])


def _job_gone(state: SandboxState, job: SandboxJob | None, now: float) -> bool:
    """Unknown, or forgotten ``job_ttl_seconds`` after it was submitted (Leanplum keeps results 24 hours)."""
    if job is None or job.vendor != VENDOR:
        return True
    ttl = state.vendor_config(VENDOR).get("job_ttl_seconds")
    return ttl is not None and now > job.created_at + float(ttl)


async def _export_barrier(state: SandboxState) -> None:
    """Test hook ``config["leanplum"]["export_barrier"] = n``: hold exportData answers until n requests
    arrived (at most ``export_barrier_timeout``, 45 s: within a client's read timeout), so n overlapping
    runs really submit at once."""
    cfg = state.vendor_config(VENDOR)
    want = int(cfg.get("export_barrier") or 0)
    if want <= 1:
        return
    vs = _vstate(state)
    vs["barrier_arrived"] = int(vs.get("barrier_arrived", 0)) + 1
    deadline = time.time() + float(cfg.get("export_barrier_timeout") or 45)
    while vs["barrier_arrived"] < want and time.time() < deadline:
        await asyncio.sleep(0.05)


async def api(request: web.Request) -> web.Response:
    state: SandboxState = request.app["state"]
    q: dict[str, str] = dict(request.query)
    if request.method == "POST" and request.can_read_body:
        q.update({k: str(v) for k, v in (await request.post()).items()})
    vs = _vstate(state)
    if not q.get("appId") or not q.get("clientKey"):
        return _refuse("appId and clientKey are required.")
    if q["appId"] != vs["app_id"] or q["clientKey"] != state.secret("leanplum-export-key"):
        return _refuse("Incorrect appId or clientKey.", status=401)
    action = q.get("action")
    base_url = f"{request.scheme}://{request.host}"
    now = time.time()
    cfg = state.vendor_config(VENDOR)
    if action == "exportData":
        try:
            params = validate_export(state, q, now)
        except ValueError as exc:
            return _refuse(str(exc))
        await _export_barrier(state)
        now = time.time()
        if cfg.get("refuse_message"):  # test hook: a refusal in words the hook has never seen
            return _refuse(str(cfg["refuse_message"]), status=int(cfg.get("refuse_status") or 400))
        if not _quota_ok(state, q["appId"], now):
            st = _settings(state)
            vs["refusals"] = int(vs.get("refusals", 0)) + 1
            message = cfg.get("quota_message") or f"Export limit reached: you may only export data {st['quota_per_day']} times per day."
            return _refuse(str(message), status=int(cfg.get("quota_status") or 400))
        vs.setdefault("quota", {}).setdefault(q["appId"], []).append(now)
        job_id = f"export_{random.randrange(10**15, 10**16)}_{random.randrange(10**18, 10**19)}"
        sessions = select_sessions(state, {**params, "job_id": job_id}, now)
        if not sessions:
            # The seed: exportData answers a jobId only "if data matching supplied arguments is available".
            vs["empty_answers"] = int(vs.get("empty_answers", 0)) + 1
            return _wrap(True)
        fail_next = int(cfg.get("fail_next") or 0)
        job = state.new_job(VENDOR, params, job_id=job_id, fail=fail_next > 0)
        if fail_next > 0:
            cfg["fail_next"] = fail_next - 1
        job.params["job_id"] = job_id
        job.data["sessions"] = sessions
        job.data["submitted_at"] = now
        if params["callbackUrl"]:
            vs.setdefault("tasks", set()).add(
                asyncio.get_running_loop().create_task(_callback_when_done(state, job, params["callbackUrl"], base_url)))
        return _wrap(True, jobId=job_id)
    if action == "getExportResults":
        found = state.jobs.get(q.get("jobId") or "")
        if _job_gone(state, found, now):
            return _refuse(f"Export job {q.get('jobId')!r} not found.", status=int(cfg.get("unknown_job_status") or 404))
        assert found is not None
        reads = vs.setdefault("status_reads", {})
        reads[found.job_id] = reads.get(found.job_id, 0) + 1
        loop = asyncio.get_running_loop()
        body = await loop.run_in_executor(None, results, state, found, base_url)
        if cfg.get("status_field") == "status":  # the seed's table calls the field "status"
            body["status"] = body.pop("state")
        return web.json_response({"response": [body]})
    return _refuse(f"Unknown action: {action!r}.")


def _xml_error(code: str, message: str, status: int) -> web.Response:
    return web.Response(status=status, content_type="application/xml",
                        text=f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{message}</Message></Error>")


async def export_file(request: web.Request) -> web.StreamResponse:
    state: SandboxState = request.app["state"]
    name = request.match_info["name"]
    sig = request.query.get("Signature", "")
    owner = _vstate(state).get("signatures", {}).get(sig)
    if owner is None or owner[1] != name:
        return _xml_error("SignatureDoesNotMatch", "The request signature we calculated does not match.", 403)
    try:
        expires = int(request.query.get("Expires", "0"))
    except ValueError:
        expires = 0
    if expires < time.time():
        return _xml_error("ExpiredToken", "The provided token has expired.", 400)
    job = state.jobs.get(owner[0])
    if job is None or name not in job.data.get("files", {}) or time.time() > job.data["finished_at"] + job.data["ttl"]:
        return _xml_error("NoSuchKey", "The specified key does not exist.", 404)
    ctype = "text/csv" if job.params["exportFormat"] == "csv" else "application/json"
    return await serve_bytes(request, job.data["files"][name], content_type=ctype)


async def callback_sink(request: web.Request) -> web.Response:
    """Receives callbackUrl POSTs in tests (``state.vendor['leanplum']['callbacks']``)."""
    state: SandboxState = request.app["state"]
    _vstate(state).setdefault("callbacks", []).append(await request.json())
    return web.json_response({"ok": True})


async def ground_truth_route(request: web.Request) -> web.Response:
    """``GET /_sandbox/leanplum/sessions?startTime=..&endTime=..``: the sessions a gapless stream over
    that window exports (``sessionId``, ``availableAt``), under the sandbox's ``time_window`` reading."""
    state: SandboxState = request.app["state"]
    try:
        t0 = _parse_time(request.query.get("startTime"), "startTime")
        t1 = _parse_time(request.query.get("endTime"), "endTime")
    except ValueError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    if t0 is None or t1 is None:
        return web.json_response({"error": "startTime and endTime are required"}, status=400)
    loop = asyncio.get_running_loop()
    sessions = await loop.run_in_executor(None, ground_truth, state, t0, t1)
    return web.json_response({"time_window": "inclusive" if include_end(state) else "half-open",
                              "count": len(sessions), "sessions": sessions})


def setup(app: web.Application, state: SandboxState) -> None:
    vs = _vstate(state)
    vs.setdefault("app_id", "app_" + uuid.uuid4().hex[:16])
    vs.setdefault("anchor", int(time.time()))
    state.secret("leanplum-export-key")
    app.router.add_route("GET", "/api", api)
    app.router.add_route("POST", "/api", api)
    app.router.add_get("/leanplum_export/{name}", export_file)
    app.router.add_post("/_sandbox/leanplum/callback", callback_sink)
    app.router.add_get("/_sandbox/leanplum/sessions", ground_truth_route)


def connections(base_url: str, state: SandboxState) -> dict[str, dict[str, Any]]:
    return {
        "leanplum_default": {
            "conn_type": "leanplum",
            "host": base_url,
            "login": _vstate(state)["app_id"],
            "password": state.secret("leanplum-export-key"),
            "extra": {"api_version": "1.0.6"},
        }
    }
