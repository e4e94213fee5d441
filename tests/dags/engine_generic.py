"""Engine DAGs on the sandbox's vendor-neutral job API: defer, poll, resume after a failed try."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.sdk import DAG

from tests.support.generic_hook import GenericExportOperator


class FailFirstTryOperator(GenericExportOperator):
    """Fails its first try *after* the vendor job was submitted, like a worker lost mid-wait."""

    def complete(self, hook: Any, job: Any, context: Any) -> Any:
        if context["ti"].try_number == 1:
            raise RuntimeError("simulated crash after the submit")
        return job


START = datetime(2026, 1, 1, tzinfo=timezone.utc)

for deferrable in (True, False):
    with DAG(f"engine_generic_{'deferred' if deferrable else 'polling'}", schedule=None, start_date=START) as dag:
        GenericExportOperator(task_id="export", deferrable=deferrable, poll_interval=0.2)
    globals()[dag.dag_id] = dag

    with DAG(f"engine_generic_retry_{'deferred' if deferrable else 'polling'}", schedule=None, start_date=START) as dag:
        FailFirstTryOperator(
            task_id="export", deferrable=deferrable, poll_interval=0.2, retries=1, retry_delay=timedelta(seconds=0)
        )
    globals()[dag.dag_id] = dag

with DAG("engine_generic_timeout", schedule=None, start_date=START) as dag:
    GenericExportOperator(task_id="export", deferrable=True, poll_interval=0.2, job_timeout=float(os.environ.get("ENGINE_TIMEOUT", "1")))
