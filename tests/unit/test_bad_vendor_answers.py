"""Malformed vendor answers, fed to every hook's parsers: one clear ExportError, never a crash or a hang.

Parsing is pure, so hypothesis drives it directly: valid answers with one part deleted or replaced by
a value of another type (NaN, infinities, huge numbers, broken URLs, nested junk), arbitrary JSON,
and raw bodies that are not JSON at all (HTML error pages, empty, truncated, huge). The outcome must
be an ExportJob or an ``ExportError`` with a short message — a KeyError, TypeError, AttributeError,
ValueError or OverflowError escaping from a parser would crash the worker or the triggerer.
Then the same kind of answers go over real HTTP (sandbox faults with a 200 body) through the sync
client (``hook.get_job``) and the triggerer's path (``ExportJobTrigger.run``: one "error" event).

Last, invalid parameters of every vendor operator, sensor and transfer operator: an ExportInputError
naming the parameter before any request reaches the sandbox, and nothing left under a final key.
Examples are bounded (``settings(max_examples=...)``) so the module runs in well under a minute.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_export_providers.core.errors import ExportError, VendorHTTPError
from airflow_export_providers.core.hook import ExportHook
from airflow_export_providers.core.http import parse_json
from airflow_export_providers.core.job import ExportJob, JobState
from airflow_export_providers.hooks.indicative import IndicativeHook
from airflow_export_providers.hooks.leanplum import LeanplumHook
from airflow_export_providers.hooks.mobile_engagement import MobileEngagementHook
from airflow_export_providers.hooks.mx import MxSnapshotsHook, _more_pages
from airflow_export_providers.hooks.pond import PondHook, PondTokenAuth

pytestmark = pytest.mark.timeout(120)

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MAX_MESSAGE = 2000  # a clear message is short, whatever the vendor sent

POND_HREF = "https://api.sgipond.com/insights/snapshots/c5e99fed-e2d4-471f"


def fake_conn(**extra: Any) -> SimpleNamespace:
    return SimpleNamespace(host="https://vendor.example.com", port=None, login="login-id", password="pw-secret",
                           extra_dejson=extra)


def hook_of(cls: type[ExportHook], **extra: Any) -> Any:
    hook = cls(f"{cls.vendor}_test")
    hook._conn = fake_conn(**extra)
    return hook


# ---- valid answers, one per parser ------------------------------------------------------------------
def pond_answer() -> Any:
    item = {"href": "https://b.s3.amazonaws.com/s/event_000.csv?X-Amz-Date=20260101T000000Z&X-Amz-Expires=3600"
                    "&X-Amz-Signature=abcdef0123456789abcdef",
            "size": 10, "count": 2, "state": "complete", "query": {"entity": "event"}}
    return {"href": POND_HREF, "items": [item, copy.deepcopy(item)]}


def indicative_answer() -> Any:
    return {"exportId": "e1", "status": "COMPLETE", "startTime": 1, "endTime": 2, "filename": "s3://up/path/e1.csv",
            "segment": {"segmentId": "s1", "name": "Recent", "type": "Static", "lastRun": 3, "projectId": "p"}}


def leanplum_answer() -> Any:
    return {"response": [{"success": True, "jobId": "export_1", "state": "FINISHED", "numSessions": 3, "numBytes": 10,
                          "files": ["https://lp.example.com/export-1-output-0?sig=abc", "https://lp.example.com/x-outputsessions-0.csv"]}]}


def mx_answer() -> Any:
    entry = {"url": "https://logs.example.com/snapshots/CSS-1/files/accounts-1.avro.gz", "name": "accounts-1.avro.gz",
             "resource_type": "accounts", "checksum": "0" * 32, "file_size": 10, "number_of_records": 2, "guid": "F-1"}
    signed = {**entry, "url": "https://cdn.example.net/u-1.avro.gz?sig=abcdef", "name": "users-1.avro.gz", "resource_type": "users"}
    return {"generated_at": "2999-01-01T00:00:00Z", "files": [entry, signed]}


def me_answer() -> Any:
    return {"id": "t1", "state": "Succeeded", "description": "d", "dateCreated": "2026-01-01T00:00:00Z",
            "dateCompleted": "2026-01-01T00:01:00Z", "exportType": "Event", "errorDetails": None}


def segments_answer() -> Any:
    return [{"segmentId": "s1", "name": "Recent", "type": "Static"}, {"segmentId": "s2", "name": "Old", "type": "Dynamic"}]


def token_answer() -> Any:
    return {"access_token": "tok-abcdef", "expires_in": 3600, "token_type": "Bearer"}


def pond_token_auth() -> PondTokenAuth:
    return PondTokenAuth("https://auth.example.com/oauth2/token", "client", "client-secret-value", "pond/insights.snapshots")


# parser name -> (call, valid answer)
PARSERS: dict[str, tuple[Callable[[Any], Any], Callable[[], Any]]] = {
    "pond.parse_job": (lambda p: hook_of(PondHook).parse_job(POND_HREF, p), pond_answer),
    "indicative.parse_job": (lambda p: hook_of(IndicativeHook).parse_job("e1", p), indicative_answer),
    "indicative.parse_segments": (lambda p: hook_of(IndicativeHook).parse_segments(p), segments_answer),
    "leanplum.parse_job": (lambda p: hook_of(LeanplumHook).parse_job("export_1", p), leanplum_answer),
    "mx.parse_job": (lambda p: hook_of(MxSnapshotsHook).parse_job("CSS-1", p), mx_answer),
    "mobile_engagement.parse_job": (lambda p: hook_of(MobileEngagementHook).parse_job("t1", p), me_answer),
    "pond.parse_token": (lambda p: pond_token_auth().parse_token(p), token_answer),
    "mx.pagination": (lambda p: list(_more_pages(p)), lambda: {"files": [], "pagination": {"current_page": 1, "total_pages": 3}}),
}


def outcome(call: Callable[[Any], Any], payload: Any) -> Any:
    """The parser's result, or its ExportError (which must carry a short, non-empty message)."""
    try:
        return call(payload)
    except ExportError as err:
        message = str(err)
        assert message.strip(), f"{type(err).__name__} without a message"
        assert len(message) < MAX_MESSAGE, f"message of {len(message)} characters"
        return err


