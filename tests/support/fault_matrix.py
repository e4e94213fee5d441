"""The fault matrix: per-vendor adapters for tests/integration/test_fault_matrix.py, and docs/reliability.md.

An adapter knows, for one vendor: the sandbox routes its submit / status / download requests take
(regexes on the request path, for ``state.add_fault``), how to give the shared test DAG
(tests/dags/fault_matrix.py) what it needs (params, fast sandbox settings), how to count its
submissions, where the bytes the sandbox generated for a landed file live (moto, Azurite or the
sandbox's memory), and which faults cannot apply to it (with the reason).

Each test cell records its outcome in ``build/fault-matrix.json``;
``python -m tests.support.fault_matrix --write-doc`` turns the last full run into docs/reliability.md.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "build" / "fault-matrix.json"
DOC = ROOT / "docs" / "reliability.md"
BUCKET = "fault-matrix"
ME_CONTAINER = "fault-matrix-me"
SLOW_TIMEOUT = 1.5  # the hooks' read timeout during the slow-body cell (connection extra ``timeout``)
SLOW_DELAY = 3.0  # the sandbox stalls the body this long: well past the read timeout
# Small backoff everywhere (worker, triggerer and landing hooks read it from the connection extras).
FAST_RETRY = {"retry_max_attempts": 5, "retry_backoff_base": 0.05, "retry_backoff_max": 0.2}

FAULTS: list[tuple[str, str]] = [
    ("429", "429 with Retry-After"),
    ("5xx", "burst of 500/503"),
    ("reset", "connection reset half-way through a download"),
    ("slow", "slow body past the read timeout"),
    ("token_expiry", "token expiry mid-poll"),
    ("link_expiry", "presigned link expiry mid-download"),
    ("job_failed", "vendor job FAILED, resubmitted"),
    ("triggerer_restart", "triggerer killed mid-poll, trigger rebuilt"),
    ("worker_killed", "worker killed mid-upload, task retried"),
    ("retry_after_submit", "task retry after the submit (no second job)"),
    ("streaming_watermark", "streaming run fails after export (watermark kept, range re-exported)"),
    ("streaming_overlap", "two streaming runs overlap (one lands, the other refuses before writing)"),
]
FAULT_IDS = [f for f, _ in FAULTS]


@dataclass
class Adapter:
    vendor: str
    conn_id: str
    status: tuple[str, str]  # (method, path regex) of the status read the wait repeats
    submit: tuple[str, str] | None = None  # None: nothing is submitted (MX)
    download: str | None = None  # path regex of the file route, when the sandbox serves the bytes
    download_statuses: bool = False  # the download route goes through the sandbox's status-fault middleware
    not_applicable: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)  # fast sandbox settings for every cell

    @property
    def dag_id(self) -> str:
        return f"fault_matrix_{self.vendor}"


STREAMING_ONLY = "only Leanplum has a streaming export with a watermark"
NO_TOKEN = "static credentials, nothing expires mid-poll"
NO_LINK = "no presigned link with an expiry in this vendor's download path"

ADAPTERS: dict[str, Adapter] = {
    "pond": Adapter(
        vendor="pond", conn_id="pond_default",
        submit=("POST", r"^/insights/snapshots$"),
        status=("GET", r"^/insights/snapshots/[^/]+$"),
        download=r"^/prod-pond-insights-exports/",  # the sandbox's S3 gateway in front of moto
        not_applicable={"streaming_watermark": STREAMING_ONLY, "streaming_overlap": STREAMING_ONLY},
        settings={"pending_seconds": 0.2, "running_seconds": 0.4},
    ),
    "leanplum": Adapter(
        vendor="leanplum", conn_id="leanplum_default",
        submit=("GET", r"^/api$"),  # exportData and getExportResults share /api: the submit comes first
        status=("GET", r"^/api$"),
        download=r"^/leanplum_export/", download_statuses=True,
        not_applicable={"token_expiry": "appId + clientKey on every call, no token",
                        "link_expiry": "signed links are re-read from getExportResults on a refusal; proven in "
                                       "test_leanplum.py::test_expired_link_is_re_signed_and_purged_file_is_a_clear_error"},
        settings={"pending_seconds": 0.2, "running_seconds": 0.2},
    ),
    "indicative": Adapter(
        vendor="indicative", conn_id="indicative_default",
        submit=("POST", r"^/service/v1/segments/export/?$"),
        status=("GET", r"^/service/v1/segments/export/[^/]+$"),
        download=r"^/indicative-results/", download_statuses=True,
        not_applicable={"token_expiry": "Basic auth, no token", "streaming_watermark": STREAMING_ONLY,
                        "streaming_overlap": STREAMING_ONLY,
                        "link_expiry": "result links live 48 hours, longer than any export; expiry is a purge (a clear error, "
                                       "test_indicative.py::test_expired_s3_result_is_a_clear_error)"},
        # https results: the sandbox serves the CSV (faults apply); s3:// results come from moto (none can)
        settings={"pending_seconds": 0.2, "running_seconds": 0.2, "result_scheme": "https"},
    ),
    "mx": Adapter(
        vendor="mx", conn_id="mx_snapshots_default",
        status=("GET", r"^/snapshots/[^/]+/files$"),
        download=r"^/snapshots/[^/]+/files/[^/]+$", download_statuses=True,
        not_applicable={"token_expiry": "API key on every call, no token", "streaming_watermark": STREAMING_ONLY,
                        "streaming_overlap": STREAMING_ONLY,
                        "link_expiry": NO_LINK,
                        "job_failed": "MX has no job to fail or resubmit: a snapshot is ready or purged (purge = one clear "
                                      "error, test_mx.py::test_purged_snapshot_fails_the_sensor_with_a_clear_message)"},
    ),
    "mobile_engagement": Adapter(
        vendor="mobile_engagement", conn_id="azure_mobile_engagement_default",
        submit=("POST", r"/devices/exportTasks/[^/]+$"),
        status=("GET", r"/devices/exportTasks/[^/]+$"),
        # the task's blobs, read with the Azure SDK through BlobFaultProxy (Azurite behind it)
        download=rf"^/devstoreaccount1/{ME_CONTAINER}/",
        not_applicable={
            "link_expiry": "no presigned link: blobs are read through the wasb connection",
            "streaming_watermark": STREAMING_ONLY,
            "streaming_overlap": STREAMING_ONLY,
        },
        settings={"pending_seconds": 0.2, "running_seconds": 0.3, "token_lifetime": 3599, "parts": 2},
    ),
}


def submissions(state: Any, vendor: str) -> int:
    """Vendor jobs the sandbox created (MX creates none: its snapshots are not submitted)."""
    return int(state.submissions[vendor])


def params(vendor: str, prefix: str, guid: str | None = None) -> dict[str, Any]:
    """dag_run.conf for the vendor's fault-matrix DAG."""
    from airflow_export_providers.operators.leanplum import leanplum_date
    from airflow_export_providers.sandbox import indicative as ind_sandbox

    conf: dict[str, Any] = {"prefix": prefix}
    if vendor == "leanplum":
        conf["day"] = leanplum_date(time.time() - 3 * 86400)
    if vendor == "indicative":
        conf["segment"] = next(s["segmentId"] for s in ind_sandbox.SEGMENTS if s["name"] == "Trial Users")
    if vendor == "mx":
        conf["guid"] = guid
    return conf


