"""Azure Mobile Engagement export tasks against the sandbox (ARM + a TLS Azure AD stand-in) and Azurite.

What is real here: azure-identity fetching tokens over TLS from the sandbox's AAD endpoint, the ARM
routes, the service writing blobs into Azurite through the SAS the operator derived, and the hook
reading them back through the wasb connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import hashlib
import io
import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema
import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobClient, ContainerSasPermissions

from airflow_export_providers.core.errors import ExportInputError, ExportJobFailed, VendorAuthError, VendorHTTPError
from airflow_export_providers.core.job import JobState
from airflow_export_providers.core.redact import redact_text
from airflow_export_providers.hooks.mobile_engagement import KINDS, MobileEngagementHook, container_sas
from airflow_export_providers.operators.mobile_engagement import MobileEngagementExportOperator
from airflow_export_providers.sandbox.mobile_engagement import runtime
from airflow_export_providers.sensors.mobile_engagement import MobileEngagementExportSensor
from tests.conftest import set_connection
from tests.support.secrets import register

DATA = Path(__file__).resolve().parents[1] / "data" / "mobile_engagement"
SPEC = json.loads((DATA / "mobile-engagement-export-tasks.json").read_text())
RECORDS = json.loads((DATA / "mobile-engagement-export-record.schema.json").read_text())
DAY = datetime(2026, 3, 14, tzinfo=timezone.utc)

# kind -> operator arguments (besides container) that make a valid request
KIND_ARGS: dict[str, dict[str, Any]] = {
    "tags": {},
    "tokens": {"export_format": "CsvBlob"},
    "activities": {"export_start_date": "2026-03-01", "export_end_date": "2026-03-02"},
    "crashes": {},  # dates from the data interval
    "errors": {"export_format": "CsvBlob"},
    "events": {},
    "jobs": {"export_start_date": "2026-03-10", "export_end_date": "2026-03-10"},
    "sessions": {"export_format": "CsvBlob"},
    "feedbackByDate": {"campaign_type": "Announcement", "campaign_window_start": "2026-03-01T00:00:00Z",
                       "campaign_window_end": datetime(2026, 3, 8, 12, 30, tzinfo=timezone.utc)},
    "feedbackByCampaign": {"campaign_type": "NativePush", "campaign_ids": "12, 34"},
}
# record schema definition that each element of a JSON blob must satisfy (tags/crashes/errors have none)
RECORD_DEFS = {"activities": "deviceActivities", "events": "deviceEvents", "sessions": "session", "jobs": "job",
               "feedbackByDate": "push", "feedbackByCampaign": "push", "tokens": "token"}


def spec_body_schema(kind: str) -> dict[str, Any]:
    """The body schema the OpenAPI excerpt gives for POST .../exportTasks/{kind}."""
    path = next(p for p in SPEC["paths"] if p.endswith(f"/exportTasks/{kind}"))
    body = next(x for x in SPEC["paths"][path]["post"]["parameters"] if x.get("in") == "body")
    return {"$ref": body["schema"]["$ref"], "definitions": SPEC["definitions"]}


def record_validator(definition: str) -> jsonschema.Draft4Validator:
    return jsonschema.Draft4Validator({"$ref": f"#/definitions/{definition}", "definitions": RECORDS["definitions"]})


def context(day: datetime = DAY, **extra: Any) -> dict[str, Any]:
    return {"data_interval_start": day, "data_interval_end": day + timedelta(days=1), "run_id": "manual__test", **extra}


@pytest.fixture
def me(sandbox: Any, sandbox_state: Any, vendor_conns: Any, wasb_conn: str, azurite: Any) -> Any:
    """Fast tasks, default tokens; settings restored afterwards."""
    cfg = sandbox_state.vendor_config("mobile_engagement")
    saved = dict(cfg)
    cfg.update(pending_seconds=0.2, running_seconds=0.3, token_lifetime=3599, parts=2)
    register("mobile_engagement:client_secret", vendor_conns["azure_mobile_engagement_default"]["password"])
    yield sandbox_state
    cfg.clear()
    cfg.update(saved)


def op(kind: str, container: str = "me-exports", **kwargs: Any) -> MobileEngagementExportOperator:
    kwargs.setdefault("poll_interval", 0.2)
    kwargs.setdefault("deferrable", False)
    return MobileEngagementExportOperator(task_id=f"export_{kind}", kind=kind, container=container, **kwargs)


def last_submit(state: Any) -> tuple[str, dict[str, Any], str]:
    return runtime(state)["submits"][-1]  # type: ignore[no-any-return]


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_body_matches_spec_and_blobs_land(me: Any, azurite: Any, kind: str) -> None:
    task = op(kind, **KIND_ARGS[kind])
    result = task.execute(context())
    _, params, container_url = last_submit(me)
    body = {"containerUrl": container_url, **{k: v for k, v in params.items() if k != "kind"}}
    # the body is valid against the spec's schema for this kind, with no field the schema lacks
    schema = spec_body_schema(kind)
    jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker()).validate(body)
    definition = SPEC["definitions"][schema["$ref"].rsplit("/", 1)[-1]]
    assert set(body) <= set(definition["properties"])
    assert set(definition["required"]) <= set(body)
    if kind in ("crashes", "events"):  # dates taken from the data interval (a daily run = one day)
        assert (body["startDate"], body["endDate"]) == ("2026-03-14", "2026-03-14")
    if kind == "feedbackByDate":
        assert body["campaignWindowEnd"] == "2026-03-08T12:30:00Z"
    if kind == "feedbackByCampaign":
        assert body["campaignIds"] == [12, 34]
    # the task's blobs landed in Azurite and the job lists exactly them, readable through the hook
    assert result["state"] == "SUCCESS" and result["raw_state"] == "Succeeded"
    container = azurite.service().get_container_client("me-exports")
    blobs = sorted(b.name for b in container.list_blobs(name_starts_with=result["job_id"] + "/"))
    assert [f["key"] for f in result["files"]] == blobs and len(blobs) == 2
    hook = MobileEngagementHook(container="me-exports")
    fmt = body["exportFormat"]
    for f in result["files"]:
        data = container.download_blob(f["key"]).readall()
        assert f["size"] == len(data) and f["checksum"] == hashlib.md5(data).hexdigest()
        assert f["name"].endswith(".json" if fmt == "JsonBlob" else ".csv")
        from airflow_export_providers.core.job import ExportFile

        stream = hook.open_file(ExportFile.from_dict(f))
        assert stream.read(1 << 20) == data
        # a resumed read starts at the offset and may span many small ranged GETs
        resumed = hook.open_file(ExportFile.from_dict(f), offset=101)
        resumed.raw.chunk = 97  # type: ignore[attr-defined]
        assert (resumed.offset, resumed.total) == (101, len(data))
        assert b"".join(iter(partial(resumed.read, 40), b"")) == data[101:]
        if fmt == "JsonBlob":
            records = json.loads(data)
            assert records and isinstance(records, list)
            if kind in RECORD_DEFS:
                validator = record_validator(RECORD_DEFS[kind])
                for record in records:
                    validator.validate(record)
            else:
                assert all("deviceId" in r for r in records)
        else:
            rows = list(csv.DictReader(io.StringIO(data.decode())))
            assert rows and all(r.get("deviceId") for r in rows)


@pytest.mark.parametrize(
    ("kwargs", "ctx", "words"),
    [
        ({"kind": "Device"}, context(), ["no REST kind", "tags", "tokens", "feedbackByCampaign"]),
        ({"kind": "visits"}, context(), ["kind:", "'visits'", "events", "sessions", "feedbackByDate"]),
        ({"kind": "events", "sas_lifetime": -1}, context(), ["sas_lifetime", "not a positive duration"]),  # no interval: last day
        ({"kind": "events", "export_start_date": "2026-03-05", "export_end_date": "2026-03-01"}, context(), ["export_end_date", "before"]),
        ({"kind": "events", "export_start_date": "14/03/2026", "export_end_date": "2026-03-14"}, context(), ["export_start_date", "YYYY-MM-DD"]),
        ({"kind": "events", "campaign_ids": [1]}, context(), ["campaign_ids", "not used by kind 'events'"]),
        ({"kind": "tags", "export_start_date": "2026-03-01"}, context(), ["export_start_date", "not used by kind 'tags'"]),
        ({"kind": "tokens", "export_format": "Parquet"}, context(), ["export_format", "JsonBlob", "CsvBlob"]),
        ({"kind": "feedbackByDate", "campaign_type": "Announcement", "campaign_window_end": "2026-03-01T00:00:00Z"},
         context(), ["campaign_window_start", "required", "feedbackByDate"]),
        ({"kind": "feedbackByDate", "campaign_type": "Email", "campaign_window_start": "2026-03-01T00:00:00Z",
          "campaign_window_end": "2026-03-02T00:00:00Z"}, context(), ["campaign_type", "Announcement", "DataPush", "NativePush", "Poll"]),
        ({"kind": "feedbackByCampaign", "campaign_type": "Poll"}, context(), ["campaign_ids", "required", "feedbackByCampaign"]),
        ({"kind": "feedbackByCampaign", "campaign_type": "Poll", "campaign_ids": "7, x"}, context(), ["campaign_ids", "'x'"]),
        ({"kind": "sessions", "container": ""}, context(), ["container", "required"]),
    ],
)
def test_invalid_input_is_rejected_before_any_call(me: Any, kwargs: dict[str, Any], ctx: dict[str, Any], words: list[str]) -> None:
    kind = kwargs.pop("kind")
    container = kwargs.pop("container", "me-exports")
    before = len(me.requests)
    with pytest.raises(ExportInputError) as err:
        op(kind, container=container, **kwargs).execute(ctx)
    for word in words:
        assert word in str(err.value)
    assert len(me.requests) == before  # neither Azure AD nor ARM saw a request


def test_sas_grants_write_and_list_only_and_expires_soon(me: Any, azurite: Any) -> None:
    task = op("tags", sas_lifetime=timedelta(minutes=30))
    before = datetime.now(timezone.utc)
    url = task.container_url()
    sas = parse_qs(urlsplit(url).query)
    register("mobile_engagement:sas_sig", sas["sig"][0])
    assert sas["sp"] == ["wl"] and sas["sr"] == ["c"]
    expiry = datetime.fromisoformat(sas["se"][0].replace("Z", "+00:00"))
    start = datetime.fromisoformat(sas["st"][0].replace("Z", "+00:00"))
    assert before < expiry <= before + timedelta(minutes=31)
    assert start <= before
    # the signature is registered as a secret: redaction removes it even outside a query string
    assert sas["sig"][0] not in redact_text(f"oops {sas['sig'][0]} leaked")
    # storage enforces it: write and list work, read is refused
    parts = urlsplit(url)
    blob_url = f"{parts.scheme}://{parts.netloc}{parts.path}/probe.txt?{parts.query}"
    BlobClient.from_blob_url(blob_url).upload_blob(b"x", overwrite=True)
    with pytest.raises(HttpResponseError) as denied:
        BlobClient.from_blob_url(blob_url).download_blob().readall()
    assert denied.value.status_code == 403


def _expiry(container_url: str) -> datetime:
    sas = parse_qs(urlsplit(container_url).query)
    register(f"mobile_engagement:sas_sig_{sas['sig'][0][:6]}", sas["sig"][0])
    return datetime.fromisoformat(sas["se"][0].replace("Z", "+00:00"))


@pytest.mark.parametrize("job_timeout", [timedelta(hours=30), timedelta(minutes=20)])
def test_sas_outlives_the_job_deadline(me: Any, job_timeout: timedelta) -> None:
    """A job may take minutes to start, then hours: the SAS lives until the deadline plus a margin."""
    before = datetime.now(timezone.utc)
    op("tags", job_timeout=job_timeout, wait_for_completion=False).execute(context())
    after = datetime.now(timezone.utc)
    expiry = _expiry(last_submit(me)[2])
    assert before + job_timeout + timedelta(minutes=59) <= expiry <= after + job_timeout + timedelta(minutes=61)
    # an explicit sas_lifetime is what it says (a warning tells when it ends before the deadline)
    op("tags", sas_lifetime=timedelta(hours=2), wait_for_completion=False).execute(context())
    expiry = _expiry(last_submit(me)[2])
    assert before + timedelta(hours=2) - timedelta(minutes=1) <= expiry <= datetime.now(timezone.utc) + timedelta(hours=2, minutes=1)


@pytest.mark.parametrize("value", [0, -60, timedelta(0), timedelta(minutes=-1), "4h"])
def test_non_positive_sas_lifetime_is_refused_before_any_call(me: Any, azurite: Any, value: Any) -> None:
    container = f"me-sas-{abs(hash(str(value))) % 10_000}"
    before = (len(me.requests), me.submissions["mobile_engagement"])
    with pytest.raises(ExportInputError, match="sas_lifetime"):
        op("tags", container=container, sas_lifetime=value).execute(context())
    assert (len(me.requests), me.submissions["mobile_engagement"]) == before, "neither Azure AD nor ARM was called"
    assert container not in [c.name for c in azurite.service().list_containers()], "nor the storage"


def test_sas_never_in_xcom_rendered_fields_or_trigger(me: Any) -> None:
    from airflow.providers.common.compat.sdk import TaskDeferred

    from airflow_export_providers.triggers.export_job import ExportJobTrigger

    task = op("events", deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        task.execute(context())
    sig = parse_qs(urlsplit(last_submit(me)[2]).query)["sig"][0]
    register("mobile_engagement:sas_sig_deferred", sig)
    trigger = deferred.value.trigger
    assert isinstance(trigger, ExportJobTrigger)
    classpath, kwargs = trigger.serialize()
    assert sig not in json.dumps(kwargs) and "sig=" not in json.dumps(kwargs)
    assert kwargs["hook_kwargs"] == {"wasb_conn_id": "wasb_default", "container": "me-exports", "blob_prefix": None}
    rendered = json.dumps({name: str(getattr(task, name)) for name in task.template_fields})
    assert sig not in rendered and "sig=" not in rendered

    async def wait() -> Any:
        return [event async for event in trigger.run()]

    events = asyncio.run(wait())
    result = task.execute_complete(context(), events[0].payload)
    assert result["state"] == "SUCCESS" and len(result["files"]) == 2
    text = json.dumps(result)
    assert sig not in text and "sig=" not in text and "?" not in text


def test_sas_without_write_fails_the_task_with_error_details(me: Any, azurite: Any) -> None:
    azurite.service().get_container_client("me-readonly").create_container()
    hook = MobileEngagementHook(container="me-readonly")
    sas = container_sas("wasb_default", "me-readonly", ContainerSasPermissions(list=True), timedelta(minutes=10))
    url = azurite.service().get_container_client("me-readonly").url + "?" + sas
    task_id = hook.submit("tags", {"containerUrl": url, "exportFormat": "JsonBlob"})
    job = _wait(hook, task_id)
    assert job.state == JobState.FAILED and job.raw_state == "Failed"
    assert job.message is not None and "AuthorizationPermissionMismatch" in job.message and "could not write" in job.message
    assert not list(azurite.service().get_container_client("me-readonly").list_blobs())
    # an expired SAS is refused by storage too
    expired = container_sas("wasb_default", "me-readonly", ContainerSasPermissions(write=True, list=True), timedelta(seconds=-60))
    url = azurite.service().get_container_client("me-readonly").url + "?" + expired
    job = _wait(hook, hook.submit("tags", {"containerUrl": url, "exportFormat": "JsonBlob"}))
    assert job.state == JobState.FAILED and job.message is not None and "403" in job.message


def _wait(hook: MobileEngagementHook, task_id: str, limit: int = 100) -> Any:
    import time

    for _ in range(limit):
        job = hook.get_job(task_id)
        if job.state.is_final:
            return job
        time.sleep(0.1)
    raise AssertionError(f"task {task_id} did not finish")


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferred", "polling"])
def test_succeeded_task_with_no_blob_where_the_operator_looks_fails(me: Any, monkeypatch: pytest.MonkeyPatch,
                                                                     vendor_conns: Any, deferrable: bool) -> None:
    """The service's blob names are not public: a Succeeded task with nothing under the prefix is an
    error naming the container, the prefix and the setting, never a green task that landed nothing."""
    from airflow.sdk.exceptions import AirflowException, TaskDeferred

    me.vendor_config("mobile_engagement")["blob_prefix"] = "exports/{export_type}/{task_id}/"  # not where we look
    task = op("tags", deferrable=deferrable)
    if deferrable:
        with pytest.raises(TaskDeferred) as deferred:
            task.execute(context())
        (event,) = asyncio.run(_events(deferred.value.trigger))
        assert event["status"] == "error"
        with pytest.raises(AirflowException) as err:
            task.execute_complete(context(), event)
    else:
        with pytest.raises(ExportJobFailed) as err:
            task.execute(context())
    message = str(err.value)
    for words in ("Succeeded", "container 'me-exports'", "no blob under prefix", "blob_prefix '{task_id}/'", "operator / sensor"):
        assert words in message, (words, message)
    assert f"export task {list(me.jobs)[-1]} Succeeded" in message
    # told where to look, the same export lands: by the operator's argument, or the connection extra
    result = op("tags", blob_prefix="exports/{export_type}/{task_id}/").execute(context())
    assert len(result["files"]) == 2 and all(f["key"].startswith(f"exports/Tag/{result['job_id']}/") for f in result["files"])
    conn = json.loads(json.dumps(vendor_conns["azure_mobile_engagement_default"]))
    conn["extra"]["blob_prefix"] = "exports/{export_type}/{task_id}/"
    set_connection(monkeypatch, "azure_mobile_engagement_default", conn)
    assert len(op("tags").execute(context())["files"]) == 2
    sensor = MobileEngagementExportSensor(task_id="wait", export_task_id=result["job_id"], container="me-exports",
                                          blob_prefix="{task_id}/", deferrable=False)
    with pytest.raises(ExportJobFailed, match="no blob under prefix"):
        sensor.poke(context())


async def _events(trigger: Any) -> list[dict[str, Any]]:
    return [event.payload async for event in trigger.run()]


def test_failed_task_surfaces_error_details(me: Any) -> None:
    me.vendor_config("mobile_engagement")["fail_next"] = 1
    with pytest.raises(ExportJobFailed) as err:
        op("sessions", export_start_date="2026-03-01", export_end_date="2026-03-01").execute(context())
    assert "FAILED (Failed)" in str(err.value) and "an internal error occurred while reading the application's data" in str(err.value)


def test_failed_task_is_resubmitted_within_max_resubmits(me: Any) -> None:
    me.vendor_config("mobile_engagement")["fail_next"] = 1
    before = me.submissions["mobile_engagement"]
    result = op("tokens", max_resubmits=1).execute(context())
    assert result["state"] == "SUCCESS"
    assert me.submissions["mobile_engagement"] == before + 2


def test_token_refresh_during_a_long_poll(me: Any) -> None:
    """Tokens live 1 s, the task runs ~3 s: both the worker and the triggerer keep fresh tokens."""
    from airflow.providers.common.compat.sdk import TaskDeferred

    cfg = me.vendor_config("mobile_engagement")
    cfg.update(token_lifetime=1, pending_seconds=0.5, running_seconds=2.5)
    rt = runtime(me)
    # worker-side polling (sync credential)
    mark = len(rt["arm_auth"]), len(rt["token_requests"])
    assert op("events", poll_interval=0.4).execute(context())["state"] == "SUCCESS"
    used = {tok for method, _, tok, status in rt["arm_auth"][mark[0]:] if status == 200}
    assert len(used) >= 2
    assert sum(ok for _, ok in rt["token_requests"][mark[1]:]) >= 2
    # triggerer-side polling (aio credential): several tokens over one deferral, and the job succeeds
    task = op("events", deferrable=True, poll_interval=0.3)
    with pytest.raises(TaskDeferred) as deferred:
        task.execute(context())
    mark = len(rt["arm_auth"]), len(rt["token_requests"])

    async def wait() -> Any:
        return [event async for event in deferred.value.trigger.run()]

    events = asyncio.run(wait())
    assert events[0].payload["status"] == "success"
    gets = [(tok, status) for method, _, tok, status in rt["arm_auth"][mark[0]:] if method == "GET"]
    assert len({tok for tok, status in gets if status == 200}) >= 2
    assert sum(ok for _, ok in rt["token_requests"][mark[1]:]) >= 2
    assert len(task.execute_complete(context(), events[0].payload)["files"]) == 2


def test_revoked_token_is_refreshed_once_on_401(me: Any) -> None:
    hook = MobileEngagementHook()
    assert "Connected" in hook.check_connection()
    rt = runtime(me)
    rt["tokens"].clear()  # every token handed out so far is now unknown to ARM
    mark = len(rt["arm_auth"])
    assert "Connected" in hook.check_connection()
    statuses = [status for _, _, _, status in rt["arm_auth"][mark:]]
    assert statuses == [401, 200]


def test_wrong_client_secret_is_a_clear_auth_error(me: Any, monkeypatch: pytest.MonkeyPatch, vendor_conns: Any) -> None:
    from tests.conftest import set_connection

    conn = json.loads(json.dumps(vendor_conns["azure_mobile_engagement_default"]))
    conn["password"] = register("mobile_engagement:wrong_secret", "not-the-secret-" + "x" * 12)
    set_connection(monkeypatch, "me_wrong", conn)
    ok, message = MobileEngagementHook("me_wrong").test_connection()
    assert not ok and "AADSTS7000215" in message and "refused the client credentials" in message
    assert conn["password"] not in message
    with pytest.raises(VendorAuthError):
        MobileEngagementHook("me_wrong").list_tasks()


def test_untrusted_aad_certificate_says_to_set_ca_bundle(me: Any, monkeypatch: pytest.MonkeyPatch, vendor_conns: Any) -> None:
    from airflow_export_providers.core.errors import ExportError
    from tests.conftest import set_connection

    conn = json.loads(json.dumps(vendor_conns["azure_mobile_engagement_default"]))
    conn["extra"]["ca_bundle"] = ""
    set_connection(monkeypatch, "me_no_ca", conn)
    ok, message = MobileEngagementHook("me_no_ca").test_connection()
    assert not ok and "TLS verification failed" in message and "ca_bundle" in message

    async def read() -> None:
        hook = MobileEngagementHook("me_no_ca")
        try:
            await hook.aget_job("any")
        finally:
            await hook.aclose()

    with pytest.raises(ExportError) as err:
        asyncio.run(read())
    assert "ca_bundle" in str(err.value) and not isinstance(err.value, VendorHTTPError)


def test_arm_errors_are_described_in_arm_words(me: Any, monkeypatch: pytest.MonkeyPatch, vendor_conns: Any) -> None:
    from tests.conftest import set_connection

    conn = json.loads(json.dumps(vendor_conns["azure_mobile_engagement_default"]))
    conn["extra"]["resource_group"] = "no-such-rg"
    set_connection(monkeypatch, "me_bad_rg", conn)
    with pytest.raises(VendorHTTPError) as err:
        MobileEngagementHook("me_bad_rg").get_job("abc")
    assert err.value.status == 404 and "ResourceGroupNotFound: Resource group 'no-such-rg' could not be found" in str(err.value)
    hook = MobileEngagementHook()
    with pytest.raises(VendorHTTPError) as err:
        hook.get_job("no-such-task")
    assert "NotFound" in str(err.value)
    # api-version is checked on every call
    token = hook.auth.headers()["Authorization"]
    url = hook.url(hook.tasks_path)
    answer = requests.get(url, params={"api-version": "2016-01-01"}, headers={"Authorization": token}, timeout=10)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "InvalidApiVersionParameter"
    answer = requests.get(url, headers={"Authorization": token}, timeout=10)
    assert answer.json()["error"]["code"] == "MissingApiVersionParameter"
    assert requests.get(url, params={"api-version": "2014-12-01"}, timeout=10).json()["error"]["code"] == "AuthenticationFailed"


def test_list_tasks_pages_with_top_and_next_link(me: Any) -> None:
    hook = MobileEngagementHook()
    op("tags").execute(context())
    op("tokens").execute(context())
    page = hook.list_tasks(top=1, orderby="dateCreated desc")
    assert len(page["value"]) == 1 and "$skip=1" in page["nextLink"]
    assert {"id", "state", "dateCreated", "exportType"} <= set(page["value"][0])
    with pytest.raises(ExportInputError):
        hook.list_tasks(top=41)


def test_sensor_waits_for_a_task_started_elsewhere(me: Any) -> None:
    task_id = op("jobs", wait_for_completion=False, export_start_date="2026-03-01", export_end_date="2026-03-01").execute(context())
    assert isinstance(task_id, str)
    sensor = MobileEngagementExportSensor(task_id="wait", export_task_id=task_id, container="me-exports", poke_interval=0.2, deferrable=False)
    result = None
    for _ in range(50):
        value = sensor.poke(context())
        if value:
            result = value.xcom_value  # type: ignore[union-attr]
            break
        import time

        time.sleep(0.1)
    assert result is not None and result["state"] == "SUCCESS" and result["extra"]["exportType"] == "Job"
    assert all(f["key"].startswith(task_id + "/") for f in result["files"]) and len(result["files"]) == 2



class _Store:
    """A task_state_store stand-in: what survives between two tries of one task instance."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        return self.values.get(key)

    def set(self, key: str, value: Any, **_: Any) -> None:
        self.values[key] = value

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


