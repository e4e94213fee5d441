"""The harness itself: every real server answers on loopback, and dag.test() runs on the migrated DB."""

from __future__ import annotations

import requests


def test_servers_answer(sandbox, moto_s3, azurite) -> None:
    assert requests.get(f"{sandbox.url}/_sandbox/stats", timeout=5).json()["jobs"] >= 0
    s3 = moto_s3.client()
    s3.create_bucket(Bucket="harness")
    s3.put_object(Bucket="harness", Key="k", Body=b"v")
    assert s3.get_object(Bucket="harness", Key="k")["Body"].read() == b"v"
    container = azurite.service().create_container("harness")
    container.upload_blob("k", b"v")
    assert container.download_blob("k").readall() == b"v"


def test_dag_test_runs_with_task_state_store(airflow_db) -> None:
    from tests.support.airflow import load_dag, run_dag, task_states, xcom

    run = run_dag(load_dag("harness_state_store.py", folder="tests/dags"))
    assert str(run.state) == "success"
    assert task_states(run) == {"remember": "success"}
    assert xcom(run, "remember") == "first-try"