def source_bytes(state: Any, vendor: str, job: dict[str, Any], file: dict[str, Any], moto: Any, azurite: Any) -> bytes:
    """The bytes the sandbox generated for ``file`` of ``job`` — where the vendor keeps them."""
    if vendor == "pond":
        from airflow_export_providers.hooks.pond import snapshot_id
        from airflow_export_providers.sandbox import pond as pond_sandbox

        key = f"{snapshot_id(job['job_id'])}/{file['name'].removesuffix('.csv')}"
        return bytes(moto.client().get_object(Bucket=pond_sandbox.DEFAULT_BUCKET, Key=key)["Body"].read())
    if vendor == "leanplum":
        data = state.jobs[job["job_id"]].data
        return bytes(data["files"][data["order"][int(file["key"])]])
    if vendor == "indicative":
        from airflow_export_providers.sandbox import indicative as ind_sandbox

        return ind_sandbox.segment_csv(state.jobs[job["job_id"]].params["segmentId"])
    if vendor == "mx":
        from airflow_export_providers.sandbox.mx import get_snapshot

        name = file["name"].rsplit("/", 1)[-1]  # listed as {resource}/{file name}
        return next(f.data for f in get_snapshot(state, job["job_id"]).files if f.name == name)
    container = azurite.service().get_container_client(ME_CONTAINER)
    return bytes(container.download_blob(file["key"]).readall())


