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
from datetime import datetime, timedelta
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_export_providers.core.errors import ExportJobFailed, VendorAuthError, VendorHTTPError
from airflow_export_providers.core.job import ExportJob, JobState
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
    out: list[dict[str, Any]] = []
    for obj in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
        if obj["Key"].endswith("/_manifest.json"):  # the landing manifest (docs/transfers.md)
            continue
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


def test_streaming_runs_chain_watermarks_without_gap_or_overlap(lp: Any, airflow_db: Any, moto_s3: Any) -> None:
    s3 = moto_s3.client()
    s3.create_bucket(Bucket="lp-stream")
    var = "lp_stream_chain"
    _clear_variables(var, f"{var}.inflight")
    dag = load_dag("leanplum_flows.py", "leanplum_stream_test", folder="tests/dags")
    initial = int(time.time()) - 1800
    conf = {"variable": var, "bucket": "lp-stream", "initial": initial}
    windows = []
    before = lp.submissions[VENDOR]
    for _ in range(3):
        time.sleep(1.1)  # a few new sessions become available between runs
        run = run_dag(dag, run_conf=conf)
        assert task_states(run) == {"export": "success", "land": "success"}
        job = ExportJob.from_dict(xcom(run, "export"))
        assert job.watermark is not None and job.watermark.proposed == job.extra["end_time"]
        assert _variable(var) == {"value": job.extra["end_time"]}  # committed after landing
        windows.append((job.extra["start_time"], job.extra["end_time"], run.run_id))
    assert lp.submissions[VENDOR] == before + 3
    assert windows[0][0] == initial
    for (_s0, e0, _r0), (s1, _e1, _r1) in zip(windows, windows[1:], strict=False):
        assert s1 == e0 + 1  # inclusive whole seconds: no gap, no overlap
    landed = [s["sessionId"] for _s, _e, run_id in windows for s in s3_sessions(s3, "lp-stream", f"{var}/{run_id}/")]
    expected = {s["sessionId"] for _a, s in lp_sandbox.source(lp).sessions_between(initial, windows[-1][1])}
    assert len(landed) == len(set(landed))  # nothing landed twice
    assert set(landed) == expected  # nothing missing
    per_run = [{s["sessionId"] for s in s3_sessions(s3, "lp-stream", f"{var}/{r}/")} for _s, _e, r in windows]
    assert all(per_run)  # every window had sessions to export


