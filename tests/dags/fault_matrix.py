"""Fault-matrix DAGs: one per vendor, export -> land in S3, each with the two faults a test switches on.

``params.fail_after_submit``: the export task's first try fails after its vendor job was submitted
(a worker lost while waiting); the retry must resume that job, not submit another.
``params.kill_mid_upload``: the landing task's first try dies part-way through uploading the last
file, leaving what a SIGKILLed worker leaves on S3 (open multipart uploads for every file it had
staged, the last one holding the bytes sent so far); the retry must abort them and land every file
exactly once.
Everything else (HTTP faults, failed jobs, expiring tokens) is injected into the sandbox by the test.

The DAGs exist only while ``FAULT_MATRIX_DAGS=1`` (set by tests/integration/test_fault_matrix.py):
every ``dag.test()`` re-parses and re-serialises the whole DAG bundle, so other modules skip them.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.sdk import DAG

from airflow_export_providers.core.compat import CronDataIntervalTimetable
from airflow_export_providers.core.errors import ExportError
from airflow_export_providers.operators.indicative import IndicativeSegmentExportOperator
from airflow_export_providers.operators.leanplum import LeanplumExportOperator
from airflow_export_providers.operators.mobile_engagement import MobileEngagementExportOperator
from airflow_export_providers.operators.mx import MxSnapshotOperator
from airflow_export_providers.operators.pond import PondSnapshotOperator
from airflow_export_providers.transfers.base import parse_export
from airflow_export_providers.transfers.export_to_s3 import ExportToS3Operator

START = datetime(2026, 1, 1, tzinfo=timezone.utc)
BUCKET = "fault-matrix"
RETRY: dict[str, Any] = {"retries": 1, "retry_delay": timedelta(seconds=0)}


class WorkerLost(ExportError):
    """The simulated death of a worker (raised where the real one would have vanished)."""


class FailAfterSubmitOnce:
    """Mixin: with ``params.fail_after_submit`` the first try fails once the job is done on the vendor side."""

    def complete(self, hook: Any, job: Any, context: Any) -> Any:
        if context["params"].get("fail_after_submit") and context["ti"].try_number == 1:
            raise WorkerLost("simulated worker loss after the export was submitted")
        return super().complete(hook, job, context)  # type: ignore[misc]


class KillMidUploadOnceToS3(ExportToS3Operator):
    """With ``params.kill_mid_upload`` the first try dies while uploading the last file."""

    def execute(self, context: Any) -> Any:
        self._kill = bool(context["params"].get("kill_mid_upload")) and context["ti"].try_number == 1
        return super().execute(context)

    def make_writer(self) -> Any:
        writer: Any = super().make_writer()
        if not getattr(self, "_kill", False):
            return writer
        last = len(parse_export(self.export).files)
        begun: list[str] = []
        real_begin = writer.begin

        def begin(key: str, size_hint: int | None = None, part_size: int | None = None) -> Any:
            upload = real_begin(key, size_hint=size_hint, part_size=part_size)
            begun.append(key)
            if len(begun) < last:
                return upload
            real_write = upload.write

            def write(data: bytes) -> None:
                real_write(data)
                upload.finish()  # what was read so far goes up: S3 holds this try's open multipart upload
                # SIGKILL here: no clean-up of this try runs, so every upload it staged stays open on S3
                # (each recorded in the task_state_store when it was opened, for the retry to abort)
                for staged in list(writer.active):
                    staged.abort = lambda: None  # type: ignore[method-assign]
                raise WorkerLost(f"simulated SIGKILL of the worker while uploading {key}")

            upload.write = write  # type: ignore[method-assign]
            return upload

        writer.begin = begin  # type: ignore[method-assign]
        return writer


class FmPond(FailAfterSubmitOnce, PondSnapshotOperator):
    pass


class FmLeanplum(FailAfterSubmitOnce, LeanplumExportOperator):
    pass


class FmIndicative(FailAfterSubmitOnce, IndicativeSegmentExportOperator):
    pass


class FmMx(FailAfterSubmitOnce, MxSnapshotOperator):
    pass


class FmMobileEngagement(FailAfterSubmitOnce, MobileEngagementExportOperator):
    pass


def _export(vendor: str) -> Any:
    common: dict[str, Any] = {"task_id": "export", "poll_interval": 0.2, "deferrable": True, **RETRY}
    if vendor == "pond":
        return FmPond(max_resubmits=1, **common)
    if vendor == "leanplum":
        return FmLeanplum(export_start_date="{{ params.day }}", max_resubmits=1, **common)
    if vendor == "indicative":
        return FmIndicative(segment="{{ params.segment }}", max_resubmits=1, **common)
    if vendor == "mx":
        return FmMx(snapshot_guid="{{ params.guid }}", resources="users,accounts", **common)
    return FmMobileEngagement(kind="events", container="fault-matrix-me", max_resubmits=1, **common)


VENDORS = ("pond", "leanplum", "indicative", "mx", "mobile_engagement")

for _vendor in VENDORS if os.environ.get("FAULT_MATRIX_DAGS") == "1" else ():
    with DAG(
        f"fault_matrix_{_vendor}", schedule=CronDataIntervalTimetable("@daily", timezone="UTC"), start_date=START,
        catchup=False,
        params={"prefix": _vendor, "fail_after_submit": False, "kill_mid_upload": False, "day": None, "segment": None,
                "guid": None},
    ) as _dag:
        _job = _export(_vendor)
        _job >> KillMidUploadOnceToS3(task_id="land", export=_job.output, bucket=BUCKET, prefix="{{ params.prefix }}", **RETRY)
    globals()[_dag.dag_id] = _dag
globals().pop("_dag", None)  # only the DAGs under their ids, so a loader finds each once
