"""Engine parameters (poll interval, timeouts, deadlines, booleans, resubmits): refused before any vendor call.

Every export operator and sensor of the package, fed an invalid engine parameter, raises one
ExportInputError that starts with the parameter's name and says what is accepted — when it is built
(a literal in DAG code fails at parse time) and, for a value set after that, when it runs, with zero
requests reaching the sandbox (counted through its ``/_sandbox/stats``). Then what the checks are
for: a huge poll interval no longer sleeps past the job's end (worker, sensor and triggerer cap
their sleeps at MAX_POLL_INTERVAL and at the deadline), a deadline that has already passed submits
nothing, and a trigger rebuilt from bad stored kwargs refuses them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_export_providers.core import validate
from airflow_export_providers.core.errors import ExportInputError
from airflow_export_providers.core.validate import MAX_POLL_INTERVAL, MAX_WAIT, poll_sleep, positive_duration, positive_seconds
from airflow_export_providers.triggers.export_job import ExportJobTrigger
from tests.conftest import set_connection
from tests.support.generic_hook import GenericExportOperator, GenericHook, GenericJobSensor, generic_connection

pytestmark = pytest.mark.timeout(120)

OPS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
PURE = settings(max_examples=300, deadline=None)
HOOK = f"{GenericHook.__module__}.GenericHook"
DAY = datetime(2026, 3, 14, tzinfo=timezone.utc)
CONTEXT = {"data_interval_start": DAY, "data_interval_end": DAY + timedelta(days=1), "run_id": "manual__engine_params"}

# ---- invalid values, by kind (none of them valid by accident) -----------------------------------------
NOT_A_NUMBER = st.one_of(st.text(max_size=6), st.booleans(), st.none(), st.lists(st.integers(), max_size=2),
                         st.sampled_from(["60", "0.5", "1m", "None"]))
NOT_POSITIVE = st.one_of(st.floats(max_value=0, allow_nan=False), st.integers(max_value=0),
                         st.timedeltas(max_value=timedelta(0)), st.sampled_from([float("nan"), float("inf"), float("-inf")]))
BAD_SECONDS = st.one_of(NOT_A_NUMBER, NOT_POSITIVE)
TOO_LONG = st.one_of(st.floats(min_value=MAX_WAIT.total_seconds() * 1.0001, allow_infinity=False),
                     st.timedeltas(min_value=MAX_WAIT + timedelta(microseconds=1)))
BAD_DURATION = st.one_of(NOT_A_NUMBER.filter(lambda v: v is not None), NOT_POSITIVE, TOO_LONG)  # None = the default
NOT_A_BOOL = st.one_of(st.sampled_from(["False", "false", "True", "0", "", "no", "{{ params.wait }}"]), st.integers(),
                       st.floats(allow_nan=False), st.none(), st.lists(st.booleans(), max_size=1))
BAD_COUNT = st.one_of(st.integers(max_value=-1), st.floats(allow_nan=False), st.booleans(), st.none(), st.sampled_from(["2", "-1"]))
BAD_EXECUTION_TIMEOUT = st.timedeltas(max_value=timedelta(0))
BAD_MODE = st.text(max_size=10).filter(lambda t: t not in ("poke", "reschedule"))
BAD_MARGIN = st.one_of(NOT_A_NUMBER, st.floats(max_value=-1e-9, allow_nan=False), st.integers(max_value=-1),
                       st.sampled_from([float("nan"), float("inf")]))

# parameter -> strategy of invalid values, for every ExportOperator
OPERATOR_PARAMS: dict[str, Any] = {
    "poll_interval": BAD_SECONDS,
    "job_timeout": BAD_DURATION,
    "wait_for_completion": NOT_A_BOOL,
    "deferrable": NOT_A_BOOL.filter(lambda v: v is not None),  # None = [operators] default_deferrable
    "max_resubmits": BAD_COUNT,
    "execution_timeout": BAD_EXECUTION_TIMEOUT,
}
SENSOR_PARAMS: dict[str, Any] = {
    "poke_interval": BAD_SECONDS,
    "timeout": BAD_DURATION,
    "deferrable": NOT_A_BOOL.filter(lambda v: v is not None),
    "mode": BAD_MODE,
}


def _recent(days_ago: int) -> str:
    from airflow_export_providers.hooks.leanplum import PACIFIC

    return (datetime.now(PACIFIC).date() - timedelta(days=days_ago)).strftime("%Y%m%d")


def operators() -> dict[str, Callable[..., Any]]:
    """A valid instance of every export operator of the package (the tests change one parameter)."""
    from airflow_export_providers.operators.indicative import IndicativeSegmentExportOperator
    from airflow_export_providers.operators.leanplum import LeanplumExportOperator, LeanplumStreamingExportOperator
    from airflow_export_providers.operators.mobile_engagement import MobileEngagementExportOperator
    from airflow_export_providers.operators.mx import MxSnapshotOperator
    from airflow_export_providers.operators.pond import PondSnapshotOperator

    def build(cls: type, **base: Any) -> Callable[..., Any]:
        return lambda **kw: cls(task_id="engine_params", **{"poll_interval": 0.1, "deferrable": False, **base, **kw})

    return {
        "pond": build(PondSnapshotOperator, created_at_from="2026-03-14T00:00:00Z", created_at_to="2026-03-15T00:00:00Z"),
        "indicative": build(IndicativeSegmentExportOperator, segment="Recent"),
        "leanplum": build(LeanplumExportOperator, export_start_date=_recent(3), export_end_date=_recent(2)),
        "leanplum_stream": build(LeanplumStreamingExportOperator, watermark_variable="engine_params_stream"),
        "mx": build(MxSnapshotOperator, snapshot_guid="CSS-1234"),
        "mobile_engagement": build(MobileEngagementExportOperator, kind="events", container="engine-params",
                                   export_start_date="2026-03-01", export_end_date="2026-03-02"),
    }


def sensors() -> dict[str, Callable[..., Any]]:
    from airflow_export_providers.sensors.indicative import IndicativeExportSensor
    from airflow_export_providers.sensors.leanplum import LeanplumExportSensor
    from airflow_export_providers.sensors.mobile_engagement import MobileEngagementExportSensor
    from airflow_export_providers.sensors.mx import MxSnapshotSensor
    from airflow_export_providers.sensors.pond import PondSnapshotSensor

    def build(cls: type, **base: Any) -> Callable[..., Any]:
        return lambda **kw: cls(task_id="engine_params", **{"poke_interval": 0.1, "timeout": 5, "deferrable": True, **base, **kw})

    return {
        "pond_sensor": build(PondSnapshotSensor, snapshot="https://api.sgipond.com/insights/snapshots/abc"),
        "indicative_sensor": build(IndicativeExportSensor, export_id="e1"),
        "leanplum_sensor": build(LeanplumExportSensor, job_id="export_1"),
        "mx_sensor": build(MxSnapshotSensor, snapshot_guid="CSS-1"),
        "mobile_engagement_sensor": build(MobileEngagementExportSensor, export_task_id="t1"),
    }


# vendor options that steer the engine: (factory, parameter, invalid values)
VENDOR_PARAMS: list[tuple[str, str, Any]] = [
    ("leanplum", "compress_data", NOT_A_BOOL),
    ("leanplum_stream", "compress_data", NOT_A_BOOL),
    ("leanplum", "quota_retry_seconds", BAD_SECONDS.filter(lambda v: v is not None)),  # None = the connection's / 1 hour
    ("pond", "link_refresh_margin", BAD_MARGIN),
    ("pond_sensor", "link_refresh_margin", BAD_MARGIN),
    ("mx", "allow_missing", NOT_A_BOOL),
]

CASES = ([(op, param, values) for op in operators() for param, values in OPERATOR_PARAMS.items()
          if (op, param) != ("mx", "max_resubmits")]  # MX has nothing to resubmit: the operator sets 0 itself
         + [(s, param, values) for s in sensors() for param, values in SENSOR_PARAMS.items()]
         + VENDOR_PARAMS)


def _factory(name: str) -> Callable[..., Any]:
    return {**operators(), **sensors()}[name]


def _names(param: str, err: BaseException) -> None:
    assert str(err).startswith(f"{param}: expected "), f"the message does not start with {param!r}: {err}"
    assert len(str(err)) < 400, "one line, not a dump"


@pytest.fixture
def stats(sandbox: Any, sandbox_state: Any, vendor_conns: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    """The sandbox's own count of the requests and submissions it received, read over HTTP."""
    return lambda: requests.get(f"{sandbox.url}/_sandbox/stats", timeout=10).json()  # type: ignore[no-any-return]


