"""Submit and wait apart, for every vendor, in real Airflow runs (``dag.test()``) against the sandbox.

Start with ``wait_for_completion=False`` -> the vendor's sensor -> a transfer lands what the
one-task flow lands; the sensor waits deferred, poking and rescheduling for a job another run
started, fails with the vendor's words on a FAILED job, and times out as any Airflow sensor does
(failed, or skipped with ``soft_fail``). The DAGs are generated in tests/dags/split_flow.py from the
per-vendor adapters in tests/support/split_flow.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_export_providers.core.errors import ExportJobFailed
from airflow_export_providers.core.job import ExportJob, JobState
from airflow_export_providers.core.sensor import ExportJobSensor
from airflow_export_providers.triggers.export_job import ExportJobTrigger
from tests.support.airflow import load_dag, run_dag, task_states, xcom
from tests.support.split_flow import BUCKET, CASES, ME_CONTAINER, VENDORS, VendorCase

DAGS = "split_flow.py"


@pytest.fixture(scope="module", autouse=True)
def split_flow_dags() -> Iterator[None]:
    """tests/dags/split_flow.py builds its DAGs only while this module runs (see its docstring)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPLIT_FLOW_DAGS", "1")
        yield


@pytest.fixture(params=VENDORS)
def case(request: pytest.FixtureRequest, sandbox: Any, sandbox_state: Any, vendor_conns: Any, aws_conn: str,
         moto_s3: Any, airflow_db: Any) -> Iterator[VendorCase]:
    """One vendor: fast sandbox jobs, a fresh Leanplum quota, the landing bucket; settings restored after."""
    vendor = request.param
    c = CASES[vendor]
    if c.needs_azure:
        request.getfixturevalue("wasb_conn")
        from tests.support.secrets import register

        register("mobile_engagement:client_secret", vendor_conns["azure_mobile_engagement_default"]["password"])
    if vendor == "indicative":
        from airflow_export_providers.sandbox import indicative as sb
        from tests.support.secrets import register

        register("indicative-access-token", sb.access_token(sandbox_state))
    cfg = sandbox_state.vendor_config(vendor)
    saved = dict(cfg)
    cfg.update(pending_seconds=0.3, running_seconds=0.3)
    if vendor == "leanplum":
        sandbox_state.vendor.setdefault("leanplum", {})["quota"] = {}
    s3 = moto_s3.client()
    try:
        s3.create_bucket(Bucket=BUCKET)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    yield c
    cfg.clear()
    cfg.update(saved)
    if vendor == "leanplum":
        sandbox_state.vendor["leanplum"]["quota"] = {}


def landed(moto_s3: Any, prefix: str) -> dict[str, bytes]:
    s3 = moto_s3.client()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/").get("Contents", [])
            if o["Key"] != f"{prefix}/_manifest.json"]  # the landing manifest (docs/transfers.md)
    return {k[len(prefix) + 1:]: s3.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in keys}


def async_polls(state: Any, since: int) -> int:
    """Status reads made with aiohttp (the trigger) since request ``since``: proof the wait was deferred."""
    return sum(1 for r in state.requests[since:] if "aiohttp" in r["headers"].get("User-Agent", ""))


def run(case: VendorCase, dag_id: str, conf: dict[str, Any]) -> Any:
    return run_dag(load_dag(DAGS, dag_id, folder="tests/dags"), run_conf=conf)


def azure_blobs(azurite: Any, task_id: str) -> dict[str, bytes]:
    container = azurite.service().get_container_client(ME_CONTAINER)
    return {b.name.split("/", 1)[1]: container.download_blob(b.name).readall()
            for b in container.list_blobs(name_starts_with=task_id + "/")}


# ---- the split flow --------------------------------------------------------------------------------


