"""Below Airflow 3.3 (no task_state_store) a retry still resumes the vendor job its failed try submitted.

The job id is kept in one Airflow Variable per task instance (core/compat.py). XCom could not do it:
Airflow deletes a task instance's XComs when its next try starts.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from airflow_export_providers.core import compat
from tests.conftest import set_connection
from tests.support.airflow import load_dag, run_dag, task_states, xcom
from tests.support.generic_hook import generic_connection


@pytest.fixture
def generic_conn(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, "generic_default", generic_connection(sandbox.url, sandbox.state.secret("generic-token")))


def resume_variables(dag_id: str) -> dict[str, str]:
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(Variable).filter(Variable.key.like(f"{compat.VARIABLE_PREFIX}.{dag_id}.%")).all()
        return {row.key: row.val for row in rows}


def test_each_mapped_instance_resumes_its_own_job_from_its_variable(airflow_db: Any, sandbox_state: Any, generic_conn: None) -> None:
    sandbox_state.config["generic"] = {"pending_seconds": 0.3, "running_seconds": 0.3}
    before = sandbox_state.submissions["generic"]
    run = run_dag(load_dag("resume_fallback.py", "resume_fallback_mapped", folder="tests/dags"),
                  logical_date=datetime(2026, 5, 1, tzinfo=timezone.utc))
    assert task_states(run) == {"export": "success"}
    jobs = [xcom(run, "export", map_index=i) for i in (0, 1)]
    assert sandbox_state.submissions["generic"] - before == 2, "one submit per task instance, none by a retry"
    assert jobs[0]["job_id"] != jobs[1]["job_id"]
    for job in jobs:  # the retry found its own job id in its own Variable
        assert job["state"] == "SUCCESS" and job["extra"]["kept_in_variable"] == job["job_id"]
    assert resume_variables("resume_fallback_mapped") == {}, "a finished export forgets its job: a clear exports anew"


def test_the_operator_falls_back_to_a_variable_only_without_task_state_store(
    airflow_db: Any, sandbox_state: Any, generic_conn: None
) -> None:
    sandbox_state.config["generic"] = {"pending_seconds": 0.3, "running_seconds": 0.3}
    before = sandbox_state.submissions["generic"]
    run = run_dag(load_dag("resume_fallback.py", "resume_fallback_auto", folder="tests/dags"),
                  logical_date=datetime(2026, 5, 2, tzinfo=timezone.utc))
    assert task_states(run) == {"export": "success"}
    job = xcom(run, "export")
    assert sandbox_state.submissions["generic"] - before == 1, "the retry resumed the job"
    kept = job["extra"]["kept_in_variable"]
    if compat.HAS_TASK_STATE_STORE:
        assert kept is None, "Airflow 3.3+: the job id lives in task_state_store, no Variable is written"
    else:
        assert kept == job["job_id"], "below 3.3 the job id survived the failed try in the Variable"
    assert resume_variables("resume_fallback_auto") == {}


def test_variable_key_is_one_per_task_instance_and_fits_the_column() -> None:
    keys = {compat.variable_key("d", "t", run, index) for run in ("manual__1", "manual__2") for index in (-1, 0, 1)}
    assert len(keys) == 6
    long = compat.variable_key("d" * 250, "t" * 250, "r" * 250, 3)
    assert len(long) <= 250 and long != compat.variable_key("d" * 250, "t" * 250, "r" * 250, 4)
    odd = compat.variable_key("d", "t", "manual__2026-01-01T00:00:00+00:00/../?#", -1)
    assert "/" not in odd.removeprefix(compat.VARIABLE_PREFIX) and "?" not in odd and "#" not in odd