# ---- the checks themselves ---------------------------------------------------------------------------
@PURE
@given(value=st.one_of(st.floats(min_value=1e-9, max_value=1e12), st.integers(min_value=1, max_value=10**12),
                       st.timedeltas(min_value=timedelta(microseconds=1))))
def test_any_finite_positive_duration_is_seconds(value: Any) -> None:
    expected = value.total_seconds() if isinstance(value, timedelta) else float(value)
    assert positive_seconds(value, "poll_interval") == expected


@PURE
@given(value=BAD_SECONDS)
def test_anything_else_is_refused_naming_the_field(value: Any) -> None:
    with pytest.raises(ExportInputError) as caught:
        positive_seconds(value, "poll_interval")
    _names("poll_interval", caught.value)
    assert "> 0" in str(caught.value)


def test_boundaries() -> None:
    assert positive_seconds(0, "link_refresh_margin", zero_ok=True) == 0.0
    assert positive_duration(MAX_WAIT, "job_timeout") == MAX_WAIT
    assert positive_duration(90, "job_timeout") == timedelta(seconds=90)
    with pytest.raises(ExportInputError, match=r"^job_timeout: expected a duration > 0 and at most 365 days"):
        positive_duration(MAX_WAIT.total_seconds() + 1, "job_timeout")
    with pytest.raises(ExportInputError, match=r"^sas_lifetime: "):
        positive_duration(timedelta(hours=-4), "sas_lifetime")


