"""Leanplum against the sandbox over real HTTP: hook, operators, quota, resubmits, streaming watermarks.

The streaming and quota flows run in real Airflow (``dag.test()``: Variables, task_state_store,
deferral through the triggerer code path) and land in moto's S3 through the real transfer operator.
"""

from __future__ import annotations

import gzip
import json
import logging
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_export_providers.core.errors import ExportJobFailed, QuotaExceeded, VendorAuthError, VendorHTTPError
from airflow_export_providers.core.http import RetryPolicy
from airflow_export_providers.core.job import ExportJob, JobState, Watermark
from airflow_export_providers.hooks.leanplum import PACIFIC, LeanplumHook
from airflow_export_providers.operators.leanplum import LeanplumExportOperator, leanplum_date
from airflow_export_providers.sandbox import leanplum as lp_sandbox
from tests.support.airflow import load_dag, run_dag, task_states, xcom

VENDOR = "leanplum"


@pytest.fixture
def lp(sandbox: Any, sandbox_state: Any, vendor_conns: dict[str, Any], aws_conn: str) -> Iterator[Any]:
    """Fast jobs, a fresh daily quota, and the sandbox's own settings restored afterwards."""
    cfg = sandbox_state.vendor_config(VENDOR)
    saved = dict(cfg)
    cfg.update(pending_seconds=0.2, running_seconds=0.2)
    sandbox_state.vendor[VENDOR]["quota"] = {}
    yield sandbox_state
    cfg.clear()
    cfg.update(saved)
    sandbox_state.vendor[VENDOR]["quota"] = {}


def day_ago(days: int) -> str:
    return leanplum_date(time.time() - days * 86400)


def wait_final(hook: LeanplumHook, job_id: str, timeout: float = 20) -> ExportJob:
    deadline = time.time() + timeout
    while True:
        job = hook.get_job(job_id)
        if job.state.is_final or time.time() > deadline:
            return job
        time.sleep(0.1)


def expected_day(state: Any, day: str, job_id: str) -> set[str]:
    """Session ids the sandbox held for one Pacific day when ``job_id`` was submitted.

    Late (offline) sessions keep arriving for days, so "now" would be a moving target.
    """
    d = datetime.strptime(day, "%Y%m%d").date()
    params = {"start_day": d, "end_day": d, "start_time": None, "end_time": None, "job_id": "expect"}
    at = state.jobs[job_id].data["submitted_at"]
    return {s["sessionId"] for s in lp_sandbox.select_sessions(state, params, at)}


