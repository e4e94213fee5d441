"""Leanplum: a daily historical export of one Pacific day of sessions, landed in S3 (backfill-ready).

Leanplum's dates are Pacific days, so the DAG runs on Pacific midnights (a
``CronDataIntervalTimetable`` in America/Los_Angeles): each run's data interval is exactly one
Pacific day, also on the 23- and 25-hour days around DST, and the export's ``startDate`` =
``endDate`` = that day (the operator converts the UTC data interval; ``leanplum_date`` is also
available as a template macro). A run without a data interval (the Trigger button, the REST API
with ``logical_date: null``) exports the last complete Pacific day before it; the prefix names the
exported day through ``{{ leanplum_day(dag_run) }}`` in both cases.
Files (one JSON session per line) land at
``s3://leanplum-exports/leanplum/sessions/YYYYMMDD/export-...-output-N.json``; rerunning a day
replaces that day's objects.

Backfill: ``airflow backfill create --dag-id leanplum_daily_export --from-date ... --to-date ...``
for days inside Leanplum's 60-day window. Leanplum allows 24 exports a day: a run refused for quota
waits (deferred, holding no worker) and tries again (``quota_retry_seconds``, at most until the next
Pacific midnight), so a long backfill completes over days by itself. Put the task in a small pool
(see docs/leanplum.md) to keep the number of exports in flight low.

Sessions arrive every 2-4 hours and offline ones up to 8 days late: a day exported right after it
ends misses those. Use ``leanplum_streaming.py`` when every late session matters.

Connections: ``leanplum_default`` (login = appId, password = data-export clientKey), ``aws_default``.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from airflow_export_providers.core.compat import CronDataIntervalTimetable
from airflow_export_providers.operators.leanplum import LEANPLUM_MACROS, LeanplumExportOperator
from airflow_export_providers.transfers.export_to_s3 import ExportToS3Operator

# Every example reads its poll interval from AEP_EXAMPLE_POLL_INTERVAL (seconds; see the README).
POLL_INTERVAL = float(os.environ.get("AEP_EXAMPLE_POLL_INTERVAL", "60"))

with DAG(
    dag_id="leanplum_daily_export",
    description="Daily Leanplum session export of one Pacific day, landed in S3",
    # A data-interval timetable on Pacific midnights: each run's interval is one whole Pacific day
    # (Airflow 3's plain "@daily" is a trigger timetable with zero-length intervals).
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="America/Los_Angeles"),
    start_date=pendulum.datetime(2026, 1, 1, tz="America/Los_Angeles"),
    catchup=False,
    max_active_runs=4,
    user_defined_macros=LEANPLUM_MACROS,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    tags=["leanplum", "export", "s3"],
) as dag:
    export = LeanplumExportOperator(
        task_id="export_sessions",
        # export_start_date / export_end_date default to the data interval in Pacific days
        export_format="json",
        poll_interval=POLL_INTERVAL,
        max_resubmits=2,
        job_timeout=timedelta(days=3),
    )
    land = ExportToS3Operator(
        task_id="land_in_s3",
        export=export.output,
        aws_conn_id="aws_default",
        bucket="leanplum-exports",
        prefix="leanplum/sessions/{{ leanplum_day(dag_run) }}",
    )
    export >> land
