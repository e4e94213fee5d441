"""SGI POND against the sandbox over real HTTP: token, schedule, poll, re-signed downloads, Airflow runs.

Presigned links point at the sandbox's S3 gateway (its own port, bytes read from moto's S3 server):
moto enforces neither link expiry nor shows request headers, the gateway does both, so the tests can
prove that an expired link is refused and re-signed, and that no Authorization header reaches it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests

from airflow_export_providers.core.errors import ExportInputError, ExportJobFailed, VendorHTTPError
from airflow_export_providers.core.hook import iter_stream
from airflow_export_providers.core.job import ExportJob, JobState
from airflow_export_providers.core.landing import land_file
from airflow_export_providers.hooks.pond import PondHook, link_expires_at, snapshot_id
from airflow_export_providers.operators.pond import PondSnapshotOperator, pond_timestamp
from airflow_export_providers.sandbox import pond as pond_sandbox
from airflow_export_providers.triggers.export_job import ExportJobTrigger
from tests.conftest import set_connection

HOOK = f"{PondHook.__module__}.PondHook"
SEED_FROM, SEED_TO = "2019-03-13T18:00:00.000Z", "2019-03-28T18:00:00.000Z"
PST = timezone(timedelta(hours=-8))


@pytest.fixture
def pond(sandbox: Any, sandbox_state: Any, vendor_conns: dict[str, Any], moto_s3: Any) -> Iterator[Any]:
    """The sandbox state with fast POND timings; POND settings restored afterwards."""
    cfg = sandbox_state.config.setdefault("pond", {})
    saved = dict(cfg)
    cfg.clear()
    cfg.update({"pending_seconds": 0.2, "running_seconds": 0.4})
    yield sandbox_state
    cfg.clear()
    cfg.update(saved)


def vs(state: Any) -> dict[str, Any]:
    return state.vendor["pond"]  # type: ignore[no-any-return]


def wait_done(hook: PondHook, href: str, limit: float = 30) -> tuple[ExportJob, int]:
    """Poll like the operator does; return the final job and how many polls it took."""
    deadline, polls = time.time() + limit, 0
    while True:
        job = hook.get_job(href)
        polls += 1
        if job.state.is_final:
            return job, polls
        assert time.time() < deadline, f"snapshot still {job.raw_state}"
        time.sleep(0.1)


def read_all(hook: PondHook, file: Any, offset: int = 0) -> bytes:
    stream = hook.open_file(file, offset)
    try:
        return b"".join(iter_stream(stream))
    finally:
        stream.close()


def expected_files(moto_s3: Any, href: str, entity: str, start: str, end: str, items: int = 3, rows: int = 40) -> dict[str, bytes]:
    """What POND generated for this range, read from moto's S3 server (and checked against the generator)."""
    s3 = moto_s3.client()
    files = {}
    for i in range(items):
        name = pond_sandbox.item_name(entity, i)
        body = s3.get_object(Bucket=pond_sandbox.DEFAULT_BUCKET, Key=f"{snapshot_id(href)}/{name}")["Body"].read()
        assert body == pond_sandbox.generate_csv(entity, start, end, i, rows + 7 * i)
        files[f"{name}.csv"] = body
    return files


def csv_records(data: bytes) -> int:
    """Records of a CSV file as Python's csv module reads them (the header included)."""
    import csv
    import io

    return sum(1 for _ in csv.reader(io.StringIO(data.decode(), newline="")))


# ---- token --------------------------------------------------------------------------------------
def test_token_is_requested_once_and_reused_across_polls(pond: Any) -> None:
    before = vs(pond)["token_requests"]
    hook = PondHook()
    href = hook.submit(SEED_FROM, SEED_TO)
    job, polls = wait_done(hook, href)
    assert job.state == JobState.SUCCESS and polls >= 3
    assert hook.token_auth.fetch_count == 1
    assert vs(pond)["token_requests"] - before == 1


