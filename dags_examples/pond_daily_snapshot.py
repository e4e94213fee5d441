"""SGI POND: a daily snapshot of the ``event`` entity for each data interval, landed in S3.

Each run schedules a POND snapshot of the events created in its data interval
(``created_at_from`` = ``data_interval_start``, ``created_at_to`` = ``data_interval_end``, sent as
``2019-03-13T18:00:00.000Z``), waits until every item is complete, then streams the CSV items to
``s3://analytics-landing/pond/<interval start date>/event_000.csv``, ``event_001.csv``... verifying each file's
byte size and row count against what POND announced.

The schedule is a ``CronDataIntervalTimetable``: in Airflow 3 a cron string alone gives runs whose
data interval is empty (start == end), which is no range to snapshot. The prefix is named after the
interval's start (``interval_day(dag_run)``), so a scheduled run, a backfill and a manual run of the
same interval agree. Backfilling three days lands three prefixes; rerunning a day replaces that day's
files. Triggered by hand without a logical date (the UI's Trigger button, ``airflow dags trigger``),
a run has no data interval: it snapshots the last complete UTC day before it, under that day's prefix.

Waiting happens in the triggerer when ``[operators] default_deferrable`` is true
(``AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE=true``), in the worker otherwise. A retry after the
snapshot was scheduled resumes the same snapshot instead of scheduling another.

Connections: ``pond_default`` (OAuth client id / secret), ``aws_default``.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

from airflow.sdk import DAG

from airflow_export_providers.core.compat import CronDataIntervalTimetable
from airflow_export_providers.core.interval import INTERVAL_MACROS
from airflow_export_providers.operators.pond import PondSnapshotOperator
from airflow_export_providers.transfers.export_to_s3 import ExportToS3Operator

# Every example reads its poll interval from AEP_EXAMPLE_POLL_INTERVAL (seconds; see the README).
POLL_INTERVAL = float(os.environ.get("AEP_EXAMPLE_POLL_INTERVAL", "60"))

with DAG(
    dag_id="pond_daily_snapshot",
    description="Daily SGI POND event snapshot for the data interval, landed in S3",
    # Data intervals, not bare trigger times: each run covers [data_interval_start, data_interval_end).
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=3,
    user_defined_macros=INTERVAL_MACROS,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    tags=["pond", "export", "s3"],
) as dag:
    snapshot = PondSnapshotOperator(
        task_id="snapshot",
        entity="event",
        # created_at_from / created_at_to default to the run's data interval
        poll_interval=POLL_INTERVAL,
        job_timeout=timedelta(hours=6),
    )
    land = ExportToS3Operator(
        task_id="land_in_s3",
        export=snapshot.output,
        aws_conn_id="aws_default",
        bucket="analytics-landing",
        prefix="pond/{{ interval_day(dag_run) }}",  # the exported day, also for a run without a logical date
    )
    snapshot >> land
