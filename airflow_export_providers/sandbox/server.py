"""The sandbox: one aiohttp server hosting a faithful simulation of each vendor API.

Shared here: the job state machine (timed PENDING -> RUNNING -> SUCCESS/FAILED), per-run random
credentials, submission counters, byte serving with Range support, and fault injection that a test
or a user switches on per route (HTTP status with Retry-After, connection reset half-way through a
body, slow bodies). Each vendor module adds its routes through ``setup(app, state)``.
"""

from __future__ import annotations

import asyncio
import importlib
import random
import re
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web

VENDOR_MODULES = ("pond", "leanplum", "indicative", "mx", "mobile_engagement")


@dataclass
class Fault:
    """One injected fault. ``path`` is a regex searched in the request path."""

    path: str
    kind: str = "status"  # status | reset | slow
    method: str | None = None
    status: int = 500
    retry_after: float | None = None
    body: str = ""
    times: int = 1  # how many requests it hits; -1 = until cleared
    delay: float = 0.0  # slow: seconds to wait before each chunk
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.times == 0:
            return False
        if self.method and self.method.upper() != method.upper():
            return False
        return re.search(self.path, path) is not None


@dataclass
class SandboxJob:
    """A vendor job whose state follows the clock: pending, then running, then done."""

    job_id: str
    vendor: str
    params: dict[str, Any]
    pending_seconds: float = 0.5
    running_seconds: float = 0.5
    fail: bool = False
    created_at: float = field(default_factory=time.time)
    data: dict[str, Any] = field(default_factory=dict)

    def state(self, now: float | None = None) -> str:
        elapsed = (now or time.time()) - self.created_at
        if elapsed < self.pending_seconds:
            return "PENDING"
        if elapsed < self.pending_seconds + self.running_seconds:
            return "RUNNING"
        return "FAILED" if self.fail else "SUCCESS"


