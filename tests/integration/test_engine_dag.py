"""The engine end to end in a real Airflow (dag.test()): submit -> defer -> trigger -> execute_complete."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import set_connection
from tests.support.airflow import load_dag, run_dag, task_states, xcom
from tests.support.generic_hook import generic_connection


@pytest.fixture
def generic_conn(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, "generic_default", generic_connection(sandbox.url, sandbox.state.secret("generic-token")))


@pytest.mark.parametrize("mode", ["deferred", "polling"])
def test_submit_wait_and_return_the_job(airflow_db: Any, sandbox_state: Any, generic_conn: None, mode: str) -> None:
    sandbox_state.config["generic"] = {"pending_seconds": 0.5, "running_seconds": 0.5}
    before = sandbox_state.submissions["generic"]
    run = run_dag(load_dag("engine_generic.py", f"engine_generic_{mode}", folder="tests/dags"))
    assert task_states(run) == {"export": "success"}
    job = xcom(run, "export")
    assert job["state"] == "SUCCESS" and job["vendor"] == "generic"
    assert job["job_id"] in sandbox_state.jobs
    assert sandbox_state.submissions["generic"] - before == 1


@pytest.mark.parametrize("mode", ["deferred", "polling"])
def test_a_retry_after_the_submit_does_not_submit_again(airflow_db: Any, sandbox_state: Any, generic_conn: None, mode: str) -> None:
    sandbox_state.config["generic"] = {"pending_seconds": 0.3, "running_seconds": 0.3}
    before = sandbox_state.submissions["generic"]
    run = run_dag(load_dag("engine_generic.py", f"engine_generic_retry_{mode}", folder="tests/dags"))
    assert task_states(run) == {"export": "success"}
    assert xcom(run, "export")["state"] == "SUCCESS"
    assert sandbox_state.submissions["generic"] - before == 1, "the retry must resume the stored job id"


def test_deadline_while_deferred_fails_the_task(airflow_db: Any, sandbox_state: Any, generic_conn: None) -> None:
    sandbox_state.config["generic"] = {"pending_seconds": 3600, "running_seconds": 0}
    run = run_dag(load_dag("engine_generic.py", "engine_generic_timeout", folder="tests/dags"))
    assert task_states(run) == {"export": "failed"}
