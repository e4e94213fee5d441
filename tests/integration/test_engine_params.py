"""In a real Airflow (dag.test()): engine parameters mapped in at run time are refused before any submit."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.conftest import set_connection
from tests.support.airflow import load_dag, run_dag
from tests.support.generic_hook import generic_connection


@pytest.fixture
def generic_conn(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, "generic_default", generic_connection(sandbox.url, sandbox.state.secret("generic-token")))


def mapped_states(dag_run: Any, task_id: str) -> dict[int, str]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter(
            TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id, TaskInstance.task_id == task_id
        ).all()
        return {ti.map_index: str(ti.state) for ti in tis}


@pytest.mark.timeout(300)
def test_values_from_an_xcom_are_checked_before_the_submit(airflow_db: Any, sandbox: Any, sandbox_state: Any,
                                                           generic_conn: None, capfd: pytest.CaptureFixture[str]) -> None:
    from tests.dags.engine_params import BAD_AND_GOOD

    sandbox_state.config["generic"] = {"pending_seconds": 0.2, "running_seconds": 0.2}
    before = requests.get(f"{sandbox.url}/_sandbox/stats", timeout=10).json()["submissions"].get("generic", 0)
    run = run_dag(load_dag("engine_params.py", "engine_params_from_xcom", folder="tests/dags"))
    states = mapped_states(run, "export")
    last = len(BAD_AND_GOOD) - 1
    assert states == {**{i: "failed" for i in range(last)}, last: "success"}, states
    after = requests.get(f"{sandbox.url}/_sandbox/stats", timeout=10).json()["submissions"].get("generic", 0)
    assert after - before == 1, "only the valid mapped export reached the vendor"
    out, err = capfd.readouterr()
    for field in ("poll_interval", "job_timeout", "wait_for_completion", "deferrable", "max_resubmits"):
        assert f"{field}: expected " in out + err, f"no error naming {field}"