def test_valid_answers_parse() -> None:
    """The baseline the mutations start from really is valid (else the properties below prove little)."""
    for name, (call, answer) in PARSERS.items():
        result = call(answer())
        assert not isinstance(result, Exception), name
        if isinstance(result, ExportJob):
            assert result.state == JobState.SUCCESS, name
            assert result.files or name.startswith("mobile_engagement"), name  # its files come from the blob listing


# ---- strategies -------------------------------------------------------------------------------------
BROKEN_URLS = st.sampled_from([
    "", "/", "https://", "https://[", "http://[::1", "s3://", "s3://bucket", "ftp://x/y", "https://h/p?%zz", "\x00",
    "https://h:99999/p", "https://h:port/p", "https://user:pw@h/p?sig=x", "//h/p", "javascript:alert(1)",
])
# Values a JSON decoder really produces that break naive int()/float()/urlsplit()/fromtimestamp() calls.
EDGES = st.sampled_from([
    float("inf"), float("-inf"), float("nan"), 10**400, -(10**400), 1e300, -1, 0, 1.5, True, "", "0", "-1", "1e999",
    "https://[", "https://h:99999/p", [], {}, [None], {"": None},
])
SCALARS = st.one_of(
    EDGES, EDGES, st.none(), st.booleans(), st.integers(), st.integers(min_value=10**20, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30), BROKEN_URLS,
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12,
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every location inside a JSON value (dict keys and list indexes)."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += paths(child, (*prefix, index))
    return found


def mutate(payload: Any, path: tuple[Any, ...], replacement: Any, delete: bool) -> Any:
    parent = payload
    for step in path[:-1]:
        parent = parent[step]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = replacement
    return payload


@pytest.mark.parametrize("parser", sorted(PARSERS))
@FAST
@given(data=st.data())
def test_one_field_missing_or_of_the_wrong_type(parser: str, data: st.DataObject) -> None:
    call, answer = PARSERS[parser]
    payload = answer()
    path = data.draw(st.sampled_from(paths(payload)), label="path")
    delete = data.draw(st.booleans(), label="delete")
    replacement = None if delete else data.draw(JSON_VALUES, label="replacement")
    result = outcome(call, mutate(payload, path, replacement, delete))
    if isinstance(result, ExportJob):
        json.dumps(result.to_dict(), allow_nan=True)  # still a plain, serialisable job (XCom, trigger event)


@pytest.mark.parametrize("parser", sorted(PARSERS))
@FAST
@given(payload=JSON_VALUES)
def test_arbitrary_json(parser: str, payload: Any) -> None:
    outcome(PARSERS[parser][0], payload)


# ---- bodies that are not JSON -----------------------------------------------------------------------
HTML_PAGE = (b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1>"
             b"<p>The proxy server received an invalid response from an upstream server.</p></body></html>")
BAD_BODIES = st.one_of(
    st.sampled_from([b"", b"   \n", HTML_PAGE, b"<?xml version='1.0'?><Error><Code>AccessDenied</Code></Error>",
                     b"{", b'{"state": ', b"null", b"[]", b"\xff\xfe\x00garbage", b"OK", b"NaN", b"Infinity"]),
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
)


@pytest.mark.parametrize("parser", sorted(PARSERS))
@FAST
@given(body=BAD_BODIES)
def test_raw_bodies_that_are_not_the_answer(parser: str, body: bytes) -> None:
    """What the HTTP client hands a parser: parse_json's own error, or the parser's, nothing else."""
    try:
        payload = parse_json("vendor", body, "https://vendor.example.com/status?key=k")
    except VendorHTTPError as err:
        assert "JSON" in str(err) and len(str(err)) < MAX_MESSAGE
        return
    outcome(PARSERS[parser][0], payload)


@pytest.mark.parametrize("body", [b"", b"  \r\n ", HTML_PAGE, b'{"truncated": [1, 2', b"\xff\xfe\x00"])
def test_non_json_body_names_what_came_instead(body: bytes) -> None:
    with pytest.raises(VendorHTTPError) as caught:
        parse_json("pond", body, "https://api.example.com/s?clientKey=abcdef123456")
    message = str(caught.value)
    assert ("empty body where JSON was expected" in message) if not body.strip() else ("invalid JSON answer" in message)
    assert "abcdef123456" not in message
    if body == HTML_PAGE:
        assert "502 Bad Gateway" in message  # the reader sees what the proxy said


def test_huge_bodies_give_a_short_message() -> None:
    huge_html = b"<html><body>" + b"x" * (8 * 1024 * 1024) + b"</body></html>"
    with pytest.raises(VendorHTTPError) as caught:
        parse_json("mx", huge_html)
    assert len(str(caught.value)) < 400
    # a huge *valid* answer of the wrong shape: still one short error
    for name, (call, _answer) in PARSERS.items():
        if name == "mx.pagination":
            continue  # no pagination field simply means one page
        result = outcome(call, {"unexpected": ["y" * 1000] * 2000, "junk": "z" * 1_000_000})
        assert isinstance(result, ExportError), name


def test_huge_valid_listing_is_parsed_not_refused() -> None:
    """Many files is normal (MX splits resources): a big answer is no error by itself."""
    entries = [{"url": f"https://logs.example.com/f/{i}.avro.gz", "name": f"accounts-{i}.avro.gz", "resource_type": "accounts",
                "file_size": i, "number_of_records": i} for i in range(5000)]
    job = hook_of(MxSnapshotsHook).parse_job("CSS-1", {"files": entries})
    assert job.state == JobState.SUCCESS and len(job.files) == 5000


# ---- the message names the field --------------------------------------------------------------------
def _set(answer: Callable[[], Any], path: tuple[Any, ...], value: Any, delete: bool = False) -> Any:
    return mutate(answer(), path, value, delete)


NAMED = [
    ("pond.parse_job", _set(pond_answer, ("items",), None, delete=True), "items"),
    ("pond.parse_job", _set(pond_answer, ("items", 0, "size"), "10"), "items[0].size"),
    ("pond.parse_job", _set(pond_answer, ("items", 1, "count"), -1), "items[1].count"),
    ("pond.parse_job", _set(pond_answer, ("items", 0, "href"), None, delete=True), "items[0].href"),
    ("pond.parse_job", _set(pond_answer, ("items", 0), "complete"), "items[0]"),
    ("indicative.parse_job", _set(indicative_answer, ("status",), None, delete=True), "'status'"),
    ("indicative.parse_job", _set(indicative_answer, ("filename",), 42), "'filename'"),
    ("indicative.parse_job", _set(indicative_answer, ("filename",), "ftp://h/e1.csv"), "'filename'"),
    ("indicative.parse_job", [indicative_answer()], "expected a JSON object"),
    ("indicative.parse_segments", _set(segments_answer, (1, "segmentId"), None, delete=True), "'segmentId'"),
    ("indicative.parse_segments", _set(segments_answer, (0, "name"), 7), "'name'"),
    ("indicative.parse_segments", {"segments": segments_answer()}, "expected a JSON array"),
    ("leanplum.parse_job", _set(leanplum_answer, ("response",), None, delete=True), "'response'"),
    ("leanplum.parse_job", _set(leanplum_answer, ("response", 0), "FINISHED"), "'response[0]'"),
    ("leanplum.parse_job", _set(leanplum_answer, ("response", 0, "state"), None, delete=True), "'state'"),
    ("leanplum.parse_job", _set(leanplum_answer, ("response", 0, "files"), "https://x"), "'files'"),
    ("leanplum.parse_job", _set(leanplum_answer, ("response", 0, "numSessions"), "101"), "'numSessions'"),
    ("leanplum.parse_job", _set(leanplum_answer, ("response", 0, "numBytes"), 1.5), "'numBytes'"),
    ("mx.parse_job", _set(mx_answer, ("files",), None, delete=True), "'files'"),
    ("mx.parse_job", _set(mx_answer, ("files",), "a.avro.gz"), "'files'"),
    ("mx.parse_job", _set(mx_answer, ("files", 0, "file_size"), "ten"), "files[0].file_size"),
    ("mx.parse_job", _set(mx_answer, ("files", 1, "number_of_records"), -3), "files[1].number_of_records"),
    ("mx.parse_job", _set(mx_answer, ("files", 0, "checksum"), 12), "'checksum'"),
    ("mx.parse_job", _set(mx_answer, ("files", 0, "url"), ["x"]), "'url'"),
    ("mobile_engagement.parse_job", _set(me_answer, ("state",), None, delete=True), "'state'"),
    ("mobile_engagement.parse_job", _set(me_answer, ("state",), 3), "'state'"),
    ("pond.parse_token", _set(token_answer, ("access_token",), None, delete=True), "access_token"),
    ("pond.parse_token", _set(token_answer, ("expires_in",), "soon"), "expires_in"),
]


@pytest.mark.parametrize(("parser", "payload", "field"), NAMED, ids=[f"{p}:{f}" for p, _, f in NAMED])
def test_the_message_names_the_field(parser: str, payload: Any, field: str) -> None:
    with pytest.raises(ExportError) as caught:
        PARSERS[parser][0](payload)
    assert field in str(caught.value)


HUGE = "9" * 200_000
HUGE_FIELDS = [
    ("pond.parse_job", _set(pond_answer, ("items", 0, "size"), HUGE)),
    ("mx.parse_job", _set(mx_answer, ("files", 0, "file_size"), HUGE)),
    ("mx.parse_job", _set(mx_answer, ("files", 0, "number_of_records"), "x" + HUGE)),
    ("mx.pagination", {"pagination": {"total_pages": "x" + HUGE}}),
    ("indicative.parse_job", _set(indicative_answer, ("filename",), "s3://" + HUGE)),
    ("leanplum.parse_job", _set(leanplum_answer, ("response", 0, "numBytes"), HUGE)),
    ("pond.parse_token", _set(token_answer, ("expires_in",), "x" + HUGE)),
    ("pond.parse_token", _set(token_answer, ("expires_in",), [10**400] * 50)),
]


@pytest.mark.parametrize(("parser", "payload"), HUGE_FIELDS, ids=[p for p, _ in HUGE_FIELDS])
def test_a_huge_wrong_value_is_not_quoted_whole(parser: str, payload: Any) -> None:
    result = outcome(PARSERS[parser][0], payload)
    assert isinstance(result, ExportError) and len(str(result)) < 400


# Found by the properties above (each crashed with OverflowError / ValueError before the hooks checked them).
REGRESSIONS = [
    ("mx.parse_job", _set(mx_answer, ("files", 0, "file_size"), float("inf")), "files[0].file_size"),
    ("mx.parse_job", _set(mx_answer, ("files", 0, "url"), "https://["), "files[0]: field 'url'"),
    ("mx.parse_job", _set(mx_answer, ("files", 1, "url"), "https://cdn.example.net:99999/u?sig=x"), "files[1]: field 'url'"),
    ("mx.pagination", {"pagination": {"total_pages": float("inf")}}, "pagination"),
    ("mx.pagination", {"pagination": {"current_page": -17_179_869_184, "total_pages": 2}}, "pagination.current_page"),
    ("pond.parse_job", _set(pond_answer, ("items", 0, "href"), "https://[::1"), "items[0].href"),
    ("indicative.parse_job", _set(indicative_answer, ("filename",), "s3://[/e1.csv"), "'filename'"),
    ("leanplum.parse_job", _set(leanplum_answer, ("response", 0, "files"), ["https://["]), "'files'"),
    ("pond.parse_token", _set(token_answer, ("expires_in",), 10**400), "expires_in"),
    ("pond.parse_token", _set(token_answer, ("expires_in",), float("nan")), "expires_in"),
    ("pond.parse_token", _set(token_answer, ("expires_in",), -5), "expires_in"),
]


@pytest.mark.parametrize(("parser", "payload", "field"), REGRESSIONS, ids=[f"{p}:{f}" for p, _, f in REGRESSIONS])
def test_regressions_name_the_field(parser: str, payload: Any, field: str) -> None:
    with pytest.raises(ExportError) as caught:
        PARSERS[parser][0](payload)
    assert field in str(caught.value)


@pytest.mark.parametrize("generated_at", [float("inf"), float("nan"), 1e300, 10**30])
def test_unreadable_generation_time_is_ignored_not_a_crash(generated_at: Any) -> None:
    job = PARSERS["mx.parse_job"][0](_set(mx_answer, ("generated_at",), generated_at))
    assert job.state == JobState.SUCCESS and "generated_at" not in job.extra


def test_failed_task_with_structured_error_details_has_a_text_message() -> None:
    job = PARSERS["mobile_engagement.parse_job"][0]({**me_answer(), "state": "Failed", "errorDetails": {"code": "X"}})
    assert job.state == JobState.FAILED and isinstance(job.message, str) and "X" in job.message


# ---- unknown states: still running, raw state kept (until the job's deadline) ------------------------
UNKNOWN = [
    ("pond.parse_job", _set(pond_answer, ("items", 0, "state"), "exporting"), "exporting"),
    ("indicative.parse_job", _set(indicative_answer, ("status",), "QUEUED_FOR_RETRY"), "QUEUED_FOR_RETRY"),
    ("leanplum.parse_job", _set(leanplum_answer, ("response", 0, "state"), "COPYING"), "COPYING"),
    ("mobile_engagement.parse_job", _set(me_answer, ("state",), "Throttled"), "Throttled"),
]


@pytest.mark.parametrize(("parser", "payload", "raw"), UNKNOWN, ids=[u[0] for u in UNKNOWN])
def test_unknown_state_counts_as_running_with_its_raw_value(parser: str, payload: Any, raw: str) -> None:
    job = PARSERS[parser][0](payload)
    assert job.state == JobState.RUNNING and raw in str(job.raw_state) and job.files == []


@FAST
@given(raw=st.text(min_size=1, max_size=20))
def test_any_state_string_is_a_state_never_a_crash(raw: str) -> None:
    for parser, path in (("indicative.parse_job", ("status",)), ("leanplum.parse_job", ("response", 0, "state")),
                         ("mobile_engagement.parse_job", ("state",)), ("pond.parse_job", ("items", 0, "state"))):
        call, answer = PARSERS[parser]
        result = outcome(call, _set(answer, path, raw))
        if isinstance(result, ExportJob):
            assert result.raw_state is not None and raw in result.raw_state


# ---- the same over real HTTP: the worker's sync path and the triggerer's async path ------------------
# vendor -> (hook class, regex of its status route in the sandbox, a job id, words of the shape error)
STATUS_ROUTES: dict[str, tuple[type[ExportHook], str, str, str]] = {
    "pond": (PondHook, r"^/insights/snapshots/", "c5e99fed-e2d4", "no items list"),
    "leanplum": (LeanplumHook, r"^/api$", "export_1", "'response'"),
    "indicative": (IndicativeHook, r"^/service/v1/segments/export/", "e1", "'status'"),
    "mx": (MxSnapshotsHook, r"^/snapshots/[^/]+/files$", "CSS-1", "'files'"),
    "mobile_engagement": (MobileEngagementHook, r"/devices/exportTasks/", "t1", "'state'"),
}
HTTP_BODIES = {
    "html": (HTML_PAGE.decode(), "invalid JSON answer"),
    "empty": ("  \n", "empty body where JSON was expected"),
    "wrong-shape": ('{"unexpected": true, "items": "x", "files": 3}', None),
}


@pytest.fixture
def bad_answers(sandbox_state: Any, vendor_conns: dict[str, Any]) -> Any:
    from tests.support.secrets import register

    for conn_id, conn in vendor_conns.items():
        if conn.get("password"):
            register(f"{conn_id}:password", str(conn["password"]))
    return sandbox_state


def _http_case(state: Any, vendor: str, body_name: str) -> tuple[ExportHook, str, str, str]:
    from airflow_export_providers.core.http import RetryPolicy

    cls, route, job_id, shape_words = STATUS_ROUTES[vendor]
    body, words = HTTP_BODIES[body_name]
    state.add_fault(path=route, method="GET", status=200, body=body, times=-1)
    hook = cls(retry_policy=RetryPolicy(max_attempts=2, backoff_base=0.05, backoff_max=0.1))
    return hook, job_id, words or shape_words, str(hook.conn.password)


@pytest.mark.parametrize("body_name", sorted(HTTP_BODIES))
@pytest.mark.parametrize("vendor", sorted(STATUS_ROUTES))
@pytest.mark.timeout(60)
def test_sync_status_read_of_a_bad_answer_is_one_clear_error(bad_answers: Any, vendor: str, body_name: str) -> None:
    hook, job_id, words, secret = _http_case(bad_answers, vendor, body_name)
    before = len(bad_answers.requests)
    with pytest.raises(VendorHTTPError) as caught:
        hook.get_job(job_id)
    message = str(caught.value)
    assert words in message and secret not in message
    route = STATUS_ROUTES[vendor][1]
    reads = [r for r in bad_answers.requests[before:] if r["method"] == "GET" and re.search(route, r["path"])]
    assert len(reads) == 1, "a malformed 200 answer is not retried"
    hook.close()


@pytest.mark.parametrize("body_name", sorted(HTTP_BODIES))
@pytest.mark.parametrize("vendor", sorted(STATUS_ROUTES))
@pytest.mark.timeout(60)
def test_trigger_yields_one_error_event_for_a_bad_answer(bad_answers: Any, vendor: str, body_name: str) -> None:
    import asyncio
    import time

    from airflow_export_providers.triggers.export_job import ExportJobTrigger

    hook, job_id, words, secret = _http_case(bad_answers, vendor, body_name)
    trigger = ExportJobTrigger(
        hook_class=f"{type(hook).__module__}.{type(hook).__qualname__}", conn_id=hook.conn_id, job_id=job_id,
        poll_interval=0.1, deadline=time.time() + 3600, hook_kwargs=hook.hook_kwargs(),
    )

    async def run() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    events = asyncio.run(asyncio.wait_for(run(), 30))  # a hang would be the deadline an hour away
    assert len(events) == 1
    (event,) = events
    assert event["status"] == "error" and words in event["message"] and secret not in event["message"]


# ---- invalid operator parameters: ExportInputError naming the parameter, before any request ----------
import string  # noqa: E402 - kept with the section that uses it
from datetime import datetime, timedelta, timezone  # noqa: E402

from airflow_export_providers.core.errors import ExportInputError  # noqa: E402
from airflow_export_providers.hooks.mobile_engagement import KINDS as ME_KINDS  # noqa: E402

DAY = datetime(2026, 3, 14, tzinfo=timezone.utc)
CONTEXT = {"data_interval_start": DAY, "data_interval_end": DAY + timedelta(days=1), "run_id": "manual__bad_input"}
OPS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

LETTERS = st.text(alphabet=string.ascii_letters + " ./:-_!", min_size=1, max_size=12)  # no digit: never a date
NOT_A_STRING = st.one_of(st.integers(), st.floats(allow_nan=True), st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.none(), max_size=1))
EMPTYISH = st.sampled_from(["", " ", "\t\n"])
NOT_8_DIGITS = st.integers().filter(lambda i: len(str(i)) != 8)