class SandboxState:
    """Everything the vendor modules share; tests read counters and set faults through it."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config: dict[str, Any] = dict(config or {})
        self.jobs: dict[str, SandboxJob] = {}
        self.submissions: Counter[str] = Counter()
        self.requests: list[dict[str, Any]] = []  # method, path, headers (for assertions on auth)
        self.faults: list[Fault] = []
        self.secrets: dict[str, str] = {}
        self.issued: set[str] = set()  # tokens, signatures handed out: the log scanner looks for them
        self.vendor: dict[str, dict[str, Any]] = {}
        self.files: dict[str, bytes] = {}  # generic downloadable files (GET /files/{name}?sig=...)
        self.base_url = ""
        self.lock = threading.Lock()

    def secret(self, name: str) -> str:
        """A per-run random credential (stable for this sandbox's lifetime); ``config["secrets"]``
        presets some, so a stack started in another process can name them in its own connections."""
        with self.lock:
            if name not in self.secrets:
                preset = self.config.get("secrets", {}).get(name)
                self.secrets[name] = str(preset) if preset else secrets.token_urlsafe(24)
            return self.secrets[name]

    def advertised_url(self, scheme: str, bind_host: str, port: int) -> str:
        """The URL clients use for a listener bound to ``bind_host``: ``config["public_host"]`` (e.g. a
        compose service name) when set, loopback for a wildcard bind, else the bind address."""
        host = str(self.config.get("public_host") or "")
        if not host:
            host = "127.0.0.1" if bind_host in ("0.0.0.0", "::", "") else bind_host
        return f"{scheme}://{host}:{port}"

    def issue(self, prefix: str = "tok") -> str:
        value = f"{prefix}-{secrets.token_urlsafe(24)}"
        self.issued.add(value)
        return value

    def new_job(self, vendor: str, params: dict[str, Any], **kwargs: Any) -> SandboxJob:
        cfg = self.config.get(vendor, {})
        job = SandboxJob(
            job_id=kwargs.pop("job_id", None) or uuid.uuid4().hex,
            vendor=vendor,
            params=params,
            pending_seconds=kwargs.pop("pending_seconds", cfg.get("pending_seconds", self.config.get("pending_seconds", 0.5))),
            running_seconds=kwargs.pop("running_seconds", cfg.get("running_seconds", self.config.get("running_seconds", 0.5))),
            fail=kwargs.pop("fail", bool(cfg.pop("fail_next", 0)) if cfg.get("fail_next") else False),
            **kwargs,
        )
        with self.lock:
            self.jobs[job.job_id] = job
            self.submissions[vendor] += 1
        return job

    def add_fault(self, **kwargs: Any) -> Fault:
        fault = Fault(**kwargs)
        with self.lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def take_fault(self, method: str, path: str, kinds: tuple[str, ...]) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.kind in kinds and fault.matches(method, path):
                    fault.hits += 1
                    if fault.times > 0:
                        fault.times -= 1
                    return fault
        return None

    def vendor_config(self, vendor: str) -> dict[str, Any]:
        return self.config.setdefault(vendor, {})


@web.middleware
async def fault_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    state: SandboxState = request.app["state"]
    if not request.path.startswith("/_sandbox"):
        state.requests.append({"method": request.method, "path": request.path, "headers": dict(request.headers)})
        fault = state.take_fault(request.method, request.path, ("status",))
        if fault is not None:
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            return web.Response(status=fault.status, text=fault.body or f"injected {fault.status}", headers=headers)
    return await handler(request)


async def serve_bytes(request: web.Request, data: bytes, content_type: str = "application/octet-stream",
                      headers: dict[str, str] | None = None, chunk_size: int = 64 * 1024) -> web.StreamResponse:
    """Serve ``data`` with Range support; 'reset' and 'slow' faults act half-way through the body."""
    state: SandboxState = request.app["state"]
    start, status = 0, 200
    total = len(data)
    rng = request.headers.get("Range", "")
    m = re.fullmatch(r"bytes=(\d+)-", rng.strip())
    if m and int(m.group(1)) < total:
        start, status = int(m.group(1)), 206
    fault = state.take_fault(request.method, request.path, ("reset", "slow"))
    resp = web.StreamResponse(status=status)
    resp.content_type = content_type
    resp.content_length = total - start
    resp.headers["Accept-Ranges"] = "bytes"
    if status == 206:
        resp.headers["Content-Range"] = f"bytes {start}-{total - 1}/{total}"
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    await resp.prepare(request)
    cut = start + (total - start) // 2 if fault is not None and fault.kind == "reset" else None
    pos = start
    while pos < total:
        end = min(pos + chunk_size, total)
        if cut is not None and end >= cut:
            await resp.write(data[pos:cut])
            transport = request.transport
            if transport is not None:
                transport.abort()  # a real RST half-way through the body
            raise asyncio.CancelledError()
        if fault is not None and fault.kind == "slow":
            await asyncio.sleep(fault.delay)
        await resp.write(data[pos:end])
        pos = end
    await resp.write_eof()
    return resp


async def _admin_faults(request: web.Request) -> web.Response:
    state: SandboxState = request.app["state"]
    if request.method == "DELETE":
        state.clear_faults()
        return web.json_response({"faults": []})
    if request.method == "POST":
        body = await request.json()
        fault = state.add_fault(**body)
        return web.json_response(asdict(fault), status=201)
    return web.json_response({"faults": [asdict(f) for f in state.faults]})


async def _generic_file(request: web.Request) -> web.StreamResponse:
    """Bytes a test or benchmark registered in ``state.files`` (for engine-level landing tests)."""
    state: SandboxState = request.app["state"]
    name = request.match_info["name"]
    if name not in state.files:
        return web.json_response({"error": f"no file {name}"}, status=404)
    if request.query.get("sig") != state.secret("files-sig"):
        return web.Response(status=403, text="<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>")
    return await serve_bytes(request, state.files[name])


GEN_CHUNK = 64 * 1024
_GEN_BASE = random.Random(20261126).randbytes(2 * GEN_CHUNK)


def generated_bytes(start: int, end: int, piece: int = 1 << 20) -> Iterator[bytes]:
    """Bytes ``[start, end)`` of the deterministic generated file, in pieces of about ``piece`` bytes.

    Byte ``p`` depends only on ``p`` (64 KiB chunks cut from a fixed random buffer at an offset keyed
    by the chunk number), so any size or Range is served — and can be rebuilt locally — without
    ever holding the file: benchmarks land gigabytes through the sandbox this way.
    """
    pos = start
    while pos < end:
        parts = []
        stop = min(end, pos + piece)
        while pos < stop:
            index, within = divmod(pos, GEN_CHUNK)
            offset = (index * 7919) % GEN_CHUNK
            take = min(GEN_CHUNK - within, stop - pos)
            parts.append(_GEN_BASE[offset + within: offset + within + take])
            pos += take
        yield b"".join(parts)


async def _generated_file(request: web.Request) -> web.StreamResponse:
    """``GET /files/gen/{size}?sig=...``: ``size`` generated bytes, streamed (Range ``bytes=N-`` / ``N-M``)."""
    state: SandboxState = request.app["state"]
    if request.query.get("sig") != state.secret("files-sig"):
        return web.Response(status=403, text="<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>")
    total = int(request.match_info["size"])
    start, end, status = 0, total, 200
    m = re.fullmatch(r"bytes=(\d+)-(\d*)", request.headers.get("Range", "").strip())
    if m and int(m.group(1)) < total:
        start, status = int(m.group(1)), 206
        end = min(total, int(m.group(2)) + 1) if m.group(2) else total
        if end <= start:  # an inverted range: ignored, as a server may
            start, end, status = 0, total, 200
    resp = web.StreamResponse(status=status)
    resp.content_type = "application/octet-stream"
    resp.content_length = end - start
    resp.headers["Accept-Ranges"] = "bytes"
    if status == 206:
        resp.headers["Content-Range"] = f"bytes {start}-{end - 1}/{total}"
    fault = state.take_fault(request.method, request.path, ("slow",))
    await resp.prepare(request)
    for piece in generated_bytes(start, end, piece=GEN_CHUNK if fault is not None else 1 << 20):
        if fault is not None:
            await asyncio.sleep(fault.delay)  # a slow vendor: tests catch a transfer mid-upload
        await resp.write(piece)
    await resp.write_eof()
    return resp


async def _generic_submit(request: web.Request) -> web.Response:
    """A minimal vendor-neutral job API, for engine tests that must not depend on one vendor."""
    state: SandboxState = request.app["state"]
    if request.headers.get("Authorization") != f"Bearer {state.secret('generic-token')}":
        return web.json_response({"error": "unauthorized"}, status=401)
    params = dict(await request.post()) if request.can_read_body else {}
    job = state.new_job("generic", params)
    return web.json_response({"id": job.job_id, "state": job.state()}, status=202)


async def _generic_status(request: web.Request) -> web.Response:
    state: SandboxState = request.app["state"]
    if request.headers.get("Authorization") != f"Bearer {state.secret('generic-token')}":
        return web.json_response({"error": "unauthorized"}, status=401)
    job = state.jobs.get(request.match_info["job_id"])
    if job is None:
        return web.json_response({"error": "no such job"}, status=404)
    return web.json_response({"id": job.job_id, "state": job.state(), "files": list(job.data.get("files", []))})


async def _admin_stats(request: web.Request) -> web.Response:
    state: SandboxState = request.app["state"]
    with state.lock:
        job_ids: dict[str, list[str]] = {}
        for job in state.jobs.values():
            job_ids.setdefault(job.vendor, []).append(job.job_id)
        return web.json_response({"submissions": dict(state.submissions), "jobs": len(state.jobs),
                                  "job_ids": job_ids, "requests": len(state.requests)})


async def _admin_config(request: web.Request) -> web.Response:
    """``GET`` the settings; ``PATCH`` a JSON object merges into them, one level deep per vendor (a
    test driving a sandbox in another process changes e.g. ``{"pond": {"pending_seconds": 30}}``)."""
    state: SandboxState = request.app["state"]
    if request.method == "PATCH":
        body = await request.json()
        if not isinstance(body, dict):
            return web.json_response({"error": "a JSON object is expected"}, status=400)
        if "secrets" in body:
            return web.json_response({"error": "secrets are set at start-up only"}, status=400)
        with state.lock:
            for key, value in body.items():
                if isinstance(value, dict) and isinstance(state.config.get(key), dict):
                    state.config[key].update(value)
                else:
                    state.config[key] = value
    public = {k: v for k, v in state.config.items() if k != "secrets"}
    return web.json_response(public)


def build_app(state: SandboxState, vendors: tuple[str, ...] = VENDOR_MODULES) -> web.Application:
    app = web.Application(middlewares=[fault_middleware], client_max_size=64 * 1024 * 1024)
    app["state"] = state
    app.router.add_route("*", "/_sandbox/faults", _admin_faults)
    app.router.add_get("/_sandbox/stats", _admin_stats)
    app.router.add_route("GET", "/_sandbox/config", _admin_config)
    app.router.add_route("PATCH", "/_sandbox/config", _admin_config)
    app.router.add_get("/files/{name}", _generic_file)
    app.router.add_get(r"/files/gen/{size:\d+}", _generated_file)
    app.router.add_post("/generic/jobs", _generic_submit)
    app.router.add_get("/generic/jobs/{job_id}", _generic_status)
    for name in vendors:
        module = load_vendor(name)
        if module is not None:
            module.setup(app, state)
    return app


def load_vendor(name: str) -> Any:
    try:
        return importlib.import_module(f"airflow_export_providers.sandbox.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"airflow_export_providers.sandbox.{name}":
            return None  # that vendor's sandbox module does not exist yet
        raise


class Sandbox:
    """Run the sandbox on loopback in a background thread (tests, the demo, ``python -m``)."""

    def __init__(self, config: dict[str, Any] | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = SandboxState(config)
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """Where clients reach the API (``public_host`` when set: never a wildcard bind address)."""
        return self.state.advertised_url("http", self.host, self.port)

    def start(self) -> Sandbox:
        self._thread = threading.Thread(target=self._run, name="export-sandbox", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise RuntimeError(f"sandbox failed to start: {self._error}")
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._start_site())
        except BaseException as exc:  # pragma: no cover - reported to start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()

    async def _start_site(self) -> None:
        runner = web.AppRunner(build_app(self.state), access_log=None, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        sockets = site._server.sockets if site._server else []  # type: ignore[union-attr,attr-defined]
        self.port = sockets[0].getsockname()[1]
        self.state.base_url = self.url
        self._runner = runner

    def stop(self) -> None:
        if self._loop is None:
            return
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def connections(self) -> dict[str, dict[str, Any]]:
        """Airflow connections (as JSON dicts) that point each vendor at this sandbox."""
        conns: dict[str, dict[str, Any]] = {}
        for name in VENDOR_MODULES:
            module = load_vendor(name)
            if module is not None and hasattr(module, "connections"):
                conns.update(module.connections(self.url, self.state))
        return conns
