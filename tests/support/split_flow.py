"""Per-vendor adapters for the split-flow tests: start (no wait) -> sensor -> transfer, for all five vendors.

Each adapter says how to build the vendor's export operator and sensor (for the generated test DAGs
in ``tests/dags/split_flow.py``), how to start a job outside any DAG (fast, slow or failing), which
words the vendor's FAILED answer carries, and how to compare what two flows landed.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_export_providers.core.operator import ExportOperator
from airflow_export_providers.core.sensor import ExportJobSensor

VENDORS = ("pond", "leanplum", "indicative", "mx", "mobile_engagement")
BUCKET = "split-flow"  # every flow lands in moto's S3 under split-flow/<vendor>/<run_id>/<branch>/
ME_CONTAINER = "split-flow"  # the Azure container Mobile Engagement tasks write into (Azurite)
POLL = 0.2


def _pacific_day(days_ago: int) -> str:
    from airflow_export_providers.operators.leanplum import leanplum_date

    return leanplum_date(time.time() - days_ago * 86400)


@dataclass
class VendorCase:
    """What the generic split-flow tests need to know about one vendor."""

    vendor: str
    operator_cls: Callable[..., ExportOperator]
    sensor_cls: Callable[..., ExportJobSensor]
    ref_field: str  # the sensor's job reference parameter
    operator_kwargs: dict[str, Any]  # templated from the DAG run's params
    sensor_kwargs: dict[str, Any] = field(default_factory=dict)
    failed_words: str = ""  # regex of the vendor's words on a FAILED job
    needs_azure: bool = False

    # ---- DAG building ---------------------------------------------------------------------------
    def operator(self, task_id: str, **kwargs: Any) -> ExportOperator:
        return self.operator_cls(task_id=task_id, poll_interval=POLL, **{**self.operator_kwargs, **kwargs})

    def sensor(self, task_id: str, ref: Any, **kwargs: Any) -> ExportJobSensor:
        kwargs.setdefault("poke_interval", POLL)
        return self.sensor_cls(task_id=task_id, **{self.ref_field: ref}, **{**self.sensor_kwargs, **kwargs})

    # ---- sandbox --------------------------------------------------------------------------------
    def conf(self, state: Any) -> dict[str, Any]:
        """DAG run params for the operator's templated arguments (one fresh range/snapshot per call)."""
        if self.vendor == "pond":
            # a distinct hour per call: POND's bytes depend only on the range
            start = datetime(2026, 5, 1, tzinfo=timezone.utc) + timedelta(hours=uuid.uuid4().int % 2000)
            return {"pond_from": start.isoformat(), "pond_to": (start + timedelta(hours=1)).isoformat()}
        if self.vendor == "leanplum":
            # a closed availability window in the past: every export of it selects the same sessions
            return {"day": _pacific_day(3), "end_time": int(time.time()) - 3600}
        if self.vendor == "indicative":
            return {"segment": "Recent Registrants"}
        if self.vendor == "mx":
            from tests.support.mx import make_snapshot

            return {"guid": make_snapshot(state, ready_after=1.0, clock_on_first_request=True).guid}
        return {"day": "2026-03-01"}

    def start(self, state: Any, outcome: str = "ok") -> str:
        """Start a job outside any DAG run (as another DAG or a person would) and return its reference.

        ``outcome``: ``ok`` (done in about a second; hold it with ``held_until_looked_at``), ``slow``
        (not done for a minute), ``failed``.
        """
        conf = self.conf(state)
        if self.vendor == "mx":
            from tests.support.mx import make_snapshot

            choices: dict[str, dict[str, Any]] = {
                "ok": {"ready_after": 1.0, "clock_on_first_request": True},  # the clock starts at the sensor's first look
                "slow": {"ready_after": 3600},
                "failed": {"purged": True},
            }
            return str(make_snapshot(state, **choices[outcome]).guid)
        cfg = state.vendor_config(self.vendor)
        saved = dict(cfg)
        cfg.update({"ok": {"pending_seconds": 0.3, "running_seconds": 0.3},
                    "slow": {"pending_seconds": 60.0, "running_seconds": 1.0},
                    "failed": {"pending_seconds": 0.5, "running_seconds": 0.3}}[outcome])
        if outcome == "failed":
            cfg["fail_next"] = 1
        try:
            op = self.operator(f"elsewhere_{uuid.uuid4().hex[:6]}", wait_for_completion=False, deferrable=False)
            for name in op.template_fields:  # render the params templates by hand (no DAG run here)
                value = getattr(op, name)
                if isinstance(value, str) and value.startswith("{{ params."):
                    setattr(op, name, conf[value[len("{{ params."):-3].strip()])
            day = datetime(2026, 3, 1, tzinfo=timezone.utc)
            context: Any = {"data_interval_start": day, "data_interval_end": day + timedelta(days=1), "run_id": "manual__elsewhere"}
            ref = op.execute(context)
        finally:
            cfg.clear()
            cfg.update(saved)
        assert isinstance(ref, str) and ref
        return ref

    def sandbox_job_id(self, ref: str) -> str:
        if self.vendor == "pond":
            from airflow_export_providers.hooks.pond import snapshot_id

            return snapshot_id(ref)
        return ref

    def is_status_read(self, job_id: str, path: str) -> bool:
        """Is this sandbox request a read of the job's status? (Leanplum has one path, ``/api``, for all.)"""
        if self.vendor == "pond":
            return path == f"/insights/snapshots/{job_id}"
        if self.vendor == "indicative":
            return path == f"/service/v1/segments/export/{job_id}"
        if self.vendor == "mobile_engagement":
            return path.endswith(f"/exportTasks/{job_id}")
        return path == "/api"

    @contextmanager
    def held_until_looked_at(self, state: Any, refs: Iterable[str] = ()) -> Iterator[None]:
        """Keep this vendor's jobs (``refs`` and any started inside the block) PENDING until someone reads their status.

        Then each runs its normal course from that moment. So every sensor meets its job unfinished
        and really waits (defers, pokes again, reschedules), however long the DAG run took to reach
        it: no race with the sandbox's clock. A held job's clock is moved (``created_at`` in the
        future); the vendors' runners never read it. MX snapshots do this themselves
        (``clock_on_first_request``, see ``conf``).
        """
        if self.vendor == "mx":
            yield
            return
        held: dict[str, int] = {}  # job id -> index of the first request that may release it; -1 released

        def hold(job: Any) -> None:
            job.created_at = time.time() + 86400
            held[job.job_id] = len(state.requests)

        known = {job.job_id for job in list(state.jobs.values())}
        for ref in refs:
            hold(state.jobs[self.sandbox_job_id(ref)])
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                for job in list(state.jobs.values()):
                    if job.vendor == self.vendor and job.job_id not in known and job.job_id not in held:
                        hold(job)
                for job_id, since in list(held.items()):
                    if since >= 0 and any(self.is_status_read(job_id, r["path"]) for r in state.requests[since:]):
                        job = state.jobs[job_id]
                        job.created_at = time.time() - job.pending_seconds  # running from now on
                        held[job_id] = -1
                stop.wait(0.02)

        watcher = threading.Thread(target=watch, name=f"hold-{self.vendor}-jobs", daemon=True)
        watcher.start()
        try:
            yield
        finally:
            stop.set()
            watcher.join(5)

    # ---- comparing what landed ------------------------------------------------------------------
    def normalise(self, files: dict[str, bytes]) -> Any:
        """What must be equal between two landings of the same export request.

        Leanplum's files are "not necessarily ordered" (the sandbox shuffles sessions per job and
        splits files by count), so its landings are compared as the sorted set of JSON lines.
        Mobile Engagement's sandbox seeds a task's records with the task id, so two tasks never
        hold the same bytes: there the file names are compared here, and each landing is compared
        byte for byte with the blobs its own task wrote (see ``source_files``).
        """
        if self.vendor == "leanplum":
            return sorted(line for data in files.values() for line in data.splitlines() if line.strip())
        if self.vendor == "mobile_engagement":
            return sorted(name for name in files)
        return files


