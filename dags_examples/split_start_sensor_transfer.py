"""SGI POND, submit and wait apart: start the snapshot, wait for it with a sensor, then land it in S3.

The same work as ``pond_daily_snapshot.py``, split in three tasks:

1. ``start_snapshot`` schedules the POND snapshot of the run's data interval and returns at once
   (``wait_for_completion=False``): its XCom is the snapshot href, nothing else.
2. ``wait_for_snapshot`` (``PondSnapshotSensor``) takes that href (an XComArg here;
   ``"{{ ti.xcom_pull('start_snapshot') }}"`` works too) and waits in the triggerer, holding no worker
   slot, until every item is complete; it returns the ExportJob (files, sizes, row counts) and fails
   with POND's words when an item failed. After ``timeout`` it fails, or is skipped with ``soft_fail``.
3. ``land_in_s3`` streams the files to ``s3://analytics-landing/pond/split/<day>/`` and verifies them.

Why split: the wait gets a sensor's controls (``timeout``, ``soft_fail``, ``mode="reschedule"``
when there is no triggerer), a retry of the wait never schedules a second snapshot, and the sensor
alone can wait for a snapshot another DAG or a person scheduled (pass its href as a param).

The schedule is a data-interval timetable: each run snapshots one whole UTC day (Airflow 3's plain
``"@daily"`` gives runs with zero-length data intervals); a run triggered by hand without a logical
date snapshots the last complete UTC day before it. Connections: ``pond_default``, ``aws_default``.
See docs/split_flow.md.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

from airflow.sdk import DAG

from airflow_export_providers.core.compat import CronDataIntervalTimetable
from airflow_export_providers.core.interval import INTERVAL_MACROS
from airflow_export_providers.operators.pond import PondSnapshotOperator
from airflow_export_providers.sensors.pond import PondSnapshotSensor
from airflow_export_providers.transfers.export_to_s3 import ExportToS3Operator

# Every example reads its poll interval from AEP_EXAMPLE_POLL_INTERVAL (seconds; see the README).
POLL_INTERVAL = float(os.environ.get("AEP_EXAMPLE_POLL_INTERVAL", "60"))

with DAG(
    dag_id="split_start_sensor_transfer",
    description="POND snapshot started by one task, waited for by a deferrable sensor, landed in S3",
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=3,
    user_defined_macros=INTERVAL_MACROS,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    tags=["pond", "split-flow", "sensor", "s3"],
) as dag:
    start = PondSnapshotOperator(
        task_id="start_snapshot",
        entity="event",
        # created_at_from / created_at_to default to the run's data interval
        wait_for_completion=False,
    )
    wait = PondSnapshotSensor(
        task_id="wait_for_snapshot",
        snapshot=start.output,
        deferrable=True,
        poke_interval=POLL_INTERVAL,
        timeout=timedelta(hours=6).total_seconds(),
    )
    land = ExportToS3Operator(
        task_id="land_in_s3",
        export=wait.output,
        aws_conn_id="aws_default",
        bucket="analytics-landing",
        prefix="pond/split/{{ interval_day(dag_run) }}",
    )
    start >> wait >> land
