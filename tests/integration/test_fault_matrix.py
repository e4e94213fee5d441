"""The fault matrix of issue 11: every vendor x every fault, against the sandbox, moto and Azurite.

Each cell runs the vendor's export -> land DAG (tests/dags/fault_matrix.py) through ``dag.test()``
with one fault switched on, then asserts: the tasks ended as expected, every file landed exactly once
(nothing else under the run's prefix, no open multipart upload) byte for byte equal to what the
sandbox generated, and the number of vendor jobs submitted. Cells that cannot apply to a vendor are
skipped with the reason; every outcome is recorded for docs/reliability.md
(``python -m tests.support.fault_matrix --write-doc``).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from airflow_export_providers.core.job import ExportJob
from airflow_export_providers.triggers.export_job import ExportJobTrigger
from tests.conftest import set_connection
from tests.support import fault_matrix as fm
from tests.support.airflow import load_dag, run_dag, task_states, xcom

VENDORS = list(fm.ADAPTERS)
DAY0 = datetime(2026, 2, 1, tzinfo=timezone.utc)


@pytest.fixture(scope="module", autouse=True)
def fault_matrix_dags() -> Iterator[None]:
    """tests/dags/fault_matrix.py builds its DAGs only while this module runs (see its docstring)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FAULT_MATRIX_DAGS", "1")
        yield


@pytest.fixture(scope="module")
def blob_proxy(azurite: Any, sandbox: Any) -> Iterator[fm.BlobFaultProxy]:
    proxy = fm.BlobFaultProxy(azurite.port, sandbox.state).start()  # type: ignore[attr-defined]
    yield proxy
    proxy.stop()


