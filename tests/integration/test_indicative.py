"""Indicative against its sandbox over real HTTP, with results in moto's S3 server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

from airflow_export_providers.core.errors import ExportInputError, ExportJobFailed, VendorAuthError, VendorHTTPError
from airflow_export_providers.core.hook import iter_stream
from airflow_export_providers.core.http import RetryPolicy
from airflow_export_providers.core.job import ExportJob, JobState
from airflow_export_providers.hooks.indicative import IndicativeHook, segment_slug
from airflow_export_providers.operators.indicative import (
    IndicativeListSegmentsOperator,
    IndicativeSegmentExportOperator,
    resolve_segment,
)
from airflow_export_providers.sandbox import indicative as sb
from airflow_export_providers.sensors.indicative import IndicativeExportSensor
from tests.conftest import set_connection
from tests.support.secrets import register

LIST = "/service/v1/segments/list"
EXPORT = "/service/v1/segments/export/"
VENDOR_500 = "Internal Error: An error occurred while processing your API request. Ticket IND-4711 raised."

CHURN = "5f3c2b1a-9e8d-4f7c-b6a5-4d3c2b1a0f9e"
RECENT = "82200474-c131-4f7b-a35e-381469af31a7"
RECENT_EU = "0b7d8f9e-5a14-4c8e-9d59-2f0c1a6b3e11"
TRIAL_STATIC = "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f"
TRIAL_DYNAMIC = "d4e5f6a7-b8c9-4d0e-9f1a-2b3c4d5e6f70"


@pytest.fixture
def indicative(sandbox_state: Any, vendor_conns: Any, aws_conn: str) -> Iterator[Any]:
    """The sandbox with fast Indicative exports; the vendor settings are restored afterwards."""
    cfg = sandbox_state.vendor_config("indicative")
    saved = dict(cfg)
    cfg.clear()
    cfg.update({"pending_seconds": 0.2, "running_seconds": 0.2})
    register("indicative-access-token", sb.access_token(sandbox_state))
    yield sandbox_state
    cfg.clear()
    cfg.update(saved)


def fast_hook(**kwargs: Any) -> IndicativeHook:
    return IndicativeHook(retry_policy=RetryPolicy(max_attempts=4, backoff_base=0.05, backoff_max=0.2), **kwargs)


def calls(state: Any, path: str, method: str = "GET", since: int = 0) -> int:
    return sum(1 for r in state.requests[since:] if r["path"] == path and r["method"] == method)


def wait_final(hook: IndicativeHook, export_id: str, limit: float = 20) -> ExportJob:
    deadline = time.time() + limit
    while True:
        job = hook.get_job(export_id)
        if job.state.is_final or time.time() > deadline:
            return job
        time.sleep(0.1)


def completed_export(hook: IndicativeHook, segment_id: str = CHURN) -> ExportJob:
    job = wait_final(hook, hook.submit(segment_id))
    assert job.state == JobState.SUCCESS, job
    return job


# ---- connection, auth, status codes ----------------------------------------------------------------


def test_lists_segments_with_basic_auth(indicative: Any) -> None:
    hook = fast_hook()
    since = len(indicative.requests)
    segs = hook.list_segments()
    assert {s["segmentId"] for s in segs} == {s["segmentId"] for s in sb.SEGMENTS}
    assert {s["type"] for s in segs} == {"Static", "Dynamic"}
    assert all(set(s) == set(sb.PUBLIC_FIELDS) for s in segs)
    sent = [r for r in indicative.requests[since:] if r["path"] == LIST]
    assert sent and sent[0]["headers"]["Authorization"].startswith("Basic ")
    ok, message = hook.test_connection()
    assert ok and "6 user segment(s)" in message


def test_plain_http_refused_unless_loopback(indicative: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, "indicative_plain", {"conn_type": "indicative", "host": "http://query.example.com",
                                                      "login": "k", "password": "secret-token-xyz"})
    since = len(indicative.requests)
    with pytest.raises(ExportInputError, match="must be an https:// URL"):
        IndicativeHook("indicative_plain").list_segments()
    ok, message = IndicativeHook("indicative_plain").test_connection()
    assert not ok and "https://" in message
    assert len(indicative.requests) == since
    # no host: the documented default
    set_connection(monkeypatch, "indicative_nohost", {"conn_type": "indicative", "login": "k", "password": "p"})
    assert IndicativeHook("indicative_nohost").base_url == "https://query.indicative.com"


def test_401_fails_at_once_with_clear_words(indicative: Any, monkeypatch: pytest.MonkeyPatch, vendor_conns: Any) -> None:
    bad = register("indicative-wrong-token", "wrong-" + sb.access_token(indicative)[:12])
    set_connection(monkeypatch, "indicative_bad", {**vendor_conns["indicative_default"], "password": bad})
    since = len(indicative.requests)
    with pytest.raises(VendorAuthError) as err:
        fast_hook(conn_id="indicative_bad").list_segments()
    assert err.value.status == 401
    assert "credentials rejected" in str(err.value) and bad not in str(err.value)
    assert calls(indicative, LIST, since=since) == 1  # no retry of a 401


def test_403_without_export_api_fails_at_once(indicative: Any) -> None:
    indicative.vendor_config("indicative")["export_api"] = False
    hook = fast_hook()
    since = len(indicative.requests)
    with pytest.raises(VendorHTTPError) as err:
        hook.list_segments()
    assert err.value.status == 403
    assert "this project has no Export API access (Pro or Enterprise plan)" in str(err.value)
    with pytest.raises(VendorHTTPError, match="Pro or Enterprise"):
        hook.start_export(CHURN)
    assert calls(indicative, LIST, since=since) == 1
    assert calls(indicative, EXPORT, "POST", since=since) == 1
    ok, message = hook.test_connection()
    assert not ok and "Export API access" in message


def test_429_backs_off_honouring_retry_after(indicative: Any) -> None:
    hook = fast_hook()
    slept: list[float] = []
    hook.client.sleep = lambda s: (slept.append(s), time.sleep(s))  # type: ignore[func-returns-value]
    indicative.add_fault(path=LIST, status=429, retry_after=1, times=2)
    since = len(indicative.requests)
    assert len(hook.list_segments()) == len(sb.SEGMENTS)
    assert slept == [1.0, 1.0]  # the vendor's Retry-After, not the (tiny) jittered backoff
    assert calls(indicative, LIST, since=since) == 3


def test_500_burst_is_retried_then_succeeds(indicative: Any) -> None:
    hook = fast_hook()
    export_id = hook.submit(CHURN)
    indicative.add_fault(path=EXPORT + export_id, method="GET", status=500, body=json.dumps({"message": VENDOR_500}), times=2)
    since = len(indicative.requests)
    job = hook.get_job(export_id)
    assert job.job_id == export_id and job.raw_state in ("PENDING", "COMPLETE")
    assert calls(indicative, EXPORT + export_id, since=since) == 3


def test_500_persistent_fails_with_vendor_words(indicative: Any) -> None:
    hook = fast_hook()
    indicative.add_fault(path=LIST, status=500, body=json.dumps({"status": 500, "message": VENDOR_500}), times=-1)
    since = len(indicative.requests)
    with pytest.raises(VendorHTTPError) as err:
        hook.list_segments()
    assert err.value.status == 500
    assert VENDOR_500 in str(err.value)
    assert calls(indicative, LIST, since=since) == 4  # max_attempts


def test_500_on_submit_is_not_repeated(indicative: Any) -> None:
    """A 500 on the export POST may already have scheduled an export: fail instead of starting another."""
    hook = fast_hook()
    indicative.add_fault(path=EXPORT, method="POST", status=500, body=json.dumps({"message": VENDOR_500}), times=1)
    before = indicative.submissions["indicative"]
    since = len(indicative.requests)
    with pytest.raises(VendorHTTPError, match="IND-4711"):
        hook.start_export(CHURN)
    assert calls(indicative, EXPORT, "POST", since=since) == 1
    assert indicative.submissions["indicative"] == before


# ---- segment names ----------------------------------------------------------------------------------


def test_name_resolution_exact_id_and_case(indicative: Any) -> None:
    segs = fast_hook().list_segments()
    assert resolve_segment(segs, "Churn Risk")["segmentId"] == CHURN
    assert resolve_segment(segs, "Recent Registrants")["segmentId"] == RECENT  # exact beats the close sibling
    assert resolve_segment(segs, RECENT_EU)["name"] == "Recent Registrants (EU)"
    assert resolve_segment(segs, TRIAL_STATIC)["type"] == "Static"
    assert resolve_segment(segs, "  churn   RISK ".strip())["segmentId"] == CHURN


def test_unknown_name_lists_close_matches(indicative: Any) -> None:
    segs = fast_hook().list_segments()
    with pytest.raises(ExportInputError) as err:
        resolve_segment(segs, "Recent Registrant")
    text = str(err.value)
    assert "no segment named 'Recent Registrant'" in text
    assert RECENT in text and RECENT_EU in text and CHURN not in text
    with pytest.raises(ExportInputError, match="the project has 6 segment"):
        resolve_segment(segs, "zzz")


def test_ambiguous_name_lists_both(indicative: Any) -> None:
    segs = fast_hook().list_segments()
    with pytest.raises(ExportInputError) as err:
        resolve_segment(segs, "Trial Users")
    text = str(err.value)
    assert "ambiguous" in text and TRIAL_STATIC in text and TRIAL_DYNAMIC in text
    assert "Static" in text and "Dynamic" in text and "segmentId instead" in text
    assert resolve_segment(segs, TRIAL_DYNAMIC)["type"] == "Dynamic"


def test_operator_unknown_name_fails_before_any_export(indicative: Any) -> None:
    before = indicative.submissions["indicative"]
    op = IndicativeSegmentExportOperator(task_id="x", segment="Churn Risks ", poll_interval=0.1, deferrable=False)
    with pytest.raises(ExportInputError, match="close matches: 'Churn Risk'"):
        op.execute({})  # type: ignore[arg-type]
    assert indicative.submissions["indicative"] == before
    with pytest.raises(ExportInputError, match="output_format"):
        IndicativeSegmentExportOperator(task_id="y", segment="Churn Risk", output_format="json").execute({})  # type: ignore[arg-type]


# ---- exports ----------------------------------------------------------------------------------------


def test_operator_exports_by_name(indicative: Any) -> None:
    op = IndicativeSegmentExportOperator(task_id="x", segment="Trial Users", poll_interval=0.1, deferrable=False)
    with pytest.raises(ExportInputError, match="ambiguous"):
        op.execute({})  # type: ignore[arg-type]
    op = IndicativeSegmentExportOperator(task_id="x", segment="churn risk", poll_interval=0.1, deferrable=False)
    result = op.execute({})  # type: ignore[arg-type]
    job = ExportJob.from_dict(result)
    assert job.state == JobState.SUCCESS and job.raw_state == "COMPLETE"
    assert job.extra["segment_name"] == "Churn Risk" and job.extra["segment_type"] == "Dynamic"
    assert job.extra["segment_id"] == CHURN and job.extra["last_run"].endswith("Z")
    assert job.extra["output_format"] == "csv"
    [file] = job.files
    assert file.key.startswith("s3://indicative-upload/") and file.key.endswith(f"/{job.job_id}.csv")
    assert file.name == "churn-risk-5f3c2b1a.csv" and file.extra["vendor_name"] == f"{job.job_id}.csv"
    assert file.row_format == "csv"
    assert sb.access_token(indicative) not in json.dumps(result)


def test_failed_export_fails_the_task(indicative: Any) -> None:
    indicative.vendor_config("indicative")["fail_segments"] = ["Churn Risk"]
    hook = fast_hook()
    job = wait_final(hook, hook.submit(CHURN))
    assert job.state == JobState.FAILED and job.raw_state == "FAILED" and job.files == []
    assert "Churn Risk" in (job.message or "")
    op = IndicativeSegmentExportOperator(task_id="x", segment="Churn Risk", poll_interval=0.1, deferrable=False)
    with pytest.raises(ExportJobFailed, match="FAILED"):
        op.execute({})  # type: ignore[arg-type]


def test_failed_export_resubmitted_when_asked(indicative: Any) -> None:
    indicative.vendor_config("indicative")["fail_next"] = True
    before = indicative.submissions["indicative"]
    op = IndicativeSegmentExportOperator(task_id="x", segment=RECENT, poll_interval=0.1, deferrable=False, max_resubmits=1)
    job = ExportJob.from_dict(op.execute({}))  # type: ignore[arg-type]
    assert job.state == JobState.SUCCESS
    assert indicative.submissions["indicative"] == before + 2


def test_wait_for_completion_false_then_sensor(indicative: Any) -> None:
    op = IndicativeSegmentExportOperator(task_id="x", segment="Churn Risk", wait_for_completion=False, deferrable=False)
    export_id = op.execute({})  # type: ignore[arg-type]
    assert isinstance(export_id, str)
    sensor = IndicativeExportSensor(task_id="s", export_id=export_id, poke_interval=0.1, timeout=20, deferrable=False)
    hook = sensor.get_hook()
    assert wait_final(hook, export_id).state == JobState.SUCCESS
    result = sensor.poke({})  # type: ignore[arg-type]
    assert result and ExportJob.from_dict(result.xcom_value).files[0].name == "churn-risk-5f3c2b1a.csv"  # type: ignore[union-attr]


def test_malformed_answers_name_the_field(indicative: Any) -> None:
    hook = fast_hook()
    with pytest.raises(VendorHTTPError, match="no 'filename'"):
        hook.parse_job("e1", {"exportId": "e1", "status": "COMPLETE", "filename": None})
    with pytest.raises(VendorHTTPError, match="no 'status'"):
        hook.parse_job("e1", {"exportId": "e1"})
    with pytest.raises(VendorHTTPError, match="neither s3:// nor https://"):
        hook.parse_job("e1", {"status": "COMPLETE", "filename": "ftp://x/y.csv"})
    with pytest.raises(VendorHTTPError, match="no 'name'"):
        hook.parse_segments([{"segmentId": "a"}])
    assert hook.parse_job("e1", {"status": "SOMETHING_NEW"}).state == JobState.RUNNING


def test_unknown_export_id_is_a_clear_error(indicative: Any) -> None:
    with pytest.raises(VendorHTTPError, match="at most 48 hours"):
        fast_hook().get_job("00000000-0000-0000-0000-000000000000")


# ---- result files -----------------------------------------------------------------------------------


def test_reads_s3_result_through_aws_connection(indicative: Any, moto_s3: Any) -> None:
    hook = fast_hook()
    job = completed_export(hook, RECENT)
    [file] = job.files
    bucket, _, key = file.key.removeprefix("s3://").partition("/")
    assert moto_s3.client().head_object(Bucket=bucket, Key=key)["ContentLength"] == len(sb.segment_csv(RECENT))
    since = len(indicative.requests)
    stream = hook.open_file(file)
    data = b"".join(iter_stream(stream, 1000))
    stream.close()
    assert data == sb.segment_csv(RECENT)
    assert stream.total == len(data) and stream.offset == 0
    assert data.decode().splitlines()[1:] == [f'{u},"Recent Registrants"' for u in sb.segment_rows(RECENT)]
    assert len(indicative.requests) == since  # the S3 GET goes to S3, not to the Indicative API
    # Range: resume half-way
    resumed = hook.open_file(file, offset=100)
    assert resumed.offset == 100 and resumed.total == len(data)
    assert b"".join(iter_stream(resumed)) == data[100:]
    resumed.close()


def test_expired_s3_result_is_a_clear_error(indicative: Any) -> None:
    hook = fast_hook()
    job = completed_export(hook)
    sb.expire_export(indicative, job.job_id)
    with pytest.raises(VendorHTTPError) as err:
        hook.open_file(job.files[0])
    assert err.value.status == 404 and "at most 48 hours" in str(err.value) and "submit a new export" in str(err.value)


def test_s3_result_with_other_aws_connection(indicative: Any, monkeypatch: pytest.MonkeyPatch, moto_s3: Any) -> None:
    set_connection(monkeypatch, "aws_indicative", {"conn_type": "aws", "login": "testing", "password": "testing",
                                                   "extra": {"endpoint_url": moto_s3.url, "region_name": "us-east-1"}})
    set_connection(monkeypatch, "aws_default", {"conn_type": "aws", "login": "testing", "password": "testing",
                                                "extra": {"endpoint_url": "http://127.0.0.1:9", "region_name": "us-east-1"}})
    job = completed_export(fast_hook())
    hook = IndicativeHook(aws_conn_id="aws_indicative")
    assert hook.hook_kwargs() == {"aws_conn_id": "aws_indicative"}
    stream = hook.open_file(job.files[0])
    assert b"".join(iter_stream(stream)) == sb.segment_csv(CHURN)
    stream.close()


def test_https_result_plain_get_and_no_secret_in_job(indicative: Any) -> None:
    indicative.vendor_config("indicative")["result_scheme"] = "https"
    hook = fast_hook()
    job = completed_export(hook, RECENT_EU)
    raw = hook.get_export(job.job_id)
    assert raw["filename"].startswith(indicative.base_url) and "X-Amz-Signature=" in raw["filename"]
    signature = raw["filename"].rsplit("=", 1)[1]
    [file] = job.files
    assert file.key == job.job_id and signature not in json.dumps(job.to_dict())
    since = len(indicative.requests)
    stream = hook.open_file(file)
    assert b"".join(iter_stream(stream)) == sb.segment_csv(RECENT_EU)
    stream.close()
    download = [r for r in indicative.requests[since:] if r["path"].startswith("/indicative-results/")]
    assert len(download) == 1 and "Authorization" not in download[0]["headers"]
    sb.expire_export(indicative, job.job_id)
    with pytest.raises(VendorHTTPError, match="at most 48 hours"):
        hook.open_file(file)


def test_list_operator_filters_by_type(indicative: Any) -> None:
    dynamic = IndicativeListSegmentsOperator(task_id="l", segment_type="Dynamic").execute({})  # type: ignore[arg-type]
    assert {s["segmentId"] for s in dynamic} == {s["segmentId"] for s in sb.SEGMENTS if s["type"] == "Dynamic"}
    assert len(IndicativeListSegmentsOperator(task_id="l").execute({})) == 6  # type: ignore[arg-type]
    with pytest.raises(ExportInputError, match="segment_type"):
        IndicativeListSegmentsOperator(task_id="l", segment_type="dynamic").execute({})  # type: ignore[arg-type]


def test_trigger_polls_export_to_complete(indicative: Any) -> None:
    """The deferred path: the engine's trigger reads the export with the async client until COMPLETE."""
    import asyncio

    from airflow_export_providers.triggers.export_job import ExportJobTrigger

    export_id = fast_hook().submit(RECENT)
    trigger = ExportJobTrigger(hook_class="airflow_export_providers.hooks.indicative.IndicativeHook",
                               conn_id="indicative_default", job_id=export_id, poll_interval=0.1, deadline=time.time() + 30)
    indicative.add_fault(path=EXPORT + export_id, method="GET", status=429, retry_after=0, times=1)

    async def first_event() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("no event")

    event = asyncio.run(asyncio.wait_for(first_event(), 30))
    assert event["status"] == "success"
    job = ExportJob.from_dict(event["job"])
    assert job.raw_state == "COMPLETE" and job.extra["segment_name"] == "Recent Registrants"
    assert job.files[0].key.startswith("s3://") and job.hook_class and job.hook_class.endswith("IndicativeHook")


