"""Leanplum pieces that need no server: Pacific dates, validation, quota timing, answer parsing."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest

from airflow_export_providers.core.errors import ExportInputError, VendorAuthError, VendorHTTPError
from airflow_export_providers.core.job import JobState
from airflow_export_providers.hooks.leanplum import (
    GONE_STATE,
    NO_DATA_PREFIX,
    PACIFIC,
    LeanplumHook,
    next_pacific_midnight,
)
from airflow_export_providers.operators.leanplum import (
    LeanplumExportOperator,
    LeanplumStreamingExportOperator,
    leanplum_date,
    leanplum_dates,
    leanplum_day,
    leanplum_end_date,
    oldest_allowed_date,
    parse_epoch,
)

UTC = timezone.utc


def pt(*args: int) -> datetime:
    return datetime(*args, tzinfo=PACIFIC)  # type: ignore[misc]


# ---- Pacific dates ---------------------------------------------------------------------------------
def test_utc_instant_becomes_the_pacific_day() -> None:
    # 2026-06-01 05:00 UTC is still May 31 in California (PDT, UTC-7).
    assert leanplum_date(datetime(2026, 6, 1, 5, 0, tzinfo=UTC)) == "20260531"
    assert leanplum_date(datetime(2026, 6, 1, 7, 0, tzinfo=UTC)) == "20260601"
    # Winter: PST is UTC-8.
    assert leanplum_date(datetime(2026, 1, 15, 7, 59, tzinfo=UTC)) == "20260114"
    assert leanplum_date(datetime(2026, 1, 15, 8, 0, tzinfo=UTC)) == "20260115"
    # Naive datetimes, ISO strings and epoch seconds are UTC.
    assert leanplum_date(datetime(2026, 1, 15, 8, 0)) == "20260115"
    assert leanplum_date("2026-01-15T07:59:00Z") == "20260114"
    assert leanplum_date(datetime(2026, 1, 15, 8, 0, tzinfo=UTC).timestamp()) == "20260115"


def test_spring_forward_day_has_23_hours_and_stays_one_day() -> None:
    # DST starts 2026-03-08 02:00 PST: the Pacific day is 08:00Z..07:00Z (23 h).
    start, end = pt(2026, 3, 8), pt(2026, 3, 9)
    assert (end - start) == timedelta(hours=24)  # wall clock
    assert end.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=23)
    assert leanplum_dates(start.astimezone(UTC), end.astimezone(UTC)) == ("20260308", "20260308")
    assert leanplum_date(datetime(2026, 3, 9, 6, 59, 59, tzinfo=UTC)) == "20260308"
    assert leanplum_date(datetime(2026, 3, 9, 7, 0, tzinfo=UTC)) == "20260309"


def test_fall_back_day_has_25_hours_and_stays_one_day() -> None:
    # DST ends 2026-11-01 02:00 PDT: the Pacific day is 07:00Z..08:00Z next day (25 h).
    start, end = pt(2026, 11, 1).astimezone(UTC), pt(2026, 11, 2).astimezone(UTC)
    assert end - start == timedelta(hours=25)
    assert leanplum_dates(start, end) == ("20261101", "20261101")
    assert leanplum_date(datetime(2026, 11, 2, 7, 59, tzinfo=UTC)) == "20261101"
    assert leanplum_date(datetime(2026, 11, 2, 8, 0, tzinfo=UTC)) == "20261102"


def test_utc_daily_interval_spans_two_pacific_days() -> None:
    # A UTC-midnight schedule covers the afternoon of one Pacific day and most of the next.
    assert leanplum_dates(datetime(2026, 3, 8, tzinfo=UTC), datetime(2026, 3, 9, tzinfo=UTC)) == ("20260307", "20260308")
    assert leanplum_end_date(datetime(2026, 11, 2, tzinfo=UTC)) == "20261101"


def test_next_pacific_midnight_across_dst() -> None:
    before_spring = pt(2026, 3, 7, 23, 30).timestamp()
    assert next_pacific_midnight(before_spring) == pt(2026, 3, 8).timestamp()
    on_spring = pt(2026, 3, 8, 12, 0).timestamp()
    # The day after the switch starts 23 wall-clock-hours-later in UTC terms.
    assert next_pacific_midnight(on_spring) == datetime(2026, 3, 9, 7, 0, tzinfo=UTC).timestamp()
    on_fall = pt(2026, 11, 1, 12, 0).timestamp()
    assert next_pacific_midnight(on_fall) == datetime(2026, 11, 2, 8, 0, tzinfo=UTC).timestamp()


def test_parse_epoch_accepts_the_usual_shapes() -> None:
    assert parse_epoch(None, "f") is None and parse_epoch("None", "f") is None
    assert parse_epoch("1700000000", "f") == 1700000000
    assert parse_epoch(1700000000.9, "f") == 1700000000
    assert parse_epoch("2023-11-14T22:13:20Z", "f") == 1700000000
    with pytest.raises(ExportInputError, match="initial_start_time"):
        parse_epoch("yesterday", "initial_start_time")


# ---- validation ----------------------------------------------------------------------------------
def _validate(**kwargs: object) -> LeanplumExportOperator:
    op = LeanplumExportOperator(task_id="t", **kwargs)  # type: ignore[arg-type]
    op.validate({})  # type: ignore[arg-type]
    return op


def test_format_must_be_json_or_csv() -> None:
    today = leanplum_date(time.time())
    with pytest.raises(ExportInputError, match=r"export_format: 'parquet'.*json, csv"):
        _validate(export_start_date=today, export_format="parquet")
    assert _validate(export_start_date=today, export_format="CSV").export_format == "csv"


def test_dates_must_be_yyyymmdd_and_ordered() -> None:
    today = datetime.now(PACIFIC).date()
    with pytest.raises(ExportInputError, match="export_start_date: '2026-01-01' is not a Pacific-time date in YYYYMMDD"):
        _validate(export_start_date="2026-01-01")
    with pytest.raises(ExportInputError, match="export_end_date: .* is before export_start_date"):
        _validate(export_start_date=f"{today:%Y%m%d}", export_end_date=f"{today - timedelta(days=1):%Y%m%d}")
    with pytest.raises(ExportInputError, match="end_time: 5 is before start_time 10"):
        _validate(export_start_date=f"{today:%Y%m%d}", start_time=10, end_time=5)


def test_sixty_day_window_names_the_oldest_allowed_date() -> None:
    oldest = oldest_allowed_date()
    assert oldest == datetime.now(PACIFIC).date() - timedelta(days=60)
    _validate(export_start_date=f"{oldest:%Y%m%d}")  # the boundary itself is accepted
    too_old = oldest - timedelta(days=1)
    with pytest.raises(ExportInputError) as err:
        _validate(export_start_date=f"{too_old:%Y%m%d}")
    assert f"{too_old:%Y%m%d}" in str(err.value) and f"oldest date accepted today is {oldest:%Y%m%d}" in str(err.value)


def test_dates_default_to_the_data_interval_in_pacific_time() -> None:
    op = LeanplumExportOperator(task_id="t")
    now = datetime.now(UTC)
    start = pt(*(now.astimezone(PACIFIC) - timedelta(days=3)).timetuple()[:3])
    context = {"data_interval_start": start.astimezone(UTC), "data_interval_end": (start + timedelta(days=1)).astimezone(UTC)}
    op.validate(context)  # type: ignore[arg-type]
    window = op.window(context)  # type: ignore[arg-type]
    assert window["start_date"] == window["end_date"] == f"{start:%Y%m%d}"
    # No data interval (the Trigger button): the last complete Pacific day before the run's run_after.
    class Run:
        data_interval_start = data_interval_end = None
        run_after = (start + timedelta(days=1, hours=2)).astimezone(UTC)

    manual = {"dag_run": Run()}
    assert op.window(manual)["start_date"] == op.window(manual)["end_date"] == f"{start:%Y%m%d}"  # type: ignore[arg-type]
    assert leanplum_day(Run()) == f"{start:%Y%m%d}"
    Run.run_after = (start + timedelta(hours=23)).astimezone(UTC)  # the same Pacific day, not yet complete
    assert leanplum_day(Run()) == f"{start - timedelta(days=1):%Y%m%d}"
    scheduled = type("Scheduled", (), context)()
    assert leanplum_day(scheduled) == f"{start:%Y%m%d}"
    # A zero-length interval (cron trigger timetable, manual run): the last complete Pacific day.
    midnight = start + timedelta(days=1)
    zero = {"data_interval_start": midnight.astimezone(UTC), "data_interval_end": midnight.astimezone(UTC)}
    assert op.window(zero)["start_date"] == op.window(zero)["end_date"] == f"{start:%Y%m%d}"  # type: ignore[arg-type]
    afternoon = (start + timedelta(days=1, hours=15)).astimezone(UTC)
    assert op.window({"data_interval_start": afternoon, "data_interval_end": afternoon})["start_date"] == f"{start:%Y%m%d}"  # type: ignore[arg-type]


def test_s3_and_callback_options_are_checked() -> None:
    today = leanplum_date(time.time())
    with pytest.raises(ExportInputError, match="compress_data"):
        _validate(export_start_date=today, compress_data=True)
    with pytest.raises(ExportInputError, match="callback_url"):
        _validate(export_start_date=today, callback_url="http://example.com/hook")


def test_streaming_needs_a_variable_and_must_wait() -> None:
    with pytest.raises(ExportInputError, match="watermark_variable"):
        LeanplumStreamingExportOperator(task_id="s", watermark_variable="").validate({})  # type: ignore[arg-type]
    with pytest.raises(ExportInputError, match="wait_for_completion"):
        LeanplumStreamingExportOperator(task_id="s", watermark_variable="v", wait_for_completion=False).validate({})  # type: ignore[arg-type]


# ---- answers ---------------------------------------------------------------------------------------
def _hook() -> LeanplumHook:
    return LeanplumHook(conn_id="leanplum_unit")


def test_parse_finished_json_job_keeps_no_url() -> None:
    url = "https://leanplum_export.storage.googleapis.com/export-1-2-output-0?Expires=1&Signature=abcdef123456"
    payload = {"response": [{"success": True, "jobId": "export_1_2", "state": "FINISHED", "files": [url],
                             "numSessions": 101, "numBytes": 36590}]}
    job = _hook().parse_job("export_1_2", payload)
    assert job.state == JobState.SUCCESS and job.raw_state == "FINISHED"
    assert job.extra == {"numSessions": 101, "numBytes": 36590}
    (f,) = job.files
    assert (f.key, f.name, f.row_format, f.rows, f.resource) == ("0", "export-1-2-output-0.json", "jsonl", 101, "sessions")
    assert "Signature" not in json.dumps(job.to_dict()) and "googleapis" not in json.dumps(job.to_dict())


def test_parse_csv_family_by_type() -> None:
    urls = [f"https://h/export-1-2-output{kind}-{n}?Signature=x" for kind in ("sessions", "eventparameters") for n in (0, 1)]
    payload = {"response": [{"success": True, "state": "FINISHED", "files": urls, "numSessions": 9, "numBytes": 10}]}
    job = _hook().parse_job("j", payload)
    assert [(f.name, f.resource, f.row_format, f.rows) for f in job.files] == [
        ("sessions/export-1-2-outputsessions-0.csv", "sessions", "csv", None),
        ("sessions/export-1-2-outputsessions-1.csv", "sessions", "csv", None),
        ("eventparameters/export-1-2-outputeventparameters-0.csv", "eventparameters", "csv", None),
        ("eventparameters/export-1-2-outputeventparameters-1.csv", "eventparameters", "csv", None),
    ]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"nope": 1}, "'response' list"),
        ({"response": []}, "'response' list"),
        ({"response": ["x"]}, "response[0]"),
        ({"response": [{"success": True}]}, "'state'"),
        ({"response": [{"success": True, "state": "FINISHED", "files": "u"}]}, "'files'"),
        ({"response": [{"success": True, "state": "FINISHED", "files": [], "numSessions": "7"}]}, "'numSessions'"),
    ],
)
def test_malformed_answers_name_the_field(payload: object, field: str) -> None:
    with pytest.raises(VendorHTTPError) as err:
        _hook().parse_job("j", payload)
    assert field in str(err.value)


def test_states_map_and_failures_carry_the_vendor_words() -> None:
    hook = _hook()
    for raw, state in (("PENDING", JobState.PENDING), ("RUNNING", JobState.RUNNING), ("FAILED", JobState.FAILED)):
        assert hook.parse_job("j", {"response": [{"success": True, "state": raw}]}).state == state
    failed = hook.parse_job("j", {"response": [{"success": True, "state": "FAILED", "error": {"message": "disk full"}}]})
    assert failed.message == "disk full"
    with pytest.raises(VendorHTTPError, match="Service is under maintenance"):
        hook.parse_job("j", {"response": [{"success": False, "error": {"message": "Service is under maintenance"}}]})


def test_state_is_read_from_state_or_status() -> None:
    """The public example says ``state``, the seed's table ``status``: both are read."""
    hook = _hook()
    assert hook.parse_job("j", {"response": [{"success": True, "status": "RUNNING"}]}).state == JobState.RUNNING
    job = hook.parse_job("j", {"response": [{"success": True, "status": "FINISHED", "files": [], "numSessions": 0}]})
    assert job.state == JobState.SUCCESS and job.raw_state == "FINISHED"
    assert hook.parse_job("j", {"response": [{"success": True, "state": "FAILED", "status": "RUNNING"}]}).state == JobState.FAILED
    with pytest.raises(VendorHTTPError, match=r"'state' \(or 'status'\)"):
        hook.parse_job("j", {"response": [{"success": True, "status": 3}]})