def test_a_retry_resumes_the_task_instead_of_exporting_again(me: Any) -> None:
    from airflow_export_providers.core.operator import JOB_ID_KEY

    store = _Store()
    first = op("tokens", wait_for_completion=False).execute(context(task_state_store=store))
    # what a try that submitted and then died leaves behind (a finished start task forgets its id)
    assert store.get(JOB_ID_KEY) is None
    store.set(JOB_ID_KEY, first)
    before = (me.submissions["mobile_engagement"], len(runtime(me)["submits"]))
    result = op("tokens").execute(context(task_state_store=store))  # the retry
    assert result["job_id"] == first and result["state"] == "SUCCESS" and len(result["files"]) == 2
    assert (me.submissions["mobile_engagement"], len(runtime(me)["submits"])) == before  # no new task, no new SAS


def test_sensor_fails_with_error_details(me: Any) -> None:
    me.vendor_config("mobile_engagement")["fail_next"] = 1
    task_id = op("tags", wait_for_completion=False).execute(context())
    sensor = MobileEngagementExportSensor(task_id="wait", export_task_id=task_id, container="me-exports", deferrable=False)
    import time

    for _ in range(50):
        try:
            if sensor.poke(context()):
                raise AssertionError("a Failed task must not count as done")
        except ExportJobFailed as err:
            assert "an internal error occurred" in str(err)
            return
        time.sleep(0.1)
    raise AssertionError("the sensor never saw the task fail")


