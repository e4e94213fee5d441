"""Indicative: export one Dynamic user segment every day, by name, into Azure Blob Storage.

Dynamic segments are refreshed by Indicative once a day, so a daily export gives a fresh member
list per day. The segment is chosen by name (``params.segment``, resolved through the segments
list); the landed blob is ``segments/<day>/<segment-name>-<id>.csv`` (the run's logical date, or
for a run triggered by hand without one, the day it was triggered) and a rerun of the same day replaces it.

Connections: ``indicative_default`` (API key / access token; extra ``aws_conn_id`` for the
``s3://`` result files), ``aws_default`` (reads Indicative's result bucket), ``wasb_default``.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

from airflow.sdk import DAG, Param

from airflow_export_providers.operators.indicative import IndicativeSegmentExportOperator
from airflow_export_providers.transfers.export_to_azure_blob import ExportToAzureBlobOperator

# Every example reads its poll interval from AEP_EXAMPLE_POLL_INTERVAL (seconds; see the README).
POLL_INTERVAL = float(os.environ.get("AEP_EXAMPLE_POLL_INTERVAL", "10"))

with DAG(
    dag_id="indicative_segment_daily",
    description="Daily export of one Dynamic Indicative segment into Azure Blob",
    schedule="@daily",
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    params={"segment": Param("Recent Registrants", type="string", description="segment name or segmentId")},
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    tags=["indicative", "export", "azure"],
) as dag:
    export = IndicativeSegmentExportOperator(
        task_id="export_segment",
        segment="{{ params.segment }}",
        poll_interval=POLL_INTERVAL,
        job_timeout=timedelta(hours=6),  # large segments can take hours; the file then lives 48 h
    )
    land = ExportToAzureBlobOperator(
        task_id="land_in_blob",
        export=export.output,
        wasb_conn_id="wasb_default",
        container="indicative",
        prefix="segments/{{ (dag_run.logical_date or dag_run.run_after) | ds }}",  # no `ds` without a logical date
    )
    export >> land
