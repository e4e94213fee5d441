"""Leanplum test DAGs: streaming chain into S3, quota deferral, a retry after the submit, the split flow."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.sdk import DAG

from airflow_export_providers.operators.leanplum import (
    LEANPLUM_MACROS,
    LeanplumExportOperator,
    LeanplumStreamingExportOperator,
)
from airflow_export_providers.sensors.leanplum import LeanplumExportSensor
from airflow_export_providers.transfers.export_to_s3 import ExportToS3Operator

START = datetime(2026, 1, 1, tzinfo=timezone.utc)


class FailFirstTryLeanplumOperator(LeanplumExportOperator):
    """Fails its first try after the export was submitted, like a worker lost while waiting."""

    def complete(self, hook: Any, job: Any, context: Any) -> Any:
        if context["ti"].try_number == 1:
            raise RuntimeError("simulated crash after the export was submitted")
        return super().complete(hook, job, context)


with DAG(
    "leanplum_stream_test", schedule=None, start_date=START, catchup=False, max_active_runs=1,
    params={"variable": "lp_stream_test", "bucket": "lp-stream", "initial": None, "deferrable": True},
) as stream_dag:
    stream = LeanplumStreamingExportOperator(
        task_id="export", watermark_variable="{{ params.variable }}", initial_start_time="{{ params.initial }}",
        poll_interval=0.2, deferrable=True,
    )
    ExportToS3Operator(task_id="land", export=stream.output, bucket="{{ params.bucket }}", prefix="{{ params.variable }}/{{ run_id }}")

# Overlapping runs allowed by the DAG, made exclusive (or not) by the size of the pool the test sets.
with DAG(
    "leanplum_stream_pooled", schedule=None, start_date=START, catchup=False, max_active_runs=4,
    params={"variable": "lp_stream_pooled", "bucket": "lp-stream", "initial": None},
) as pooled_dag:
    pooled = LeanplumStreamingExportOperator(
        task_id="export", watermark_variable="{{ params.variable }}", initial_start_time="{{ params.initial }}",
        poll_interval=0.2, deferrable=True, pool="lp_stream_pool",
    )
    ExportToS3Operator(task_id="land", export=pooled.output, bucket="{{ params.bucket }}", prefix="{{ params.variable }}/{{ run_id }}")

# A historical export of an availability window (quiet windows match nothing), waited for and landed.
with DAG("leanplum_window_test", schedule=None, start_date=START, catchup=False,
         params={"day": None, "start_time": None, "end_time": None, "bucket": "lp-empty"}) as window_dag:
    window_start = LeanplumExportOperator(
        task_id="export", export_start_date="{{ params.day }}", start_time="{{ params.start_time }}",
        end_time="{{ params.end_time }}", wait_for_completion=False,
    )
    window_wait = LeanplumExportSensor(task_id="wait", job_id=window_start.output, poke_interval=0.2, timeout=60, deferrable=True)
    ExportToS3Operator(task_id="land", export=window_wait.output, bucket="{{ params.bucket }}", prefix="window/{{ run_id }}")
    window_start >> window_wait

# Land an ExportJob given in the run's conf (a landing started late, after another run moved the watermark).
with DAG("leanplum_land_test", schedule=None, start_date=START, catchup=False, params={"export": {}, "bucket": "lp-stream",
                                                                                         "prefix": "late"}) as land_dag:
    ExportToS3Operator(task_id="land", export="{{ params.export | tojson }}", bucket="{{ params.bucket }}",
                       prefix="{{ params.prefix }}/{{ run_id }}")

with DAG(
    "leanplum_quota_test", schedule=None, start_date=START, catchup=False, user_defined_macros=LEANPLUM_MACROS,
    params={"day": None},
) as quota_dag:
    LeanplumExportOperator(
        task_id="export", export_start_date="{{ params.day }}", poll_interval=0.2, deferrable=True, quota_retry_seconds=0.5,
    )

with DAG("leanplum_retry_after_submit", schedule=None, start_date=START, catchup=False, params={"day": None}) as retry_dag:
    FailFirstTryLeanplumOperator(
        task_id="export", export_start_date="{{ params.day }}", poll_interval=0.2, deferrable=False,
        retries=1, retry_delay=timedelta(seconds=0),
    )

with DAG("leanplum_split_flow", schedule=None, start_date=START, catchup=False, params={"day": None}) as split_dag:
    started = LeanplumExportOperator(task_id="start", export_start_date="{{ params.day }}", wait_for_completion=False)
    waited = LeanplumExportSensor(task_id="wait", job_id=started.output, poke_interval=0.2, timeout=60, deferrable=True)
    ExportToS3Operator(task_id="land", export=waited.output, bucket="lp-split", prefix="split/{{ run_id }}")
    started >> waited

for _mode, _deferrable in (("deferred", True), ("poke", False), ("reschedule", False)):
    with DAG(f"leanplum_sensor_{_mode}", schedule=None, start_date=START, catchup=False, params={"job_id": None}) as _dag:
        LeanplumExportSensor(
            task_id="wait", job_id="{{ params.job_id }}", poke_interval=0.2, timeout=30, deferrable=_deferrable,
            mode="reschedule" if _mode == "reschedule" else "poke",
        )
    globals()[_dag.dag_id] = _dag
del _dag

with DAG("leanplum_sensor_soft_fail", schedule=None, start_date=START, catchup=False, params={"job_id": None}) as soft_dag:
    LeanplumExportSensor(task_id="wait", job_id="{{ params.job_id }}", poke_interval=0.2, timeout=1, soft_fail=True, deferrable=True)
