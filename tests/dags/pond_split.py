"""POND test DAG: the split flow — schedule (no wait) -> PondSnapshotSensor -> land in S3."""

from __future__ import annotations

from datetime import datetime, timezone

from airflow.sdk import DAG

from airflow_export_providers.core.compat import CronDataIntervalTimetable
from airflow_export_providers.operators.pond import PondSnapshotOperator
from airflow_export_providers.sensors.pond import PondSnapshotSensor
from airflow_export_providers.transfers.export_to_s3 import ExportToS3Operator

START = datetime(2026, 1, 1, tzinfo=timezone.utc)

for deferrable in (True, False):
    with DAG(f"pond_split_flow_{'deferred' if deferrable else 'poking'}", schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"), start_date=START,
             catchup=False) as dag:
        start = PondSnapshotOperator(task_id="start", wait_for_completion=False)
        wait = PondSnapshotSensor(task_id="wait", snapshot=start.output, poke_interval=0.2, timeout=60, deferrable=deferrable)
        land = ExportToS3Operator(task_id="land", export=wait.output, bucket="pond-split", prefix="pond/{{ data_interval_start | ds }}")
        start >> wait >> land
    globals()[dag.dag_id] = dag
del dag  # each DAG is reachable by its id only (no duplicate under the loop variable)
