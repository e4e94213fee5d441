"""MX: land every resource of an MX snapshot in S3 as Parquet, triggered with the snapshot's GUID.

MX generates a snapshot on request (it can take days) and hands out a GUID such as ``CSS-1234``.
Trigger this DAG from the UI with that GUID (the form asks for it): the sensor waits in the
triggerer (no worker slot) until the snapshot lists its files, the operator keeps the chosen
resources in MX's load order (users, members, accounts, transactions, ...), and the transfer
converts each gzip'd Avro file to Parquet under ``s3://mx-landing/mx/<guid>/<resource>/``.
A rerun with the same GUID replaces the objects. A purged snapshot (30 days after generation)
fails the sensor with a clear message.

Connections: ``mx_snapshots_default`` (client id / API key), ``aws_default``.
``AEP_EXAMPLE_POLL_INTERVAL`` (environment, seconds, default 900) sets how often the snapshot is checked.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

from airflow.sdk import DAG, Param

from airflow_export_providers.hooks.mx import MX_LOAD_ORDER
from airflow_export_providers.operators.mx import MxSnapshotOperator
from airflow_export_providers.sensors.mx import MxSnapshotSensor
from airflow_export_providers.transfers.export_to_s3 import ExportToS3Operator

# Every example reads its poll interval from AEP_EXAMPLE_POLL_INTERVAL (seconds; see the README).
POKE_SECONDS = float(os.environ.get("AEP_EXAMPLE_POLL_INTERVAL", "900"))

with DAG(
    dag_id="mx_snapshot",
    description="Wait for an MX snapshot, land every resource as Parquet in S3",
    schedule=None,  # triggered by hand (or by the API) with the GUID MX handed out
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    params={
        "snapshot_guid": Param(
            type="string",
            title="Snapshot GUID",
            description="The GUID MX sent when the snapshot was generated, e.g. CSS-1234",
            minLength=1,
            pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        ),
        "resources": Param(
            list(MX_LOAD_ORDER),
            type="array",
            title="Resources",
            description="Which resources to land (default: all seven)",
            items={"type": "string", "enum": list(MX_LOAD_ORDER)},
            minItems=1,
        ),
    },
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    tags=["mx", "snapshot", "s3"],
) as dag:
    wait = MxSnapshotSensor(
        task_id="wait_for_snapshot",
        snapshot_guid="{{ params.snapshot_guid }}",
        deferrable=True,
        poke_interval=POKE_SECONDS,
        timeout=timedelta(days=7).total_seconds(),
    )
    files = MxSnapshotOperator(
        task_id="list_snapshot_files",
        snapshot_guid="{{ params.snapshot_guid }}",
        resources="{{ params.resources }}",
        deferrable=True,
        poll_interval=POKE_SECONDS,
    )
    land = ExportToS3Operator(
        task_id="land_parquet_in_s3",
        export=files.output,
        aws_conn_id="aws_default",
        bucket="mx-landing",
        prefix="mx/{{ params.snapshot_guid }}",  # + <resource>/<file>.parquet (ExportFile.name)
        convert="parquet",
        order=list(MX_LOAD_ORDER),
    )
    wait >> files >> land