@pytest.fixture
def cell(request: pytest.FixtureRequest, sandbox: Any, sandbox_state: Any, vendor_conns: dict[str, Any], aws_conn: str,
         wasb_conn: str, airflow_db: Any, moto_s3: Any, azurite: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """One cell: fast vendor settings and backoff, a fresh prefix; the outcome is recorded for the doc."""
    vendor, fault = request.node.callspec.params["vendor"], request.node.callspec.params["fault"]
    adapter = fm.ADAPTERS[vendor]
    if fault in adapter.not_applicable:
        fm.record(vendor, fault, "n/a", adapter.not_applicable[fault])
        pytest.skip(f"{vendor} / {fault}: not applicable — {adapter.not_applicable[fault]}")
    cfg = sandbox_state.vendor_config(vendor)
    saved = dict(cfg)
    cfg.update(adapter.settings)
    if vendor == "leanplum":
        sandbox_state.vendor.setdefault("leanplum", {})["quota"] = {}
    conn = dict(vendor_conns[adapter.conn_id])
    conn["extra"] = {**(conn.get("extra") or {}), **fm.FAST_RETRY}
    set_connection(monkeypatch, adapter.conn_id, conn)
    s3 = moto_s3.client()
    try:
        s3.create_bucket(Bucket=fm.BUCKET)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    ctx = Cell(vendor, fault, adapter, sandbox_state, moto_s3, azurite, monkeypatch, conn)
    if vendor == "mobile_engagement" and fault in ("reset", "slow"):
        from tests.support.servers import AZURITE_ACCOUNT, AZURITE_KEY

        ctx.proxy = request.getfixturevalue("blob_proxy")
        extra: dict[str, Any] = {"connection_string": ctx.proxy.connection_string(AZURITE_ACCOUNT, AZURITE_KEY),
                                 "retry_total": 3, "retry_backoff_factor": 0.05}
        if fault == "slow":
            extra["read_timeout"] = fm.SLOW_TIMEOUT  # the Azure SDK's read timeout (wasb extras reach its client)
        set_connection(monkeypatch, "wasb_default", {"conn_type": "wasb", "extra": extra})
    try:
        yield ctx
    finally:
        cfg.clear()
        cfg.update(saved)
        sandbox_state.clear_faults()
        # The cell passed only when the test's own call passed (teardown runs after a failure too).
        call = request.node.__dict__.get("aep_reports", {}).get("call")
        fm.record(vendor, fault, "pass" if call is not None and call.passed else "fail", ctx.note)


class Cell:
    """What a test needs to run and check one cell."""

    def __init__(self, vendor: str, fault: str, adapter: fm.Adapter, state: Any, moto: Any, azurite: Any,
                 monkeypatch: pytest.MonkeyPatch, conn: dict[str, Any]) -> None:
        self.vendor, self.fault, self.adapter, self.state = vendor, fault, adapter, state
        self.moto, self.azurite, self.monkeypatch, self.conn = moto, azurite, monkeypatch, conn
        self.prefix = f"{vendor}/{fault}/{uuid.uuid4().hex[:8]}"
        self.note = ""
        self.proxy: fm.BlobFaultProxy | None = None
        self.guid: str | None = None
        if vendor == "mx":
            from tests.support.mx import make_snapshot

            self.guid = make_snapshot(state, ready_after=0.6).guid
        self.before = fm.submissions(state, vendor)

    def set_extra(self, **extra: Any) -> None:
        self.conn = {**self.conn, "extra": {**self.conn["extra"], **extra}}
        set_connection(self.monkeypatch, self.adapter.conn_id, self.conn)

    def fault_on(self, route: str, **kwargs: Any) -> Any:
        if route == "submit":
            assert self.adapter.submit is not None
            method, path = self.adapter.submit
        elif route == "status":
            method, path = self.adapter.status
        else:
            assert self.adapter.download is not None
            method, path = "GET", self.adapter.download
        return self.state.add_fault(path=path, method=method, **kwargs)

    def downloads(self) -> list[dict[str, Any]]:
        """Requests the download route has seen so far (POND: its S3 gateway's own record)."""
        import re

        assert self.adapter.download is not None
        seen = self.state.vendor["pond"]["s3_requests"] if self.vendor == "pond" else self.state.requests
        if self.proxy is not None:
            seen = self.proxy.requests
        return [r for r in list(seen) if r["method"] == "GET" and re.search(self.adapter.download, r["path"])]

    def submitted(self) -> int:
        return fm.submissions(self.state, self.vendor) - self.before

    def run(self, **conf: Any) -> Any:
        dag = load_dag("fault_matrix.py", self.adapter.dag_id, folder="tests/dags")
        day = DAY0 + timedelta(days=VENDORS.index(self.vendor) * 20 + fm.FAULT_IDS.index(self.fault))
        return run_dag(dag, logical_date=day, run_conf={**fm.params(self.vendor, self.prefix, self.guid), **conf})

    def check_landed_once(self, run: Any) -> dict[str, Any]:
        """Every file of the export under the prefix exactly once, equal to the sandbox's bytes; nothing else."""
        job = xcom(run, "export")
        assert job and job["state"] == "SUCCESS" and job["files"], job
        s3 = self.moto.client()
        objects = s3.list_objects_v2(Bucket=fm.BUCKET, Prefix=self.prefix + "/").get("Contents", [])
        landed = {o["Key"]: s3.get_object(Bucket=fm.BUCKET, Key=o["Key"])["Body"].read() for o in objects
                  if o["Key"] != f"{self.prefix}/_manifest.json"}  # the landing manifest (docs/transfers.md)
        expected = {f"{self.prefix}/{f['name']}": fm.source_bytes(self.state, self.vendor, job, f, self.moto, self.azurite)
                    for f in job["files"]}
        assert sorted(landed) == sorted(expected), "exactly the export's files, once each"
        for key, data in expected.items():
            assert landed[key] == data, f"{key}: landed bytes differ from the sandbox's"
        assert s3.list_multipart_uploads(Bucket=fm.BUCKET, Prefix=self.prefix).get("Uploads", []) == []
        return job


def tries(run: Any, task_id: str) -> int:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = session.query(TaskInstance).filter_by(dag_id=run.dag_id, run_id=run.run_id, task_id=task_id).one()
        return int(ti.try_number)


def after(condition: Callable[[], bool], action: Callable[[], None], limit: float = 60) -> threading.Thread:
    """Run ``action`` in the background as soon as ``condition`` holds (a fault that follows an event)."""

    def watch() -> None:
        deadline = time.time() + limit
        while time.time() < deadline:
            if condition():
                action()
                return
            time.sleep(0.01)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def ok(run: Any) -> None:
    assert task_states(run) == {"export": "success", "land": "success"}


# ---- the cells ----------------------------------------------------------------------------------
def c_429(c: Cell) -> None:
    faults = []
    if c.adapter.submit is not None and c.adapter.submit != c.adapter.status:
        faults.append(c.fault_on("submit", status=429, retry_after=0.2))
    faults.append(c.fault_on("status", status=429, retry_after=0.2, times=2 if len(faults) == 0 else 1))
    run = c.run()
    ok(run)
    c.check_landed_once(run)
    assert all(f.times == 0 for f in faults), "every 429 was served and retried"
    assert c.submitted() == (0 if c.adapter.submit is None else 1), "a 429 submit is repeated, never doubled"


def c_5xx(c: Cell) -> None:
    burst: list[Any] = []

    def add_burst() -> None:
        for status in (500, 503, 500):
            burst.append(c.fault_on("status", status=status))

    if c.adapter.submit == c.adapter.status:
        # one route for submit and status (Leanplum's /api): the burst follows the submit, as a
        # 500 on the submit itself is never repeated (it may have created a job)
        watcher = after(lambda: c.submitted() >= 1, add_burst)
    else:
        add_burst()
        watcher = None
    download = c.fault_on("download", status=503) if c.adapter.download_statuses else None
    run = c.run()
    if watcher is not None:
        watcher.join(1)
    ok(run)
    c.check_landed_once(run)
    assert len(burst) == 3 and all(f.hits == 1 for f in burst), "the whole burst was served and retried through"
    assert download is None or download.hits == 1
    assert c.submitted() == (0 if c.adapter.submit is None else 1)
    if download is None:
        c.note = "burst on the status reads only: the download route is not the sandbox's (S3 gateway or Azure Blob)"


def c_reset(c: Cell) -> None:
    mark = len(c.downloads())
    reset = c.fault_on("download", kind="reset")
    run = c.run()
    ok(run)
    job = c.check_landed_once(run)
    assert reset.hits == 1
    def byte_range(r: dict[str, Any]) -> str:  # Range, or the Azure SDK's x-ms-range
        return next((v for k, v in r["headers"].items() if k.lower() in ("range", "x-ms-range")), "")

    ranged = [byte_range(r) for r in c.downloads()[mark:] if byte_range(r).startswith("bytes=")]
    if c.proxy is not None:
        # the Azure SDK reads bounded ranges and retries a broken one whole (the landing never sees it). Under
        # load its retry can itself fail and the landing's resume reads the range once more: only the broken
        # range is read again, and the file still lands once (check_landed_once above)
        again = {rng for rng in ranged if ranged.count(rng) > 1}
        assert len(again) == 1, f"exactly the broken range was read again: {ranged}"
        assert len(c.downloads()) - mark == len(job["files"]) + ranged.count(next(iter(again))) - 1
        c.note = ("blobs read with the Azure SDK through a fault proxy in front of Azurite (tests/support/fault_matrix.py "
                  "BlobFaultProxy); the SDK retries the broken bounded range itself")
    else:
        assert ranged and all(not rng.startswith("bytes=0-") for rng in ranged), "the download resumed from a later byte"
        assert len(c.downloads()) - mark == len(job["files"]) + 1, "one extra request: the resume"


def c_slow(c: Cell) -> None:
    c.set_extra(timeout=fm.SLOW_TIMEOUT)
    mark = len(c.downloads())
    slow = c.fault_on("download", kind="slow", delay=fm.SLOW_DELAY)
    run = c.run()
    ok(run)
    job = c.check_landed_once(run)
    assert slow.hits == 1
    assert len(c.downloads()) - mark == len(job["files"]) + 1, "the stalled read timed out and was opened again"
    if c.proxy is not None:
        c.note = ("blobs read with the Azure SDK through a fault proxy in front of Azurite; the wasb extra read_timeout "
                  "sets the SDK's read timeout, and the SDK retries the stalled range")


def c_token_expiry(c: Cell) -> None:
    cfg = c.state.vendor_config(c.vendor)
    if c.vendor == "pond":
        cfg.update(token_lifetime=1, pending_seconds=1.5, running_seconds=1.0)
        before = c.state.vendor["pond"]["token_requests"]
        run = c.run()
        ok(run)
        c.check_landed_once(run)
        assert c.state.vendor["pond"]["token_requests"] - before >= 2, "tokens were renewed during the wait"
    else:
        from airflow_export_providers.sandbox.mobile_engagement import runtime

        cfg.update(token_lifetime=1, pending_seconds=0.5, running_seconds=2.5)
        rt = runtime(c.state)
        mark = len(rt["token_requests"])
        run = c.run()
        ok(run)
        c.check_landed_once(run)
        assert sum(good for _, good in rt["token_requests"][mark:]) >= 2, "tokens were renewed during the wait"
    assert c.submitted() == 1


def c_link_expiry(c: Cell) -> None:
    from airflow_export_providers.sandbox import pond as pond_sandbox

    gateway = c.state.vendor["pond"]["s3_requests"]
    mark = len(gateway)
    reset = c.fault_on("download", kind="reset")
    # the link's signing credentials expire between the broken read and its Range resume
    watcher = after(lambda: reset.hits >= 1, lambda: pond_sandbox.rotate_credentials(c.state))
    run = c.run()
    watcher.join(1)
    ok(run)
    c.check_landed_once(run)
    seen = [(r["status"], r["headers"].get("Range")) for r in gateway[mark:]]
    refused = [i for i, (status, rng) in enumerate(seen) if status == 400 and rng]
    assert refused, f"a Range resume met the expired link: {seen}"
    assert any(status == 206 and rng == seen[refused[0]][1] for status, rng in seen[refused[0] + 1:]), \
        "the re-signed link resumed from the same byte"


def c_job_failed(c: Cell) -> None:
    c.state.vendor_config(c.vendor)["fail_next"] = 1
    run = c.run()
    ok(run)
    c.check_landed_once(run)
    assert c.submitted() == 2, "one FAILED job, one resubmit"


def c_worker_killed(c: Cell) -> None:
    run = c.run(kill_mid_upload=True)
    ok(run)
    c.check_landed_once(run)
    assert tries(run, "land") == 2, "the landing died once and its retry landed"
    assert c.submitted() == (0 if c.adapter.submit is None else 1)


def c_retry_after_submit(c: Cell) -> None:
    run = c.run(fail_after_submit=True)
    ok(run)
    c.check_landed_once(run)
    assert tries(run, "export") == 2
    assert c.submitted() == (0 if c.adapter.submit is None else 1), "the retry resumed the stored job"
    if c.adapter.submit is None:
        c.note = "MX has nothing to submit: the retry reads the same snapshot (no vendor job exists)"


def c_triggerer_restart(c: Cell) -> None:
    from airflow_export_providers.core.hook import import_hook

    cfg = c.state.vendor_config(c.vendor)
    for key in ("pending_seconds", "running_seconds"):
        if key in cfg:
            cfg[key] = 0.8
    if c.guid:
        from tests.support.mx import make_snapshot

        c.guid = make_snapshot(c.state, ready_after=1.5).guid
    job_id = fm.start_export(c.vendor, c.guid)
    hook_class = {"pond": "airflow_export_providers.hooks.pond.PondHook",
                  "leanplum": "airflow_export_providers.hooks.leanplum.LeanplumHook",
                  "indicative": "airflow_export_providers.hooks.indicative.IndicativeHook",
                  "mx": "airflow_export_providers.hooks.mx.MxSnapshotsHook",
                  "mobile_engagement": "airflow_export_providers.hooks.mobile_engagement.MobileEngagementHook"}[c.vendor]
    hook_kwargs = import_hook(hook_class)().hook_kwargs()
    if c.vendor == "mobile_engagement":
        hook_kwargs["container"] = fm.ME_CONTAINER
    first = ExportJobTrigger(hook_class=hook_class, conn_id=c.adapter.conn_id, job_id=job_id, poll_interval=0.2,
                             deadline=time.time() + 60, hook_kwargs=hook_kwargs)
    method, path = c.adapter.status
    import re

    def polls() -> int:
        return sum(r["method"] == method and re.search(path, r["path"]) is not None for r in list(c.state.requests))

    async def killed_after_first_poll() -> None:
        start = polls()
        agen: Any = first.run()
        task = asyncio.ensure_future(agen.__anext__())
        deadline = time.time() + 20
        while polls() == start and time.time() < deadline:
            await asyncio.sleep(0.01)
        assert polls() > start, "the trigger polled"
        assert not task.done(), "still waiting when the triggerer dies"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await agen.aclose()

    asyncio.run(killed_after_first_poll())
    classpath, kwargs = first.serialize()
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**json.loads(json.dumps(kwargs)))

    async def collect() -> list[dict[str, Any]]:
        return [event.payload async for event in rebuilt.run()]

    (event,) = asyncio.run(asyncio.wait_for(collect(), 60))
    assert event["status"] == "success" and event["job_id"] == job_id
    job = ExportJob.from_dict(event["job"])
    assert job.files, "the rebuilt trigger completed the same job with its files"
    assert c.submitted() == (0 if c.adapter.submit is None else 1), "one vendor job, polled by both triggers"
    c.note = "ExportJobTrigger driven directly (cancelled after its first poll, rebuilt from serialize() via JSON)"