def test_split_flow_lands_the_same_bytes_as_the_one_task_flow(case: VendorCase, sandbox_state: Any, moto_s3: Any,
                                                              request: pytest.FixtureRequest) -> None:
    since = len(sandbox_state.requests)
    before = sandbox_state.submissions[case.vendor]
    with case.held_until_looked_at(sandbox_state):  # each sensor meets its job unfinished
        dag_run = run(case, f"split_flow_{case.vendor}", case.conf(sandbox_state))
    assert set(task_states(dag_run).values()) == {"success"}, task_states(dag_run)
    if case.vendor != "mx":  # MX has nothing to submit: the GUID is the job
        assert sandbox_state.submissions[case.vendor] - before == 3
    by_branch = {}
    for branch in ("deferred", "poke"):
        ref = xcom(dag_run, f"start_{branch}")
        assert isinstance(ref, str) and ref, "the start task pushes the bare job reference"
        assert "sig=" not in ref and "?" not in ref.split("/")[-1], "no signature travels in the reference"
        job = ExportJob.from_dict(xcom(dag_run, f"wait_{branch}"))
        assert job.job_id == ref and job.state == JobState.SUCCESS and job.files
        assert "sig=" not in json.dumps(xcom(dag_run, f"wait_{branch}"))
        by_branch[branch] = landed(moto_s3, f"{case.vendor}/{dag_run.run_id}/{branch}")
        assert by_branch[branch], f"the {branch} split flow landed nothing"
    one = landed(moto_s3, f"{case.vendor}/{dag_run.run_id}/one")
    assert one
    assert case.normalise(by_branch["deferred"]) == case.normalise(one)
    assert case.normalise(by_branch["poke"]) == case.normalise(one)
    assert async_polls(sandbox_state, since) > 0, "the deferred sensor waited in the trigger"
    if case.vendor == "mobile_engagement":  # each landing is exactly what its own task wrote
        azurite = request.getfixturevalue("azurite")
        for branch, task in (("deferred", "start_deferred"), ("poke", "start_poke")):
            assert by_branch[branch] == azure_blobs(azurite, xcom(dag_run, task))
        assert one == azure_blobs(azurite, xcom(dag_run, "export")["job_id"])


# ---- a sensor on a job someone else started ------------------------------------------------------------


@pytest.mark.parametrize("mode", ["deferred", "poke", "reschedule"])
def test_sensor_waits_for_a_job_another_run_started(case: VendorCase, sandbox_state: Any, mode: str) -> None:
    ref = case.start(sandbox_state, "ok")
    before, since = sandbox_state.submissions[case.vendor], len(sandbox_state.requests)
    with case.held_until_looked_at(sandbox_state, [ref]):  # the sensor meets the job unfinished
        dag_run = run(case, f"split_sensor_{case.vendor}_{mode}", {"ref": ref})
    assert task_states(dag_run) == {"wait": "success"}
    job = ExportJob.from_dict(xcom(dag_run, "wait"))
    assert job.job_id == ref and job.state == JobState.SUCCESS and job.files
    assert job.hook_class and job.hook_class.endswith("Hook"), "a transfer can rebuild the hook from it"
    assert sandbox_state.submissions[case.vendor] == before, "a sensor never submits"
    assert (async_polls(sandbox_state, since) > 0) is (mode == "deferred")
    if mode == "reschedule":
        assert reschedules(dag_run) > 0, "the sensor gave its slot back at least once"


def reschedules(dag_run: Any) -> int:
    from airflow.models.taskreschedule import TaskReschedule
    from airflow.utils.session import create_session

    with create_session() as session:
        return session.query(TaskReschedule).filter(TaskReschedule.ti_id.in_(_ti_ids(dag_run, session))).count()


def _ti_ids(dag_run: Any, session: Any) -> list[Any]:
    from airflow.models.taskinstance import TaskInstance

    return [ti.id for ti in session.query(TaskInstance).filter(
        TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id)]


# ---- FAILED ---------------------------------------------------------------------------------------------


def run_trigger(trigger: ExportJobTrigger) -> dict[str, Any]:
    async def first() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(asyncio.wait_for(first(), 30))


def wait_like_airflow(sensor: ExportJobSensor) -> Any:
    """Run a sensor the way the worker and the triggerer would (execute, trigger, execute_complete)."""
    try:
        return sensor.execute({})  # type: ignore[arg-type]
    except TaskDeferred as deferred:
        event = run_trigger(deferred.trigger)  # type: ignore[arg-type]
        return sensor.execute_complete({}, event)  # type: ignore[arg-type]


def test_failed_job_fails_the_sensor_with_the_vendors_words(case: VendorCase, sandbox_state: Any) -> None:
    ref = case.start(sandbox_state, "failed")
    with pytest.raises(ExportJobFailed, match=case.failed_words):
        wait_like_airflow(case.sensor("deferred", ref, deferrable=True, timeout=30))
    with pytest.raises(ExportJobFailed, match=case.failed_words):
        wait_like_airflow(case.sensor("poke", ref, deferrable=False, timeout=30))
    dag_run = run(case, f"split_sensor_{case.vendor}_failed", {"ref": ref})
    assert task_states(dag_run) == {"deferred": "failed", "poke": "failed"}