def test_token_expiring_mid_poll_is_refreshed(pond: Any) -> None:
    pond.config["pond"].update({"token_lifetime": 1, "pending_seconds": 1.5, "running_seconds": 1.0})
    before_tokens, before_rejected = vs(pond)["token_requests"], vs(pond)["rejected_tokens"]
    hook = PondHook()
    href = hook.submit(SEED_FROM, SEED_TO)
    job, _ = wait_done(hook, href)
    assert job.state == JobState.SUCCESS
    assert hook.token_auth.fetch_count >= 2, "a 1-second token must have been replaced during a 2.5 s wait"
    assert vs(pond)["token_requests"] - before_tokens == hook.token_auth.fetch_count
    # Refreshed ahead of expiry, so normally no request carries a stale token; on a loaded machine one
    # may still arrive late, and the single refresh-on-401 then recovers it. Never more than one per token.
    assert vs(pond)["rejected_tokens"] - before_rejected <= hook.token_auth.fetch_count - 1


def test_revoked_token_is_refreshed_once_on_401(pond: Any) -> None:
    hook = PondHook()
    href = hook.submit(SEED_FROM, SEED_TO)
    before_rejected = vs(pond)["rejected_tokens"]
    vs(pond)["tokens"].clear()  # the authorizer forgets every token (e.g. key rotation)
    job, _ = wait_done(hook, href)
    assert job.state == JobState.SUCCESS
    assert vs(pond)["rejected_tokens"] - before_rejected == 1
    assert hook.token_auth.fetch_count == 2


def test_bad_credentials_give_one_clear_message(pond: Any, monkeypatch: pytest.MonkeyPatch, sandbox: Any) -> None:
    conn = pond_sandbox.connections(sandbox.url, pond)["pond_default"]
    set_connection(monkeypatch, "pond_wrong", {**conn, "password": "not-the-secret-" + "x" * 12})
    ok, message = PondHook("pond_wrong").test_connection()
    assert not ok
    assert "rejected the client credentials" in message and "invalid_client" in message
    with pytest.raises(VendorHTTPError, match="Client secret"):
        PondHook("pond_wrong").submit(SEED_FROM, SEED_TO)


def test_bad_scope_gives_one_clear_message(pond: Any, monkeypatch: pytest.MonkeyPatch, sandbox: Any) -> None:
    conn = pond_sandbox.connections(sandbox.url, pond)["pond_default"]
    set_connection(monkeypatch, "pond_scope", {**conn, "extra": {**conn["extra"], "scope": "pond/admin"}})
    ok, message = PondHook("pond_scope").test_connection()
    assert not ok and "refused the scope 'pond/admin'" in message and "invalid_scope" in message
    assert PondHook().test_connection() == (True, "POND token obtained for scope 'pond/insights.snapshots'")


# ---- schedule -----------------------------------------------------------------------------------
def test_schedule_body_is_exactly_the_seeds_form(pond: Any) -> None:
    op = PondSnapshotOperator(
        task_id="t", created_at_from=datetime(2019, 3, 13, 10, 0, tzinfo=PST), created_at_to="2019-03-28T11:00:00-07:00"
    )
    start, end = op._range({})
    assert (start, end) == (SEED_FROM, SEED_TO)
    hook = PondHook()
    href = hook.submit(start, end)
    sent = vs(pond)["schedule_requests"][-1]
    assert sent == {"content_type": "application/x-www-form-urlencoded",
                    "body": f"created_at_from={SEED_FROM}&created_at_to={SEED_TO}"}
    assert hook.get_job(href).extra["query"] == {"entity": "event", "created_at": [SEED_FROM, SEED_TO]}


