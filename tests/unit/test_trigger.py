"""ExportJobTrigger: primitives only, one event, survives being rebuilt from its serialised form."""

from __future__ import annotations

import asyncio
import importlib
import json
import time
from typing import Any

import pytest

from airflow_export_providers.core.hook import import_hook
from airflow_export_providers.triggers.export_job import ExportJobTrigger
from tests.support.generic_hook import GenericHook, generic_connection

HOOK = f"{GenericHook.__module__}.GenericHook"


@pytest.fixture
def generic_conn(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    from tests.conftest import set_connection

    set_connection(monkeypatch, "generic_default", generic_connection(sandbox.url, sandbox.state.secret("generic-token")))
    return "generic_default"


def rebuild(trigger: ExportJobTrigger) -> ExportJobTrigger:
    """What the triggerer does with the row stored in the metadata DB."""
    classpath, kwargs = trigger.serialize()
    stored = json.loads(json.dumps(kwargs))  # must survive a JSON column unchanged
    module, _, name = classpath.rpartition(".")
    return getattr(importlib.import_module(module), name)(**stored)  # type: ignore[no-any-return]


async def collect(trigger: ExportJobTrigger, limit: float = 20) -> list[dict[str, Any]]:
    async def go() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    return await asyncio.wait_for(go(), limit)


def test_serialize_round_trip_is_primitives_only() -> None:
    trigger = ExportJobTrigger(hook_class=HOOK, conn_id="c", job_id="j", poll_interval=2, deadline=123.5, hook_kwargs={"a": 1})
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_export_providers.triggers.export_job.ExportJobTrigger"
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert rebuild(trigger).serialize() == trigger.serialize()


def test_only_export_hooks_can_be_named() -> None:
    with pytest.raises(ValueError, match="hook_class"):
        import_hook("os.path.join")


def test_polls_until_final_and_yields_one_event(sandbox_state: Any, generic_conn: str) -> None:
    job = sandbox_state.new_job("generic", {}, pending_seconds=0.3, running_seconds=0.3)
    trigger = ExportJobTrigger(hook_class=HOOK, conn_id=generic_conn, job_id=job.job_id, poll_interval=0.1, deadline=time.time() + 30)
    events = asyncio.run(collect(trigger))
    assert len(events) == 1
    assert events[0]["status"] == "success" and events[0]["job"]["state"] == "SUCCESS"
    assert events[0]["job"]["hook_class"] == HOOK


def test_failed_job_gives_failed_event(sandbox_state: Any, generic_conn: str) -> None:
    job = sandbox_state.new_job("generic", {}, pending_seconds=0, running_seconds=0.1, fail=True)
    trigger = ExportJobTrigger(hook_class=HOOK, conn_id=generic_conn, job_id=job.job_id, poll_interval=0.1)
    (event,) = asyncio.run(collect(trigger))
    assert event["status"] == "failed" and event["job"]["raw_state"] == "FAILED"


def test_wall_clock_deadline(sandbox_state: Any, generic_conn: str) -> None:
    job = sandbox_state.new_job("generic", {}, pending_seconds=3600)
    trigger = ExportJobTrigger(hook_class=HOOK, conn_id=generic_conn, job_id=job.job_id, poll_interval=60, deadline=time.time() + 0.5)
    (event,) = asyncio.run(collect(trigger, limit=10))
    assert event["status"] == "timeout"


def test_unknown_job_is_an_error_event_not_a_crash(sandbox_state: Any, generic_conn: str) -> None:
    trigger = ExportJobTrigger(hook_class=HOOK, conn_id=generic_conn, job_id="no-such-job", poll_interval=0.1)
    (event,) = asyncio.run(collect(trigger))
    assert event["status"] == "error" and "404" in event["message"]


def test_transient_errors_keep_polling(sandbox_state: Any, generic_conn: str) -> None:
    job = sandbox_state.new_job("generic", {}, pending_seconds=0.2, running_seconds=0.2)
    sandbox_state.add_fault(path=f"/generic/jobs/{job.job_id}", status=500, times=2)
    trigger = ExportJobTrigger(hook_class=HOOK, conn_id=generic_conn, job_id=job.job_id, poll_interval=0.05)
    (event,) = asyncio.run(collect(trigger, limit=60))
    assert event["status"] == "success"


def test_rebuilt_trigger_continues_the_same_job(sandbox_state: Any, generic_conn: str) -> None:
    """Kill the trigger mid-poll, rebuild it from serialize(): same job, no new submission."""
    job = sandbox_state.new_job("generic", {}, pending_seconds=0.5, running_seconds=0.5)
    submissions = sandbox_state.submissions["generic"]
    first = ExportJobTrigger(hook_class=HOOK, conn_id=generic_conn, job_id=job.job_id, poll_interval=0.1, deadline=time.time() + 30)

    async def interrupted() -> None:
        task = asyncio.ensure_future(collect(first))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(interrupted())
    polled = [r for r in sandbox_state.requests if r["path"] == f"/generic/jobs/{job.job_id}"]
    assert polled, "the first trigger should have polled before being killed"
    (event,) = asyncio.run(collect(rebuild(first)))
    assert event["status"] == "success" and event["job_id"] == job.job_id
    assert sandbox_state.submissions["generic"] == submissions