def _recent(days_ago: int) -> str:
    from airflow_export_providers.hooks.leanplum import PACIFIC

    return (datetime.now(PACIFIC).date() - timedelta(days=days_ago)).strftime("%Y%m%d")


def _ops() -> dict[str, Callable[..., Any]]:
    from airflow_export_providers.operators.indicative import IndicativeSegmentExportOperator
    from airflow_export_providers.operators.leanplum import LeanplumExportOperator, LeanplumStreamingExportOperator
    from airflow_export_providers.operators.mobile_engagement import MobileEngagementExportOperator
    from airflow_export_providers.operators.mx import MxSnapshotOperator
    from airflow_export_providers.operators.pond import PondSnapshotOperator

    def build(cls: type, **base: Any) -> Callable[..., Any]:
        return lambda **kw: cls(task_id="bad_input", poll_interval=0.1, deferrable=False, **{**base, **kw})

    from airflow_export_providers.operators.indicative import IndicativeListSegmentsOperator
    from airflow_export_providers.sensors.indicative import IndicativeExportSensor
    from airflow_export_providers.sensors.leanplum import LeanplumExportSensor
    from airflow_export_providers.sensors.mobile_engagement import MobileEngagementExportSensor
    from airflow_export_providers.sensors.mx import MxSnapshotSensor
    from airflow_export_providers.sensors.pond import PondSnapshotSensor

    def sensor(cls: type, **base: Any) -> Callable[..., Any]:
        return lambda **kw: cls(task_id="bad_input", poke_interval=0.1, timeout=5, deferrable=True, **{**base, **kw})

    return {
        "indicative_list": lambda **kw: IndicativeListSegmentsOperator(task_id="bad_input", **kw),
        "pond_sensor": sensor(PondSnapshotSensor, snapshot="https://api.sgipond.com/insights/snapshots/abc"),
        "indicative_sensor": sensor(IndicativeExportSensor, export_id="e1"),
        "leanplum_sensor": sensor(LeanplumExportSensor, job_id="export_1"),
        "mx_sensor": sensor(MxSnapshotSensor, snapshot_guid="CSS-1"),
        "mobile_engagement_sensor": sensor(MobileEngagementExportSensor, export_task_id="t1"),
        "pond": build(PondSnapshotOperator, created_at_from="2026-03-14T00:00:00Z", created_at_to="2026-03-15T00:00:00Z"),
        "indicative": build(IndicativeSegmentExportOperator, segment="Recent"),
        "leanplum": build(LeanplumExportOperator, export_start_date=_recent(3), export_end_date=_recent(2)),
        "leanplum_stream": build(LeanplumStreamingExportOperator, watermark_variable="bad_input_stream"),
        "mx": build(MxSnapshotOperator, snapshot_guid="CSS-1234"),
        "mobile_engagement": build(MobileEngagementExportOperator, kind="events", container="bad-input"),
    }


