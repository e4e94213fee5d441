"""Engine parameters that arrive at run time (mapped in from an XCom) are checked before any vendor call."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from airflow.sdk import DAG, task

from tests.support.generic_hook import GenericExportOperator

# One mapped export per entry: every one but the last is invalid and must fail before its submit.
VALID: dict[str, Any] = {"poll_interval": 0.2, "deferrable": True}
BAD_AND_GOOD: list[dict[str, Any]] = [
    {**VALID, "poll_interval": 0},
    {**VALID, "poll_interval": -5},
    {**VALID, "job_timeout": -1},
    {**VALID, "wait_for_completion": "False"},
    {**VALID, "deferrable": "no"},
    {**VALID, "max_resubmits": -1},
    VALID,
]

with DAG("engine_params_from_xcom", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as dag:

    @task
    def settings() -> list[dict[str, Any]]:
        return BAD_AND_GOOD

    GenericExportOperator.partial(task_id="export").expand_kwargs(settings())
