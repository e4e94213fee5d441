"""A DAG for the real-stack e2e test: one deferrable export on the sandbox's generic job API."""

from __future__ import annotations

from datetime import datetime, timezone

from airflow.sdk import DAG

from tests.support.generic_hook import GenericExportOperator

with DAG("engine_e2e_deferred", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as dag:
    GenericExportOperator(task_id="export", deferrable=True, poll_interval=1)