def _cases() -> dict[str, VendorCase]:
    from airflow_export_providers.operators.indicative import IndicativeSegmentExportOperator
    from airflow_export_providers.operators.leanplum import LeanplumExportOperator
    from airflow_export_providers.operators.mobile_engagement import MobileEngagementExportOperator
    from airflow_export_providers.operators.mx import MxSnapshotOperator
    from airflow_export_providers.operators.pond import PondSnapshotOperator
    from airflow_export_providers.sensors.indicative import IndicativeExportSensor
    from airflow_export_providers.sensors.leanplum import LeanplumExportSensor
    from airflow_export_providers.sensors.mobile_engagement import MobileEngagementExportSensor
    from airflow_export_providers.sensors.mx import MxSnapshotSensor
    from airflow_export_providers.sensors.pond import PondSnapshotSensor

    return {
        "pond": VendorCase(
            "pond", PondSnapshotOperator, PondSnapshotSensor, "snapshot",
            {"created_at_from": "{{ params.pond_from }}", "created_at_to": "{{ params.pond_to }}"},
            failed_words=r"FAILED \([a-z,]*failed[a-z,]*\): \d+/\d+ item\(s\) complete",
        ),
        "leanplum": VendorCase(
            "leanplum", LeanplumExportOperator, LeanplumExportSensor, "job_id",
            {"export_start_date": "{{ params.day }}", "end_time": "{{ params.end_time }}"},
            failed_words=r"leanplum job export_\d+_\d+ FAILED \(FAILED\)",
        ),
        "indicative": VendorCase(
            "indicative", IndicativeSegmentExportOperator, IndicativeExportSensor, "export_id",
            {"segment": "{{ params.segment }}"},
            failed_words=r"FAILED \(FAILED\): Indicative reported the export of segment 'Recent Registrants' as FAILED",
        ),
        "mx": VendorCase(
            "mx", MxSnapshotOperator, MxSnapshotSensor, "snapshot_guid",
            {"snapshot_guid": "{{ params.guid }}"},
            failed_words=r"FAILED \(purged\): MX snapshot CSS-\w+ was purged: MX deletes snapshot files 30 days after generation",
        ),
        "mobile_engagement": VendorCase(
            "mobile_engagement", MobileEngagementExportOperator, MobileEngagementExportSensor, "export_task_id",
            {"kind": "events", "container": ME_CONTAINER, "export_start_date": "{{ params.day }}",
             "export_end_date": "{{ params.day }}"},
            sensor_kwargs={"container": ME_CONTAINER},
            failed_words=r"FAILED \(Failed\): Export failed: an internal error occurred",
            needs_azure=True,
        ),
    }


CASES = _cases()