def read_json_lines(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def s3_sessions(s3: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    """Every session in the Leanplum files under ``prefix`` (other objects, e.g. a manifest, are skipped)."""
    out: list[dict[str, Any]] = []
    for obj in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
        if "-output" in obj["Key"].rsplit("/", 1)[-1]:
            out.extend(read_json_lines(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()))
    return out


# ---- hook ------------------------------------------------------------------------------------------
def test_json_export_lands_the_days_sessions(lp: Any) -> None:
    lp.vendor_config(VENDOR)["max_sessions_per_file"] = 10
    hook = LeanplumHook()
    day = day_ago(3)
    before = lp.submissions[VENDOR]
    job = wait_final(hook, hook.submit(start_date=day))
    assert lp.submissions[VENDOR] == before + 1
    assert job.state == JobState.SUCCESS and job.raw_state == "FINISHED"
    assert len(job.files) >= 3 and all(f.row_format == "jsonl" and f.rows is None for f in job.files)
    got: list[dict[str, Any]] = []
    for f in job.files:
        stream = LeanplumHook().open_file(f)
        got.extend(read_json_lines(stream.read(1 << 24)))
        stream.close()
    ids = [s["sessionId"] for s in got]
    assert len(ids) == len(set(ids)) == job.extra["numSessions"]
    assert set(ids) == expected_day(lp, day, job.job_id)
    for s in got:  # every session started on that Pacific day
        assert datetime.fromtimestamp(s["time"], PACIFIC).strftime("%Y%m%d") == day
        assert {"userId", "deviceId", "states", "userAttributes", "experiments"} <= set(s)


def test_csv_family_is_named_by_type(lp: Any) -> None:
    hook = LeanplumHook()
    job = wait_final(hook, hook.submit(start_date=day_ago(2), export_format="csv"))
    by_type = {f.resource: f for f in job.files}
    assert set(by_type) == {"sessions", "states", "events", "eventparameters", "userattributes", "experiments"}
    assert all(f.name.startswith(f"{f.resource}/") and f.name.endswith(".csv") for f in job.files)
    sessions = LeanplumHook().open_file(by_type["sessions"]).read(1 << 24).decode().splitlines()
    assert sessions[0].startswith("sessionId,userId,")
    assert len(sessions) - 1 == job.extra["numSessions"]
    params = LeanplumHook().open_file(by_type["eventparameters"]).read(1 << 24).decode().splitlines()
    assert params[0] == "eventId,name,value"


def test_bad_client_key_is_refused_clearly(lp: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import set_connection

    conn = dict(lp_sandbox.connections(lp.base_url, lp)["leanplum_default"])
    conn["password"] = "exp_wrong_key_0000"
    set_connection(monkeypatch, "leanplum_bad", conn)
    hook = LeanplumHook(conn_id="leanplum_bad")
    with pytest.raises(VendorAuthError, match="Incorrect appId or clientKey"):
        hook.submit(start_date=day_ago(1))
    ok, message = hook.test_connection()
    assert not ok and "refused" in message
    assert LeanplumHook().test_connection() == (True, "Leanplum accepted the appId and clientKey")


def test_vendor_refusals_keep_their_words_and_do_not_count(lp: Any) -> None:
    hook = LeanplumHook()
    before = lp.submissions[VENDOR]
    with pytest.raises(VendorHTTPError, match="older than 60 days"):
        hook.submit(start_date=day_ago(75))
    with pytest.raises(VendorHTTPError, match="exportFormat 'xml'"):
        hook.submit(start_date=day_ago(1), export_format="xml")
    assert lp.submissions[VENDOR] == before
    assert lp.vendor[VENDOR]["quota"].get(lp.vendor[VENDOR]["app_id"], []) == []


def test_expired_link_is_re_signed_and_purged_file_is_a_clear_error(lp: Any) -> None:
    cfg = lp.vendor_config(VENDOR)
    cfg["url_ttl_seconds"] = 1
    hook = LeanplumHook()
    job = wait_final(hook, hook.submit(start_date=day_ago(1)))
    time.sleep(2.05)  # the links this hook cached have expired (Expires is whole seconds, rounded up)
    seen = len(lp.requests)
    data = hook.open_file(job.files[0]).read(1 << 24)
    assert len(read_json_lines(data)) == job.extra["numSessions"]
    file_gets = [r for r in lp.requests[seen:] if r["path"].startswith("/leanplum_export/")]
    assert len(file_gets) == 2  # refused as expired, then fetched with a freshly signed link
    cfg["file_ttl_seconds"] = 0.3
    job2 = wait_final(hook, hook.submit(start_date=day_ago(1)))
    time.sleep(0.5)
    with pytest.raises(VendorHTTPError) as err:
        LeanplumHook().open_file(job2.files[0])
    assert err.value.status == 404 and "deletes export files 24 hours after the export" in str(err.value)


def test_client_key_never_reaches_the_logs(lp: Any, caplog: pytest.LogCaptureFixture) -> None:
    key = lp.secret("leanplum-export-key")
    caplog.set_level(logging.DEBUG)
    hook = LeanplumHook()
    lp.add_fault(path=r"^/api$", status=503, times=1)  # a retry logs the URL it retries
    job = wait_final(hook, hook.submit(start_date=day_ago(1)))
    hook.open_file(job.files[0]).read(1 << 20)
    with pytest.raises(VendorHTTPError):
        hook.submit(start_date=day_ago(90))
    text = caplog.text
    assert "/api" in text  # the requests were logged ...
    assert key not in text  # ... without the key
    assert "clientKey=" not in text.replace("clientKey=%2A%2A%2A", "").replace("clientKey=***", "")
    assert key not in json.dumps(job.to_dict())


def test_callback_url_receives_the_result(lp: Any) -> None:
    hook = LeanplumHook()
    job_id = hook.submit(start_date=day_ago(1), callback_url=f"{lp.base_url}/_sandbox/leanplum/callback")
    wait_final(hook, job_id)
    deadline = time.time() + 5
    while time.time() < deadline and not any(c["response"][0]["jobId"] == job_id for c in lp.vendor[VENDOR].get("callbacks", [])):
        time.sleep(0.05)
    (body,) = [c for c in lp.vendor[VENDOR]["callbacks"] if c["response"][0]["jobId"] == job_id]
    assert body["response"][0]["state"] == "FINISHED" and body["response"][0]["numSessions"] >= 1


# ---- operators -------------------------------------------------------------------------------------
def test_failed_job_is_resubmitted(lp: Any) -> None:
    lp.vendor_config(VENDOR)["fail_next"] = 1
    before = lp.submissions[VENDOR]
    op = LeanplumExportOperator(task_id="x", export_start_date=day_ago(1), poll_interval=0.1, deferrable=False)
    result = op.execute({})  # type: ignore[arg-type]
    job = ExportJob.from_dict(result)
    assert lp.submissions[VENDOR] == before + 2
    assert job.state == JobState.SUCCESS and lp.jobs[job.job_id].fail is False
    assert job.extra["start_date"] == job.extra["end_date"] == day_ago(1)


def test_failures_beyond_max_resubmits_fail_the_task(lp: Any) -> None:
    lp.vendor_config(VENDOR)["fail_next"] = 2
    before = lp.submissions[VENDOR]
    op = LeanplumExportOperator(task_id="x", export_start_date=day_ago(1), poll_interval=0.1, deferrable=False, max_resubmits=1)
    with pytest.raises(ExportJobFailed, match="FAILED"):
        op.execute({})  # type: ignore[arg-type]
    assert lp.submissions[VENDOR] == before + 2


def test_quota_refusal_defers_until_it_can_submit(lp: Any) -> None:
    cfg = lp.vendor_config(VENDOR)
    cfg.update(quota_per_day=1, quota_window_seconds=1.5)
    hook = LeanplumHook()
    hook.submit(start_date=day_ago(1))  # uses the whole quota
    op = LeanplumExportOperator(task_id="q", export_start_date=day_ago(1), poll_interval=0.1, deferrable=True, quota_retry_seconds=0.5)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({})  # type: ignore[arg-type]
    trigger = deferred.value.trigger
    assert type(trigger).__name__ == "DateTimeTrigger" and deferred.value.method_name == "execute_after_quota"
    moment = trigger.serialize()[1]["moment"]
    assert 0 < moment.timestamp() - time.time() <= 0.6
    time.sleep(1.6)  # the window slides past the first export
    with pytest.raises(TaskDeferred) as waiting:  # submitted now; waits for the job (trigger)
        op.execute_after_quota({})  # type: ignore[arg-type]
    assert type(waiting.value.trigger).__name__ == "ExportJobTrigger"


def test_direct_copy_to_s3_with_keys_from_the_aws_connection(lp: Any, moto_s3: Any) -> None:
    s3 = moto_s3.client()
    s3.create_bucket(Bucket="lp-direct")
    op = LeanplumExportOperator(
        task_id="d", export_start_date=day_ago(2), poll_interval=0.1, deferrable=False,
        s3_bucket_name="lp-direct", s3_object_prefix="raw/", compress_data=True, s3_aws_conn_id="aws_default",
    )
    job = ExportJob.from_dict(op.execute({}))  # type: ignore[arg-type]
    assert job.extra["s3"] == {"bucket": "lp-direct", "prefix": "raw/", "compressed": True}
    sandbox_job = lp.jobs[job.job_id]
    assert sandbox_job.params["s3AccessId"] == "testing"  # read from the connection, not the DAG
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="lp-direct", Prefix="raw/")["Contents"])
    assert keys == sorted(f"raw/{name}.gz" for name in sandbox_job.data["order"])
    copied = read_json_lines(gzip.decompress(s3.get_object(Bucket="lp-direct", Key=keys[0])["Body"].read()))
    assert {s["sessionId"] for s in copied} == expected_day(lp, day_ago(2), job.job_id)
    assert "testing" not in json.dumps(job.extra)


def test_failed_direct_copy_fails_the_job(lp: Any) -> None:
    hook = LeanplumHook()
    job = wait_final(hook, hook.submit(start_date=day_ago(1), s3_bucket_name="no-such-bucket-lp", s3_access_id="AKIA0000",
                                       s3_access_key="secret-not-used"))
    assert job.state == JobState.FAILED and "no-such-bucket-lp" in (job.message or "")


# ---- real Airflow ----------------------------------------------------------------------------------
def _variable(name: str) -> Any:
    from airflow.models.variable import Variable

    raw = Variable.get(name, default_var=None)
    return None if raw is None else json.loads(raw)


def _clear_variables(*names: str) -> None:
    from airflow.models.variable import Variable

    for name in names:
        Variable.delete(name)


def _mark(name: str) -> Any:
    """The committed watermark value (the Variable also records which export committed it)."""
    stored = _variable(name)
    return None if stored is None else stored["value"]


def _truth(lp: Any, start: float, end: float) -> list[dict[str, Any]]:
    """Ground truth over HTTP: the sessions a gapless stream over [start, end) exports."""
    import requests

    answer = requests.get(f"{lp.base_url}/_sandbox/leanplum/sessions", params={"startTime": start, "endTime": end}, timeout=60)
    answer.raise_for_status()
    return answer.json()["sessions"]  # type: ignore[no-any-return]


@pytest.mark.timeout(900)  # six dag runs
@pytest.mark.parametrize("window", ["half-open", "inclusive"])
def test_a_chain_of_streaming_runs_lands_the_ground_truth(lp: Any, airflow_db: Any, moto_s3: Any, window: str) -> None:
    """Six chained runs, one with a FAILED Leanplum job and one whose landing fails half-way: every session
    that became available in [initial, last endTime) landed (zero gaps); duplicates only where a range
    was exported twice (the failed landing's files; with an inclusive window, the boundary sessions)."""
    from collections import Counter

    s3 = moto_s3.client()
    bucket = "lp-chain"
    try:
        s3.create_bucket(Bucket=bucket)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    cfg = lp.vendor_config(VENDOR)
    cfg.update(time_window=window, max_sessions_per_file=3)
    var = f"lp_chain_{window.replace('-', '_')}"
    _clear_variables(var, f"{var}.inflight")
    dag = load_dag("leanplum_flows.py", "leanplum_stream_test", folder="tests/dags")
    initial = int(time.time()) - 20
    conf = {"variable": var, "bucket": bucket, "initial": initial}
    plan = ["ok", "failed_job", "ok", "failed_landing", "ok", "ok"]
    boundaries: list[int] = []
    starts: list[tuple[int, int]] = []  # (startTime asked, the endTime it should continue from)
    partial: set[str] = set()
    for step in plan:
        before = lp.submissions[VENDOR]
        fault = None
        if step == "failed_job":
            cfg["fail_next"] = 1  # the run resubmits the FAILED job and lands the second one
        if step == "failed_landing":
            fault = lp.add_fault(path=r"/leanplum_export/.*-output-1$", status=404, times=-1)
        mark_before = _mark(var)
        run = run_dag(dag, run_conf=conf)
        if fault is not None:
            lp.clear_faults()
        job = ExportJob.from_dict(xcom(run, "export"))
        starts.append((job.extra["start_time"], initial if mark_before is None else mark_before))
        if step == "failed_landing":
            assert task_states(run) == {"export": "success", "land": "failed"}
            assert _mark(var) == mark_before  # nothing committed
            partial = {s["sessionId"] for s in s3_sessions(s3, bucket, f"{var}/{run.run_id}/")}
            continue
        assert task_states(run) == {"export": "success", "land": "success"}, step
        assert lp.submissions[VENDOR] == before + (2 if step == "failed_job" else 1)
        assert _mark(var) == job.extra["end_time"]  # committed after landing
        boundaries.append(job.extra["end_time"])
    final = boundaries[-1]
    truth = _truth(lp, initial, final)
    expected = {s["sessionId"] for s in truth}
    where: dict[str, list[str]] = {}  # session id -> the runs whose prefix holds it
    for obj in s3.list_objects_v2(Bucket=bucket, Prefix=f"{var}/").get("Contents", []):
        if "-output" in obj["Key"]:
            for session in read_json_lines(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()):
                where.setdefault(session["sessionId"], []).append(obj["Key"].split("/")[1])
    landed = Counter({sid: len(runs) for sid, runs in where.items()})
    gaps = expected - set(landed)
    stray = set(landed) - expected
    duplicates = {sid: n - 1 for sid, n in landed.items() if n > 1}
    at_boundary = {s["sessionId"] for s in truth if s["availableAt"] in boundaries}
    print(f"\nleanplum streaming chain [{window} window]: {len(plan)} runs, {len(expected)} sessions in the ground "
          f"truth, {sum(landed.values())} landed, gaps {len(gaps)}, duplicates {sum(duplicates.values())} "
          f"({len(set(duplicates) & partial)} from the failed landing's partial files, "
          f"{len(set(duplicates) & at_boundary)} available exactly at a boundary)")
    assert expected and not gaps, f"{len(gaps)} sessions never landed"
    assert not stray, f"{len(stray)} sessions landed that are outside the exported range"
    allowed = partial | (at_boundary if window == "inclusive" else set())
    available = {s["sessionId"]: s["availableAt"] for s in truth}
    assert set(duplicates) <= allowed, {sid: (available.get(sid), where[sid], boundaries) for sid in set(duplicates) - allowed}
    # at most once per export that covered it: the failed landing's partial file, and a boundary's neighbours
    assert all(n <= (sid in partial) + (sid in at_boundary and window == "inclusive") for sid, n in duplicates.items())
    if window == "inclusive":  # a session at an inner boundary is exported by both neighbours
        assert {s["sessionId"] for s in truth if s["availableAt"] in boundaries[:-1]} <= set(duplicates)
    assert all(asked == last_end for asked, last_end in starts)  # startTime = the last endTime, exactly


def test_failed_landing_keeps_the_watermark_and_the_next_run_re_exports(lp: Any, airflow_db: Any, moto_s3: Any) -> None:
    s3 = moto_s3.client()
    s3.create_bucket(Bucket="lp-stream")
    var = "lp_stream_failed_landing"
    _clear_variables(var, f"{var}.inflight")
    dag = load_dag("leanplum_flows.py", "leanplum_stream_test", folder="tests/dags")
    start = int(time.time()) - 600
    ok = run_dag(dag, run_conf={"variable": var, "bucket": "lp-stream", "initial": start})
    mark = ExportJob.from_dict(xcom(ok, "export")).extra["end_time"]
    assert _mark(var) == mark
    time.sleep(1.1)
    failed = run_dag(dag, run_conf={"variable": var, "bucket": "no-such-bucket-lp-landing", "initial": start})
    assert task_states(failed) == {"export": "success", "land": "failed"}
    lost = ExportJob.from_dict(xcom(failed, "export"))
    assert lost.extra["start_time"] == mark
    assert _mark(var) == mark  # unchanged: nothing was committed
    time.sleep(1.1)
    again = run_dag(dag, run_conf={"variable": var, "bucket": "lp-stream", "initial": start})
    assert task_states(again) == {"export": "success", "land": "success"}
    redo = ExportJob.from_dict(xcom(again, "export"))
    assert redo.extra["start_time"] == mark and redo.job_id != lost.job_id  # the same range, exported again
    assert redo.extra["end_time"] >= lost.extra["end_time"]
    assert _mark(var) == redo.extra["end_time"]
    landed = {s["sessionId"] for s in s3_sessions(s3, "lp-stream", f"{var}/{again.run_id}/")}
    lost_range = {s["sessionId"] for _a, s in lp_sandbox.source(lp).sessions_between(mark, lost.extra["end_time"])}
    assert lost_range and lost_range <= landed


def test_streaming_resumes_the_export_in_flight(lp: Any, airflow_db: Any, moto_s3: Any) -> None:
    """A run that died while its export was RUNNING: the next run adopts that job, no second export."""
    from airflow.models.variable import Variable

    s3 = moto_s3.client()
    s3.create_bucket(Bucket="lp-stream")
    var = "lp_stream_resume"
    _clear_variables(var, f"{var}.inflight")
    mark = int(time.time()) - 300
    Variable.set(var, json.dumps({"value": mark}))
    lp.vendor_config(VENDOR).update(pending_seconds=300.0, running_seconds=0.2)  # still running when the run reads it
    now = int(time.time())
    hook = LeanplumHook()
    orphan = hook.submit(start_date=day_ago(8), end_date=leanplum_date(time.time() + 2 * 86400), start_time=mark, end_time=now)
    Variable.set(f"{var}.inflight", json.dumps({
        "job_id": orphan, "previous": mark, "start_time": mark, "end_time": now, "start_date": day_ago(8),
        "end_date": leanplum_date(time.time() + 2 * 86400),
        "owner": {"dag_id": "leanplum_stream_test", "run_id": "manual__crashed", "task_id": "export"},
    }))
    before = lp.submissions[VENDOR]

    def finish_once_adopted() -> None:
        """The orphan finishes once the new run has read its state (the sandbox counts the reads;
        Variables are not read from this thread: dag.test()'s in-process task channel is not thread-safe)."""
        deadline = time.time() + 300
        while not lp.vendor[VENDOR].get("status_reads", {}).get(orphan) and time.time() < deadline:
            time.sleep(0.1)
        lp.jobs[orphan].pending_seconds = 0.0

    import threading

    watcher = threading.Thread(target=finish_once_adopted, daemon=True)
    watcher.start()
    run = run_dag(load_dag("leanplum_flows.py", "leanplum_stream_test", folder="tests/dags"),
                  run_conf={"variable": var, "bucket": "lp-stream", "initial": None})
    watcher.join(5)
    assert task_states(run) == {"export": "success", "land": "success"}
    job = ExportJob.from_dict(xcom(run, "export"))
    assert job.job_id == orphan and lp.submissions[VENDOR] == before
    assert _variable(var) == {"value": now, "job_id": orphan}


def test_quota_refusal_defers_then_succeeds_in_airflow(lp: Any, airflow_db: Any) -> None:
    import threading

    cfg = lp.vendor_config(VENDOR)
    cfg.update(quota_per_day=0)  # used up until the run has been refused once
    refused_before = lp.vendor[VENDOR].get("refusals", 0)
    before = lp.submissions[VENDOR]

    def free_the_quota_after_a_refusal() -> None:
        deadline = time.time() + 120
        while lp.vendor[VENDOR].get("refusals", 0) == refused_before and time.time() < deadline:
            time.sleep(0.1)
        cfg["quota_per_day"] = 24

    waiter = threading.Thread(target=free_the_quota_after_a_refusal, daemon=True)
    waiter.start()
    run = run_dag(load_dag("leanplum_flows.py", "leanplum_quota_test", folder="tests/dags"), run_conf={"day": day_ago(1)})
    waiter.join(5)
    assert task_states(run) == {"export": "success"}
    assert lp.submissions[VENDOR] == before + 1
    assert lp.vendor[VENDOR]["refusals"] > refused_before  # it was refused first, then waited
    assert ExportJob.from_dict(xcom(run, "export")).state == JobState.SUCCESS


def test_a_retry_does_not_start_a_second_export(lp: Any, airflow_db: Any) -> None:
    before = lp.submissions[VENDOR]
    run = run_dag(load_dag("leanplum_flows.py", "leanplum_retry_after_submit", folder="tests/dags"), run_conf={"day": day_ago(1)})
    assert task_states(run) == {"export": "success"}
    assert lp.submissions[VENDOR] == before + 1


def test_split_flow_start_sensor_land(lp: Any, airflow_db: Any, moto_s3: Any) -> None:
    s3 = moto_s3.client()
    s3.create_bucket(Bucket="lp-split")
    day = day_ago(4)
    run = run_dag(load_dag("leanplum_flows.py", "leanplum_split_flow", folder="tests/dags"), run_conf={"day": day})
    assert task_states(run) == {"start": "success", "wait": "success", "land": "success"}
    assert isinstance(xcom(run, "start"), str)
    landed = s3_sessions(s3, "lp-split", f"split/{run.run_id}/")
    assert {s["sessionId"] for s in landed} == expected_day(lp, day, ExportJob.from_dict(xcom(run, "wait")).job_id)


def test_daily_example_dag_lands_the_pacific_day(lp: Any, airflow_db: Any, moto_s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    s3 = moto_s3.client()
    s3.create_bucket(Bucket="leanplum-exports")
    monkeypatch.setenv("AEP_EXAMPLE_POLL_INTERVAL", "0.2")
    dag = load_dag("leanplum_daily_export.py")
    day = (datetime.now(PACIFIC) - timedelta(days=3)).replace(hour=0, minute=0, second=0, microsecond=0)
    # A run at the Pacific midnight ending the day (DST-safe: midnight of the next calendar date).
    next_midnight = datetime.combine(day.date() + timedelta(days=1), datetime.min.time(), tzinfo=PACIFIC)
    run = run_dag(dag, logical_date=next_midnight)
    assert set(task_states(run).values()) == {"success"}
    ymd = f"{day:%Y%m%d}"
    job = ExportJob.from_dict(xcom(run, "export_sessions"))
    assert job.extra["start_date"] == job.extra["end_date"] == ymd  # exactly the Pacific day that ended
    landed = s3_sessions(s3, "leanplum-exports", f"leanplum/sessions/{ymd}/")
    assert landed and {s["sessionId"] for s in landed} == expected_day(lp, ymd, ExportJob.from_dict(xcom(run, "export_sessions")).job_id)


def test_daily_example_dag_triggered_without_a_logical_date_lands_the_last_pacific_day(
    lp: Any, airflow_db: Any, moto_s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Trigger button / REST ``logical_date: null``: no data interval, the last complete Pacific day."""
    s3 = moto_s3.client()
    try:
        s3.create_bucket(Bucket="leanplum-exports")
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    monkeypatch.setenv("AEP_EXAMPLE_POLL_INTERVAL", "0.2")
    dag = load_dag("leanplum_daily_export.py")
    for task in dag.tasks:
        task.retries = 0
    run = run_dag(dag, logical_date=None)
    assert run.logical_date is None and run.data_interval_start is None
    assert set(task_states(run).values()) == {"success"}, task_states(run)
    ymd = f"{run.run_after.astimezone(PACIFIC).date() - timedelta(days=1):%Y%m%d}"
    job = ExportJob.from_dict(xcom(run, "export_sessions"))
    assert job.extra["start_date"] == job.extra["end_date"] == ymd
    landed = s3_sessions(s3, "leanplum-exports", f"leanplum/sessions/{ymd}/")
    assert landed and {s["sessionId"] for s in landed} == expected_day(lp, ymd, job.job_id)


@pytest.mark.parametrize("logical_date", ["none", "now"])
def test_streaming_example_dag_lands_in_azure_blob(
    lp: Any, airflow_db: Any, azurite: Any, wasb_conn: str, monkeypatch: pytest.MonkeyPatch, logical_date: str
) -> None:
    """A new stream's first manual run exports everything Leanplum holds: without a logical date (the
    Trigger button) and with one (``airflow dags test``, ``make demo``), whose data interval is zero-length."""
    monkeypatch.setenv("AEP_EXAMPLE_POLL_INTERVAL", "0.2")
    _clear_variables("leanplum_stream_watermark", "leanplum_stream_watermark.inflight")
    service = azurite.service()
    try:
        service.create_container("leanplum-stream")
    except Exception:  # exists from an earlier test run in this session
        pass
    dag = load_dag("leanplum_streaming.py")
    run = run_dag(dag, logical_date=datetime.now(timezone.utc) if logical_date == "now" else None)
    assert set(task_states(run).values()) == {"success"}
    job = ExportJob.from_dict(xcom(run, "export_sessions"))
    assert job.extra["start_time"] is None, "a new stream's manual run starts at the beginning, not at its run"
    assert _mark("leanplum_stream_watermark") == job.extra["end_time"]
    container = service.get_container_client("leanplum-stream")
    landed: list[dict[str, Any]] = []
    for blob in container.list_blobs(name_starts_with=f"leanplum/stream/{job.extra['end_time']}/"):
        if blob.name.endswith("/_manifest.json"):  # the landing manifest (docs/transfers.md)
            continue
        landed.extend(read_json_lines(container.download_blob(blob.name).readall()))
    params = {
        "start_day": datetime.strptime(job.extra["start_date"], "%Y%m%d").date(),
        "end_day": datetime.strptime(job.extra["end_date"], "%Y%m%d").date(),
        "start_time": job.extra["start_time"], "end_time": job.extra["end_time"], "job_id": "expect",
    }
    expected = {s["sessionId"] for s in lp_sandbox.select_sessions(lp, params, job.extra["end_time"])}
    assert landed and {s["sessionId"] for s in landed} == expected
    assert len(landed) == len(expected)


def test_a_run_never_exports_a_range_its_still_running_owner_holds(lp: Any, airflow_db: Any, moto_s3: Any) -> None:
    """Overlapping runs: while the run owning the in-flight export is running, the next one skips."""
    from datetime import timezone

    from airflow.models.dagrun import DagRun
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunType

    moto_s3.client().create_bucket(Bucket="lp-stream")
    var = "lp_stream_overlap"
    _clear_variables(var, f"{var}.inflight")
    mark = int(time.time()) - 300
    Variable.set(var, json.dumps({"value": mark}))
    hook = LeanplumHook()
    busy = wait_final(hook, hook.submit(start_date=day_ago(8), start_time=mark, end_time=int(time.time())))
    dag = load_dag("leanplum_flows.py", "leanplum_stream_test", folder="tests/dags")
    with create_session() as session:
        session.add(DagRun(dag_id=dag.dag_id, run_id="manual__owner_still_landing", run_type=DagRunType.MANUAL,
                           state=DagRunState.RUNNING, logical_date=datetime(2020, 1, 1, tzinfo=timezone.utc),
                           run_after=datetime.now(timezone.utc)))
    Variable.set(f"{var}.inflight", json.dumps({
        "job_id": busy.job_id, "previous": mark, "start_time": mark, "end_time": int(time.time()),
        "start_date": day_ago(8), "end_date": day_ago(-2),
        "owner": {"dag_id": dag.dag_id, "run_id": "manual__owner_still_landing", "task_id": "export"},
    }))
    before = lp.submissions[VENDOR]
    try:
        run = run_dag(dag, run_conf={"variable": var, "bucket": "lp-stream", "initial": None})
    finally:
        with create_session() as session:
            session.query(DagRun).filter_by(dag_id=dag.dag_id, run_id="manual__owner_still_landing").delete()
    assert task_states(run) == {"export": "skipped", "land": "skipped"}
    assert lp.submissions[VENDOR] == before  # no second export of the same range
    assert _variable(var) == {"value": mark}  # and the watermark did not move


def _sensor_run(mode: str, job_id: str) -> Any:
    return run_dag(load_dag("leanplum_flows.py", f"leanplum_sensor_{mode}", folder="tests/dags"), run_conf={"job_id": job_id})


@pytest.mark.parametrize("mode", ["deferred", "poke", "reschedule"])
def test_sensor_waits_for_a_job_another_run_started(lp: Any, airflow_db: Any, mode: str) -> None:
    hook = LeanplumHook()
    job_id = hook.submit(start_date=day_ago(1))  # started outside this DAG
    before = lp.submissions[VENDOR]
    run = _sensor_run(mode, job_id)
    assert task_states(run) == {"wait": "success"}
    job = ExportJob.from_dict(xcom(run, "wait"))
    assert job.job_id == job_id and job.state == JobState.SUCCESS and job.files
    assert lp.submissions[VENDOR] == before  # a sensor never submits


def test_sensor_fails_on_a_failed_job_and_soft_fails_on_timeout(lp: Any, airflow_db: Any) -> None:
    cfg = lp.vendor_config(VENDOR)
    cfg["fail_next"] = 1
    hook = LeanplumHook()
    failed = hook.submit(start_date=day_ago(1))
    run = _sensor_run("poke", failed)
    assert task_states(run) == {"wait": "failed"}
    cfg.update(pending_seconds=30)
    slow = hook.submit(start_date=day_ago(1))
    run = run_dag(load_dag("leanplum_flows.py", "leanplum_sensor_soft_fail", folder="tests/dags"), run_conf={"job_id": slow})
    assert task_states(run) == {"wait": "skipped"}


def test_a_hand_set_plain_watermark_is_continued_and_committed(lp: Any, airflow_db: Any, moto_s3: Any) -> None:
    from airflow.models.variable import Variable

    moto_s3.client().create_bucket(Bucket="lp-stream")
    var = "lp_stream_hand_set"
    _clear_variables(var, f"{var}.inflight")
    mark = int(time.time()) - 120
    Variable.set(var, str(mark))  # what someone types in the UI
    run = run_dag(load_dag("leanplum_flows.py", "leanplum_stream_test", folder="tests/dags"),
                  run_conf={"variable": var, "bucket": "lp-stream", "initial": None})
    assert task_states(run) == {"export": "success", "land": "success"}
    job = ExportJob.from_dict(xcom(run, "export"))
    assert job.extra["start_time"] == mark  # a typed string continues exactly where it says
    assert _mark(var) == job.extra["end_time"]


# ---- vendor contract: no data, status field, forgotten jobs, quota wordings ----------------------------
def _quiet_now(lp: Any, seconds_back: float = 120) -> float:
    """Nothing becomes available from ``seconds_back`` ago until well after the test."""
    now = time.time()
    lp.vendor_config(VENDOR)["quiet"] = [[now - seconds_back, now + 3600]]
    return now


def test_an_export_that_matches_nothing_succeeds_with_zero_files(lp: Any, airflow_db: Any, moto_s3: Any) -> None:
    """``{"success": true}`` without a jobId: the hook, the operator, the sensor and the transfer all succeed."""
    moto_s3.client().create_bucket(Bucket="lp-empty")
    now = _quiet_now(lp)
    hook = LeanplumHook()
    jobs_before, empty_before = len(lp.jobs), lp.vendor[VENDOR].get("empty_answers", 0)
    job_id = hook.submit(start_date=day_ago(0), start_time=int(now) - 60, end_time=int(now))
    assert LeanplumHook.is_no_data(job_id) and len(lp.jobs) == jobs_before
    assert lp.vendor[VENDOR]["empty_answers"] == empty_before + 1  # the sandbox answered without a jobId
    job = hook.get_job(job_id)
    assert job.state == JobState.SUCCESS and job.files == []
    run = run_dag(load_dag("leanplum_flows.py", "leanplum_window_test", folder="tests/dags"),
                  run_conf={"day": day_ago(0), "start_time": int(now) - 60, "end_time": int(now), "bucket": "lp-empty"})
    assert task_states(run) == {"export": "success", "wait": "success", "land": "success"}
    assert ExportJob.from_dict(xcom(run, "wait")).files == []
    assert xcom(run, "land") == []
    # Nothing but the landing's manifest: it lists no file, so it would replace an earlier export of the window.
    landed = [o["Key"] for o in moto_s3.client().list_objects_v2(Bucket="lp-empty").get("Contents", [])]
    assert landed == [f"window/{run.run_id}/_manifest.json"], landed
    body = moto_s3.client().get_object(Bucket="lp-empty", Key=landed[0])["Body"].read()
    assert all(not part.get("files") for part in json.loads(body)["parts"].values()), body


def test_a_quiet_streaming_run_moves_the_watermark_to_its_end_time(lp: Any, airflow_db: Any, moto_s3: Any) -> None:
    from airflow.models.variable import Variable

    moto_s3.client().create_bucket(Bucket="lp-stream")
    var = "lp_stream_quiet"
    _clear_variables(var, f"{var}.inflight")
    now = _quiet_now(lp)
    Variable.set(var, json.dumps({"value": int(now) - 60}))
    jobs_before = len(lp.jobs)
    run = run_dag(load_dag("leanplum_flows.py", "leanplum_stream_test", folder="tests/dags"),
                  run_conf={"variable": var, "bucket": "lp-stream", "initial": None})
    assert task_states(run) == {"export": "success", "land": "success"}
    job = ExportJob.from_dict(xcom(run, "export"))
    assert job.files == [] and LeanplumHook.is_no_data(job.job_id) and len(lp.jobs) == jobs_before
    assert job.extra["start_time"] == int(now) - 60 and job.extra["end_time"] >= int(now)
    assert _mark(var) == job.extra["end_time"]  # the next run starts after the quiet range


def test_the_state_is_read_from_a_status_field(lp: Any) -> None:
    lp.vendor_config(VENDOR)["status_field"] = "status"
    hook = LeanplumHook()
    job = wait_final(hook, hook.submit(start_date=day_ago(1)))
    assert job.state == JobState.SUCCESS and job.raw_state == "FINISHED" and job.files


@pytest.mark.parametrize("how", ["expired", "unknown-400"])
def test_an_in_flight_job_leanplum_forgot_is_dropped_and_the_range_exported_again(
    lp: Any, airflow_db: Any, moto_s3: Any, how: str
) -> None:
    from airflow.models.variable import Variable

    moto_s3.client().create_bucket(Bucket="lp-stream")
    var = f"lp_stream_forgot_{how.replace('-', '_')}"
    _clear_variables(var, f"{var}.inflight")
    mark = int(time.time()) - 30
    Variable.set(var, json.dumps({"value": mark}))
    cfg = lp.vendor_config(VENDOR)
    if how == "expired":
        hook = LeanplumHook()
        lost = hook.submit(start_date=day_ago(8), end_date=day_ago(-2), start_time=mark, end_time=int(time.time()))
        cfg["job_ttl_seconds"] = 86400.0
        lp.jobs[lost].created_at -= 2 * 86400  # submitted two days ago: Leanplum answers 404 for it now
    else:
        lost = "export_1000000000000000_1000000000000000000"
        cfg["unknown_job_status"] = 400  # "Export job ... not found." with HTTP 400
    Variable.set(f"{var}.inflight", json.dumps({
        "job_id": lost, "previous": mark, "start_time": mark, "end_time": mark + 10, "start_date": day_ago(8),
        "end_date": day_ago(-2), "owner": {"dag_id": "leanplum_stream_test", "run_id": "manual__crashed", "task_id": "export"},
    }))
    before = lp.submissions[VENDOR]
    run = run_dag(load_dag("leanplum_flows.py", "leanplum_stream_test", folder="tests/dags"),
                  run_conf={"variable": var, "bucket": "lp-stream", "initial": None})
    assert task_states(run) == {"export": "success", "land": "success"}  # the forgotten job failed every run before
    job = ExportJob.from_dict(xcom(run, "export"))
    assert job.job_id != lost and job.extra["start_time"] == mark and lp.submissions[VENDOR] == before + 1
    assert _variable(var) == {"value": job.extra["end_time"], "job_id": job.job_id}
    assert json.loads(Variable.get(f"{var}.inflight"))["job_id"] == job.job_id  # the forgotten claim is gone


QUOTA_WORDINGS = [
    ("Export limit reached: you may only export data 24 times per day.", 400),
    ("Daily export quota exceeded.", 400),
    ("Rate limit exceeded, try again later", 400),
    ("You have reached the limit of 24 exports for today", 403),
    ("Too many exports", 429),
]


@pytest.mark.parametrize(("words", "status"), QUOTA_WORDINGS)
def test_quota_refusals_in_any_wording_wait_instead_of_failing(lp: Any, words: str, status: int) -> None:
    lp.vendor_config(VENDOR).update(quota_per_day=0, quota_message=words, quota_status=status)
    jobs_before = len(lp.jobs)
    with pytest.raises(QuotaExceeded) as err:
        LeanplumHook(quota_retry_seconds=5, retry_policy=RetryPolicy(max_attempts=1)).submit(start_date=day_ago(1))
    assert words in str(err.value) and err.value.retry_at <= time.time() + 5
    assert len(lp.jobs) == jobs_before


def test_an_unrecognised_refusal_fails_with_the_vendor_words(lp: Any) -> None:
    lp.vendor_config(VENDOR)["refuse_message"] = "Exports are disabled for this app."
    with pytest.raises(VendorHTTPError, match="Exports are disabled for this app") as err:
        LeanplumHook().submit(start_date=day_ago(1))
    assert not isinstance(err.value, QuotaExceeded)


# ---- overlapping streaming runs ------------------------------------------------------------------------
@pytest.mark.timeout(900)  # two Airflow processes on a shared 2-core machine
def test_two_overlapping_streaming_runs_land_the_range_once(lp: Any, airflow_db: Any, moto_s3: Any) -> None:
    """Two processes run the streaming DAG at once (as ``airflow dags test`` beside a scheduled run does,
    which max_active_runs does not stop); the sandbox holds both submits until both arrived, so both
    really export the same range. Exactly one run lands and commits; the other refuses before writing."""
    from collections import Counter

    from tests.support.leanplum_overlap import run_two_overlapping

    s3 = moto_s3.client()
    bucket = "lp-overlap"
    s3.create_bucket(Bucket=bucket)
    var = "lp_stream_overlap_processes"
    _clear_variables(var, f"{var}.inflight")
    initial = int(time.time()) - 20
    before = lp.submissions[VENDOR]
    results = run_two_overlapping(lp, var, bucket, initial)
    assert lp.submissions[VENDOR] == before + 2, "both runs really exported (the overlap happened)"
    jobs = [ExportJob.from_dict(r["export"]) for r in results]
    assert all(j.extra["start_time"] == initial for j in jobs)  # the same range, twice
    states = sorted(r["states"]["land"] for r in results)
    assert states == ["failed", "success"], results
    winner, loser = (results[0], results[1]) if results[0]["states"]["land"] == "success" else (results[1], results[0])
    won = ExportJob.from_dict(winner["export"])
    assert _variable(var) == {"value": won.extra["end_time"], "job_id": won.job_id}  # committed once, by the winner
    assert not s3_sessions(s3, bucket, f"{var}/{loser['run_id']}/"), "the refused landing wrote nothing"
    landed = Counter(s["sessionId"] for s in s3_sessions(s3, bucket, f"{var}/"))
    expected = {s["sessionId"] for s in _truth(lp, initial, won.extra["end_time"])}
    print(f"\noverlapping streaming runs: {len(expected)} sessions expected, {sum(landed.values())} landed, "
          f"gaps {len(expected - set(landed))}, duplicates {sum(n - 1 for n in landed.values())}")
    assert set(landed) == expected and all(n == 1 for n in landed.values())


def test_a_landing_started_after_another_run_committed_refuses_before_writing(
    lp: Any, airflow_db: Any, moto_s3: Any
) -> None:
    """Run A lands [w, e1) and commits; a late landing of another export of the same range (another
    value, or the very same value) is refused before a byte is read or written, watermark untouched."""
    s3 = moto_s3.client()
    s3.create_bucket(Bucket="lp-late")
    var = "lp_stream_late_landing"
    _clear_variables(var, f"{var}.inflight")
    initial = int(time.time()) - 10
    first = run_dag(load_dag("leanplum_flows.py", "leanplum_stream_test", folder="tests/dags"),
                    run_conf={"variable": var, "bucket": "lp-late", "initial": initial})
    assert task_states(first) == {"export": "success", "land": "success"}
    committed = ExportJob.from_dict(xcom(first, "export"))
    stored = _variable(var)
    hook = LeanplumHook()
    other = wait_final(hook, hook.submit(start_date=day_ago(8), end_date=day_ago(-2), start_time=initial,
                                         end_time=int(time.time())))
    assert other.files
    land_dag = load_dag("leanplum_flows.py", "leanplum_land_test", folder="tests/dags")
    for proposed in (other.extra.get("end_time") or int(time.time()), committed.extra["end_time"]):
        other.watermark = Watermark(variable=var, previous=None, proposed=proposed, job_id=other.job_id)
        downloads = sum(1 for r in lp.requests if r["path"].startswith("/leanplum_export/"))
        run = run_dag(land_dag, run_conf={"export": other.to_dict(), "bucket": "lp-late", "prefix": var})
        assert task_states(run) == {"land": "failed"}
        assert sum(1 for r in lp.requests if r["path"].startswith("/leanplum_export/")) == downloads  # nothing read
        assert not s3_sessions(s3, "lp-late", f"{var}/{run.run_id}/")  # nothing written
        assert _variable(var) == stored  # and the committed watermark stays A's


def test_a_pool_with_more_than_one_slot_is_refused_before_any_vendor_call(lp: Any, airflow_db: Any, moto_s3: Any) -> None:
    from airflow.models.pool import Pool

    moto_s3.client().create_bucket(Bucket="lp-stream")
    var = "lp_stream_pooled"
    _clear_variables(var, f"{var}.inflight")
    dag = load_dag("leanplum_flows.py", "leanplum_stream_pooled", folder="tests/dags")  # max_active_runs=4
    conf = {"variable": var, "bucket": "lp-stream", "initial": int(time.time()) - 5}
    try:
        for slots, outcome in ((3, "failed"), (1, "success")):
            Pool.create_or_update_pool("lp_stream_pool", slots=slots, description="test", include_deferred=True)
            calls = sum(1 for r in lp.requests if r["path"] == "/api")
            run = run_dag(dag, run_conf=conf)
            assert task_states(run)["export"] == outcome
            if outcome == "failed":
                assert sum(1 for r in lp.requests if r["path"] == "/api") == calls  # not one call to Leanplum
                assert _variable(var) is None
    finally:
        Pool.delete_pool("lp_stream_pool")