@PURE
@given(interval=st.floats(min_value=1e-6, max_value=1e9), now=st.floats(min_value=0, max_value=4e9),
       remaining=st.one_of(st.none(), st.floats(min_value=-1e6, max_value=1e9)))
def test_a_sleep_never_passes_the_deadline_nor_the_maximum(interval: float, now: float, remaining: float | None) -> None:
    deadline = None if remaining is None else now + remaining
    sleep = poll_sleep(interval, deadline, now)
    assert 0.0 <= sleep <= min(interval, MAX_POLL_INTERVAL)
    if deadline is not None:
        assert sleep <= max(0.0, deadline - now)
    if deadline is None or deadline - now >= min(interval, MAX_POLL_INTERVAL):
        assert sleep == min(interval, MAX_POLL_INTERVAL), "a sleep is not shortened without a reason"


# ---- every operator and sensor: refused when built ---------------------------------------------------
@pytest.mark.parametrize(("name", "param", "values"), CASES, ids=[f"{n}.{p}" for n, p, _ in CASES])
def test_an_invalid_engine_parameter_is_refused_when_the_task_is_built(stats: Any, name: str, param: str, values: Any) -> None:
    factory = _factory(name)
    before = stats()

    @OPS
    @given(value=values)
    def check(value: Any) -> None:
        with pytest.raises(ExportInputError) as caught:
            factory(**{param: value})
        _names(param, caught.value)

    check()
    assert stats() == before, "building a task must not call the vendor"


@pytest.mark.parametrize("name", [*operators()])
def test_valid_engine_parameters_are_kept_as_seconds_and_timedeltas(name: str) -> None:
    """Control: the base arguments are valid, and a timedelta or an int becomes the documented type."""
    op = _factory(name)(poll_interval=timedelta(minutes=1), job_timeout=600, wait_for_completion=True, max_resubmits=0)
    assert op.poll_interval == 60.0 and op.job_timeout == timedelta(seconds=600) and op.max_resubmits == 0
    assert _factory(name)(poll_interval=1e-3, job_timeout=MAX_WAIT).poll_interval == 1e-3  # no floor: tests poll fast


# ---- ... and refused when the task runs, before any vendor call ---------------------------------------
RUN_TIME = {
    "poll_interval": BAD_SECONDS, "job_timeout": BAD_DURATION, "wait_for_completion": NOT_A_BOOL,
    "deferrable": NOT_A_BOOL.filter(lambda v: v is not None), "max_resubmits": BAD_COUNT,
    "execution_timeout": BAD_EXECUTION_TIMEOUT,
}
SENSOR_RUN_TIME = {"poke_interval": BAD_SECONDS, "timeout": BAD_DURATION, "deferrable": SENSOR_PARAMS["deferrable"]}
RUN_CASES = ([(op, param, values) for op in operators() for param, values in RUN_TIME.items()]
             + [(s, param, values) for s in sensors() for param, values in SENSOR_RUN_TIME.items()])


@pytest.mark.parametrize(("name", "param", "values"), RUN_CASES, ids=[f"{n}.{p}" for n, p, _ in RUN_CASES])
def test_a_value_set_after_parsing_is_refused_before_the_first_vendor_call(stats: Any, name: str, param: str, values: Any) -> None:
    factory = _factory(name)

    @OPS
    @given(value=values)
    def check(value: Any) -> None:
        task = factory()
        before = stats()
        setattr(task, param, value)  # what a DAG author's later assignment does
        with pytest.raises(ExportInputError) as caught:
            task.execute(dict(CONTEXT))
        _names(param, caught.value)
        assert stats() == before, "a request reached the vendor before the parameter was checked"

    check()