def start_export(vendor: str, guid: str | None = None) -> str:
    """Submit one export through the vendor's operator (wait_for_completion=False); return the job id."""
    from airflow_export_providers.operators.indicative import IndicativeSegmentExportOperator
    from airflow_export_providers.operators.leanplum import LeanplumExportOperator
    from airflow_export_providers.operators.mobile_engagement import MobileEngagementExportOperator
    from airflow_export_providers.operators.mx import MxSnapshotOperator
    from airflow_export_providers.operators.pond import PondSnapshotOperator

    conf = params(vendor, "unused", guid)
    common: dict[str, Any] = {"task_id": "start", "wait_for_completion": False}
    op: Any
    if vendor == "pond":
        op = PondSnapshotOperator(created_at_from="2026-06-01T00:00:00Z", created_at_to="2026-06-02T00:00:00Z", **common)
    elif vendor == "leanplum":
        op = LeanplumExportOperator(export_start_date=conf["day"], **common)
    elif vendor == "indicative":
        op = IndicativeSegmentExportOperator(segment=conf["segment"], **common)
    elif vendor == "mx":
        op = MxSnapshotOperator(snapshot_guid=conf["guid"], **common)
    else:
        op = MobileEngagementExportOperator(kind="events", container=ME_CONTAINER, export_start_date="2026-06-01",
                                            export_end_date="2026-06-01", **common)
    return str(op.execute({}))