@pytest.mark.parametrize("words", ["Export job not found", "No such job: export_1_2", "Job export_1_2 has expired",
                                   "Unknown jobId export_1_2"])
def test_a_job_leanplum_no_longer_knows_reads_as_failed_gone(words: str) -> None:
    """So the engine and the streaming operator export again instead of failing on every later run."""
    hook = _hook()
    job = hook.parse_job("export_1_2", {"response": [{"success": False, "error": {"message": words}}]})
    assert job.state == JobState.FAILED and job.raw_state == GONE_STATE and words in (job.message or "")
    gone = hook.job_from_error("export_1_2", VendorHTTPError("leanplum", 404, "Export job 'export_1_2' not found."))
    assert gone.state == JobState.FAILED and gone.raw_state == GONE_STATE
    assert hook.job_from_error("j", VendorHTTPError("leanplum", 400, words)).raw_state == GONE_STATE
    with pytest.raises(VendorHTTPError):  # other refusals keep failing with the vendor's words
        hook.job_from_error("j", VendorHTTPError("leanplum", 400, "Service is under maintenance"))
    with pytest.raises(VendorAuthError):  # a refused key is never "the job is gone"
        hook.job_from_error("j", VendorAuthError("leanplum", 401, "Incorrect appId or clientKey."))


