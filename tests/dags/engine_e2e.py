"""A DAG for the real-stack e2e test: a POND snapshot waits deferred in the triggerer, then lands in S3."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import DAG

from airflow_export_providers.core.compat import CronDataIntervalTimetable
from airflow_export_providers.operators.pond import PondSnapshotOperator
from airflow_export_providers.transfers.export_to_s3 import ExportToS3Operator

with DAG(
    "pond_e2e_deferred",
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    # a backfill that reprocesses runs can race the scheduler on SQLite ("Task Instance not found"):
    # retry fast so the test sees the retry, not the example DAGs' production retry delay
    default_args={"retries": 2, "retry_delay": timedelta(seconds=2)},
) as dag:
    snapshot = PondSnapshotOperator(task_id="snapshot", deferrable=True, poll_interval=1, job_timeout=timedelta(minutes=10))
    ExportToS3Operator(task_id="land", export=snapshot.output, bucket="e2e-landing", prefix="pond/{{ data_interval_start | ds }}")

with DAG(
    "pond_e2e_backfill",
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=3,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=2)},
) as backfill_dag:
    snapshot = PondSnapshotOperator(task_id="snapshot", poll_interval=1, job_timeout=timedelta(minutes=10))
    ExportToS3Operator(task_id="land", export=snapshot.output, bucket="e2e-landing-backfill", prefix="pond/{{ data_interval_start | ds }}")