def test_trigger_reports_403_as_error(indicative: Any) -> None:
    import asyncio

    from airflow_export_providers.triggers.export_job import ExportJobTrigger

    export_id = fast_hook().submit(RECENT)
    indicative.vendor_config("indicative")["export_api"] = False
    trigger = ExportJobTrigger(hook_class="airflow_export_providers.hooks.indicative.IndicativeHook",
                               conn_id="indicative_default", job_id=export_id, poll_interval=0.1, deadline=time.time() + 30)

    async def events() -> list[dict[str, Any]]:
        return [dict(e.payload) async for e in trigger.run()]

    [event] = asyncio.run(asyncio.wait_for(events(), 30))
    assert event["status"] == "error" and "Pro or Enterprise" in event["message"]


# ---- example DAGs with dag.test() -------------------------------------------------------------------

DS_DAILY = {False: datetime(2026, 3, 1, tzinfo=timezone.utc), True: datetime(2026, 3, 2, tzinfo=timezone.utc)}
DS_MAPPED = {False: datetime(2026, 3, 3, tzinfo=timezone.utc), True: datetime(2026, 3, 4, tzinfo=timezone.utc)}
AIOHTTP_UA = "aiohttp"  # the trigger polls with the async client; the worker's polls come from requests


def trigger_polls(state: Any, since: int) -> int:
    return sum(
        1 for r in state.requests[since:]
        if r["path"].startswith(EXPORT) and r["method"] == "GET" and AIOHTTP_UA in r["headers"].get("User-Agent", "")
    )