def test_a_no_data_export_reads_as_finished_with_zero_files_without_a_call() -> None:
    import asyncio

    hook = _hook()  # its connection does not exist: any call to Leanplum would fail
    job_id = NO_DATA_PREFIX + "abc"
    for job in (hook.get_job(job_id), asyncio.run(hook.aget_job(job_id))):
        assert job.state == JobState.SUCCESS and job.files == [] and job.extra["numSessions"] == 0
        assert job.hook_class and job.hook_class.endswith("LeanplumHook")


def test_describe_error_reads_the_wrapper_and_quota_words() -> None:
    hook = _hook()
    body = json.dumps({"response": [{"success": False, "error": {"message": "Incorrect appId or clientKey."}}]}).encode()
    assert hook.describe_error(401, body) == "Incorrect appId or clientKey."
    assert hook.describe_error(502, b"<html>bad gateway</html>") == "<html>bad gateway</html>"
    assert hook.is_quota_message("Export limit reached: you may only export data 24 times per day.")
    assert not hook.is_quota_message("You cannot export data older than 60 days (startDate must be 20260101 or later).")


@pytest.mark.parametrize("words", [
    "Export limit reached: you may only export data 24 times per day.",
    "Daily export quota exceeded.",
    "You have exceeded your quota of 24 exports.",
    "Rate limit exceeded, try again later",
    "You have been rate-limited.",
    "Limit of 24 exports per day reached",
    "Too many exports today",
    "API limits: exportData",
])
def test_quota_refusals_are_recognised_in_many_wordings(words: str) -> None:
    assert LeanplumHook.is_quota_message(words)