# ---- timeout and soft_fail -----------------------------------------------------------------------------


def test_timeout_fails_or_skips_with_soft_fail(case: VendorCase, sandbox_state: Any) -> None:
    ref = case.start(sandbox_state, "slow")
    dag_run = run(case, f"split_sensor_{case.vendor}_timeout", {"ref": ref})
    assert task_states(dag_run) == {
        "deferred_soft": "skipped", "deferred_hard": "failed",
        "poke_soft": "skipped", "poke_hard": "failed",
        "reschedule_soft": "skipped", "reschedule_hard": "failed",
    }


# ---- the shipped example ---------------------------------------------------------------------------------


def test_example_dag_start_sensor_transfer_lands_the_days_snapshot(sandbox_state: Any, vendor_conns: Any, aws_conn: str,
                                                                   moto_s3: Any, airflow_db: Any) -> None:
    from datetime import datetime, timedelta, timezone

    from airflow_export_providers.sandbox import pond as pond_sandbox

    cfg = sandbox_state.vendor_config("pond")
    saved = dict(cfg)
    cfg.update(pending_seconds=0.5, running_seconds=0.5, items=3, rows=40)
    s3 = moto_s3.client()
    try:
        s3.create_bucket(Bucket="analytics-landing")
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    dag = load_dag("split_start_sensor_transfer.py")
    assert "pond" in dag.tags
    dag.get_task("wait_for_snapshot").poke_interval = 0.2
    since = len(sandbox_state.requests)
    try:
        with CASES["pond"].held_until_looked_at(sandbox_state):  # the sensor meets the snapshot unfinished
            dag_run = run_dag(dag, logical_date=datetime(2026, 6, 2, tzinfo=timezone.utc))
    finally:
        cfg.clear()
        cfg.update(saved)
    assert task_states(dag_run) == {"start_snapshot": "success", "wait_for_snapshot": "success", "land_in_s3": "success"}
    day = datetime(2026, 6, 1, tzinfo=timezone.utc)  # a manual run at midnight covers the day that just ended
    start, end = day.strftime("%Y-%m-%dT%H:%M:%S.000Z"), (day + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    href = xcom(dag_run, "start_snapshot")
    assert isinstance(href, str) and ExportJob.from_dict(xcom(dag_run, "wait_for_snapshot")).job_id == href
    prefix = "pond/split/2026-06-01"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="analytics-landing", Prefix=prefix + "/").get("Contents", [])
            if o["Key"] != f"{prefix}/_manifest.json"]  # the landing manifest (docs/transfers.md)
    got = {k[len(prefix) + 1:]: s3.get_object(Bucket="analytics-landing", Key=k)["Body"].read() for k in keys}
    assert got == {f"{pond_sandbox.item_name('event', i)}.csv": pond_sandbox.generate_csv("event", start, end, i, 40 + 7 * i)
                   for i in range(3)}
    assert async_polls(sandbox_state, since) > 0, "the sensor waited in the trigger"


def test_a_poking_sensor_reuses_its_token_across_pokes(sandbox: Any, sandbox_state: Any, vendor_conns: Any, moto_s3: Any) -> None:
    """POND tokens live an hour: a sensor poking every few seconds must not ask for one per poke."""
    case = CASES["pond"]
    ref = case.start(sandbox_state, "ok")
    since = len(sandbox_state.requests)
    with case.held_until_looked_at(sandbox_state, [ref]):
        result = case.sensor("wait", ref, deferrable=False, timeout=30).execute({})  # type: ignore[arg-type]
    assert ExportJob.from_dict(result).state == JobState.SUCCESS
    paths = [r["path"] for r in sandbox_state.requests[since:]]
    assert sum(1 for p in paths if p.startswith("/insights/snapshots/")) >= 2, "the sensor poked more than once"
    assert sum(1 for p in paths if p == "/oauth2/token") == 1


def test_mx_start_without_waiting_returns_the_guid_without_calling_mx(sandbox: Any, sandbox_state: Any, vendor_conns: Any) -> None:
    """MX has nothing to submit: with wait_for_completion=False the operator hands the GUID on untouched."""
    from tests.support.mx import new_guid

    guid = new_guid()
    since = len(sandbox_state.requests)
    op = CASES["mx"].operator("start", wait_for_completion=False, snapshot_guid=guid)
    assert op.execute({}) == guid  # type: ignore[arg-type]
    assert sandbox_state.requests[since:] == []
