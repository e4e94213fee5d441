"""MX Snapshots against its sandbox over real HTTP: readiness, listing, resource filter, Avro, auth, purge."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowException, TaskDeferred

from airflow_export_providers.core.errors import ExportInputError, ExportJobFailed, VendorAuthError, VendorHTTPError
from airflow_export_providers.core.hook import iter_stream
from airflow_export_providers.core.http import RetryPolicy
from airflow_export_providers.core.job import ExportJob, JobState
from airflow_export_providers.hooks.mx import MX_DELETE_ORDER, MX_LOAD_ORDER, MX_RESOURCES, MxSnapshotsHook
from airflow_export_providers.operators.mx import MxSnapshotOperator
from airflow_export_providers.sandbox import mx as sb
from airflow_export_providers.sensors.mx import MxSnapshotSensor
from airflow_export_providers.triggers.export_job import ExportJobTrigger
from tests.conftest import set_connection
from tests.support.mx import make_snapshot, mx_conn, new_guid, read_avro_gz
from tests.support.secrets import register

LISTING = "/snapshots/{guid}/files"


@pytest.fixture
def mx(sandbox: Any, sandbox_state: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The default MX connection pointed at the sandbox (md-api-key style)."""
    register("mx-api-key", sandbox_state.secret("mx-api-key"))
    set_connection(monkeypatch, "mx_snapshots_default", mx_conn(sandbox))
    return sandbox_state


def hook(conn_id: str | None = None) -> MxSnapshotsHook:
    return MxSnapshotsHook(conn_id, retry_policy=RetryPolicy(max_attempts=3, backoff_base=0.05, backoff_max=0.1))


def download(h: MxSnapshotsHook, file: Any) -> bytes:
    stream = h.open_file(file)
    try:
        return b"".join(iter_stream(stream))
    finally:
        stream.close()


def listing_calls(state: Any, guid: str, since: int = 0) -> list[dict[str, Any]]:
    return [r for r in state.requests[since:] if r["path"] == LISTING.format(guid=guid)]


def run_trigger(trigger: ExportJobTrigger) -> dict[str, Any]:
    async def first() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("trigger ended without an event")

    return asyncio.run(asyncio.wait_for(first(), 30))


# ---- readiness -------------------------------------------------------------------------------


def test_not_ready_is_only_a_listing_without_files(mx: Any) -> None:
    generating = make_snapshot(mx, ready_after=3600)
    since = len(mx.requests)
    job = hook().get_job(generating.guid)
    assert (job.state, job.raw_state, job.files) == (JobState.PENDING, "not_ready", [])
    assert listing_calls(mx, generating.guid, since), "the empty listing was really read"


def _unknown_guid_words(message: str, guid: str, path: str = LISTING) -> None:
    """One line naming the GUID, the listing path template and what to check; no secret in it."""
    assert "\n" not in message
    for word in (repr(guid), repr(path), "mistyped", "list_path", "404"):
        assert word in message, (word, message)


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferred", "polling"])
def test_unknown_guid_fails_the_sensor_and_the_operator_at_once(mx: Any, deferrable: bool) -> None:
    """MX hands out a GUID only once its snapshot exists: a 404 is a mistake to fix, not "wait 3 days"."""
    guid = new_guid()  # never created: MX does not know it
    since = len(mx.requests)
    # short timeouts only so that code which waits on a 404 ends this test with the wrong error
    sensor = MxSnapshotSensor(task_id="wait", snapshot_guid=guid, deferrable=deferrable, poke_interval=0.5, timeout=3)
    with pytest.raises(VendorHTTPError) as err:
        sensor.execute({})  # type: ignore[arg-type]
    _unknown_guid_words(str(err.value), guid)
    op = MxSnapshotOperator(task_id="files", snapshot_guid=guid, deferrable=deferrable, poll_interval=0.5, job_timeout=3)
    with pytest.raises(VendorHTTPError) as err:
        op.execute({})  # type: ignore[arg-type]
    _unknown_guid_words(str(err.value), guid)
    assert len(listing_calls(mx, guid, since)) == 2, "one listing each, no second look"
    assert mx.secret("mx-api-key") not in str(err.value)


