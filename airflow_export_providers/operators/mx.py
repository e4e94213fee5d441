"""MxSnapshotOperator: the files of a ready MX snapshot, filtered by resource, as an ExportJob.

MX has nothing to submit: the snapshot exists once MX generated it. The operator fits the engine by
"submitting" the GUID itself (``submit_job`` only validates it and returns it); the engine then reads
the listing like any job status, waits (deferred or polling) while it lists no files, and fails on
a purged snapshot or an unknown GUID (404). ``complete`` keeps the requested resources, in MX's load order.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_export_providers.core.errors import ExportInputError, ExportJobFailed
from airflow_export_providers.core.hook import ExportHook
from airflow_export_providers.core.job import ExportJob
from airflow_export_providers.core.operator import ExportOperator
from airflow_export_providers.core.validate import strict_bool
from airflow_export_providers.hooks.mx import (
    MX_DELETE_ORDER,
    MX_LOAD_ORDER,
    MX_RESOURCES,
    MxSnapshotsHook,
    order_files,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["MX_DELETE_ORDER", "MX_LOAD_ORDER", "MX_RESOURCES", "MxSnapshotOperator"]


def parse_resources(value: Any) -> list[str]:
    """Resources from a list or a comma-separated string (a rendered DAG param); empty = all."""
    if value is None or value == "" or value == []:
        return list(MX_LOAD_ORDER)
    if isinstance(value, str) and value.strip().startswith("["):
        try:  # a list param rendered as text, e.g. "['users', 'accounts']"
            value = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            raise ExportInputError(f"resources: could not read {value!r} as a list of resource names") from None
    if isinstance(value, str):
        items: list[Any] = value.replace(";", ",").split(",")
    elif isinstance(value, Sequence):
        items = list(value)
    else:
        raise ExportInputError(f"resources: expected a list of resource names, got {type(value).__name__}")
    names: list[str] = []
    for item in items:
        name = str(item).strip().lower().replace(" ", "_")
        if not name:
            continue
        if name not in MX_RESOURCES:
            raise ExportInputError(f"resources: unknown MX resource {item!r}; valid resources: {', '.join(MX_RESOURCES)}")
        if name not in names:
            names.append(name)
    if not names:
        raise ExportInputError(f"resources: no resource named; valid resources: {', '.join(MX_RESOURCES)}")
    return names


class MxSnapshotOperator(ExportOperator):
    """List a ready MX snapshot's files, keep the requested resources; return the ExportJob (XCom).

    :param snapshot_guid: the GUID MX handed out (e.g. ``CSS-1234``); templated.
    :param resources: resource names to keep (default: all seven): accounts, devices, goals, members,
        notification_profiles, transactions, users; a list or a comma-separated string; templated.
    :param order: the order of the files in the result: ``MX_LOAD_ORDER`` (default: users, members,
        accounts, transactions, ...) or ``MX_DELETE_ORDER`` (the reverse); a transfer lands them in turn.
    :param allow_missing: False (default) fails when a requested resource has no file in the snapshot.
    :param conn_id: an ``mx_snapshots`` connection (default ``mx_snapshots_default``).

    Waiting for a snapshot that lists no files yet works as in every export operator (``deferrable``,
    ``poll_interval``, ``job_timeout``); a purged snapshot fails at once (it is never "resubmitted"),
    and so does a 404 on the listing (MX hands out a GUID only once the snapshot exists: the GUID is
    mistyped or the connection's host / ``list_path`` is wrong).
    ``wait_for_completion=False`` only checks the GUID's form and returns it, without calling MX
    (there is nothing to submit): to wait apart, use ``MxSnapshotSensor`` (see docs/split_flow.md).
    """

    hook_class: ClassVar[type[ExportHook]] = MxSnapshotsHook
    template_fields: tuple[str, ...] = ("conn_id", "snapshot_guid", "resource_names")
    ui_color = "#d9f0e3"

    def __init__(
        self,
        *,
        snapshot_guid: str,
        resources: Sequence[str] | str | None = None,
        order: Sequence[str] = MX_LOAD_ORDER,
        allow_missing: bool = False,
        **kwargs: Any,
    ) -> None:
        kwargs["max_resubmits"] = 0  # nothing to resubmit: a purged snapshot is gone for good
        super().__init__(**kwargs)
        self.snapshot_guid = snapshot_guid
        # Not ``self.resources``: BaseOperator uses that name for executor resources.
        self.resource_names = resources
        self.order = tuple(order)
        self.allow_missing = strict_bool(allow_missing, "allow_missing")

    def validate(self, context: Context) -> None:
        MxSnapshotsHook.check_guid(self.snapshot_guid)
        parse_resources(self.resource_names)
        unknown = [r for r in self.order if r not in MX_RESOURCES]
        if unknown:
            raise ExportInputError(f"order: unknown MX resource(s) {unknown}; valid resources: {', '.join(MX_RESOURCES)}")

    def submit_job(self, hook: ExportHook, context: Context) -> str:
        """Nothing is submitted to MX: the snapshot GUID is the job."""
        return MxSnapshotsHook.check_guid(self.snapshot_guid)

    def complete(self, hook: ExportHook, job: ExportJob, context: Context) -> ExportJob:
        wanted = parse_resources(self.resource_names)
        present = {f.resource for f in job.files}
        missing = [r for r in wanted if r not in present]
        if missing and not self.allow_missing:
            raise ExportJobFailed(
                f"MX snapshot {job.job_id} has no file for {', '.join(missing)}; it contains: "
                f"{', '.join(sorted(r for r in present if r)) or 'nothing'} (set allow_missing=True to skip)"
            )
        if missing:
            self.log.warning("MX snapshot %s has no file for %s; skipped", job.job_id, ", ".join(missing))
        job.files = order_files([f for f in job.files if f.resource in wanted], self.order)
        job.extra["resources"] = [r for r in self.order if r in wanted and r in present]
        job.extra["order"] = list(self.order)
        for resource in job.extra["resources"]:
            files = [f for f in job.files if f.resource == resource]
            self.log.info(
                "%s: %d file(s), %s record(s)", resource, len(files),
                sum(f.rows or 0 for f in files) if all(f.rows is not None for f in files) else "unknown",
            )
        return job
