"""A DAG for the Celery e2e test (tests/e2e/test_celery_stack.py): one large file landed in S3.

The file is the sandbox's generated ``/files/gen/{size}`` (through the test ``FilesHook``), so the test
can slow its download down and SIGKILL the Celery worker while the multipart upload is half-way.
``retry_delay=0``: the retry runs as soon as the scheduler has failed the dead worker's try.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import DAG

from airflow_export_providers.transfers.export_to_s3 import ExportToS3Operator

SIZE = 48 * 1024 * 1024
BUCKET = "celery-e2e"
KEY = "worker-kill/big.bin"
EXPORT = {
    "vendor": "files",
    "conn_id": "files_default",
    "job_id": "celery-e2e",
    "state": "SUCCESS",
    "raw_state": "done",
    "files": [{"vendor": "files", "conn_id": "files_default", "job_id": "celery-e2e", "key": f"gen/{SIZE}",
               "name": "big.bin", "size": SIZE}],
    "hook_class": "tests.support.files_hook.FilesHook",
    "hook_kwargs": {},
}

with DAG(
    "celery_e2e_worker_kill",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    default_args={"retries": 1, "retry_delay": timedelta(seconds=0)},
) as dag:
    ExportToS3Operator(task_id="land", export=EXPORT, aws_conn_id="aws_default", bucket=BUCKET, prefix="worker-kill")
