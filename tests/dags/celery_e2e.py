"""DAGs for the Celery e2e test (tests/e2e/test_celery_stack.py).

``celery_e2e_worker_kill``: one large file landed in S3. The file is the sandbox's generated
``/files/gen/{size}`` (through the test ``FilesHook``), so the test can slow its download down and
SIGKILL the Celery worker while the multipart upload is half-way. ``retry_delay=0``: the retry runs as
soon as the scheduler has failed the dead worker's try.

``celery_e2e_asset_consumer``: a downstream DAG scheduled on the Asset the example
``pond_daily_snapshot`` lands on (``s3://analytics-landing/pond``, its bucket and the static part of
its prefix). It does what a consumer does with the landing's event: reads the manifest the event
names and checks every file the event lists is there, with the size it says.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.sdk import DAG, Asset, task

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


POND_LANDING = Asset("s3://analytics-landing/pond")  # what dags_examples/pond_daily_snapshot.py's transfer declares

with DAG("celery_e2e_asset_consumer", schedule=[POND_LANDING], start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
         catchup=False) as consumer:

    @task(task_id="read_landing")
    def read_landing(**context: Any) -> dict[str, Any]:
        """The latest triggering event: its manifest read back, each file it lists checked in S3."""
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        event = context["triggering_asset_events"][POND_LANDING][-1]
        extra = dict(event.extra)
        s3 = S3Hook(aws_conn_id="aws_default")
        bucket, key = S3Hook.parse_s3_url(extra["manifest"])
        part = json.loads(s3.read_key(key, bucket))["parts"][extra["part"]]
        sizes = {f["uri"]: s3.head_object(f["key"], bucket)["ContentLength"] for f in extra["files"]}
        wrong = {uri: size for uri, size in sizes.items() if size != next(f["size"] for f in extra["files"] if f["uri"] == uri)}
        if wrong:
            raise ValueError(f"landed objects differ from the event: {wrong}")
        return {"files": sorted(sizes), "manifest_keys": sorted(f["key"] for f in part["files"]),
                "landing_id": extra["landing_id"], "manifest_landing_id": part["landing_id"], "job_id": extra["job_id"]}

    read_landing()