def test_sandbox_ignores_parameters_that_are_not_form_encoded(pond: Any) -> None:
    """The trap the seed warns about is real in the sandbox, so the test above proves the header matters."""
    hook = PondHook()
    answer = requests.post(
        hook.snapshots_url(),
        data=f"created_at_from={SEED_FROM}&created_at_to={SEED_TO}".encode(),
        headers={"Authorization": f"Bearer {hook.token_auth.token()}", "Content-Type": "text/plain"},
        timeout=10,
    )
    assert answer.status_code == 202
    query = answer.json()["snapshot"]["items"][0]["query"]
    assert query["created_at"][0] == pond_sandbox.EPOCH and query["created_at"] != [SEED_FROM, SEED_TO]


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferred", "polling"])
def test_ignored_parameters_fail_the_task_at_once(pond: Any, deferrable: bool) -> None:
    """A gateway that drops the form Content-type makes POND ignore the range (the seed's warning):
    POND then snapshots something else; the task fails at the schedule answer, nothing is polled."""
    pond.config["pond"]["proxy_drops_content_type"] = True
    before = pond.submissions["pond"]
    op = PondSnapshotOperator(task_id="t", created_at_from=SEED_FROM, created_at_to=SEED_TO, poll_interval=0.1,
                              deferrable=deferrable)
    with pytest.raises(ExportJobFailed) as err:
        op.execute({})  # type: ignore[arg-type]
    message = str(err.value)
    assert "POND ignored the snapshot parameters" in message and "Content-type: application/x-www-form-urlencoded" in message
    assert SEED_FROM in message and pond_sandbox.EPOCH in message, "what was sent and what POND echoed"
    assert pond.submissions["pond"] - before == 1
    (href_id,) = [j for j in pond.jobs if pond.jobs[j].vendor == "pond"][-1:]
    assert not [r for r in pond.requests if r["path"] == f"/insights/snapshots/{href_id}"], "the snapshot is never polled"
    del pond.config["pond"]["proxy_drops_content_type"]
    href = PondHook().submit(SEED_FROM, SEED_TO)  # the same request through a sane path is fine
    assert snapshot_id(href) in pond.jobs


def test_csv_rows_are_records_when_fields_hold_newlines(pond: Any, moto_s3: Any, aws_conn: str) -> None:
    """POND's count is rows; quoted fields may hold newlines: the landing counts records, not lines."""
    from airflow_export_providers.transfers.export_to_s3 import S3Writer

    ensure_bucket(moto_s3, "pond-records")
    hook = PondHook()
    job, _ = wait_done(hook, hook.submit(SEED_FROM, SEED_TO))
    expected = expected_files(moto_s3, job.job_id, "event", SEED_FROM, SEED_TO)
    for file in job.files:
        data = expected[file.name]
        assert data.count(b"\n") - 1 > file.rows, "the sample has newlines inside quoted fields"
        landed = land_file(hook, file, S3Writer("pond-records", "aws_default"), prefix="records")
        assert landed.rows == file.rows == csv_records(data) - 1
        assert moto_s3.client().get_object(Bucket="pond-records", Key=landed.key)["Body"].read() == data


def test_schedule_answer_has_the_seeds_shape(pond: Any) -> None:
    hook = PondHook()
    token = hook.token_auth.token()
    answer = requests.post(
        hook.snapshots_url(), data=f"created_at_from={SEED_FROM}&created_at_to={SEED_TO}",
        headers={"Authorization": f"Bearer {token}", "Content-type": "application/x-www-form-urlencoded"}, timeout=10,
    )
    assert answer.status_code == 202
    body = answer.json()
    assert body["result"] == "OK" and body["snapshot"]["href"].startswith(hook.snapshots_url() + "/")
    assert body["snapshot"]["items"][0] == {
        "href": None, "size": None, "count": None, "state": "pending",
        "query": {"entity": "event", "created_at": [SEED_FROM, SEED_TO]},
    }