def test_guid_that_vanishes_while_deferred_ends_the_trigger_with_the_404_message(mx: Any) -> None:
    snap = make_snapshot(mx, ready_after=3600)
    sensor = MxSnapshotSensor(task_id="wait", snapshot_guid=snap.guid, deferrable=True, poke_interval=0.2, timeout=3)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})  # type: ignore[arg-type]
    with mx.lock:
        del mx.vendor["mx"]["snapshots"][snap.guid]  # from now on MX answers 404 for it
    event = run_trigger(deferred.value.trigger)
    assert event["status"] == "error"
    _unknown_guid_words(event["message"], snap.guid)
    with pytest.raises(AirflowException, match="mistyped"):
        sensor.execute_complete({}, event)  # type: ignore[arg-type]
    # the operator's trigger too (deferred on a GUID that answers 404 at its first poll)
    trigger = ExportJobTrigger(hook_class=f"{MxSnapshotsHook.__module__}.MxSnapshotsHook", conn_id="mx_snapshots_default",
                               job_id=new_guid(), poll_interval=0.2, deadline=time.time() + 3)
    event = run_trigger(trigger)
    assert event["status"] == "error" and "mistyped" in event["message"]


@pytest.mark.parametrize(
    "guid",
    ["", None, "None", "null", "   ", "CSS/1234", "../CSS-1234", "CSS-1234/..", "CSS..1234", "CSS 1234", " CSS-1234",
     "CSS-1234\n", "CSS-\t1234", "CSS-\x001234", "CSS-\x7f", "CSS\\1234"],
)
def test_snapshot_guid_is_validated_before_any_call(mx: Any, guid: Any) -> None:
    since = len(mx.requests)
    for task in (
        # short timeouts only so that code which sends the GUID and waits ends with the wrong error
        MxSnapshotOperator(task_id="files", snapshot_guid=guid, deferrable=False, poll_interval=0.2, job_timeout=1),
        MxSnapshotOperator(task_id="files", snapshot_guid=guid, deferrable=True, poll_interval=0.2, job_timeout=1),
        MxSnapshotSensor(task_id="wait", snapshot_guid=guid, deferrable=False, poke_interval=0.2, timeout=1),
        MxSnapshotSensor(task_id="wait", snapshot_guid=guid, deferrable=True, poke_interval=0.2, timeout=1),
    ):
        with pytest.raises(ExportInputError, match=r"^snapshot_guid: .*CSS-1234") as err:
            task.execute({})  # type: ignore[arg-type]
        assert "\n" not in str(err.value)
    assert len(mx.requests) == since, "nothing was sent to MX"


def test_trigger_waits_deferred_until_the_snapshot_lists_its_files(mx: Any) -> None:
    snap = make_snapshot(mx, ready_after=1.0)
    since = len(mx.requests)
    sensor = MxSnapshotSensor(task_id="wait", snapshot_guid=snap.guid, deferrable=True, poke_interval=0.2, timeout=60)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})  # type: ignore[arg-type]
    trigger = deferred.value.trigger
    assert isinstance(trigger, ExportJobTrigger) and trigger.mode == "ready" and trigger.job_id == snap.guid
    classpath, kwargs = trigger.serialize()
    event = run_trigger(ExportJobTrigger(**kwargs))  # rebuilt from primitives, as the triggerer does
    assert event["status"] == "success"
    result = sensor.execute_complete({}, event)  # type: ignore[arg-type]
    job = ExportJob.from_dict(result)
    assert job.state == JobState.SUCCESS and job.job_id == snap.guid
    assert {f.resource for f in job.files} == set(MX_RESOURCES)
    assert len(job.files) == len(snap.files)
    statuses = [r for r in listing_calls(mx, snap.guid, since)]
    assert len(statuses) >= 3, "one check before deferring, at least one empty listing in the trigger, then the files"


def test_sensor_poke_mode_without_a_triggerer(mx: Any) -> None:
    from airflow.sdk import PokeReturnValue

    pending = make_snapshot(mx, ready_after=3600)
    assert MxSnapshotSensor(task_id="w", snapshot_guid=pending.guid, deferrable=False).poke({}) is False  # type: ignore[arg-type]
    ready = make_snapshot(mx)
    result = MxSnapshotSensor(task_id="w", snapshot_guid=ready.guid, deferrable=False).poke({})  # type: ignore[arg-type]
    assert isinstance(result, PokeReturnValue) and result.is_done
    assert len(ExportJob.from_dict(result.xcom_value).files) == len(ready.files)


def test_operator_polls_until_ready_then_returns_the_files(mx: Any) -> None:
    snap = make_snapshot(mx, ready_after=0.6)
    op = MxSnapshotOperator(task_id="files", snapshot_guid=snap.guid, deferrable=False, poll_interval=0.2)
    job = ExportJob.from_dict(op.execute({}))  # type: ignore[arg-type]
    assert job.state == JobState.SUCCESS and len(job.files) == len(snap.files)
    assert len(listing_calls(mx, snap.guid)) >= 2