def test_trigger_refreshes_a_revoked_token_once(me: Any) -> None:
    """The triggerer's aio credential: ARM answers 401 to a revoked token; one fresh token fixes it."""
    from airflow_export_providers.triggers.export_job import ExportJobTrigger

    me.vendor_config("mobile_engagement").update(pending_seconds=0.2, running_seconds=1.5)
    task_id = op("tags", wait_for_completion=False).execute(context())
    rt = runtime(me)
    trigger = ExportJobTrigger(hook_class=f"{MobileEngagementHook.__module__}.MobileEngagementHook",
                               conn_id="azure_mobile_engagement_default", job_id=task_id, poll_interval=0.3,
                               hook_kwargs={"container": "me-exports"})

    async def wait() -> list[Any]:
        return [event async for event in trigger.run()]

    async def revoke_soon() -> None:
        await asyncio.sleep(0.5)
        rt["tokens"].clear()

    async def both() -> list[Any]:
        _, events = await asyncio.gather(revoke_soon(), wait())
        return events

    mark = len(rt["arm_auth"])
    events = asyncio.run(both())
    assert events[0].payload["status"] == "success" and len(events[0].payload["job"]["files"]) == 2
    statuses = [status for method, path, _, status in rt["arm_auth"][mark:] if path.endswith(task_id)]
    assert statuses.count(401) == 1 and statuses[-1] == 200


