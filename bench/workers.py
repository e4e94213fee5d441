"""Benchmark workers: each runs in its own process and prints one JSON line (its measurements).

``python bench/workers.py <name> '<json args>'``. Run by bench/run.py, which starts the servers and
passes the connections as AIRFLOW_CONN_* variables. A worker measures itself (peak RSS with
``getrusage(RUSAGE_SELF)``, wall time around the work only), so the servers' memory and CPU — moto
keeps every object in its own process — never count.
"""

from __future__ import annotations

import asyncio
import gc
import gzip
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MiB = 1 << 20


def peak_rss() -> int:
    """Peak resident set size of this process so far, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# ---- P1/P2: landing and its baselines ---------------------------------------------------------
def land(args: dict[str, Any]) -> dict[str, Any]:
    """land_file from the sandbox's generated file into S3 (moto) or Azure (Azurite), hooks from connections."""
    from airflow_export_providers.core.job import ExportFile
    from airflow_export_providers.core.landing import land_file
    from airflow_export_providers.transfers.export_to_azure_blob import AzureBlobWriter
    from airflow_export_providers.transfers.export_to_s3 import S3Writer
    from tests.support.files_hook import CONN_ID, FilesHook

    size = int(args["size"])
    writer: Any
    tuning = {k: args[k] for k in ("concurrency",) if k in args}  # the operators' defaults unless asked
    if args["dest"] == "s3":
        writer = S3Writer(args["bucket"], "aws_default", part_size=args.get("part_size"), **tuning)
    else:
        writer = AzureBlobWriter(args["container"], "wasb_default", block_size=args.get("part_size"), **tuning)
    _ = writer.client if args["dest"] == "s3" else writer.service  # connect before the clock starts
    hook = FilesHook(CONN_ID)
    file = ExportFile(vendor="files", conn_id=CONN_ID, job_id="bench", key=f"gen/{size}", name=args["key"], size=size)
    gc.collect()
    before = current_rss()
    t0 = time.perf_counter()
    landed = land_file(hook, file, writer, key=args["key"])
    seconds = time.perf_counter() - t0
    assert landed.size == size, (landed.size, size)
    return {"seconds": seconds, "bytes": size, "peak_rss": peak_rss(), "rss_before": before}


def http_to_s3(args: dict[str, Any]) -> dict[str, Any]:
    """Airflow's HttpToS3Operator (Amazon provider) on the same generated file: the memory baseline."""
    from airflow.providers.amazon.aws.transfers.http_to_s3 import HttpToS3Operator

    size = int(args["size"])
    op = HttpToS3Operator(
        task_id="bench_http_to_s3", http_conn_id="bench_http", endpoint=f"files/gen/{size}", data={"sig": args["sig"]},
        s3_bucket=args["bucket"], s3_key=args["key"], replace=True, aws_conn_id="aws_default",
    )
    _ = op.s3_hook.get_conn()
    gc.collect()
    before = current_rss()
    t0 = time.perf_counter()
    op.execute({})  # type: ignore[arg-type]
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "bytes": size, "peak_rss": peak_rss(), "rss_before": before}


def download(args: dict[str, Any]) -> dict[str, Any]:
    """A plain streamed download of the generated file to nowhere (requests, 1 MiB reads)."""
    import requests

    size = int(args["size"])
    t0 = time.perf_counter()
    got = 0
    with requests.get(f"{args['url']}/files/gen/{size}", params={"sig": args["sig"]}, stream=True, timeout=60) as resp:
        resp.raise_for_status()
        while True:
            data = resp.raw.read(MiB, decode_content=False)
            if not data:
                break
            got += len(data)
    seconds = time.perf_counter() - t0
    assert got == size, (got, size)
    return {"seconds": seconds, "bytes": size, "peak_rss": peak_rss()}