@pytest.mark.parametrize(("start", "end", "field"), [
    ("2019-03-28T18:00:00Z", "2019-03-13T18:00:00Z", "must be before"),
    ("2019-03-13T18:00:00Z", "2019-03-13T18:00:00Z", "must be before"),
    ("2019-03-13T18:00:00", "2019-03-28T18:00:00Z", "created_at_from: '2019-03-13T18:00:00' has no timezone"),
    ("yesterday", "2019-03-28T18:00:00Z", "created_at_from: 'yesterday' is not an ISO 8601"),
])
def test_invalid_ranges_fail_before_any_call(pond: Any, start: str, end: str, field: str) -> None:
    seen = len(pond.requests)
    op = PondSnapshotOperator(task_id="t", created_at_from=start, created_at_to=end)
    with pytest.raises(ExportInputError, match=field):
        op.execute({})  # type: ignore[arg-type]
    assert len(pond.requests) == seen, "validation must happen before any HTTP call"


def test_operator_defaults_to_the_data_interval(pond: Any) -> None:
    op = PondSnapshotOperator(task_id="t", poll_interval=0.1, deferrable=False)
    context = {"data_interval_start": datetime(2026, 3, 10, tzinfo=timezone.utc),
               "data_interval_end": datetime(2026, 3, 11, tzinfo=timezone.utc)}
    result = op.execute(context)  # type: ignore[arg-type]
    assert result["state"] == "SUCCESS"
    assert result["extra"]["query"]["created_at"] == ["2026-03-10T00:00:00.000Z", "2026-03-11T00:00:00.000Z"]
    assert [(f["name"], f["rows"], f["row_format"]) for f in result["files"]] == [
        ("event_000.csv", 40, "csv"), ("event_001.csv", 47, "csv"), ("event_002.csv", 54, "csv")]
    assert "X-Amz" not in json.dumps(result), "presigned links never go to XCom"


def test_wait_for_completion_false_returns_the_href(pond: Any) -> None:
    before = pond.submissions["pond"]
    op = PondSnapshotOperator(task_id="t", created_at_from=SEED_FROM, created_at_to=SEED_TO, wait_for_completion=False)
    href = op.execute({})  # type: ignore[arg-type]
    assert isinstance(href, str) and snapshot_id(href) in pond.jobs
    assert pond.submissions["pond"] - before == 1


# ---- status -------------------------------------------------------------------------------------
def test_items_move_from_pending_to_complete_with_size_and_count(pond: Any, moto_s3: Any) -> None:
    hook = PondHook()
    href = hook.submit(SEED_FROM, SEED_TO)
    assert hook.get_job(href).state == JobState.PENDING
    job, _ = wait_done(hook, href)
    expected = expected_files(moto_s3, href, "event", SEED_FROM, SEED_TO)
    assert [(f.name, f.size, f.rows, f.key) for f in job.files] == [
        (name, len(data), csv_records(data) - 1, str(i)) for i, (name, data) in enumerate(expected.items())]
    assert job.raw_state == "complete"


def test_unknown_item_state_is_logged_raw_and_treated_as_running(pond: Any, caplog: pytest.LogCaptureFixture) -> None:
    hook = PondHook()
    href = hook.submit(SEED_FROM, SEED_TO)
    pond.config["pond"]["item_state_override"] = "processing"
    with caplog.at_level(logging.WARNING, logger="airflow_export_providers.hooks.pond"):
        job = hook.get_job(href)
    assert job.state == JobState.RUNNING and job.raw_state == "processing"
    assert "unknown state 'processing'" in caplog.text
    op = PondSnapshotOperator(task_id="t", created_at_from=SEED_FROM, created_at_to=SEED_TO, poll_interval=0.1,
                              job_timeout=0.6, deferrable=False)
    with pytest.raises(Exception, match=r"not finished by its deadline \(processing\)"):
        op.execute({})  # type: ignore[arg-type]
    del pond.config["pond"]["item_state_override"]
    assert wait_done(hook, href)[0].state == JobState.SUCCESS


