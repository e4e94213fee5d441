"""Security test DAG: one deferred export per vendor, landed in S3, so the metadata DB and the task logs
of a real run can be searched for every secret used (tests/integration/test_security.py)."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from airflow.sdk import DAG

from airflow_export_providers.operators.indicative import IndicativeSegmentExportOperator
from airflow_export_providers.operators.leanplum import LeanplumExportOperator
from airflow_export_providers.operators.mobile_engagement import MobileEngagementExportOperator
from airflow_export_providers.operators.mx import MxSnapshotOperator
from airflow_export_providers.operators.pond import PondSnapshotOperator
from airflow_export_providers.transfers.export_to_s3 import ExportToS3Operator

FAST: dict[str, Any] = {"deferrable": True, "poll_interval": 0.2}
RECENT = datetime.now(ZoneInfo("America/Los_Angeles"))

if os.environ.get("SECURITY_DAGS") == "1":  # set by the test only: other dag.test() runs need not parse it
    with DAG(
        "security_all_vendors",
        schedule=None,
        start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
        catchup=False,
        params={"bucket": "security-landing", "mx_guid": "CSS-SECURITY", "container": "security-me",
                # Leanplum keeps 60 days: two recent Pacific days
                "leanplum_start": (RECENT - timedelta(days=3)).strftime("%Y%m%d"), "leanplum_end": (RECENT - timedelta(days=2)).strftime("%Y%m%d")},
    ) as dag:
        exports = [
            PondSnapshotOperator(task_id="pond", created_at_from="2026-03-13T00:00:00Z",
                                 created_at_to="{{ '2026-03-14T00:00:00Z' }}", **FAST),
            LeanplumExportOperator(task_id="leanplum", export_start_date="{{ params.leanplum_start }}",
                                   export_end_date="{{ params.leanplum_end }}", **FAST),
            IndicativeSegmentExportOperator(task_id="indicative", segment="Churn Risk", **FAST),
            MxSnapshotOperator(task_id="mx", snapshot_guid="{{ params.mx_guid }}", resources="users,accounts", **FAST),
        ]
        for export in exports:
            export >> ExportToS3Operator(task_id=f"land_{export.task_id}", export=export.output, bucket="{{ params.bucket }}",
                                         prefix=f"{export.task_id}/{{{{ run_id }}}}", retries=0)
        MobileEngagementExportOperator(task_id="mobile_engagement", kind="events", container="{{ params.container }}",
                                       export_start_date="2026-03-01", export_end_date="2026-03-02",
                                       execution_timeout=timedelta(minutes=5), **FAST)
