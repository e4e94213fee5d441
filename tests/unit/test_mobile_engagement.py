"""Azure Mobile Engagement: parsing, validation and error wording that need no server."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest

from airflow_export_providers.core.errors import ExportInputError, VendorHTTPError
from airflow_export_providers.core.job import ExportJob, JobState
from airflow_export_providers.hooks.mobile_engagement import (
    KINDS,
    AzureIdentityAuth,
    MobileEngagementHook,
)
from airflow_export_providers.operators.mobile_engagement import (
    MobileEngagementExportOperator,
    _as_campaign_ids,
    _as_date,
    _as_timestamp,
    resolve_kind,
)
from tests.conftest import set_connection

CONN = {
    "conn_type": "azure_mobile_engagement", "login": "client-id", "password": "unit-test-secret-value",
    "extra": {"tenant_id": "t-1", "subscription_id": "sub", "resource_group": "rg", "app_collection": "coll", "app_name": "app"},
}


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> MobileEngagementHook:
    set_connection(monkeypatch, "me_unit", CONN)
    return MobileEngagementHook("me_unit", container="c")


def test_kinds_resolve_case_insensitively_and_device_is_explained() -> None:
    assert [resolve_kind(k.upper()) for k in KINDS] == list(KINDS)
    with pytest.raises(ExportInputError) as err:
        resolve_kind("devices")
    assert "no REST kind" in str(err.value) and "'tags'" in str(err.value)
    with pytest.raises(ExportInputError) as err:
        resolve_kind(None)
    assert "Valid kinds" in str(err.value)


def test_dates_timestamps_and_campaign_ids_are_normalised() -> None:
    assert _as_date("d", "2026-02-28") == "2026-02-28"
    assert _as_date("d", datetime(2026, 1, 2, 23, 0)) == "2026-01-02"
    assert _as_date("d", date(2026, 1, 3)) == "2026-01-03"
    for bad in ("2026-02-30", "2026/02/01", "20260201"):
        with pytest.raises(ExportInputError):
            _as_date("d", bad)
    assert _as_timestamp("t", "2026-03-01T10:00:00+02:00") == "2026-03-01T08:00:00Z"
    assert _as_timestamp("t", "2026-03-01T10:00:00Z") == "2026-03-01T10:00:00Z"
    assert _as_timestamp("t", datetime(2026, 3, 1)) == "2026-03-01T00:00:00Z"
    with pytest.raises(ExportInputError):
        _as_timestamp("t", "yesterday")
    assert _as_campaign_ids("[1, 2,3]") == [1, 2, 3]
    assert _as_campaign_ids(("4", 5)) == [4, 5]
    for bad in ("", [], [-1], ["a"], 1.5):
        with pytest.raises(ExportInputError):
            _as_campaign_ids(bad)


def test_daily_interval_exports_one_day_and_a_run_without_one_the_last_complete_day() -> None:
    from types import SimpleNamespace

    task = MobileEngagementExportOperator(task_id="t", kind="sessions", container="c")
    _, fields = task.build_fields({"data_interval_start": datetime(2026, 5, 1, tzinfo=timezone.utc),
                                   "data_interval_end": datetime(2026, 5, 2, tzinfo=timezone.utc)})
    assert (fields["startDate"], fields["endDate"]) == ("2026-05-01", "2026-05-01")
    same = datetime(2026, 5, 3, 12, tzinfo=timezone.utc)  # zero-length: the day that ended last, not the running one
    _, fields = task.build_fields({"data_interval_start": same, "data_interval_end": same})
    assert (fields["startDate"], fields["endDate"]) == ("2026-05-02", "2026-05-02")
    # triggered by hand without a logical date: no data interval, the run's run_after decides
    _, fields = task.build_fields({"dag_run": SimpleNamespace(run_after=datetime(2026, 5, 3, 0, 5, tzinfo=timezone.utc))})  # type: ignore[typeddict-item]
    assert (fields["startDate"], fields["endDate"]) == ("2026-05-02", "2026-05-02")
    weekly = MobileEngagementExportOperator(task_id="w", kind="events", container="c")
    _, fields = weekly.build_fields({"data_interval_start": datetime(2026, 5, 4, tzinfo=timezone.utc),
                                     "data_interval_end": datetime(2026, 5, 11, tzinfo=timezone.utc)})
    assert (fields["startDate"], fields["endDate"]) == ("2026-05-04", "2026-05-10")
    assert list(fields) == ["description", "startDate", "endDate", "exportFormat"]


def test_states_map_and_failed_carries_error_details(hook: MobileEngagementHook) -> None:
    seen = {raw: hook.parse_job("id", {"id": "id", "state": raw, "exportType": "Tag"}).state
            for raw in ("Queued", "Started", "Succeeded", "Failed")}
    assert seen == {"Queued": JobState.PENDING, "Started": JobState.RUNNING, "Succeeded": JobState.SUCCESS, "Failed": JobState.FAILED}
    job = hook.parse_job("id", {"id": "id", "state": "Failed", "errorDetails": "container gone", "exportType": "Event"})
    assert job.message == "container gone" and job.extra["exportType"] == "Event" and job.raw_state == "Failed"
    assert hook.parse_job("id", {"state": "Failed"}).message == "the service gave no errorDetails"
    assert hook.parse_job("id", {"state": "Archiving"}).state == JobState.RUNNING  # unknown = keep waiting


@pytest.mark.parametrize("payload", [None, [], {"id": "x"}, {"state": 3}])
def test_malformed_task_answer_is_one_clear_error(hook: MobileEngagementHook, payload: Any) -> None:
    with pytest.raises(VendorHTTPError) as err:
        hook.parse_job("x", payload)
    assert "'state'" in str(err.value) and "Queued|Started|Succeeded|Failed" in str(err.value)


def test_arm_errors_are_described_in_their_own_words(hook: MobileEngagementHook) -> None:
    body = json.dumps({"error": {"code": "AuthorizationFailed", "message": "The client does not have authorization."}}).encode()
    text = hook.describe_error(403, body)
    assert text.startswith("AuthorizationFailed: The client does not have authorization.") and "role" in text
    assert hook.describe_error(502, b"<html>Bad gateway</html>") == "<html>Bad gateway</html>"


def test_connection_fields_are_required_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = json.loads(json.dumps(CONN))
    del conn["extra"]["app_collection"]
    set_connection(monkeypatch, "me_partial", conn)
    with pytest.raises(ExportInputError) as err:
        _ = MobileEngagementHook("me_partial").tasks_path
    assert "'app_collection'" in str(err.value)
    conn = json.loads(json.dumps(CONN))
    conn["extra"]["authority_host"] = "http://login.example"
    set_connection(monkeypatch, "me_http", conn)
    with pytest.raises(ExportInputError) as err:
        MobileEngagementHook("me_http").make_auth()
    assert "https" in str(err.value) and "ca_bundle" in str(err.value)


def test_tasks_path_quotes_names_and_authority_defaults(hook: MobileEngagementHook, monkeypatch: pytest.MonkeyPatch) -> None:
    assert hook.tasks_path == (
        "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.MobileEngagement/appcollections/coll/apps/app/devices/exportTasks"
    )
    assert hook.base_url == "https://management.azure.com"
    auth = hook.make_auth()
    assert isinstance(auth, AzureIdentityAuth)
    assert auth.authority == "https://login.microsoftonline.com" and auth.disable_instance_discovery is False
    assert AzureIdentityAuth(tenant_id="t", client_id="c", client_secret="s", authority="https://127.0.0.1:9").disable_instance_discovery
    conn = json.loads(json.dumps(CONN))
    conn["extra"]["app_name"] = "my app/../x"
    set_connection(monkeypatch, "me_quote", conn)
    assert MobileEngagementHook("me_quote").tasks_path.endswith("/apps/my%20app%2F..%2Fx/devices/exportTasks")


def test_blob_prefix_template(hook: MobileEngagementHook) -> None:
    job = ExportJob("mobile_engagement", "me_unit", "abc", JobState.SUCCESS, extra={"exportType": "Event", "description": "d"})
    assert hook.task_prefix(job) == "abc/"
    hook.blob_prefix = "exports/{export_type}/{task_id}-"
    assert hook.task_prefix(job) == "exports/Event/abc-"
    hook.blob_prefix = "{run}/"
    with pytest.raises(ExportInputError) as err:
        hook.task_prefix(job)
    assert "blob_prefix" in str(err.value)


def test_blob_prefix_from_the_connection_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    job = ExportJob("mobile_engagement", "me_unit", "abc", JobState.SUCCESS, extra={"exportType": "Event"})
    conn = json.loads(json.dumps(CONN))
    conn["extra"]["blob_prefix"] = "exports/{export_type}/{task_id}/"
    set_connection(monkeypatch, "me_prefix", conn)
    assert MobileEngagementHook("me_prefix").task_prefix(job) == "exports/Event/abc/"
    assert MobileEngagementHook("me_prefix", blob_prefix="{task_id}-").task_prefix(job) == "abc-", "the argument wins"


@pytest.mark.parametrize("value", [0, -1, 0.0, timedelta(0), timedelta(minutes=-5), "4h", True])
def test_non_positive_sas_lifetime_is_refused_by_name(value: Any) -> None:
    task = MobileEngagementExportOperator(task_id="t", kind="tags", container="c", sas_lifetime=value)
    with pytest.raises(ExportInputError, match=r"^sas_lifetime: .* is not a positive duration"):
        task.validate({})  # type: ignore[arg-type]


def test_hook_kwargs_are_primitives_without_secrets(hook: MobileEngagementHook) -> None:
    kwargs = hook.hook_kwargs()
    assert kwargs == {"wasb_conn_id": "wasb_default", "container": "c", "blob_prefix": None}  # None: extra, else default
    assert json.loads(json.dumps(kwargs)) == kwargs