def test_failed_landing_keeps_the_watermark_and_the_next_run_re_exports(lp: Any, airflow_db: Any, moto_s3: Any) -> None:
    s3 = moto_s3.client()
    s3.create_bucket(Bucket="lp-stream")
    var = "lp_stream_failed_landing"
    _clear_variables(var, f"{var}.inflight")
    dag = load_dag("leanplum_flows.py", "leanplum_stream_test", folder="tests/dags")
    start = int(time.time()) - 600
    ok = run_dag(dag, run_conf={"variable": var, "bucket": "lp-stream", "initial": start})
    mark = ExportJob.from_dict(xcom(ok, "export")).extra["end_time"]
    assert _variable(var) == {"value": mark}
    time.sleep(1.1)
    failed = run_dag(dag, run_conf={"variable": var, "bucket": "no-such-bucket-lp-landing", "initial": start})
    assert task_states(failed) == {"export": "success", "land": "failed"}
    lost = ExportJob.from_dict(xcom(failed, "export"))
    assert lost.extra["start_time"] == mark + 1
    assert _variable(var) == {"value": mark}  # unchanged: nothing was committed
    time.sleep(1.1)
    again = run_dag(dag, run_conf={"variable": var, "bucket": "lp-stream", "initial": start})
    assert task_states(again) == {"export": "success", "land": "success"}
    redo = ExportJob.from_dict(xcom(again, "export"))
    assert redo.extra["start_time"] == mark + 1 and redo.job_id != lost.job_id  # the same range, exported again
    assert redo.extra["end_time"] >= lost.extra["end_time"]
    assert _variable(var) == {"value": redo.extra["end_time"]}
    landed = {s["sessionId"] for s in s3_sessions(s3, "lp-stream", f"{var}/{again.run_id}/")}
    lost_range = {s["sessionId"] for _a, s in lp_sandbox.source(lp).sessions_between(mark + 1, lost.extra["end_time"])}
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
    lp.vendor_config(VENDOR).update(pending_seconds=1.0, running_seconds=1.0)
    now = int(time.time())
    hook = LeanplumHook()
    orphan = hook.submit(start_date=day_ago(8), end_date=leanplum_date(time.time() + 2 * 86400), start_time=mark + 1, end_time=now)
    Variable.set(f"{var}.inflight", json.dumps({
        "job_id": orphan, "previous": mark, "start_time": mark + 1, "end_time": now, "start_date": day_ago(8),
        "end_date": leanplum_date(time.time() + 2 * 86400),
        "owner": {"dag_id": "leanplum_stream_test", "run_id": "manual__crashed", "task_id": "export"},
    }))
    before = lp.submissions[VENDOR]
    run = run_dag(load_dag("leanplum_flows.py", "leanplum_stream_test", folder="tests/dags"),
                  run_conf={"variable": var, "bucket": "lp-stream", "initial": None})
    assert task_states(run) == {"export": "success", "land": "success"}
    job = ExportJob.from_dict(xcom(run, "export"))
    assert job.job_id == orphan and lp.submissions[VENDOR] == before
    assert _variable(var) == {"value": now}


def test_quota_refusal_defers_then_succeeds_in_airflow(lp: Any, airflow_db: Any) -> None:
    cfg = lp.vendor_config(VENDOR)
    cfg.update(quota_per_day=1, quota_window_seconds=1.5)
    LeanplumHook().submit(start_date=day_ago(1))
    refused_before = lp.vendor[VENDOR].get("refusals", 0)
    before = lp.submissions[VENDOR]
    run = run_dag(load_dag("leanplum_flows.py", "leanplum_quota_test", folder="tests/dags"), run_conf={"day": day_ago(1)})
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


def test_streaming_example_dag_lands_in_azure_blob(
    lp: Any, airflow_db: Any, azurite: Any, wasb_conn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AEP_EXAMPLE_POLL_INTERVAL", "0.2")
    _clear_variables("leanplum_stream_watermark", "leanplum_stream_watermark.inflight")
    service = azurite.service()
    try:
        service.create_container("leanplum-stream")
    except Exception:  # exists from an earlier test run in this session
        pass
    dag = load_dag("leanplum_streaming.py")
    run = run_dag(dag)
    assert set(task_states(run).values()) == {"success"}
    job = ExportJob.from_dict(xcom(run, "export_sessions"))
    assert _variable("leanplum_stream_watermark") == {"value": job.extra["end_time"]}
    container = service.get_container_client("leanplum-stream")
    landed: list[dict[str, Any]] = []
    for blob in container.list_blobs():
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
    busy = wait_final(hook, hook.submit(start_date=day_ago(8), start_time=mark + 1, end_time=int(time.time())))
    dag = load_dag("leanplum_flows.py", "leanplum_stream_test", folder="tests/dags")
    with create_session() as session:
        session.add(DagRun(dag_id=dag.dag_id, run_id="manual__owner_still_landing", run_type=DagRunType.MANUAL,
                           state=DagRunState.RUNNING, logical_date=datetime(2020, 1, 1, tzinfo=timezone.utc),
                           run_after=datetime.now(timezone.utc)))
    Variable.set(f"{var}.inflight", json.dumps({
        "job_id": busy.job_id, "previous": mark, "start_time": mark + 1, "end_time": int(time.time()),
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
    assert job.extra["start_time"] == mark + 1
    assert _variable(var) == {"value": job.extra["end_time"]}