@pytest.mark.parametrize("words", [
    "Exports are disabled for this app.",
    "Internal error",
    "startDate is beyond the 60-day limit",
    "Invalid endTime: above the limit",
    "Incorrect appId or clientKey.",
])
def test_refusals_about_the_request_or_anything_else_are_not_quota(words: str) -> None:
    assert not LeanplumHook.is_quota_message(words)


def test_quota_retry_is_the_sooner_of_backoff_and_pacific_midnight() -> None:
    hook = LeanplumHook(conn_id="x", quota_retry_seconds=5)
    hook._conn = type("C", (), {"extra_dejson": {}})()
    before = time.time()
    at = hook._quota_retry_at()
    assert before + 5 - 1 <= at <= time.time() + 5
    far = LeanplumHook(conn_id="x", quota_retry_seconds=10 * 86400)
    far._conn = hook._conn
    assert far._quota_retry_at() == pytest.approx(next_pacific_midnight() + 60, abs=2)
    assert LeanplumHook(conn_id="x", quota_retry_seconds=2).hook_kwargs() == {"quota_retry_seconds": 2}


def test_plain_date_objects_are_accepted() -> None:
    today = datetime.now(PACIFIC).date()
    op = _validate(export_start_date=today)
    assert op.window({})["start_date"] == f"{today:%Y%m%d}"  # type: ignore[arg-type]


def test_urllib3_request_lines_lose_their_query_values() -> None:
    from airflow_export_providers.core.redact import redact_text

    line = 'http://127.0.0.1:1 "GET /api?appId=app_1234&clientKey=exp_secret_value&action=exportData HTTP/1.1" 200 89'
    out = redact_text(line)
    assert "exp_secret_value" not in out and "app_1234" not in out
    assert '"GET /api?appId=***&clientKey=***&action=exportData HTTP/1.1"' in out
