"""POND pieces that need no server: timestamp format, snapshot ids, link expiry, answer validation."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any

import pendulum
import pytest

from airflow_export_providers.core.errors import ExportInputError, VendorHTTPError
from airflow_export_providers.core.job import JobState
from airflow_export_providers.hooks.pond import PondHook, PondTokenAuth, link_expires_at, snapshot_id
from airflow_export_providers.operators.pond import PondSnapshotOperator, pond_timestamp

HREF = "https://api.sgipond.com/insights/snapshots/c5e99fed-e2d4-471f-88f7-123456789"


@pytest.mark.parametrize(("value", "expected"), [
    (datetime(2019, 3, 13, 11, 0, tzinfo=timezone(timedelta(hours=-7))), "2019-03-13T18:00:00.000Z"),
    (pendulum.datetime(2019, 3, 13, 18, 0, 0, 123456, tz="UTC"), "2019-03-13T18:00:00.123Z"),
    ("2019-03-13T18:00:00Z", "2019-03-13T18:00:00.000Z"),
    ("2019-03-13 10:00:00-08:00", "2019-03-13T18:00:00.000Z"),  # how {{ data_interval_start }} may render
    ("2019-03-13T18:00:00.999+00:00", "2019-03-13T18:00:00.999Z"),
])
def test_timestamps_are_iso_utc_with_milliseconds(value: Any, expected: str) -> None:
    assert pond_timestamp(value, "created_at_from") == expected


@pytest.mark.parametrize(("value", "message"), [
    (datetime(2019, 3, 13, 18), "has no timezone"),
    ("2019-03-13T18:00:00", "has no timezone"),
    ("13/03/2019", "is not an ISO 8601 timestamp"),
    (1552500000, "expected a timezone-aware datetime"),
])
def test_bad_timestamps_name_the_field(value: Any, message: str) -> None:
    with pytest.raises(ExportInputError, match=f"created_at_to: .*{message}|created_at_to: {message}"):
        pond_timestamp(value, "created_at_to")


def test_operator_refuses_bad_entity() -> None:
    with pytest.raises(ExportInputError, match="entity"):
        PondSnapshotOperator(task_id="t", entity="Event; drop", created_at_from="2019-03-13T18:00:00Z",
                             created_at_to="2019-03-28T18:00:00Z").validate({})  # type: ignore[arg-type]


def test_a_run_without_a_data_interval_snapshots_the_last_complete_day() -> None:
    """A Trigger-button run (no logical date, no data interval) or a zero-length interval: the UTC day
    that ended last before the run, taken from the run's run_after (the same for every try)."""
    from types import SimpleNamespace

    op = PondSnapshotOperator(task_id="t")
    run = SimpleNamespace(run_after=pendulum.datetime(2026, 3, 14, 9, 30, tz="UTC"))
    day = ("2026-03-13T00:00:00.000Z", "2026-03-14T00:00:00.000Z")
    assert op._range({"dag_run": run}) == day  # type: ignore[typeddict-item]
    instant = pendulum.datetime(2026, 3, 14, 0, 0, tz="UTC")  # a cron trigger timetable's zero-length interval
    assert op._range({"data_interval_start": instant, "data_interval_end": instant}) == day  # type: ignore[typeddict-item]
    interval = {"data_interval_start": pendulum.datetime(2026, 3, 1, tz="UTC"), "data_interval_end": pendulum.datetime(2026, 3, 2, tz="UTC")}
    assert op._range(interval) == ("2026-03-01T00:00:00.000Z", "2026-03-02T00:00:00.000Z")  # type: ignore[arg-type]
    op.validate({"dag_run": run})  # type: ignore[typeddict-item]


