"""Azure Mobile Engagement: a daily ``events`` export into an Azure Blob container, then copied into S3.

Each run asks Mobile Engagement for the events of its data interval (``startDate`` = ``endDate`` = the
interval's day for this daily schedule). The operator derives a short-lived write + list SAS for the
container ``mobile-engagement-exports`` from the ``wasb_default`` connection (nobody pastes SAS
tokens), the service writes its JSON blobs under ``{task id}/`` in that container, and the
ExportJob the operator returns lists those blobs. ``ExportToS3Operator`` then streams them to
``s3://analytics-landing/mobile_engagement/events/<day>/``, verifying size and MD5. A run triggered by
hand without a logical date (the UI's Trigger button, ``airflow dags trigger``) has no data interval:
it exports the last complete UTC day before it, under that day's prefix (``interval_day(dag_run)``).

Waiting happens in the triggerer when ``[operators] default_deferrable`` is true, in the worker
otherwise. A retry after the task was created resumes the same export task.

Connections: ``azure_mobile_engagement_default`` (Azure AD app: client id / secret, tenant,
subscription, resource group, app collection, app), ``wasb_default``, ``aws_default``.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

from airflow.sdk import DAG

from airflow_export_providers.core.compat import CronDataIntervalTimetable
from airflow_export_providers.core.interval import INTERVAL_MACROS
from airflow_export_providers.operators.mobile_engagement import MobileEngagementExportOperator
from airflow_export_providers.transfers.export_to_s3 import ExportToS3Operator

# Every example reads its poll interval from AEP_EXAMPLE_POLL_INTERVAL (seconds; see the README).
POLL_INTERVAL = float(os.environ.get("AEP_EXAMPLE_POLL_INTERVAL", "60"))

with DAG(
    dag_id="mobile_engagement_daily_events",
    description="Daily Azure Mobile Engagement events export into Azure Blob, copied on into S3",
    # data intervals (not Airflow 3's default zero-length cron runs): each run exports its own day
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=3,
    user_defined_macros=INTERVAL_MACROS,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    tags=["mobile_engagement", "azure", "export", "s3"],
) as dag:
    export_events = MobileEngagementExportOperator(
        task_id="export_events",
        kind="events",
        # export_start_date / export_end_date default to the run's data interval (one day here)
        export_format="JsonBlob",
        wasb_conn_id="wasb_default",
        container="mobile-engagement-exports",
        poll_interval=POLL_INTERVAL,
        job_timeout=timedelta(hours=12),
    )
    copy_to_s3 = ExportToS3Operator(
        task_id="copy_to_s3",
        export=export_events.output,
        aws_conn_id="aws_default",
        bucket="analytics-landing",
        prefix="mobile_engagement/events/{{ interval_day(dag_run) }}",  # the exported day
    )
    export_events >> copy_to_s3