# ---- no unclosed aiohttp sessions ----------------------------------------------------------------
@contextlib.contextmanager
def no_unclosed_sessions() -> Iterator[None]:
    """Fail on asyncio's "Unclosed client session" (logged by the loop and warned as a ResourceWarning
    when a session is garbage collected while still open)."""
    import gc
    import logging
    import warnings

    seen: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    handler = Catch()
    # what earlier tests in this worker process left for the collector is theirs, not this run's: collect it
    # before the window opens (the floor suite saw an earlier test's socket transport reported here)
    gc.collect()
    logging.getLogger("asyncio").addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            yield
            gc.collect()  # collect what the run left behind: an open session reports itself now
        seen += [str(w.message) for w in caught]
    finally:
        logging.getLogger("asyncio").removeHandler(handler)
    leaks = [m for m in seen if "Unclosed" in m or "unclosed" in m]
    assert not leaks, f"the trigger path left aiohttp sessions open: {leaks}"


def test_trigger_closes_every_session_when_its_consumer_stops_at_the_event(me: Any) -> None:
    """dag.test() and the triggerer take the first event and drop the generator: by then every
    session the hook opened (ARM, Azure AD, blob listing) must be closed."""
    from airflow.sdk.exceptions import TaskDeferred

    task = op("events", deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        task.execute(context())
    trigger = deferred.value.trigger
    with no_unclosed_sessions():
        event = asyncio.run(anext(trigger.run()))  # exactly what dag.test() does
    assert event.payload["status"] == "success" and len(event.payload["job"]["files"]) == 2


# ---- real Airflow runs (dag.test()) -------------------------------------------------------------
def _ensure_bucket(moto_s3: Any, bucket: str) -> None:
    s3 = moto_s3.client()
    try:
        s3.create_bucket(Bucket=bucket)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferred", "polling"])
def test_example_dag_exports_events_into_azure_then_s3(
    airflow_db: Any, me: Any, azurite: Any, aws_conn: str, moto_s3: Any, monkeypatch: pytest.MonkeyPatch, deferrable: bool
) -> None:
    from tests.support.airflow import load_dag, run_dag, task_states, xcom

    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", str(deferrable).lower())
    _ensure_bucket(moto_s3, "analytics-landing")
    dag = load_dag("mobile_engagement_daily_events.py")
    export_task = dag.get_task("export_events")
    assert export_task.deferrable is deferrable
    export_task.poll_interval = 0.2
    before = me.submissions["mobile_engagement"]
    run_at = datetime(2026, 4, 2 if deferrable else 3, tzinfo=timezone.utc)
    with no_unclosed_sessions():
        run = run_dag(dag, logical_date=run_at)
    day = run_at - timedelta(days=1)  # a manual run at midnight exports the day that just ended
    assert task_states(run) == {"export_events": "success", "copy_to_s3": "success"}
    assert me.submissions["mobile_engagement"] - before == 1
    kind, params, container_url = last_submit(me)
    register(f"mobile_engagement:dag_sig_{deferrable}", parse_qs(urlsplit(container_url).query)["sig"][0])
    assert kind == "events" and params["startDate"] == params["endDate"] == day.date().isoformat()
    job = xcom(run, "export_events")
    assert "sig=" not in json.dumps(job)
    # the trigger polls with aiohttp, the worker with requests: who polled shows where the wait happened
    polls = [r for r in me.requests if r["method"] == "GET" and r["path"].endswith("/exportTasks/" + job["job_id"])]
    assert any("aiohttp" in r["headers"].get("User-Agent", "") for r in polls) is deferrable
    # the blobs landed in Azurite, then the same bytes in moto's S3 under the dated prefix
    container = azurite.service().get_container_client("mobile-engagement-exports")
    in_azure = {b.name.split("/", 1)[1]: container.download_blob(b.name).readall()
                for b in container.list_blobs(name_starts_with=job["job_id"] + "/")}
    assert len(in_azure) == 2
    s3 = moto_s3.client()
    prefix = f"mobile_engagement/events/{day.date().isoformat()}/"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="analytics-landing", Prefix=prefix).get("Contents", [])
            if not o["Key"].endswith("/_manifest.json")]  # the landing manifest (docs/transfers.md)
    in_s3 = {k[len(prefix):]: s3.get_object(Bucket="analytics-landing", Key=k)["Body"].read() for k in keys}
    assert in_s3 == in_azure
    validator = record_validator("deviceEvents")
    for data in in_s3.values():
        for record in json.loads(data):
            validator.validate(record)