def test_snapshot_id_from_href_or_bare_id() -> None:
    assert snapshot_id(HREF) == "c5e99fed-e2d4-471f-88f7-123456789"
    assert snapshot_id(HREF + "/") == "c5e99fed-e2d4-471f-88f7-123456789"
    assert snapshot_id("c5e99fed") == "c5e99fed"
    with pytest.raises(ExportInputError, match="snapshot"):
        snapshot_id("https://api.sgipond.com/")


def test_status_request_goes_to_the_configured_host_only() -> None:
    hook = PondHook("x")
    hook._conn = type("C", (), {"host": "https://proxy.example.com", "port": None, "extra_dejson": {}})()
    req = hook.status_request("https://elsewhere.example.net/insights/snapshots/abc")
    assert req.url == "https://proxy.example.com/insights/snapshots/abc" and req.auth


def test_link_expiry_sigv4_and_sigv2() -> None:
    v4 = "https://b.s3.amazonaws.com/k?X-Amz-Date=20190313T180000Z&X-Amz-Expires=3600&X-Amz-Signature=abc"
    assert link_expires_at(v4) == datetime(2019, 3, 13, 19, tzinfo=timezone.utc).timestamp()
    assert link_expires_at("https://b.s3.amazonaws.com/k?AWSAccessKeyId=ASIA&Expires=1552503600&Signature=x") == 1552503600
    assert link_expires_at("https://b.s3.amazonaws.com/k") is None


def item(state: str, **kw: Any) -> dict[str, Any]:
    return {"href": None, "size": None, "count": None, "state": state,
            "query": {"entity": "event", "created_at": ["2019-03-13T18:00:00.000Z", "2019-03-28T18:00:00.000Z"]}, **kw}


def done(i: int) -> dict[str, Any]:
    return item("complete", href=f"https://b.s3.amazonaws.com/s/event_{i:03d}?X-Amz-Signature=secretsig{i}", size=10 + i, count=i)


def test_parse_job_states_and_files() -> None:
    hook = PondHook("pond_default")
    assert hook.parse_job(HREF, {"result": "OK", "snapshot": {"href": HREF, "items": [item("pending")]}}).state == JobState.PENDING
    running = hook.parse_job(HREF, {"href": HREF, "items": [done(0), item("pending")]})
    assert running.state == JobState.RUNNING and running.raw_state == "complete,pending" and running.files == []
    job = hook.parse_job(HREF, {"href": HREF, "items": [done(0), done(1)]})
    assert job.state == JobState.SUCCESS
    assert [(f.key, f.name, f.size, f.rows, f.row_format) for f in job.files] == [
        ("0", "event_000.csv", 10, 0, "csv"), ("1", "event_001.csv", 11, 1, "csv")]
    assert "secretsig" not in str(job.to_dict()), "links are resolved at download time, never stored"
    assert hook.parse_job(HREF, {"href": HREF, "items": [done(0), item("failed")]}).state == JobState.FAILED