def test_snapshot_gone_after_retention_is_one_clear_message(pond: Any) -> None:
    hook = PondHook()
    href = hook.submit(SEED_FROM, SEED_TO)
    job, _ = wait_done(hook, href)
    pond.config["pond"]["retention_seconds"] = 0
    with pytest.raises(VendorHTTPError, match="is gone: POND keeps snapshots for 7 days"):
        hook.get_job(href)
    with pytest.raises(VendorHTTPError, match="is gone: POND keeps snapshots for 7 days"):
        PondHook().file_request(job.files[0])
    trigger = ExportJobTrigger(hook_class=HOOK, conn_id="pond_default", job_id=href, poll_interval=0.1)
    (event,) = asyncio.run(collect(trigger))
    assert event["status"] == "error" and "7 days" in event["message"]


# ---- downloads ----------------------------------------------------------------------------------
def test_downloads_send_no_authorization_header_to_the_presigned_host(pond: Any, moto_s3: Any) -> None:
    hook = PondHook()
    href = hook.submit(SEED_FROM, SEED_TO)
    job, _ = wait_done(hook, href)
    seen = len(vs(pond)["s3_requests"])
    fresh = PondHook()  # as a transfer does: a new hook, links resolved at download time
    got = {f.name: read_all(fresh, f) for f in job.files}
    assert got == expected_files(moto_s3, href, "event", SEED_FROM, SEED_TO)
    gateway = vs(pond)["s3_requests"][seen:]
    assert len(gateway) == 3 and all(r["status"] == 200 for r in gateway)
    assert all("Authorization" not in r["headers"] and "authorization" not in {k.lower() for k in r["headers"]} for r in gateway)
    api = [r for r in pond.requests if r["path"] == f"/insights/snapshots/{snapshot_id(href)}"]
    assert api and all(r["headers"]["Authorization"].startswith("Bearer ") for r in api)
    # ... and the gateway is as strict as S3: a bearer next to a presigned query is refused.
    link = fresh.file_request(job.files[0]).url
    assert requests.get(link, headers={"Authorization": "Bearer x"}, timeout=10).status_code == 400


def test_expired_link_is_re_signed_and_the_download_resumes(pond: Any, moto_s3: Any) -> None:
    pond.config["pond"]["link_expiry"] = 6  # seconds; long enough that a fresh link outlives a loaded machine's pauses
    hook = PondHook()
    href = hook.submit(SEED_FROM, SEED_TO)
    job, _ = wait_done(hook, href)
    file = job.files[1]
    whole = expected_files(moto_s3, href, "event", SEED_FROM, SEED_TO)[file.name]
    downloader = PondHook(link_refresh_margin=0)
    stream = downloader.open_file(file)
    head = stream.read(1000)
    stream.close()
    link = downloader._links[(snapshot_id(href), file.key)]
    expires = link_expires_at(link)
    assert expires is not None
    while time.time() <= expires + 0.2:
        time.sleep(0.1)
    refused = requests.get(link, timeout=10)
    assert refused.status_code == 403 and "Request has expired" in refused.text  # S3's answer, enforced
    snapshot_reads = sum(r["path"].endswith(snapshot_id(href)) for r in pond.requests)
    seen = len(vs(pond)["s3_requests"])
    rest = downloader.open_file(file, offset=len(head))
    assert rest.offset == 1000
    tail = b"".join(iter_stream(rest))
    rest.close()
    assert head + tail == whole
    gateway = vs(pond)["s3_requests"][seen:]
    assert [(r["status"], r["headers"].get("Range")) for r in gateway] == [(206, "bytes=1000-")]
    assert sum(r["path"].endswith(snapshot_id(href)) for r in pond.requests) == snapshot_reads + 1, "re-signed"