# ---- what the checks protect ---------------------------------------------------------------------------
@pytest.fixture
def generic_conn(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    set_connection(monkeypatch, "generic_default", generic_connection(sandbox.url, sandbox.state.secret("generic-token")))
    return "generic_default"


def _status_reads(state: Any, job_id: str) -> int:
    return sum(1 for r in state.requests if r["method"] == "GET" and r["path"] == f"/generic/jobs/{job_id}")


@pytest.mark.timeout(60)
def test_a_huge_poll_interval_still_sees_the_job_finish_in_the_worker(sandbox_state: Any, generic_conn: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """poll_interval=1e6 s: the worker reads the status at least every MAX_POLL_INTERVAL (made short here).

    The deadline is an hour away, so without the cap the worker would sleep that hour (the test's
    timeout ends it as a failure): only the cap lets it see the job finish.
    """
    monkeypatch.setattr(validate, "MAX_POLL_INTERVAL", 0.2)
    sandbox_state.config["generic"] = {"pending_seconds": 0.3, "running_seconds": 0.3}
    op = GenericExportOperator(task_id="huge_interval", deferrable=False, poll_interval=1e6, job_timeout=3600)
    job = op.execute({})
    assert job["state"] == "SUCCESS"
    assert _status_reads(sandbox_state, job["job_id"]) >= 2, "it waited, read again and saw the job finish"


@pytest.mark.timeout(60)
def test_a_huge_poll_interval_still_sees_the_job_finish_in_the_triggerer(sandbox_state: Any, generic_conn: str,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validate, "MAX_POLL_INTERVAL", 0.2)
    job = sandbox_state.new_job("generic", {}, pending_seconds=0.3, running_seconds=0.3)
    trigger = ExportJobTrigger(hook_class=HOOK, conn_id=generic_conn, job_id=job.job_id, poll_interval=1e6, deadline=time.time() + 3600)

    async def run() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    events = asyncio.run(run())
    assert [e["status"] for e in events] == ["success"]
    assert _status_reads(sandbox_state, job.job_id) >= 2


@pytest.mark.timeout(60)
def test_a_sensor_never_sleeps_past_its_timeout(sandbox_state: Any, generic_conn: str) -> None:
    """Airflow's poke loop sleeps poke_interval whatever the timeout; ours stops at the timeout."""
    from airflow.providers.common.compat.sdk import AirflowSensorTimeout

    job = sandbox_state.new_job("generic", {}, pending_seconds=3600, running_seconds=0)
    sensor = GenericJobSensor(task_id="wait", job_id=job.job_id, poke_interval=1e6, timeout=1, mode="poke", deferrable=False)
    with pytest.raises(AirflowSensorTimeout):
        sensor.execute({})
    assert _status_reads(sandbox_state, job.job_id) >= 2, "it read once more at the timeout before giving up"


@pytest.mark.timeout(60)
def test_a_sensor_with_a_huge_poke_interval_sees_the_job_finish(sandbox_state: Any, generic_conn: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validate, "MAX_POLL_INTERVAL", 0.2)
    job = sandbox_state.new_job("generic", {}, pending_seconds=0.3, running_seconds=0.3)
    sensor = GenericJobSensor(task_id="wait", job_id=job.job_id, poke_interval=1e6, timeout=3600, mode="poke", deferrable=False)
    assert sensor.execute({})["state"] == "SUCCESS"


def test_a_deadline_already_passed_submits_nothing(sandbox_state: Any, generic_conn: str) -> None:
    """execution_timeout counted from the try's start has run out (e.g. after a long quota wait): no job is submitted."""
    from airflow.providers.common.compat.sdk import AirflowException

    before = sandbox_state.submissions["generic"]
    op = GenericExportOperator(task_id="late", deferrable=False, poll_interval=0.1, execution_timeout=timedelta(minutes=1))
    ti = SimpleNamespace(start_date=datetime.now(timezone.utc) - timedelta(hours=1))
    with pytest.raises(AirflowException, match=r"^job_timeout / execution_timeout: the deadline .* has passed; not submitting"):
        op.execute({"ti": ti})  # type: ignore[typeddict-item]
    assert sandbox_state.submissions["generic"] == before


# ---- the trigger, rebuilt from stored kwargs ---------------------------------------------------------------
TRIGGER_OK: dict[str, Any] = {"hook_class": HOOK, "conn_id": "generic_default", "job_id": "j1", "poll_interval": 2.0, "deadline": 1.9e9,
              "hook_kwargs": {}, "mode": "final"}
TRIGGER_BAD: dict[str, Any] = {
    "poll_interval": BAD_SECONDS,
    "deadline": st.one_of(NOT_A_NUMBER.filter(lambda v: v is not None), NOT_POSITIVE),
    "mode": st.text(max_size=8).filter(lambda t: t not in ("final", "ready")),
    "job_id": st.one_of(st.just(""), st.integers(), st.none()),
    "hook_kwargs": st.one_of(st.text(min_size=1, max_size=4), st.lists(st.integers(), min_size=1, max_size=2)),
}


@pytest.mark.parametrize("param", sorted(TRIGGER_BAD))
def test_a_trigger_refuses_bad_stored_kwargs(param: str) -> None:
    @OPS
    @given(value=TRIGGER_BAD[param])
    def check(value: Any) -> None:
        with pytest.raises(ExportInputError) as caught:
            ExportJobTrigger(**{**TRIGGER_OK, param: value})
        _names(param, caught.value)

    check()