# (operator, parameter, strategy of invalid values, extra valid arguments); the message must name the parameter
INVALID: list[tuple[str, str, Any, dict[str, Any]]] = [
    ("pond", "entity", st.one_of(EMPTYISH, NOT_A_STRING, st.text(min_size=1, max_size=8).filter(lambda t: not re.fullmatch(r"[a-z][a-z0-9_]*", t))), {}),
    ("pond", "created_at_from", st.one_of(LETTERS, NOT_A_STRING, st.just("2026-03-14T00:00:00")), {}),
    ("pond", "created_at_to", st.one_of(LETTERS, st.datetimes(), st.just("2026-03-13T23:59:59.999Z")), {}),  # naive or before from
    ("indicative", "segment", st.one_of(EMPTYISH, NOT_A_STRING), {}),
    ("indicative", "output_format", st.text(max_size=8).filter(lambda t: t != "csv"), {}),
    ("leanplum", "export_start_date", st.one_of(LETTERS, NOT_8_DIGITS, st.sampled_from(["20261301", "2026-03-01", "19990101"])), {}),
    ("leanplum", "export_end_date", st.one_of(LETTERS, NOT_8_DIGITS, st.integers(1, 30).map(lambda d: _recent(3 + d))), {}),
    ("leanplum", "start_time", LETTERS.filter(lambda t: t.strip() not in ("", "None")), {}),
    ("leanplum", "end_time", st.integers(0, 10**6), {"start_time": 2 * 10**6}),
    ("leanplum", "export_format", st.text(max_size=8).filter(lambda t: t.lower() not in ("json", "csv")), {}),
    ("leanplum", "callback_url", st.sampled_from(["http://example.com/cb", "ftp://example.com/x", "http://10.0.0.1/cb", "hooks.example.com"]), {}),
    ("leanplum", "compress_data", st.just(True), {}),
    ("leanplum_stream", "watermark_variable", EMPTYISH.filter(lambda t: t == ""), {}),
    ("leanplum_stream", "initial_start_time", st.one_of(LETTERS.filter(lambda t: t.strip() not in ("", "None")),
                                                        st.sampled_from(["INF", "-inf", "1e999", "nan", float("inf"), float("nan")])), {}),
    ("leanplum_stream", "wait_for_completion", st.just(False), {}),
    ("mx", "snapshot_guid", st.one_of(EMPTYISH, NOT_A_STRING), {}),
    ("mx", "resources", st.one_of(LETTERS.filter(lambda t: t.strip(" ,").strip() != "" and t.strip().lower().replace(" ", "_") not in
                                                 ("accounts", "devices", "goals", "members", "notification_profiles", "transactions", "users")),
                                  st.lists(st.sampled_from(["account", "txns", "Users!", "cards"]), min_size=1, max_size=3), st.integers()), {}),
    ("mx", "order", st.lists(st.sampled_from(["users", "cards", "x"]), min_size=1).filter(lambda o: set(o) - {"users"}), {}),
    ("mobile_engagement", "kind", st.one_of(LETTERS.filter(lambda t: t.strip().lower() not in {k.lower() for k in ME_KINDS}),
                                            st.sampled_from(["Device", "devices", "event", "feedback"])), {}),
    ("mobile_engagement", "export_format", st.text(max_size=10).filter(lambda t: t not in ("JsonBlob", "CsvBlob")), {}),
    ("mobile_engagement", "export_start_date", st.one_of(LETTERS, st.integers(), st.sampled_from(["2026-02-30", "20260301", "2026-3-1"])), {"export_end_date": "2026-03-02"}),
    ("mobile_engagement", "export_end_date", st.sampled_from(["2026-02-28", "2026-01-01"]), {"export_start_date": "2026-03-01"}),
    ("mobile_engagement", "campaign_type", st.one_of(st.none(), LETTERS), {"kind": "feedbackByCampaign", "campaign_ids": [1]}),
    ("mobile_engagement", "campaign_ids", st.one_of(st.just([]), st.lists(st.integers(max_value=-1), min_size=1, max_size=2), LETTERS.filter(lambda t: t.strip(" ,[]"))),
     {"kind": "feedbackByCampaign", "campaign_type": "Poll"}),
    ("mobile_engagement", "campaign_window_start", LETTERS, {"kind": "feedbackByDate", "campaign_type": "Poll", "campaign_window_end": "2026-03-02T00:00:00Z"}),
    ("mobile_engagement", "campaign_window_end", st.sampled_from(["2026-02-01T00:00:00Z", "yesterday"]),
     {"kind": "feedbackByDate", "campaign_type": "Poll", "campaign_window_start": "2026-03-01T00:00:00Z"}),
    ("mobile_engagement", "campaign_ids", st.just([1, 2]), {"kind": "tags"}),  # a parameter the kind does not use
    ("mobile_engagement", "container", EMPTYISH, {}),
    ("leanplum", "s3_aws_conn_id", st.just(""), {"s3_bucket_name": "direct-copy"}),
    ("indicative_list", "segment_type", LETTERS.filter(lambda t: t not in ("Static", "Dynamic")), {}),
    ("pond_sensor", "snapshot", st.one_of(EMPTYISH.filter(lambda t: t == ""), NOT_A_STRING, st.sampled_from(["https://api.sgipond.com/", "a b", "https://["])), {}),
    ("indicative_sensor", "export_id", st.one_of(st.just(""), NOT_A_STRING, st.sampled_from(["a/b", "../x"])), {}),
    ("leanplum_sensor", "job_id", st.one_of(st.just(""), NOT_A_STRING), {}),
    ("mx_sensor", "snapshot_guid", st.one_of(st.just(""), NOT_A_STRING), {}),
    ("mobile_engagement_sensor", "export_task_id", st.one_of(st.just(""), NOT_A_STRING), {}),
]