def sdk_upload(args: dict[str, Any]) -> dict[str, Any]:
    """The storage SDK uploading the same bytes from local disk (boto3 upload_fileobj / azure upload_blob)."""
    path = Path(args["path"])
    size = path.stat().st_size
    if args["dest"] == "s3":
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        client = S3Hook(aws_conn_id="aws_default").get_conn()
        t0 = time.perf_counter()
        with path.open("rb") as fh:
            client.upload_fileobj(fh, args["bucket"], args["key"])  # boto3's default TransferConfig
        seconds = time.perf_counter() - t0
    else:
        from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

        service = WasbHook(wasb_conn_id="wasb_default").get_conn()
        blob = service.get_blob_client(container=args["container"], blob=args["key"])
        t0 = time.perf_counter()
        with path.open("rb") as fh:
            blob.upload_blob(fh, length=size, overwrite=True, max_concurrency=2)  # as many in flight as the landing
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "bytes": size, "peak_rss": peak_rss()}


# ---- P3: Avro ----------------------------------------------------------------------------------
class _Discard:
    """A sink that only counts (the conversion is measured, not an upload)."""

    def __init__(self) -> None:
        self.bytes = 0

    def write(self, data: bytes) -> None:
        self.bytes += len(data)


def avro(args: dict[str, Any]) -> dict[str, Any]:
    """fastavro's bare decode (baseline) or core/avro.convert_avro to JSONL / CSV / Parquet, records/s.

    ``inflate``: "stdlib" reads through ``gzip.open`` (zlib), "landing" through the landing's
    ``_Inflate`` (ISA-L when installed), as land_file does. ``columnar``: None (the default: columnar
    when polars can read the file) or False (the row converter, as before issue 20).
    """
    import fastavro

    from airflow_export_providers.core import avro as core_avro
    from airflow_export_providers.core.landing import _Inflate

    path, mode = args["path"], args["mode"]
    t0, c0 = time.perf_counter(), time.process_time()
    out = 0
    with open(path, "rb") as raw:
        fh: Any = gzip.open(raw, "rb") if args.get("inflate", "landing") == "stdlib" else _Inflate(raw, Path(path).name)
        if mode == "decode":
            records = 0
            # _Inflate returns short reads, which fastavro takes for the end: read through full reads, as convert_avro does
            for _ in fastavro.reader(fh) if isinstance(fh, gzip.GzipFile) else core_avro.open_avro(fh, "decode", path):
                records += 1
        else:
            sink = _Discard()
            records = core_avro.convert_avro(fh, sink, mode, name=Path(path).name, columnar=args.get("columnar"))
            out = sink.bytes
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"seconds": seconds, "cpu": cpu, "records": records, "out_bytes": out, "peak_rss": peak_rss()}


def gunzip(args: dict[str, Any]) -> dict[str, Any]:
    """The landing's _Inflate over a .gz file with one backend (isal or zlib), read as land_file reads it."""
    from airflow_export_providers.core.landing import CHUNK, _Inflate

    t0, c0 = time.perf_counter(), time.process_time()
    out = 0
    with open(args["path"], "rb") as raw:
        inflater = _Inflate(raw, Path(args["path"]).name, backend=args["backend"])
        while data := inflater.read(CHUNK):
            out += len(data)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"seconds": seconds, "cpu": cpu, "bytes": out, "peak_rss": peak_rss()}


def profile(args: dict[str, Any]) -> dict[str, Any]:
    """cProfile of one conversion (the analysis in results.md): the top functions by own time."""
    import cProfile
    import io
    import pstats

    import polars  # noqa: F401  imported before the profile starts: it is about the conversion, not imports
    import pyarrow.parquet  # noqa: F401

    from airflow_export_providers.core import avro_columnar
    from airflow_export_providers.core.landing import _Inflate  # noqa: F401

    def inline(groups: Any, work: Any) -> Any:  # the decode thread's work in this thread, where cProfile sees it
        for records, blocks in groups:
            yield records, work(blocks)

    avro_columnar.ahead = inline  # type: ignore[assignment]
    prof = cProfile.Profile()
    prof.enable()
    result = avro(args)
    prof.disable()
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(int(args.get("top", 12)))
    return {**result, "profile": text.getvalue()}