def ti_states(run: Any) -> list[tuple[str, int, str]]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter(TaskInstance.dag_id == run.dag_id, TaskInstance.run_id == run.run_id).all()
        return sorted((ti.task_id, ti.map_index, str(ti.state)) for ti in tis)


@pytest.mark.parametrize("deferrable", [False, True], ids=["worker", "deferred"])
def test_daily_segment_dag_lands_in_azure_blob(indicative: Any, airflow_db: Any, wasb_conn: str, azurite: Any, deferrable: bool) -> None:
    from tests.support.airflow import load_dag, run_dag, xcom

    dag = load_dag("indicative_segment_daily.py")
    export = dag.task_dict["export_segment"]
    export.poll_interval, export.deferrable = 0.2, deferrable
    container = azurite.service().get_container_client("indicative")
    if not container.exists():
        container.create_container()
    since, before = len(indicative.requests), indicative.submissions["indicative"]
    run = run_dag(dag, logical_date=DS_DAILY[deferrable])
    assert str(run.state) == "success", ti_states(run)
    assert ti_states(run) == [("export_segment", -1, "success"), ("land_in_blob", -1, "success")]
    assert indicative.submissions["indicative"] == before + 1
    assert (trigger_polls(indicative, since) > 0) is deferrable
    job = ExportJob.from_dict(xcom(run, "export_segment"))
    assert job.extra["segment_name"] == "Recent Registrants" and job.extra["segment_type"] == "Dynamic"
    assert job.extra["segment_id"] == RECENT and job.extra["last_run"]
    ds = DS_DAILY[deferrable].strftime("%Y-%m-%d")
    blob = container.download_blob(f"segments/{ds}/recent-registrants-82200474.csv").readall()
    assert blob == sb.segment_csv(RECENT)
    assert len(blob.decode().splitlines()) == 1 + len(sb.segment_rows(RECENT))
    landed = xcom(run, "land_in_blob")
    assert [item["uri"].rsplit("/", 1)[1] for item in landed] == ["recent-registrants-82200474.csv"]