@pytest.fixture
def op_sandbox(sandbox_state: Any, vendor_conns: dict[str, Any]) -> Any:
    return sandbox_state


@pytest.mark.parametrize(("operator", "param", "values", "valid"), INVALID, ids=[f"{o}.{p}" for o, p, _, _ in INVALID])
@pytest.mark.timeout(120)
def test_invalid_parameter_is_refused_before_any_request(op_sandbox: Any, operator: str, param: str, values: Any,
                                                         valid: dict[str, Any]) -> None:
    factory = _ops()[operator]

    @OPS
    @given(value=values)
    def check(value: Any) -> None:
        before, submitted = len(op_sandbox.requests), dict(op_sandbox.submissions)
        op = factory(**{**valid, param: value})
        with pytest.raises(ExportInputError) as caught:
            op.execute(dict(CONTEXT))
        assert str(caught.value).startswith(param) or f"{param}:" in str(caught.value) or f"{param} " in str(caught.value), (
            f"message does not name {param!r}: {caught.value}")
        assert len(op_sandbox.requests) == before, "a request reached the vendor before the parameter was checked"
        assert dict(op_sandbox.submissions) == submitted

    check()


def test_valid_parameters_pass_validation() -> None:
    """The base arguments the strategies modify are valid (validate() alone makes no request)."""
    for name, factory in _ops().items():
        op = factory()
        if hasattr(op, "validate"):
            op.validate(dict(CONTEXT))  # raising would be the failure
        if hasattr(op, "job_ref"):
            assert op.job_ref(), name