# ---- P4: triggerer -----------------------------------------------------------------------------
def triggers(args: dict[str, Any]) -> dict[str, Any]:
    """N ExportJobTriggers in one event loop, as the triggerer runs them; lag, CPU share, RSS growth."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # thousands of triggers hold thousands of sockets
    return asyncio.run(_triggers(args))


async def _ticker(stop: asyncio.Event, lags: list[float], rss: list[int], tick: float) -> None:
    loop = asyncio.get_running_loop()
    last_rss = 0.0
    while not stop.is_set():
        t = loop.time()
        await asyncio.sleep(tick)
        lags.append(max(loop.time() - t - tick, 0.0))
        if t - last_rss >= 1.0:
            rss.append(current_rss())
            last_rss = t


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


async def _window(seconds: float, tick: float) -> tuple[list[float], list[int], float, float]:
    stop = asyncio.Event()
    lags: list[float] = []
    rss: list[int] = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    task = asyncio.create_task(_ticker(stop, lags, rss, tick))
    await asyncio.sleep(seconds)
    stop.set()
    await task
    return lags, rss, time.process_time() - cpu0, time.perf_counter() - wall0


async def _triggers(args: dict[str, Any]) -> dict[str, Any]:
    from airflow_export_providers.core import http as core_http
    from airflow_export_providers.triggers.export_job import ExportJobTrigger

    # count every poll the triggers send and how it ended (each is one status read through the async client)
    sent = {"sent": 0, "ok": 0, "failed": 0}
    send = core_http.AsyncHttpClient.send

    async def counted(self: Any, req: Any) -> Any:
        sent["sent"] += 1
        try:
            resp = await send(self, req)
        except asyncio.CancelledError:
            sent["sent"] -= 1  # cut by the end of the window, not a failure
            raise
        except Exception:
            sent["failed"] += 1
            raise
        sent["ok"] += 1
        return resp

    core_http.AsyncHttpClient.send = counted  # type: ignore[method-assign]

    tick = float(args.get("tick", 0.05))
    # baseline: the same loop and ticker with nothing else in it
    idle_lags, _, idle_cpu, idle_wall = await _window(float(args["idle_seconds"]), tick)
    gc.collect()
    rss0 = current_rss()
    events: list[Any] = []
    polls_before = int(args.get("requests_before", 0))

    async def consume(trigger: ExportJobTrigger) -> None:
        async for event in trigger.run():
            events.append(event.payload)

    made = [
        ExportJobTrigger(hook_class="tests.support.generic_hook.GenericHook", conn_id="generic_default", job_id=job_id,
                         poll_interval=float(args["interval"]))
        for job_id in args["job_ids"]
    ]
    tasks = [asyncio.create_task(consume(t)) for t in made]
    lags, rss, cpu, wall = await _window(float(args["seconds"]), tick)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "triggers": len(made), "events": len(events), "seconds": wall, "requests_before": polls_before,
        "polls_sent": sent["sent"], "polls_ok": sent["ok"], "polls_failed": sent["failed"],
        "lag_p50": statistics.median(lags), "lag_p99": _pct(lags, 0.99), "lag_max": max(lags),
        "idle_lag_p50": statistics.median(idle_lags), "idle_lag_p99": _pct(idle_lags, 0.99),
        "cpu_share": cpu / wall, "idle_cpu_share": idle_cpu / idle_wall,
        "rss_start": rss0, "rss_peak_during": max(rss) if rss else rss0, "rss_growth": (max(rss) if rss else rss0) - rss0,
        "peak_rss": peak_rss(),
    }


WORKERS = {"land": land, "http_to_s3": http_to_s3, "download": download, "sdk_upload": sdk_upload, "avro": avro,
           "gunzip": gunzip, "profile": profile, "triggers": triggers}


def main() -> None:
    name, raw = sys.argv[1], sys.argv[2]
    args = json.loads(Path(raw[1:]).read_text()) if raw.startswith("@") else json.loads(raw)
    result = WORKERS[name](args)
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