@pytest.mark.parametrize("deferrable", [False, True], ids=["worker", "deferred"])
def test_dynamic_segments_dag_maps_one_export_per_segment(
    indicative: Any, airflow_db: Any, moto_s3: Any, deferrable: bool
) -> None:
    from tests.support.airflow import load_dag, run_dag

    dag = load_dag("indicative_dynamic_segments.py")
    mapped = dag.task_dict["export_segment"]
    mapped.partial_kwargs["poll_interval"] = 0.2
    mapped.partial_kwargs["deferrable"] = deferrable
    s3 = moto_s3.client()
    try:
        s3.create_bucket(Bucket="analytics-landing")
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    dynamic = [s for s in sb.SEGMENTS if s["type"] == "Dynamic"]
    since, before = len(indicative.requests), indicative.submissions["indicative"]
    run = run_dag(dag, logical_date=DS_MAPPED[deferrable])
    assert str(run.state) == "success", ti_states(run)
    states = ti_states(run)
    assert states.count(("list_dynamic_segments", -1, "success")) == 1
    for task_id in ("export_segment", "land_in_s3"):
        assert [s for s in states if s[0] == task_id] == [(task_id, i, "success") for i in range(len(dynamic))]
    assert indicative.submissions["indicative"] == before + len(dynamic)
    assert (trigger_polls(indicative, since) > 0) is deferrable
    prefix = f"indicative/segments/{DS_MAPPED[deferrable].strftime('%Y-%m-%d')}/"
    listed = s3.list_objects_v2(Bucket="analytics-landing", Prefix=prefix).get("Contents", [])
    expected = {f"{prefix}{segment_slug(s['name'])}-{s['segmentId'][:8]}.csv": s["segmentId"] for s in dynamic}
    assert {o["Key"] for o in listed} == {*expected, f"{prefix}_manifest.json"}  # + the landing manifest
    for key, seg_id in expected.items():
        assert s3.get_object(Bucket="analytics-landing", Key=key)["Body"].read() == sb.segment_csv(seg_id)