def test_unknown_segment_name_is_refused_without_a_submit(op_sandbox: Any) -> None:
    submitted = op_sandbox.submissions["indicative"]
    op = _ops()["indicative"](segment="No Such Segment Anywhere")
    with pytest.raises(ExportInputError, match=r"^segment: no segment named 'No Such Segment Anywhere'"):
        op.execute(dict(CONTEXT))
    assert op_sandbox.submissions["indicative"] == submitted


# ---- transfer operators: invalid parameters leave nothing under the final key --------------------------
@pytest.fixture
def landing_target(sandbox: Any, sandbox_state: Any, moto_s3: Any, aws_conn: str, wasb_conn: str, azurite: Any,
                   monkeypatch: pytest.MonkeyPatch) -> Any:
    import uuid

    from tests.support.files_hook import export_file, export_job, set_files_connection

    set_files_connection(monkeypatch, sandbox)
    name = f"bad-input-{uuid.uuid4().hex[:8]}"
    data = b"id,value\n1,a\n2,b\n"
    sandbox_state.files[f"{name}.csv"] = data
    moto_s3.client().create_bucket(Bucket=name)
    azurite.service().create_container(name)
    job = export_job([export_file(f"{name}.csv", data, rows=2, row_format="csv")]).to_dict()
    return SimpleNamespace(name=name, job=job, state=sandbox_state, s3=moto_s3.client(), blobs=azurite.service().get_container_client(name))


