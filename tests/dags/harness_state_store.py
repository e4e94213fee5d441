"""A DAG for the harness test: proves dag.test() runs and task_state_store survives a retry."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import DAG, task

with DAG("harness_state_store", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as dag:

    @task(retries=1, retry_delay=timedelta(seconds=0))
    def remember(task_state_store=None, ti=None):  # type: ignore[no-untyped-def]
        seen = task_state_store.get("k")
        if seen is None:
            task_state_store.set("k", "first-try")
            raise RuntimeError("fail the first try on purpose")
        return seen

    remember()
