"""Indicative: export every Dynamic user segment into S3, one mapped task per segment.

The list of segments is read at run time (``IndicativeListSegmentsOperator``), so a segment
created in Indicative's UI is exported from the next run on without touching the DAG. Each
segment gets its own export task and landing task (dynamic task mapping); one failing segment
does not stop the others. Keys: ``indicative/segments/<day>/<segment-name>-<id>.csv``, the day being the
run's logical date, or the day it was triggered for a run triggered by hand without one.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.sdk import DAG

from airflow_export_providers.operators.indicative import IndicativeListSegmentsOperator, IndicativeSegmentExportOperator
from airflow_export_providers.transfers.export_to_s3 import ExportToS3Operator

# Every example reads its poll interval from AEP_EXAMPLE_POLL_INTERVAL (seconds; see the README).
POLL_INTERVAL = float(os.environ.get("AEP_EXAMPLE_POLL_INTERVAL", "10"))


def segment_id(segment: dict[str, Any]) -> str:
    """Export by segmentId: names are not unique in Indicative, ids are."""
    return str(segment["segmentId"])


with DAG(
    dag_id="indicative_dynamic_segments",
    description="Export every Dynamic Indicative segment into S3 (dynamic task mapping)",
    schedule="@daily",
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    tags=["indicative", "export", "s3"],
) as dag:
    segments = IndicativeListSegmentsOperator(task_id="list_dynamic_segments", segment_type="Dynamic")
    exports = IndicativeSegmentExportOperator.partial(
        task_id="export_segment",
        poll_interval=POLL_INTERVAL,
        job_timeout=timedelta(hours=6),
        max_active_tis_per_dagrun=4,  # be gentle with the vendor's rate limit (429)
        map_index_template="{{ task.segment }}",
    ).expand(segment=segments.output.map(segment_id))
    ExportToS3Operator.partial(
        task_id="land_in_s3",
        aws_conn_id="aws_default",
        bucket="analytics-landing",
        prefix="indicative/segments/{{ (dag_run.logical_date or dag_run.run_after) | ds }}",
    ).expand(export=exports.output)
