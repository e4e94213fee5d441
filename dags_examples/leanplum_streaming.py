"""Leanplum: a streaming export every 2 hours with a watermark in an Airflow Variable, landed in Azure Blob.

Each run exports what became available since the last landed export (Leanplum's streaming recipe:
startDate = now - 8 days, endDate = now + 2 days in Pacific time, startTime = the watermark, i.e.
the last export's endTime exactly, endTime = now). A run with nothing new succeeds with no files and
moves the watermark on. The transfer lands the files in the ``leanplum-stream`` container under
``leanplum/stream/<endTime>/`` and only then moves the Variable ``leanplum_stream_watermark`` to
``endTime``: a failed landing leaves it where it was, and the next run exports that range again.

A run that finds the previous export still PENDING/RUNNING resumes it instead of starting another
(the job in flight is kept in the Variable ``leanplum_stream_watermark.inflight``).
``max_active_runs=1`` keeps runs from overlapping at all (a streaming export in a DAG that allows
overlapping runs and is in no 1-slot pool is refused when the DAG is parsed). When the Variable does not exist yet,
the stream starts at the first run's data interval start (a manual run, which has no data interval
or a zero-length one, exports everything Leanplum still holds for the date range).

Connections: ``leanplum_default`` (login = appId, password = data-export clientKey), ``wasb_default``.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

from airflow.sdk import DAG

from airflow_export_providers.operators.leanplum import LeanplumStreamingExportOperator
from airflow_export_providers.transfers.export_to_azure_blob import ExportToAzureBlobOperator

# Every example reads its poll interval from AEP_EXAMPLE_POLL_INTERVAL (seconds; see the README).
POLL_INTERVAL = float(os.environ.get("AEP_EXAMPLE_POLL_INTERVAL", "60"))

with DAG(
    dag_id="leanplum_streaming",
    description="Leanplum streaming export every 2 hours, watermark in a Variable, landed in Azure Blob",
    schedule=timedelta(hours=2),
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    tags=["leanplum", "export", "streaming", "azure"],
) as dag:
    export = LeanplumStreamingExportOperator(
        task_id="export_sessions",
        watermark_variable="leanplum_stream_watermark",
        # A new stream starts at its first run's data interval; a manual run (no interval, or the zero-length
        # one a manual run with a logical date gets) exports everything Leanplum still holds.
        initial_start_time=(
            "{{ data_interval_start.int_timestamp if data_interval_start is defined and data_interval_start"
            " and data_interval_end and data_interval_end > data_interval_start else '' }}"
        ),
        export_format="json",
        poll_interval=POLL_INTERVAL,
        max_resubmits=2,
    )
    land = ExportToAzureBlobOperator(
        task_id="land_in_blob",
        export=export.output,
        wasb_conn_id="wasb_default",
        container="leanplum-stream",
        prefix="leanplum/stream/{{ ti.xcom_pull(task_ids='export_sessions')['extra']['end_time'] }}",
    )
    export >> land