TRANSFER_INVALID: list[tuple[str, Any]] = [
    ("convert", st.one_of(st.text(min_size=1, max_size=8).filter(lambda t: t not in ("jsonl", "csv", "parquet")), st.just("parquet"))),
    ("decompress", st.one_of(st.text(max_size=4), st.integers())),
    ("prefix", st.one_of(st.integers(), st.lists(st.text(max_size=3), max_size=2))),
    ("part_size", st.one_of(st.integers(max_value=0), st.text(min_size=1, max_size=4), st.floats(allow_nan=True))),
    ("batch_rows", st.integers(max_value=0)),
    ("upload_concurrency", st.one_of(st.integers(max_value=0), st.just(2.5))),
    ("order", st.lists(st.one_of(st.integers(), st.none()), min_size=1, max_size=3)),
    ("export", st.one_of(st.none(), st.integers(), LETTERS, st.dictionaries(st.sampled_from(["vendor", "files"]), st.none(), max_size=2))),
]


@pytest.mark.parametrize(("param", "values"), TRANSFER_INVALID, ids=[p for p, _ in TRANSFER_INVALID])
@pytest.mark.parametrize("target", ["s3", "azure"])
@pytest.mark.timeout(120)
def test_invalid_transfer_parameter_writes_nothing(landing_target: Any, target: str, param: str, values: Any) -> None:
    from airflow_export_providers.transfers.export_to_azure_blob import ExportToAzureBlobOperator
    from airflow_export_providers.transfers.export_to_s3 import ExportToS3Operator

    t = landing_target

    @OPS
    @given(value=values)
    def check(value: Any) -> None:
        before = len(t.state.requests)
        kwargs: dict[str, Any] = {"task_id": "land", "export": t.job, "prefix": "final", param: value}
        op = (ExportToS3Operator(bucket=t.name, **kwargs) if target == "s3"
              else ExportToAzureBlobOperator(container=t.name, **kwargs))
        with pytest.raises(ExportInputError) as caught:
            op.execute({})
        assert param in str(caught.value)
        assert len(t.state.requests) == before, "the file was read before the parameters were checked"
        if target == "s3":
            assert t.s3.list_objects_v2(Bucket=t.name).get("KeyCount", 0) == 0
            assert not t.s3.list_multipart_uploads(Bucket=t.name).get("Uploads")
        else:
            assert not list(t.blobs.list_blobs())

    check()


