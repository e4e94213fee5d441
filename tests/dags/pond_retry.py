"""POND test DAG: a retry after the snapshot was scheduled resumes it instead of scheduling another."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.sdk import DAG

from airflow_export_providers.core.compat import CronDataIntervalTimetable
from airflow_export_providers.operators.pond import PondSnapshotOperator


class FailFirstTryPondOperator(PondSnapshotOperator):
    """Fails its first try after the snapshot was scheduled, like a worker lost while waiting."""

    def complete(self, hook: Any, job: Any, context: Any) -> Any:
        if context["ti"].try_number == 1:
            raise RuntimeError("simulated crash after the snapshot was scheduled")
        return job


START = datetime(2026, 1, 1, tzinfo=timezone.utc)

for deferrable in (True, False):
    with DAG(f"pond_retry_after_submit_{'deferred' if deferrable else 'polling'}", schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"), start_date=START,
             catchup=False) as dag:
        FailFirstTryPondOperator(
            task_id="snapshot", poll_interval=0.2, deferrable=deferrable, retries=1, retry_delay=timedelta(seconds=0)
        )
    globals()[dag.dag_id] = dag
del dag  # each DAG is reachable by its id only (no duplicate under the loop variable)