def c_streaming_watermark(c: Cell) -> None:
    """Leanplum streaming: a failed landing keeps the watermark; the next run exports that range again."""
    from airflow.models.variable import Variable

    from airflow_export_providers.sandbox import leanplum as lp_sandbox

    s3 = c.moto.client()
    for bucket in ("lp-stream",):
        try:
            s3.create_bucket(Bucket=bucket)
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass
    var = f"fm_stream_{uuid.uuid4().hex[:6]}"

    def mark() -> Any:
        raw = Variable.get(var, default_var=None)
        return None if raw is None else json.loads(raw)

    dag = load_dag("leanplum_flows.py", "leanplum_stream_test", folder="tests/dags")
    start = int(time.time()) - 600
    first = run_dag(dag, run_conf={"variable": var, "bucket": "lp-stream", "initial": start})
    assert task_states(first) == {"export": "success", "land": "success"}
    kept = ExportJob.from_dict(xcom(first, "export")).extra["end_time"]
    assert mark()["value"] == kept
    time.sleep(1.1)
    failed = run_dag(dag, run_conf={"variable": var, "bucket": "no-such-bucket-fault-matrix", "initial": start})
    assert task_states(failed) == {"export": "success", "land": "failed"}
    lost = ExportJob.from_dict(xcom(failed, "export"))
    assert lost.extra["start_time"] == kept  # startTime = the last endTime, exactly
    assert mark()["value"] == kept, "the watermark did not move"
    time.sleep(1.1)
    again = run_dag(dag, run_conf={"variable": var, "bucket": "lp-stream", "initial": start})
    assert task_states(again) == {"export": "success", "land": "success"}
    redo = ExportJob.from_dict(xcom(again, "export"))
    assert redo.extra["start_time"] == kept and redo.job_id != lost.job_id, "the same range, exported again"
    assert mark()["value"] == redo.extra["end_time"]
    objects = s3.list_objects_v2(Bucket="lp-stream", Prefix=f"{var}/{again.run_id}/").get("Contents", [])
    landed = {o["Key"].rsplit("/", 1)[-1]: s3.get_object(Bucket="lp-stream", Key=o["Key"])["Body"].read() for o in objects
              if not o["Key"].endswith("/_manifest.json")}
    data = c.state.jobs[redo.job_id].data
    assert landed == {f.name: data["files"][data["order"][int(f.key)]] for f in redo.files}, "byte for byte, once"
    lost_range = {s["sessionId"] for _a, s in lp_sandbox.source(c.state).sessions_between(kept, lost.extra["end_time"])}
    sessions = {json.loads(line)["sessionId"] for body in landed.values() for line in body.splitlines() if line.strip()}
    assert lost_range and lost_range <= sessions, "what the failed run lost landed in the next one"
    c.note = ("the leanplum_stream_test DAG (tests/dags/leanplum_flows.py), as in "
              "test_leanplum.py::test_failed_landing_keeps_the_watermark_and_the_next_run_re_exports")