def test_unknown_state_is_logged_with_its_raw_value(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        job = PondHook("pond_default").parse_job(HREF, {"href": HREF, "items": [item("exporting")]})
    assert job.state == JobState.RUNNING and job.raw_state == "exporting"
    assert "unknown state 'exporting'" in caplog.text


@pytest.mark.parametrize(("payload", "field"), [
    ({"href": HREF}, "no items list"),
    ({"href": HREF, "items": ["x"]}, r"items\[0\] is not an object"),
    ({"href": HREF, "items": [{**done(0), "size": None}]}, r"items\[0\]\.size is None"),
    ({"href": HREF, "items": [{**done(0), "count": "12"}]}, r"items\[0\]\.count is '12'"),
    ({"href": HREF, "items": [{**done(0), "href": None}]}, r"items\[0\]\.href is missing"),
])
def test_malformed_answers_name_the_field(payload: dict[str, Any], field: str) -> None:
    with pytest.raises(VendorHTTPError, match=field):
        PondHook("pond_default").parse_job(HREF, payload)


def test_token_request_is_the_seeds_and_refusals_are_clear() -> None:
    auth = PondTokenAuth("https://sgipond.auth.us-west-2.amazoncognito.com/oauth2/token",
                         "3fake23gasjh12fake55bgk3jfi14fake", "329847ywqejhd8293giu2sh23yde9238dghkjhwd8237geu2bgi23897",
                         "pond/insights.snapshots")
    req = auth.token_request()
    assert req.data == "grant_type=client_credentials&scope=pond/insights.snapshots"
    assert req.headers["Content-type"] == "application/x-www-form-urlencoded" and req.auth is False
    assert req.headers["Authorization"] == (
        "Basic M2Zha2UyM2dhc2poMTJmYWtlNTViZ2szamZpMTRmYWtlOjMyOTg0N3l3cWVqaGQ4MjkzZ2l1MnNoMjN5ZGU5MjM4ZGdoa2pod2Q4MjM3Z2V1MmJnaTIzODk3"
    )
    assert "Client secret" in auth.describe_error(400, b'{"error":"invalid_client"}')
    assert "'pond/insights.snapshots'" in auth.describe_error(400, b'{"error":"invalid_scope"}')


def test_an_s3_refusal_of_a_presigned_link_is_not_called_a_scope_problem() -> None:
    body = b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>'
    message = PondHook.describe_error(PondHook.__new__(PondHook), 403, body)
    assert message == "the presigned download link was refused by S3: AccessDenied: Request has expired"
    assert "scope" not in message


# ---- CSV row counts: records, not newlines ---------------------------------------------------------
def _records(text: str) -> int:
    """What Python's csv module reads: the ground truth for a record count (header included)."""
    import csv
    import io

    return sum(1 for _ in csv.reader(io.StringIO(text, newline="")))


def _counted(data: bytes, chunk: int) -> int:
    from airflow_export_providers.core.landing import _CsvRecordCounter

    counter = _CsvRecordCounter()
    for start in range(0, len(data), chunk):
        counter.update(data[start:start + chunk])
    return counter.lines()


FIELDS = ["plain", "with, comma", "multi\nline", 'a "quoted" word', "", "\r\n", '"', "ends with newline\n", "é ünïcode"]


def test_csv_rows_are_records_even_with_newlines_inside_quoted_fields() -> None:
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(["event_id", "note"])
    writer.writerows([[str(i), FIELDS[i % len(FIELDS)]] for i in range(50)])
    data = buf.getvalue().encode()
    assert data.count(b"\n") > 51, "the sample really has newlines inside fields"
    for chunk in (1, 2, 3, 5, 64, 1 << 20):  # a chunk may end inside a field, between "" or \r and \n
        assert _counted(data, chunk) == 51, chunk


def test_csv_record_count_matches_the_csv_module_on_any_file() -> None:
    import csv
    import io

    from hypothesis import given, settings
    from hypothesis import strategies as st

    # no bare \r in generated text: csv.writer leaves it unquoted with a \n terminator, and a bare \r
    # ending a record is not CSV (the counter, like RFC 4180, ends records at newlines only)
    text = st.text(alphabet=st.characters(blacklist_characters="\r", blacklist_categories=("Cs",)), max_size=6)
    rows = st.lists(st.lists(st.sampled_from(FIELDS) | text, min_size=1, max_size=4), max_size=12)

    @settings(max_examples=300, deadline=None)
    @given(rows=rows, terminator=st.sampled_from(["\n", "\r\n"]), strip_last=st.booleans(),
           chunk=st.integers(min_value=1, max_value=40))
    def check(rows: list[list[str]], terminator: str, strip_last: bool, chunk: int) -> None:
        buf = io.StringIO()
        csv.writer(buf, lineterminator=terminator).writerows(rows)
        text = buf.getvalue()
        if strip_last and text.endswith(terminator):
            text = text[: -len(terminator)]  # a last record without its newline still counts
        assert _counted(text.encode(), chunk) == _records(text)

    check()
