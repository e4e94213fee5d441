"""ExportJobTrigger spreads its first poll over one interval (a triggerer restarting with thousands of them)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from airflow_export_providers.triggers import export_job
from airflow_export_providers.triggers.export_job import ExportJobTrigger
from tests.support.generic_hook import GenericHook, generic_connection

HOOK = f"{GenericHook.__module__}.GenericHook"


@pytest.fixture
def generic_conn(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    from tests.conftest import set_connection

    set_connection(monkeypatch, "generic_default", generic_connection(sandbox.url, sandbox.state.secret("generic-token")))
    return "generic_default"


def first_polls(sandbox_state: Any, job_id: str) -> list[dict[str, Any]]:
    return [r for r in sandbox_state.requests if r["path"] == f"/generic/jobs/{job_id}"]


@pytest.mark.parametrize(("interval", "deadline_in", "expected_max"), [(2.0, None, 2.0), (500.0, None, 60.0), (60.0, 0.3, 0.3)])
def test_first_poll_waits_a_random_part_of_one_interval(
    sandbox_state: Any, generic_conn: str, monkeypatch: pytest.MonkeyPatch, interval: float, deadline_in: float | None,
    expected_max: float,
) -> None:
    job = sandbox_state.new_job("generic", {}, pending_seconds=0, running_seconds=0)
    drawn: list[tuple[float, float]] = []
    waited: list[float] = []

    def uniform(a: float, b: float) -> float:
        drawn.append((a, b))
        return b  # the longest wait it may pick

    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:
        waited.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(export_job.random, "uniform", uniform)
    monkeypatch.setattr(export_job.asyncio, "sleep", sleep)
    deadline = None if deadline_in is None else time.time() + deadline_in
    trigger = ExportJobTrigger(hook_class=HOOK, conn_id=generic_conn, job_id=job.job_id, poll_interval=interval, deadline=deadline)

    async def go() -> list[Any]:
        return [e.payload async for e in trigger.run()]

    (event,) = asyncio.run(asyncio.wait_for(go(), 20))
    assert event["status"] == "success"
    ((low, high),) = drawn
    assert low == 0.0 and 0 < high <= min(interval, 60.0, expected_max)  # capped by the deadline too
    assert 0 < waited[0] <= expected_max and (deadline_in is None or waited[0] <= deadline_in)
    assert len(first_polls(sandbox_state, job.job_id)) == 1  # then one poll: the job was done