# ---- purge -------------------------------------------------------------------------------------


def test_purged_snapshot_fails_the_sensor_with_a_clear_message(mx: Any) -> None:
    snap = make_snapshot(mx, purged=True)
    job = hook().get_job(snap.guid)
    assert job.state == JobState.FAILED and job.raw_state == "purged"
    sensor = MxSnapshotSensor(task_id="wait", snapshot_guid=snap.guid, deferrable=True, poke_interval=0.2)
    with pytest.raises(ExportJobFailed, match=r"purged: MX deletes snapshot files 30 days after generation"):
        sensor.execute({})  # type: ignore[arg-type]
    op = MxSnapshotOperator(task_id="files", snapshot_guid=snap.guid, deferrable=False, poll_interval=0.2, max_resubmits=3)
    with pytest.raises(ExportJobFailed, match="purged"):
        op.execute({})  # type: ignore[arg-type]


def test_snapshot_purged_while_deferred_ends_the_wait(mx: Any) -> None:
    snap = make_snapshot(mx, ready_after=3600)
    sensor = MxSnapshotSensor(task_id="wait", snapshot_guid=snap.guid, deferrable=True, poke_interval=0.2, timeout=60)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})  # type: ignore[arg-type]
    snap.purged = True
    event = run_trigger(deferred.value.trigger)
    assert event["status"] == "failed" and "purged" in event["message"]
    with pytest.raises(ExportJobFailed, match="purged"):
        sensor.execute_complete({}, event)  # type: ignore[arg-type]