class CuttingProxy:
    """A loopback TCP proxy in front of moto that drops the first object download half-way (a real broken read)."""

    def __init__(self, upstream_port: int, cut_after: int) -> None:
        import socket
        import threading

        self.upstream_port, self.cut_after, self.cuts = upstream_port, cut_after, 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.ranges: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src: Any, dst: Any, request: bool) -> None:
        import socket

        sent = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if request and data.startswith(b"GET "):
                    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
                    self.ranges += [line.split(":", 1)[1].strip() for line in head.split("\r\n") if line.startswith("range:")]
                    self.cut_next = self.cuts == 0 and "range:" not in head
                if not request and getattr(self, "cut_next", False) and sent + len(data) > self.cut_after:
                    dst.sendall(data[: self.cut_after - sent])
                    self.cuts += 1
                    self.cut_next = False
                    break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)  # wakes the other direction's blocked recv (close alone would not)
                except OSError:
                    pass
                try:
                    s.close()
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()


def test_broken_s3_download_resumes_with_range(indicative: Any, moto_s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read that breaks half-way resumes from the last good byte with an S3 Range GET, landing identical bytes."""
    from airflow_export_providers.core.landing import ResumableReader

    job = completed_export(fast_hook(), RECENT)
    proxy = CuttingProxy(moto_s3.port, cut_after=2500)
    try:
        set_connection(monkeypatch, "aws_cut", {"conn_type": "aws", "login": "testing", "password": "testing",
                                                "extra": {"endpoint_url": f"http://127.0.0.1:{proxy.port}", "region_name": "us-east-1"}})
        reader = ResumableReader(IndicativeHook(aws_conn_id="aws_cut"), job.files[0], backoff=0.01)
        data = b""
        while chunk := reader.read(1024):
            data += chunk
    finally:
        proxy.close()
    assert data == sb.segment_csv(RECENT)
    assert proxy.cuts == 1 and reader.resumes == 1
    assert len(proxy.ranges) == 1 and proxy.ranges[0].startswith("bytes=") and proxy.ranges[0] != "bytes=0-"
