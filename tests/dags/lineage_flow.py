"""A test DAG for lineage (tests/integration/test_openlineage.py): a POND snapshot landed in S3 and in Azure Blob.

``lineage_landing``: the snapshot (a real vendor call to the sandbox) lands under ``pond/{{ ds }}`` in
both destinations; each transfer declares one Asset (``s3://lineage-landing/pond`` and the Azure
container's URL + ``/pond``). A DAG scheduled on such an Asset runs on the real stack in
tests/e2e/test_celery_stack.py.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

from airflow.sdk import DAG

from airflow_export_providers.core.compat import CronDataIntervalTimetable
from airflow_export_providers.operators.pond import PondSnapshotOperator
from airflow_export_providers.transfers.export_to_azure_blob import ExportToAzureBlobOperator
from airflow_export_providers.transfers.export_to_s3 import ExportToS3Operator

BUCKET = "lineage-landing"
POLL = float(os.environ.get("AEP_EXAMPLE_POLL_INTERVAL", "0.5"))

with DAG("lineage_landing", schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"), start_date=datetime(2026, 1, 1, tzinfo=timezone.utc), catchup=False) as landing_dag:
    snapshot = PondSnapshotOperator(task_id="snapshot", entity="event", poll_interval=POLL, retries=0)
    snapshot >> ExportToS3Operator(task_id="to_s3", export=snapshot.output, bucket=BUCKET, prefix="pond/{{ ds }}", retries=0)
    snapshot >> ExportToAzureBlobOperator(task_id="to_blob", export=snapshot.output, container=BUCKET,
                                          prefix="pond/{{ ds }}", retries=0)