def test_generation_time_older_than_30_days_counts_as_purged(mx: Any) -> None:
    old = (datetime.now(timezone.utc) - timedelta(days=31)).strftime("%Y-%m-%dT%H:%M:%SZ")
    job = hook().get_job(make_snapshot(mx, generated_at=old).guid)
    assert job.state == JobState.FAILED and job.raw_state == "purged"
    assert "30 days after generation" in (job.message or "") and old[:10] in (job.message or "")
    recent = (datetime.now(timezone.utc) - timedelta(days=29)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert hook().get_job(make_snapshot(mx, generated_at=recent).guid).state == JobState.SUCCESS


def test_download_after_purge_says_purged(mx: Any) -> None:
    snap = make_snapshot(mx)
    h = hook()
    job = h.get_job(snap.guid)
    snap.purged = True
    with pytest.raises(VendorHTTPError, match="purged") as err:
        h.open_file(job.files[0])
    assert err.value.status == 410


# ---- resources ---------------------------------------------------------------------------------


def test_operator_keeps_the_requested_resources_in_load_order(mx: Any) -> None:
    snap = make_snapshot(mx)
    op = MxSnapshotOperator(task_id="f", snapshot_guid=snap.guid, resources=["transactions", "accounts"], deferrable=False)
    job = ExportJob.from_dict(op.execute({}))  # type: ignore[arg-type]
    assert [f.resource for f in job.files] == ["accounts"] * 2 + ["transactions"] * 3
    assert job.extra["resources"] == ["accounts", "transactions"]
    assert all(f.name.startswith(f"{f.resource}/") for f in job.files)
    # A comma-separated string (a rendered DAG param) works too; deletes take the reverse order.
    op = MxSnapshotOperator(task_id="g", snapshot_guid=snap.guid, resources="users, members,accounts",
                            order=MX_DELETE_ORDER, deferrable=False)
    job = ExportJob.from_dict(op.execute({}))  # type: ignore[arg-type]
    assert [f.resource for f in job.files] == ["accounts", "accounts", "members", "users"]
    # Default: every resource, users first.
    job = ExportJob.from_dict(MxSnapshotOperator(task_id="h", snapshot_guid=snap.guid, deferrable=False).execute({}))  # type: ignore[arg-type]
    seen = list(dict.fromkeys(f.resource for f in job.files))
    assert seen == list(MX_LOAD_ORDER)


def test_unknown_resource_fails_listing_the_valid_ones(mx: Any) -> None:
    since = len(mx.requests)
    op = MxSnapshotOperator(task_id="f", snapshot_guid=new_guid(), resources=["accounts", "holdings"], deferrable=False)
    with pytest.raises(ExportInputError) as err:
        op.execute({})  # type: ignore[arg-type]
    assert "'holdings'" in str(err.value)
    for name in MX_RESOURCES:
        assert name in str(err.value)
    assert len(mx.requests) == since, "bad input is refused before any call to MX"
    with pytest.raises(ExportInputError, match="snapshot_guid"):
        MxSnapshotOperator(task_id="g", snapshot_guid="  ", deferrable=False).execute({})  # type: ignore[arg-type]


def test_requested_resource_missing_from_the_snapshot(mx: Any) -> None:
    layout = {k: v for k, v in sb.DEFAULT_LAYOUT.items() if k != "goals"}
    snap = make_snapshot(mx, layout=layout)
    op = MxSnapshotOperator(task_id="f", snapshot_guid=snap.guid, resources=["goals", "users"], deferrable=False)
    with pytest.raises(ExportJobFailed, match=r"no file for goals; it contains: accounts, devices"):
        op.execute({})  # type: ignore[arg-type]
    op = MxSnapshotOperator(task_id="g", snapshot_guid=snap.guid, resources=["goals", "users"], allow_missing=True, deferrable=False)
    job = ExportJob.from_dict(op.execute({}))  # type: ignore[arg-type]
    assert [f.resource for f in job.files] == ["users"]


# ---- files: Avro, checksums, locations -----------------------------------------------------------


def test_every_resource_decodes_as_avro_with_listed_size_rows_and_md5(mx: Any) -> None:
    snap = make_snapshot(mx)
    h = hook()
    job = h.get_job(snap.guid)
    source = {f.name: f for f in snap.files}
    totals: dict[str, int] = {}
    for file in job.files:
        data = download(h, file)
        truth = source[file.extra["file_name"]]
        assert data == truth.data
        assert (file.size, file.checksum_algorithm, file.row_format, file.compression) == (len(data), "md5", "avro", "gzip")
        assert file.checksum == hashlib.md5(data).hexdigest()
        schema, records = read_avro_gz(data)
        assert len(records) == file.rows
        assert records == truth.records
        assert [f["name"] for f in schema["fields"]] == [f["name"] for f in truth.schema["fields"]]
        totals[file.resource] = totals.get(file.resource, 0) + len(records)
    assert set(totals) == set(MX_RESOURCES) and all(n > 0 for n in totals.values())

    by_resource = {r: [f for f in job.files if f.resource == r] for r in MX_RESOURCES}
    accounts = [rec for f in by_resource["accounts"] for rec in read_avro_gz(download(h, f))[1]]
    for field in ("guid", "user_guid", "member_guid", "name", "type", "balance", "currency_code", "created_at"):
        assert field in accounts[0]
    txn = read_avro_gz(download(h, by_resource["transactions"][0]))[1][0]
    for field in ("guid", "account_guid", "amount", "date", "description", "category", "status", "type"):
        assert field in txn
    assert {a["guid"] for a in accounts} >= {t["account_guid"] for f in by_resource["transactions"] for t in read_avro_gz(download(h, f))[1]}


def test_header_only_and_evolved_schema_files(mx: Any) -> None:
    snap = make_snapshot(mx)
    h = hook()
    job = h.get_job(snap.guid)
    empty = [f for f in job.files if f.rows == 0]
    assert [f.resource for f in empty] == ["notification_profiles"]
    schema, records = read_avro_gz(download(h, empty[0]))
    assert records == [] and [f["name"] for f in schema["fields"]][:2] == ["guid", "user_guid"]
    txn_files = [f for f in job.files if f.resource == "transactions"]
    schemas = [read_avro_gz(download(h, f)) for f in txn_files]
    names = [{fld["name"] for fld in s["fields"]} for s, _ in schemas]
    assert names[-1] - names[0] == {sb.EVOLVED_FIELD_NAME}
    assert all(sb.EVOLVED_FIELD_NAME in rec for rec in schemas[-1][1])
    assert all(sb.EVOLVED_FIELD_NAME not in rec for rec in schemas[0][1])


@pytest.mark.parametrize("url_style", ["relative", "none", "signed"])
def test_listing_urls_absolute_relative_names_only_or_signed(mx: Any, url_style: str) -> None:
    snap = make_snapshot(mx, url_style=url_style)
    register("mx-link-token", mx.secret("mx-link-token"))
    h = hook()
    job = h.get_job(snap.guid)
    assert {f.extra["locate_by"] for f in job.files} == {"relative": {"url"}, "none": {"name"}, "signed": {"relist"}}[url_style]
    assert mx.secret("mx-link-token") not in json.dumps(job.to_dict()), "a signed link must never reach XCom"
    file = job.files[-1]
    assert hashlib.md5(download(h, file)).hexdigest() == file.checksum


@pytest.mark.parametrize("url_style", ["absolute", "signed"])
def test_paginated_listing_reads_every_page(mx: Any, url_style: str) -> None:
    snap = make_snapshot(mx, per_page=4, url_style=url_style)
    h = hook()
    since = len(mx.requests)
    job = h.get_job(snap.guid)
    assert sorted(f.extra["file_name"] for f in job.files) == sorted(f.name for f in snap.files)
    assert len(listing_calls(mx, snap.guid, since)) == 3  # 11 files, 4 per page
    ajob = asyncio.run(_aget(h, snap.guid))
    assert [f.name for f in ajob.files] == [f.name for f in job.files]
    last = job.files[-1]  # on the last page: a signed link is found again by reading every page
    assert hashlib.md5(download(h, last)).hexdigest() == last.checksum


async def _aget(h: MxSnapshotsHook, guid: str) -> ExportJob:
    try:
        return await h.aget_job(guid)
    finally:
        await h.aclose()


def test_credentials_never_go_to_another_origin(mx: Any) -> None:
    snap = make_snapshot(mx, url_style="other_origin")
    h = hook()
    file = h.get_job(snap.guid).files[0]
    assert file.key.startswith("http://localhost:")
    assert h.file_request(file).auth is False
    since = len(mx.requests)
    with pytest.raises(VendorAuthError):
        h.open_file(file)
    sent = [r["headers"] for r in mx.requests[since:] if r["path"].endswith(file.extra["file_name"])]
    assert sent and all("MD-API-KEY" not in hdrs and "Authorization" not in hdrs for hdrs in sent)


def test_range_resume_after_reset(mx: Any) -> None:
    snap = make_snapshot(mx)
    h = hook()
    file = max(h.get_job(snap.guid).files, key=lambda f: f.size or 0)
    stream = h.open_file(file, offset=100)
    try:
        assert stream.offset == 100 and stream.total == file.size
        assert b"".join(iter_stream(stream)) == next(f.data for f in snap.files if f.name == file.extra["file_name"])[100:]
    finally:
        stream.close()


# ---- auth --------------------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["md-api-key", "basic"])
def test_both_auth_styles_with_the_mx_media_types(mx: Any, sandbox: Any, monkeypatch: pytest.MonkeyPatch, style: str) -> None:
    set_connection(monkeypatch, "mx_style", mx_conn(sandbox, auth_style=style))
    snap = make_snapshot(mx)
    h = hook("mx_style")
    since = len(mx.requests)
    job = h.get_job(snap.guid)
    data = download(h, job.files[0])
    assert hashlib.md5(data).hexdigest() == job.files[0].checksum
    listing, fetch = mx.requests[since], mx.requests[-1]
    assert listing["headers"]["Accept"] == "application/vnd.mx.logs.v1+json"
    assert fetch["headers"]["Accept"] == "application/vnd.mx.logs.v1+avro"
    for seen in (listing["headers"], fetch["headers"]):
        if style == "basic":
            assert seen["Authorization"].startswith("Basic ") and "MD-API-KEY" not in seen
        else:
            assert seen["MD-API-KEY"] == mx.secret("mx-api-key") and "Authorization" not in seen
    assert h.test_connection() == (True, f"MX accepted the credentials ({style}) at {sandbox.url}")


def test_connection_test_succeeds_only_when_the_credentials_were_checked(mx: Any, sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # a path MX does not serve: the root and the probe both answer 404, so nothing proved the key good
    set_connection(monkeypatch, "mx_probe", mx_conn(sandbox, list_path="/v2/snapshots/{guid}/files"))
    ok, message = hook("mx_probe").test_connection()
    assert not ok
    assert "reached MX" in message and "could not check the credentials" in message and "/v2/snapshots" in message
    assert mx.secret("mx-api-key") not in message


@pytest.mark.parametrize("style", ["md-api-key", "basic"])
def test_wrong_key_is_a_clear_401_without_the_key(mx: Any, sandbox: Any, monkeypatch: pytest.MonkeyPatch, style: str) -> None:
    wrong = register(f"mx-wrong-key-{style}", f"wrong-{new_guid()}-key")
    conn = {**mx_conn(sandbox, auth_style=style), "password": wrong}
    set_connection(monkeypatch, "mx_wrong", conn)
    with pytest.raises(VendorAuthError) as err:
        hook("mx_wrong").get_job(make_snapshot(mx).guid)
    assert err.value.status == 401 and "rejected the credentials" in str(err.value)
    assert wrong not in str(err.value)
    ok, message = hook("mx_wrong").test_connection()
    assert not ok and "401" in message and wrong not in message


def test_bad_connection_settings_are_named(mx: Any, sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, "mx_bad", mx_conn(sandbox, auth_style="oauth"))
    with pytest.raises(ExportInputError, match=r"auth_style.*md-api-key, basic"):
        hook("mx_bad").get_job("CSS-1")
    set_connection(monkeypatch, "mx_bad", mx_conn(sandbox, list_path="/snapshots/files"))
    with pytest.raises(ExportInputError, match=r"list_path.*\{guid\}"):
        hook("mx_bad").get_job("CSS-1")
    set_connection(monkeypatch, "mx_bad", {**mx_conn(sandbox), "host": "http://mx.example.com"})
    with pytest.raises(ExportInputError, match="https"):
        hook("mx_bad").get_job("CSS-1")


def test_custom_path_templates_from_extras(mx: Any, sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy in front of MX may move the paths: the templates come from the extras.
    snap = make_snapshot(mx, url_style="none")
    set_connection(monkeypatch, "mx_paths", mx_conn(sandbox, list_path="snapshots/{guid}/files",
                                                   download_path="/snapshots/{guid}/files/{name}"))
    h = hook("mx_paths")
    job = h.get_job(snap.guid)
    assert hashlib.md5(download(h, job.files[0])).hexdigest() == job.files[0].checksum
    # A wrong path is a 404 for a snapshot that exists: fail at once, naming the template to fix.
    set_connection(monkeypatch, "mx_paths", mx_conn(sandbox, list_path="/v2/snapshots/{guid}/files"))
    with pytest.raises(VendorHTTPError) as err:
        hook("mx_paths").get_job(snap.guid)
    _unknown_guid_words(str(err.value), snap.guid, "/v2/snapshots/{guid}/files")


def test_unknown_extra_is_named_in_a_warning_with_the_known_ones(
    mx: Any, sandbox: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    snap = make_snapshot(mx)
    set_connection(monkeypatch, "mx_typo", mx_conn(sandbox, list_files_path="/v2/snapshots/{guid}/files"))
    with caplog.at_level("WARNING", logger="airflow_export_providers.core.hook"):
        job = hook("mx_typo").get_job(snap.guid)  # the misspelt extra is ignored: the default path is used
    assert job.state == JobState.SUCCESS
    warnings = [r.getMessage() for r in caplog.records if "list_files_path" in r.getMessage()]
    assert len(warnings) == 1, caplog.text
    for known in ("auth_style", "list_path", "download_path", "files_key", "timeout", "ca_bundle"):
        assert known in warnings[0]
    assert "did you mean 'list_path'" in warnings[0]
    caplog.clear()
    with caplog.at_level("WARNING", logger="airflow_export_providers.core.hook"):
        hook().get_job(snap.guid)
    assert not [r for r in caplog.records if "not read by" in r.getMessage()], "known extras warn nothing"


@pytest.mark.parametrize("wrapper", ["bare", "data", "snapshotFiles"])
def test_listing_in_any_wrapper_bare_or_one_list(mx: Any, wrapper: str) -> None:
    """MX does not publish the wrapper key: a bare list or an object holding one list of files is read."""
    snap = make_snapshot(mx, wrapper=wrapper, per_page=4)  # paged too, where the wrapper can say so
    job = hook().get_job(snap.guid)
    assert job.state == JobState.SUCCESS
    assert sorted(f.extra["file_name"] for f in job.files) == sorted(f.name for f in snap.files)
    generating = make_snapshot(mx, wrapper=wrapper, ready_after=3600)
    assert hook().get_job(generating.guid).state == JobState.PENDING, "an empty list is 'not ready' in any wrapper"


def test_listing_with_several_lists_needs_the_files_key_extra(mx: Any, sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    snap = make_snapshot(mx, wrapper="entries")
    payload = {"snapshot": {"guid": "CSS-1"}, "entries": [{"name": "a.avro.gz"}], "warnings": []}
    with pytest.raises(VendorHTTPError, match=r"several lists \('entries', 'warnings'\).*files_key"):
        hook("mx_unused").parse_job("CSS-1", payload)
    set_connection(monkeypatch, "mx_keyed", mx_conn(sandbox, files_key="entries"))
    h = hook("mx_keyed")
    job = h.get_job(snap.guid)
    assert len(job.files) == len(snap.files)
    assert h.parse_job("CSS-1", payload).files[0].name == "a.avro.gz"
    set_connection(monkeypatch, "mx_keyed", mx_conn(sandbox, files_key="items"))
    with pytest.raises(VendorHTTPError, match=r"no 'items' field .*'entries'.*files_key"):
        hook("mx_keyed").get_job(snap.guid)


# ---- malformed answers (parse only) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"files": [{"name": "a.avro.gz", "file_size": "big"}]}, "files[0].file_size"),
        ({"files": [{"name": "a.avro.gz", "number_of_records": -1}]}, "files[0].number_of_records"),
        ({"files": [{"file_size": 3}]}, "neither 'url' nor 'name'"),
        ({"files": "x"}, "'files' should be a list"),
        ({"snapshot": {}}, "no list of file entries"),
        ("nope", "expected a JSON object or list"),
        ({"files": [{"name": "a", "resource_type": "users"}, {"name": "a", "resource_type": "users"}]}, "same file name twice"),
    ],
)
def test_malformed_listing_is_one_clear_error(payload: Any, field: str) -> None:
    with pytest.raises(VendorHTTPError) as err:
        MxSnapshotsHook("mx_unused").parse_job("CSS-1", payload)
    assert field in str(err.value)


def test_listing_shapes_bare_urls_and_resource_names() -> None:
    job = MxSnapshotsHook("mx_unused").parse_job("CSS-1", [
        "https://logs.moneydesktop.com/snapshots/CSS-1/files/x_1.avro.gz",
        {"url": "/snapshots/CSS-1/files/np.avro.gz", "resource_type": "Notification Profile", "checksum": "A" * 64},
    ])
    assert job.state == JobState.SUCCESS
    assert [f.name for f in job.files] == ["notification_profiles/np.avro.gz", "x_1.avro.gz"]
    assert job.files[0].checksum_algorithm == "sha256" and job.files[0].checksum == "a" * 64


def test_sandbox_admin_route_creates_a_snapshot(mx: Any, sandbox: Any) -> None:
    import requests

    guid = new_guid()
    answer = requests.post(f"{sandbox.url}/_sandbox/mx/snapshots", json={"guid": guid, "ready_after": 0, "url_style": "relative"}, timeout=10)
    assert answer.status_code == 201 and answer.json()["files"] == len(sb.DEFAULT_LAYOUT) + 4
    job = hook().get_job(guid)
    assert job.state == JobState.SUCCESS and job.files[0].key.startswith("/snapshots/")
    unauthenticated = requests.get(f"{sandbox.url}/snapshots/{guid}/files", headers={"Accept": sb.ACCEPT_JSON}, timeout=10)
    assert unauthenticated.status_code == 401
    wrong_accept = requests.get(f"{sandbox.url}/snapshots/{guid}/files", timeout=10,
                                headers={"Accept": "application/json", "MD-API-KEY": mx.secret("mx-api-key")})
    assert wrong_accept.status_code == 406


def test_resources_from_a_rendered_list_param(mx: Any) -> None:
    snap = make_snapshot(mx)
    op = MxSnapshotOperator(task_id="f", snapshot_guid=snap.guid, resources="['goals', 'devices']", deferrable=False)
    job = ExportJob.from_dict(op.execute({}))  # type: ignore[arg-type]
    assert [f.resource for f in job.files] == ["goals", "devices"]


def test_sandbox_knows_only_the_snapshots_mx_generated(mx: Any, sandbox: Any) -> None:
    """An unknown GUID is 404 in the sandbox, as at MX; the seed's example GUID exists from the start."""
    import requests

    headers = {"Accept": sb.ACCEPT_JSON, "MD-API-KEY": mx.secret("mx-api-key")}
    unknown = requests.get(f"{sandbox.url}/snapshots/{new_guid()}/files", headers=headers, timeout=10)
    assert unknown.status_code == 404
    example = requests.get(f"{sandbox.url}/snapshots/CSS-1234/files", headers=headers, timeout=10)
    assert example.status_code == 200 and len(example.json()["files"]) == len(sb.DEFAULT_LAYOUT) + 4


# ---- landing (transfers) ------------------------------------------------------------------------


def _s3_objects(s3: Any, bucket: str, prefix: str) -> dict[str, bytes]:
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
            if not o["Key"].endswith("/_manifest.json")]  # the landing manifest (docs/transfers.md)
    return {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


def test_checksum_mismatch_fails_and_lands_nothing_under_the_key(mx: Any, moto_s3: Any, aws_conn: str) -> None:
    from airflow_export_providers.core.errors import VerificationError
    from airflow_export_providers.transfers.export_to_s3 import ExportToS3Operator

    snap = make_snapshot(mx)
    bad = next(f for f in snap.files if f.resource == "users").name
    snap.bad_checksum = bad
    s3 = moto_s3.client()
    s3.create_bucket(Bucket="mx-checksum")
    job = MxSnapshotOperator(task_id="files", snapshot_guid=snap.guid, resources=["users"], deferrable=False).execute({})  # type: ignore[arg-type]
    land = ExportToS3Operator(task_id="land", export=job, bucket="mx-checksum", prefix=f"mx/{snap.guid}", convert="parquet",
                              asset=False)
    with pytest.raises(VerificationError, match=r"checksum: md5 expected 0{32}"):
        land.execute({})  # type: ignore[arg-type]
    assert _s3_objects(s3, "mx-checksum", f"mx/{snap.guid}/") == {}
    assert s3.list_multipart_uploads(Bucket="mx-checksum").get("Uploads", []) == []


def test_example_dag_waits_then_lands_every_resource_as_parquet(
    airflow_db: Any, mx: Any, moto_s3: Any, aws_conn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    import pyarrow.parquet as pq

    from tests.support.airflow import load_dag, run_dag, task_states, xcom

    monkeypatch.setenv("AEP_EXAMPLE_POLL_INTERVAL", "0.2")
    snap = make_snapshot(mx, ready_after=1.0, clock_on_first_request=True)
    s3 = moto_s3.client()
    s3.create_bucket(Bucket="mx-landing")
    since = len(mx.requests)
    run = run_dag(load_dag("mx_snapshot.py"), run_conf={"snapshot_guid": snap.guid})
    assert task_states(run) == {"wait_for_snapshot": "success", "list_snapshot_files": "success", "land_parquet_in_s3": "success"}
    polls = listing_calls(mx, snap.guid, since)
    assert len(polls) >= 3, "the sensor saw the snapshot not ready, waited, then saw it listed"

    landed = _s3_objects(s3, "mx-landing", f"mx/{snap.guid}/")
    expected = {f"mx/{snap.guid}/{f.resource}/{f.name.removesuffix('.avro.gz')}.parquet": f for f in snap.files}
    assert set(landed) == set(expected)
    for key, source in expected.items():
        table = pq.read_table(io.BytesIO(landed[key]))
        assert table.num_rows == len(source.records)
        assert table.column_names == [fld["name"] for fld in source.schema["fields"]]
        assert table.to_pylist() == source.records, key
    # The transfer landed in MX's load order and reported each object.
    report = xcom(run, "land_parquet_in_s3")
    resources = [item["uri"].split("/")[-2] for item in report]
    assert list(dict.fromkeys(resources)) == list(MX_LOAD_ORDER)
    assert sum(item["rows"] for item in report) == sum(len(f.records) for f in snap.files)


def test_jsonl_and_csv_into_azure_and_raw_gz_into_s3(mx: Any, azurite: Any, wasb_conn: str, moto_s3: Any, aws_conn: str) -> None:
    import csv
    import io

    from azure.core.exceptions import ResourceExistsError

    from airflow_export_providers.transfers.export_to_azure_blob import ExportToAzureBlobOperator
    from airflow_export_providers.transfers.export_to_s3 import ExportToS3Operator

    snap = make_snapshot(mx)
    job = MxSnapshotOperator(task_id="f", snapshot_guid=snap.guid, resources=["transactions", "notification_profiles"],
                             deferrable=False).execute({})  # type: ignore[arg-type]
    source = {f"{f.resource}/{f.name}": f for f in snap.files if f.resource in ("transactions", "notification_profiles")}
    try:
        azurite.service().create_container("mx-snapshots")
    except ResourceExistsError:
        pass
    container = azurite.service().get_container_client("mx-snapshots")
    for fmt in ("jsonl", "csv"):
        ExportToAzureBlobOperator(task_id=f"az_{fmt}", export=job, container="mx-snapshots", prefix=f"{snap.guid}/{fmt}", convert=fmt,
                                  asset=False).execute({})  # type: ignore[arg-type]
        for name, truth in source.items():
            blob = f"{snap.guid}/{fmt}/{name.removesuffix('.avro.gz')}.{fmt}"
            text = container.download_blob(blob).readall().decode()
            if fmt == "jsonl":
                rows = [json.loads(line) for line in text.splitlines() if line]
                assert rows == truth.records, blob
            else:
                parsed = list(csv.DictReader(io.StringIO(text)))
                assert len(parsed) == len(truth.records), blob
                if truth.records:
                    assert list(parsed[0]) == [f["name"] for f in truth.schema["fields"]]  # evolved file: extra column
                    assert [r["guid"] for r in parsed] == [r["guid"] for r in truth.records]
    s3 = moto_s3.client()
    s3.create_bucket(Bucket="mx-raw")
    ExportToS3Operator(task_id="raw", export=job, bucket="mx-raw", prefix=snap.guid, asset=False).execute({})  # type: ignore[arg-type]
    landed = _s3_objects(s3, "mx-raw", f"{snap.guid}/")
    assert landed == {f"{snap.guid}/{name}": truth.data for name, truth in source.items()}