# ---- results and the document -----------------------------------------------------------------
def record(vendor: str, fault: str, outcome: str, note: str = "") -> None:
    """Keep one cell's outcome (pass / fail / n/a) for the document."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results.setdefault("cells", {})[f"{vendor}/{fault}"] = {"outcome": outcome, "note": note, "at": time.time()}
    RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True))


def render(results: dict[str, Any]) -> str:
    cells = results.get("cells", {})
    vendors = list(ADAPTERS)
    when = max((c["at"] for c in cells.values()), default=time.time())
    lines = [
        "# Reliability: the fault matrix",
        "",
        "Generated by `python -m tests.support.fault_matrix --write-doc` from the last run of",
        "`pytest tests/integration/test_fault_matrix.py` "
        f"(last cell recorded {datetime.fromtimestamp(when, timezone.utc):%Y-%m-%d %H:%M UTC}). Do not edit by hand.",
        "",
        "Every cell runs against real servers on loopback: the sandbox (vendor APIs with injected faults),",
        "moto's S3 server and Azurite, with the export and landing tasks driven through Airflow's `dag.test()`",
        "(tests/dags/fault_matrix.py; the triggerer cell drives `ExportJobTrigger` directly). A passing cell",
        "asserts that every file landed in S3 exactly once (no other key under the run's prefix, no open",
        "multipart upload), byte for byte equal to what the sandbox generated (read back from moto, Azurite",
        "or the sandbox), that the tasks ended in the expected state, and how many vendor jobs were submitted.",
        "",
        "| fault | " + " | ".join(vendors) + " |",
        "| --- | " + " | ".join("---" for _ in vendors) + " |",
    ]
    notes: list[str] = []
    for fault, title in FAULTS:
        row = [title]
        for vendor in vendors:
            cell = cells.get(f"{vendor}/{fault}")
            if cell is None:
                row.append("not run")
                continue
            outcome = cell["outcome"]
            if cell.get("note"):
                notes.append(f"{vendor} / {title}: {cell['note']}")
                outcome = f"{outcome} [{len(notes)}]"
            row.append(outcome)
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "## Notes", ""]
    lines += [f"{i}. {text}" for i, text in enumerate(notes, 1)]
    lines += ["", "## How each fault is made", ""]
    lines += [
        "- **429 with Retry-After**: the sandbox answers 429 (`Retry-After: 0.2`) to the submit and to the next status "
        "read (MX: two listing reads); the submit is repeated (429 means not processed) and exactly one job exists.",
        "- **burst of 500/503**: three status reads in a row fail (500, 503, 500), and where the download route is the "
        "sandbox's, one download answers 503; backoff comes from the connection extras `retry_*`.",
        "- **reset**: `state.add_fault(kind=\"reset\")` on the download route: the sandbox aborts the TCP connection "
        "half-way through the body; landing resumes with `Range`. POND's files are in moto behind the sandbox's S3 "
        "gateway (presigned links), which applies the fault; Indicative runs with `https` results served by the sandbox; "
        "Mobile Engagement's blobs are read with the Azure SDK through `BlobFaultProxy`, a pass-through proxy in front "
        "of Azurite that applies the same faults (the SDK retries a broken bounded range itself).",
        f"- **slow body**: `kind=\"slow\"` stalls the body {SLOW_DELAY:g} s; the connection extra `timeout` sets the hooks' "
        f"read timeout to {SLOW_TIMEOUT:g} s (Mobile Engagement: the wasb extra `read_timeout`, which reaches the "
        "Azure SDK's client), so the read times out and is opened again.",
        "- **token expiry mid-poll**: tokens live 1 s while the job takes longer; the wait keeps fresh tokens.",
        "- **presigned link expiry mid-download** (POND): the download is reset half-way, and before the `Range` resume "
        "the link's temporary signing credentials expire (S3 answers 400 ExpiredToken); the hook re-signs by reading the "
        "snapshot again and resumes from the same byte.",
        "- **vendor job FAILED**: the sandbox fails the next job; the operator (max_resubmits=1) submits once more: "
        "two submissions, the second job's files land.",
        "- **triggerer restart**: `ExportJobTrigger` runs until its first status read, is cancelled (the triggerer died), "
        "is rebuilt from `serialize()` through a JSON round trip and completes the same job: one submission. The same with "
        "real processes (a SIGKILLed `airflow triggerer`, a new one rebuilding the trigger from the metadata DB) is "
        "tests/e2e/test_real_stack.py::test_trigger_runs_in_the_triggerer_and_survives_its_restart (engine level).",
        "- **worker killed mid-upload**: dag.test() runs tasks in-process, so the kill is simulated: the landing task's "
        "first try dies while uploading the last file, leaving an open S3 multipart upload with the bytes it sent (what "
        "SIGKILL leaves); the retry aborts it and lands every file once.",
        "- **retry after the submit**: the export task's first try fails after its job was submitted; the retry resumes "
        "the job id kept in `task_state_store`: one submission.",
        "- **streaming watermark** (Leanplum): a streaming run whose landing fails keeps the watermark; the next run "
        "exports the same range again and lands it.",
        "- **overlapping streaming runs** (Leanplum): two processes each run the streaming DAG with `dag.test()` (which, "
        "like `airflow dags test` beside a scheduled run, max_active_runs does not stop); the sandbox holds both "
        "exportData calls until both arrived, so both export the same range. The run whose export holds the stream's "
        "claim lands and commits; the other's landing refuses before reading or writing a byte. A DAG that allows "
        "overlapping runs without a 1-slot pool is refused at parse time (tests/unit/test_watermark.py).",
        "",
    ]
    from tests.support import landing_matrix

    lines += [*landing_matrix.render_section(), ""]  # the landing cells (concurrency, re-runs), recorded by their own tests
    return "\n".join(lines)


def write_doc(path: Path = DOC) -> Path:
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    path.write_text(render(results))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--write-doc", action="store_true", help="write docs/reliability.md from build/fault-matrix.json")
    args = parser.parse_args(argv)
    if args.write_doc:
        print(write_doc())
        return 0
    print(render(json.loads(RESULTS.read_text()) if RESULTS.exists() else {}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())



# ---- Azure Blob with faults -------------------------------------------------------------------
class BlobFaultProxy:
    """A pass-through HTTP proxy in front of Azurite that applies the sandbox's reset/slow faults.

    Mobile Engagement's files are blobs in the customer's container, read with the Azure SDK, so no
    vendor route carries them. Pointing ``wasb_default`` at this proxy puts a network between the
    SDK and the storage where the same ``state.add_fault(kind="reset" | "slow", path=...)`` applies
    to blob GETs: a reset sends half the body then aborts the TCP connection, a slow fault stalls the
    body. Every other request (the sandbox's writes through its SAS, listings) passes unchanged.
    """

    def __init__(self, upstream_port: int, state: Any) -> None:
        self.upstream = f"http://127.0.0.1:{upstream_port}"
        self.state = state
        self.port = 0
        self.requests: list[dict[str, Any]] = []
        self._loop: Any = None
        self._runner: Any = None
        self._session: Any = None

    def connection_string(self, account: str, key: str) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={key};"
                f"BlobEndpoint=http://127.0.0.1:{self.port}/{account};")

    async def _handle(self, request: Any) -> Any:
        import asyncio

        from aiohttp import web

        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length", "transfer-encoding")}
        self.requests.append({"method": request.method, "path": request.path, "headers": dict(request.headers)})
        async with self._session.request(request.method, self.upstream + request.path_qs, headers=headers,
                                         data=body or None, allow_redirects=False, auto_decompress=False,
                                         skip_auto_headers=("Content-Type", "Accept-Encoding")) as upstream:
            data = await upstream.read()
            status = upstream.status
            upstream_length = upstream.headers.get("Content-Length", "0")
            out = [(k, v) for k, v in upstream.headers.items()
                   if k.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server")]
        fault = None
        if request.method == "GET" and status in (200, 206) and data:
            fault = self.state.take_fault(request.method, request.path, ("reset", "slow"))
        resp = web.StreamResponse(status=status)
        for key, value in out:
            resp.headers.add(key, value)
        if request.method == "HEAD":
            resp.headers["Content-Length"] = upstream_length  # a HEAD tells the size without a body
        else:
            resp.content_length = len(data)
        await resp.prepare(request)
        if fault is not None and fault.kind == "reset":
            await resp.write(data[: len(data) // 2])
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError()
        if fault is not None and fault.kind == "slow":
            await asyncio.sleep(fault.delay)
        await resp.write(data)
        await resp.write_eof()
        return resp

    def start(self) -> BlobFaultProxy:
        import asyncio
        import threading

        import aiohttp
        from aiohttp import web

        ready = threading.Event()

        async def boot() -> None:
            self._session = aiohttp.ClientSession()
            app = web.Application(client_max_size=256 * 1024 * 1024)
            app.router.add_route("*", "/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(boot())
            ready.set()
            self._loop.run_forever()

        threading.Thread(target=run, name="blob-fault-proxy", daemon=True).start()
        ready.wait(30)
        return self

    def stop(self) -> None:
        import asyncio

        if self._loop is None:
            return

        async def down() -> None:
            await self._session.close()
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(down(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._loop = None
