"""Test DAGs for the transfer operators (files come from the sandbox's generic route via the test hook).

``landing_e2e_literal``: an ExportJob given as a literal dict, landed into S3 as it is and into Azure
Blob as Parquet. ``landing_e2e_conf``: the ExportJob comes from ``dag_run.conf`` (watermark tests).
``landing_e2e_both``: the ExportJob from ``dag_run.conf`` into S3 and Azure Blob (re-runs).
``landing_e2e_retry_s3`` / ``landing_e2e_retry_blob``: one transfer with a retry (a failed try, then its retry).
``landing_e2e_mapped``: one mapped S3 transfer per ExportJob in ``dag_run.conf['exports']`` (re-runs that shrink).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import DAG, task

from airflow_export_providers.transfers.export_to_azure_blob import ExportToAzureBlobOperator
from airflow_export_providers.transfers.export_to_s3 import ExportToS3Operator


def _file(name: str, resource: str, rows: int) -> dict[str, object]:
    return {
        "vendor": "files", "conn_id": "files_default", "job_id": "e2e-1", "key": name, "name": name,
        "rows": rows, "row_format": "avro", "compression": "gzip", "resource": resource,
    }


EXPORT = {
    "vendor": "files",
    "conn_id": "files_default",
    "job_id": "e2e-1",
    "state": "SUCCESS",
    "raw_state": "done",
    # transactions first on purpose: `order` must land users before them
    "files": [_file("e2e-transactions.avro.gz", "transactions", 40), _file("e2e-users.avro.gz", "users", 20)],
    "hook_class": "tests.support.files_hook.FilesHook",
    "hook_kwargs": {"stale_first": True},
}

with DAG("landing_e2e_literal", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as literal_dag:
    ExportToS3Operator(
        task_id="to_s3", export=EXPORT, bucket="e2e-landing", prefix="files/{{ ds }}", order=["users", "transactions"],
    )
    ExportToAzureBlobOperator(
        task_id="to_blob", export=EXPORT, container="e2e-landing", prefix="files/{{ ds }}", convert="parquet",
    )

with DAG("landing_e2e_conf", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as conf_dag:
    ExportToS3Operator(
        task_id="to_s3",
        export="{{ dag_run.conf['export'] | tojson }}",
        bucket="{{ dag_run.conf['bucket'] }}",
        prefix="wm/{{ ds }}",
    )

with DAG("landing_e2e_both", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as both_dag:
    ExportToS3Operator(task_id="to_s3", export="{{ dag_run.conf['export'] | tojson }}", bucket="{{ dag_run.conf['bucket'] }}",
                       prefix="rerun/{{ ds }}")
    ExportToAzureBlobOperator(task_id="to_blob", export="{{ dag_run.conf['export'] | tojson }}",
                              container="{{ dag_run.conf['bucket'] }}", prefix="rerun/{{ ds }}")

RETRY = {"retries": 1, "retry_delay": timedelta(seconds=0)}
with DAG("landing_e2e_retry_s3", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as retry_s3_dag:
    ExportToS3Operator(task_id="land", export="{{ dag_run.conf['export'] | tojson }}", bucket="{{ dag_run.conf['bucket'] }}",
                       prefix="retry/{{ ds }}", **RETRY)
with DAG("landing_e2e_retry_blob", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as retry_blob_dag:
    ExportToAzureBlobOperator(task_id="land", export="{{ dag_run.conf['export'] | tojson }}",
                              container="{{ dag_run.conf['bucket'] }}", prefix="retry/{{ ds }}", **RETRY)

with DAG("landing_e2e_mapped", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as mapped_dag:

    @task
    def exports(**context: object) -> list[dict[str, object]]:
        return list(context["dag_run"].conf["exports"])  # type: ignore[attr-defined]

    ExportToS3Operator.partial(task_id="to_s3", bucket="{{ dag_run.conf['bucket'] }}", prefix="mapped/{{ ds }}").expand(export=exports())