def test_link_refused_before_its_expiry_is_re_signed_and_the_download_resumes(pond: Any, moto_s3: Any) -> None:
    """The signing credentials rotate: S3 refuses links that still look valid; one re-sign fixes it."""
    hook = PondHook()
    href = hook.submit(SEED_FROM, SEED_TO)
    job, _ = wait_done(hook, href)
    file = job.files[2]
    whole = expected_files(moto_s3, href, "event", SEED_FROM, SEED_TO)[file.name]
    stream = hook.open_file(file)
    head = stream.read(1500)
    stream.close()
    pond_sandbox.rotate_credentials(pond)
    seen = len(vs(pond)["s3_requests"])
    rest = hook.open_file(file, offset=len(head))
    tail = b"".join(iter_stream(rest))
    rest.close()
    assert head + tail == whole
    gateway = vs(pond)["s3_requests"][seen:]
    assert [(r["status"], r["headers"].get("Range")) for r in gateway] == [(400, "bytes=1500-"), (206, "bytes=1500-")]


def test_link_about_to_expire_is_re_signed_before_use(pond: Any) -> None:
    pond.config["pond"]["link_expiry"] = 6
    hook = PondHook()  # default margin: a quarter of the link's lifetime here
    href = hook.submit(SEED_FROM, SEED_TO)
    job, _ = wait_done(hook, href)
    link = hook._links[(snapshot_id(href), "0")]
    expires = link_expires_at(link)
    assert expires is not None
    while time.time() < expires - 1.4:  # inside the refresh margin (a quarter of 6 s)
        time.sleep(0.05)
    seen = len(vs(pond)["s3_requests"])
    data = read_all(hook, job.files[0])
    assert len(data) == job.files[0].size
    assert hook._links[(snapshot_id(href), "0")] != link, "a fresh signature was fetched"
    assert [r["status"] for r in vs(pond)["s3_requests"][seen:]] == [200]


# ---- deferral -----------------------------------------------------------------------------------
async def collect(trigger: ExportJobTrigger, limit: float = 30) -> list[dict[str, Any]]:
    async def go() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    return await asyncio.wait_for(go(), limit)


def rebuild(trigger: ExportJobTrigger) -> ExportJobTrigger:
    import importlib

    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    return getattr(importlib.import_module(module), name)(**json.loads(json.dumps(kwargs)))  # type: ignore[no-any-return]


def test_trigger_waits_for_the_snapshot_and_a_rebuilt_trigger_continues_it(pond: Any) -> None:
    pond.config["pond"].update({"pending_seconds": 0.6, "running_seconds": 0.6})
    op = PondSnapshotOperator(task_id="t", created_at_from=SEED_FROM, created_at_to=SEED_TO, wait_for_completion=False)
    href = op.execute({})  # type: ignore[arg-type]
    submissions, tokens = pond.submissions["pond"], vs(pond)["token_requests"]
    first = ExportJobTrigger(hook_class=HOOK, conn_id="pond_default", job_id=href, poll_interval=0.1,
                             deadline=time.time() + 30, hook_kwargs=PondHook().hook_kwargs())

    async def interrupted() -> None:  # the triggerer dies while the snapshot is pending
        agen = first.run()
        task = asyncio.ensure_future(agen.__anext__())
        await asyncio.sleep(0.3)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await agen.aclose()

    asyncio.run(interrupted())
    (event,) = asyncio.run(collect(rebuild(first)))
    assert event["status"] == "success" and event["job_id"] == href
    job = ExportJob.from_dict(event["job"])
    assert job.hook_class == HOOK and [f.name for f in job.files] == ["event_000.csv", "event_001.csv", "event_002.csv"]
    assert "X-Amz" not in json.dumps(event)
    assert pond.submissions["pond"] == submissions, "the rebuilt trigger polls the same snapshot"
    assert vs(pond)["token_requests"] > tokens, "the triggers fetched their token asynchronously"


# ---- real Airflow runs (dag.test()) -----------------------------------------------------------------
def ensure_bucket(moto_s3: Any, bucket: str) -> None:
    s3 = moto_s3.client()
    try:
        s3.create_bucket(Bucket=bucket)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass


def landed(moto_s3: Any, bucket: str, prefix: str) -> dict[str, bytes]:
    s3 = moto_s3.client()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
            if not o["Key"].endswith("/_manifest.json")]  # the landing manifest (docs/transfers.md)
    return {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


def fast(dag: Any) -> Any:
    """Test speed: short polls, and no 5-minute retry delays inside dag.test()."""
    for task in dag.tasks:
        task.retries = 0
        if hasattr(task, "poll_interval"):
            task.poll_interval = 0.2
    return dag


def interval_day(run: Any) -> str:
    return str(run.data_interval_start.strftime("%Y-%m-%d"))


def snapshot_polls_by(pond: Any, href: str, agent: str) -> int:
    path = f"/insights/snapshots/{snapshot_id(href)}"
    return sum(r["path"] == path and agent in r["headers"].get("User-Agent", "") for r in pond.requests)


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferred", "polling"])
def test_example_dag_lands_the_interval_snapshot_in_s3(
    airflow_db: Any, pond: Any, aws_conn: str, moto_s3: Any, monkeypatch: pytest.MonkeyPatch, deferrable: bool
) -> None:
    from tests.support.airflow import load_dag, run_dag, task_states, xcom

    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", str(deferrable).lower())
    ensure_bucket(moto_s3, "analytics-landing")
    dag = fast(load_dag("pond_daily_snapshot.py"))
    assert dag.get_task("snapshot").deferrable is deferrable, "the env-driven default decides where the wait happens"
    before, seen = pond.submissions["pond"], len(vs(pond)["s3_requests"])
    # The connection to the presigned host drops half-way through event_001: the landing resumes it.
    reset = pond.add_fault(path=r"/prod-pond-insights-exports/.+/event_001$", kind="reset")
    run = run_dag(dag, logical_date=datetime(2026, 3, 10 if deferrable else 11, tzinfo=timezone.utc))
    assert task_states(run) == {"snapshot": "success", "land_in_s3": "success"}
    job = xcom(run, "snapshot")
    start, end = job["extra"]["query"]["created_at"]
    assert (start, end) == (pond_timestamp(run.data_interval_start, "from"), pond_timestamp(run.data_interval_end, "to"))
    assert run.data_interval_end - run.data_interval_start == timedelta(days=1)
    ds = interval_day(run)
    expected = {f"pond/{ds}/{name}": data for name, data in expected_files(moto_s3, job["job_id"], "event", start, end).items()}
    assert landed(moto_s3, "analytics-landing", f"pond/{ds}/") == expected
    assert pond.submissions["pond"] - before == 1
    assert reset.hits == 1
    resumed = [r for r in vs(pond)["s3_requests"][seen:] if r["path"].endswith("/event_001")]
    assert [r["status"] for r in resumed] == [200, 206] and resumed[1]["headers"]["Range"].startswith("bytes=")
    assert not any("Authorization" in r["headers"] for r in vs(pond)["s3_requests"][seen:])
    # The trigger polls with aiohttp, the worker with requests: who polled shows where the wait happened.
    assert (snapshot_polls_by(pond, job["job_id"], "aiohttp") > 0) is deferrable


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferred", "polling"])
def test_a_retry_after_the_submit_does_not_schedule_a_second_snapshot(airflow_db: Any, pond: Any, deferrable: bool) -> None:
    from tests.support.airflow import load_dag, run_dag, task_states, xcom

    before = pond.submissions["pond"]
    mode = "deferred" if deferrable else "polling"
    run = run_dag(load_dag("pond_retry.py", f"pond_retry_after_submit_{mode}", folder="tests/dags"),
                  logical_date=datetime(2026, 3, 12, tzinfo=timezone.utc))
    assert task_states(run) == {"snapshot": "success"}
    assert xcom(run, "snapshot")["state"] == "SUCCESS"
    assert pond.submissions["pond"] - before == 1, "the retry resumed the stored snapshot href"


@pytest.mark.parametrize("field", ["size_delta", "count_delta"])
def test_size_or_count_mismatch_fails_the_landing(
    airflow_db: Any, pond: Any, aws_conn: str, moto_s3: Any, monkeypatch: pytest.MonkeyPatch, field: str,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from tests.support.airflow import load_dag, run_dag, task_states

    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "false")
    pond.config["pond"][field] = 1  # POND announces one byte / one row more than the file has
    ensure_bucket(moto_s3, "analytics-landing")
    dag = fast(load_dag("pond_daily_snapshot.py"))
    run = run_dag(dag, logical_date=datetime(2026, 4, 1 if field == "size_delta" else 2, tzinfo=timezone.utc))
    assert task_states(run) == {"snapshot": "success", "land_in_s3": "failed"}
    assert landed(moto_s3, "analytics-landing", f"pond/{interval_day(run)}/") == {}, "nothing unverified becomes visible"
    start, end = pond_timestamp(run.data_interval_start, "from"), pond_timestamp(run.data_interval_end, "to")
    size = len(pond_sandbox.generate_csv("event", start, end, 0, 40))
    reason = f"size: expected {size + 1} bytes, got {size}" if field == "size_delta" else "rows: expected 41, counted 40 (csv)"
    out, err = capfd.readouterr()  # dag.test() prints the task's failure through structlog
    assert f"event_000.csv: verification failed, nothing landed — {reason}" in out + err


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferred", "poking"])
def test_split_flow_lands_the_same_bytes_as_the_one_task_flow(
    airflow_db: Any, pond: Any, aws_conn: str, moto_s3: Any, monkeypatch: pytest.MonkeyPatch, deferrable: bool
) -> None:
    from tests.support.airflow import load_dag, run_dag, task_states, xcom

    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "false")
    ensure_bucket(moto_s3, "pond-split")
    ensure_bucket(moto_s3, "analytics-landing")
    day = datetime(2026, 5, 1 if deferrable else 2, tzinfo=timezone.utc)
    mode = "deferred" if deferrable else "poking"
    from tests.support.split_flow import CASES

    with CASES["pond"].held_until_looked_at(pond):  # the sensor meets the snapshot unfinished, however slow the run
        run = run_dag(fast(load_dag("pond_split.py", f"pond_split_flow_{mode}", folder="tests/dags")), logical_date=day)
    assert task_states(run) == {"start": "success", "wait": "success", "land": "success"}
    href = xcom(run, "start")
    assert isinstance(href, str) and xcom(run, "wait")["job_id"] == href
    assert (snapshot_polls_by(pond, href, "aiohttp") > 0) is deferrable
    one_task = run_dag(fast(load_dag("pond_daily_snapshot.py")), logical_date=day)
    assert task_states(one_task) == {"snapshot": "success", "land_in_s3": "success"}
    assert one_task.data_interval_start == run.data_interval_start
    split = landed(moto_s3, "pond-split", f"pond/{interval_day(run)}/")
    assert len(split) == 3 and split == landed(moto_s3, "analytics-landing", f"pond/{interval_day(run)}/")


def test_trigger_replaces_a_token_that_expires_while_it_waits(pond: Any) -> None:
    pond.config["pond"].update({"token_lifetime": 1, "pending_seconds": 1.5, "running_seconds": 1.0})
    href = PondHook().submit(SEED_FROM, SEED_TO)
    tokens, rejected = vs(pond)["token_requests"], vs(pond)["rejected_tokens"]
    trigger = ExportJobTrigger(hook_class=HOOK, conn_id="pond_default", job_id=href, poll_interval=0.2, deadline=time.time() + 30)
    (event,) = asyncio.run(collect(trigger))
    assert event["status"] == "success"
    assert vs(pond)["token_requests"] - tokens >= 2, "the async path fetched a new token during a 2.5 s wait"
    assert vs(pond)["rejected_tokens"] - rejected <= vs(pond)["token_requests"] - tokens - 1  # see the sync test