@pytest.mark.parametrize("dest", ["", "a/b", None])
def test_invalid_destination_writes_nothing(landing_target: Any, dest: Any) -> None:
    from airflow_export_providers.transfers.export_to_azure_blob import ExportToAzureBlobOperator
    from airflow_export_providers.transfers.export_to_s3 import ExportToS3Operator

    with pytest.raises(ExportInputError, match=r"^bucket: "):
        ExportToS3Operator(task_id="land", export=landing_target.job, bucket=dest).execute({})
    with pytest.raises(ExportInputError, match=r"^container: "):
        ExportToAzureBlobOperator(task_id="land", export=landing_target.job, container=dest).execute({})
    assert landing_target.s3.list_objects_v2(Bucket=landing_target.name).get("KeyCount", 0) == 0


def test_valid_transfer_parameters_land_the_file(landing_target: Any) -> None:
    """Control: the same job with valid parameters does land (so the refusals above are about the parameter)."""
    from airflow_export_providers.transfers.export_to_s3 import ExportToS3Operator

    ExportToS3Operator(task_id="land", export=landing_target.job, bucket=landing_target.name, prefix="final",
                       asset=False).execute({})
    keys = [o["Key"] for o in landing_target.s3.list_objects_v2(Bucket=landing_target.name)["Contents"]]
    assert sorted(keys) == sorted([f"final/{landing_target.name}.csv", "final/_manifest.json"])  # the file, the landing manifest


@pytest.mark.parametrize("target", ["s3", "azure"])
@pytest.mark.parametrize("problem", ["size", "rows", "gone"])
@pytest.mark.timeout(120)
def test_a_file_that_does_not_match_its_answer_leaves_no_final_object(landing_target: Any, target: str, problem: str) -> None:
    """The vendor announced a size / row count the bytes do not have, or the file is gone: one ExportError, no object."""
    from airflow_export_providers.transfers.export_to_azure_blob import ExportToAzureBlobOperator
    from airflow_export_providers.transfers.export_to_s3 import ExportToS3Operator

    t = landing_target
    job = copy.deepcopy(t.job)
    file = job["files"][0]
    if problem == "size":
        file["size"] += 1
    elif problem == "rows":
        file["rows"] = 3
    else:
        file["key"] = file["name"] = "no-such-file.csv"
    kwargs: dict[str, Any] = {"task_id": "land", "export": job, "prefix": "final", "asset": False}
    op = ExportToS3Operator(bucket=t.name, **kwargs) if target == "s3" else ExportToAzureBlobOperator(container=t.name, **kwargs)
    with pytest.raises(ExportError) as caught:
        op.execute({})
    assert {"size": "size", "rows": "rows", "gone": "404"}[problem] in str(caught.value)
    if target == "s3":
        assert t.s3.list_objects_v2(Bucket=t.name).get("KeyCount", 0) == 0
        assert not t.s3.list_multipart_uploads(Bucket=t.name).get("Uploads")
    else:
        assert not list(t.blobs.list_blobs())