def c_streaming_overlap(c: Cell) -> None:
    """Leanplum streaming: two runs overlap for real (two processes); one lands, the other refuses before writing."""
    from collections import Counter

    from airflow.models.variable import Variable

    from airflow_export_providers.sandbox import leanplum as lp_sandbox
    from tests.support.leanplum_overlap import run_two_overlapping

    s3 = c.moto.client()
    var = f"fm_overlap_{uuid.uuid4().hex[:6]}"
    initial = int(time.time()) - 10
    before = c.submitted()
    results = run_two_overlapping(c.state, var, fm.BUCKET, initial)
    assert c.submitted() == before + 2, "both runs exported the same range"
    assert sorted(r["states"]["land"] for r in results) == ["failed", "success"], results
    winner = next(r for r in results if r["states"]["land"] == "success")
    loser = next(r for r in results if r["states"]["land"] == "failed")
    won = ExportJob.from_dict(winner["export"])
    assert json.loads(Variable.get(var)) == {"value": won.extra["end_time"], "job_id": won.job_id}, "committed once"
    assert not s3.list_objects_v2(Bucket=fm.BUCKET, Prefix=f"{var}/{loser['run_id']}/").get("Contents"), "loser wrote nothing"
    landed: Counter[str] = Counter()
    for obj in s3.list_objects_v2(Bucket=fm.BUCKET, Prefix=f"{var}/").get("Contents", []):
        if "-output" not in obj["Key"]:
            continue  # not a Leanplum file (e.g. a manifest)
        body = s3.get_object(Bucket=fm.BUCKET, Key=obj["Key"])["Body"].read()
        landed.update(json.loads(line)["sessionId"] for line in body.splitlines() if line.strip())
    expected = {s["sessionId"] for s in lp_sandbox.ground_truth(c.state, initial, won.extra["end_time"])}
    assert set(landed) == expected and all(n == 1 for n in landed.values()), "every session once, none missing"
    c.note = ("two processes running the leanplum_stream_test DAG at once (tests/support/leanplum_overlap.py), as in "
              "test_leanplum.py::test_two_overlapping_streaming_runs_land_the_range_once")


CELLS: dict[str, Callable[[Cell], None]] = {
    "429": c_429, "5xx": c_5xx, "reset": c_reset, "slow": c_slow, "token_expiry": c_token_expiry,
    "link_expiry": c_link_expiry, "job_failed": c_job_failed, "triggerer_restart": c_triggerer_restart,
    "worker_killed": c_worker_killed, "retry_after_submit": c_retry_after_submit,
    "streaming_watermark": c_streaming_watermark, "streaming_overlap": c_streaming_overlap,
}


@pytest.mark.timeout(900)  # the overlapping-runs cell runs two Airflow processes
@pytest.mark.parametrize("fault", fm.FAULT_IDS)
@pytest.mark.parametrize("vendor", VENDORS)
def test_fault(cell: Cell, vendor: str, fault: str) -> None:
    CELLS[fault](cell)


def test_every_cell_has_a_test_or_a_reason() -> None:
    assert set(CELLS) == set(fm.FAULT_IDS)
    for adapter in fm.ADAPTERS.values():
        assert set(adapter.not_applicable) <= set(fm.FAULT_IDS)
        assert all(reason.strip() for reason in adapter.not_applicable.values())
