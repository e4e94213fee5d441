"""MxSnapshotSensor: wait (deferred, no worker slot) until MX has generated a snapshot and lists its files."""

from __future__ import annotations

from typing import Any, ClassVar

from airflow_export_providers.core.sensor import ExportJobSensor
from airflow_export_providers.hooks.mx import MxSnapshotsHook


class MxSnapshotSensor(ExportJobSensor):
    """Wait for MX snapshot ``snapshot_guid`` to be ready; return its ExportJob (every listed file).

    MX hands out a GUID only once the snapshot exists: while its listing lists no files the sensor
    keeps waiting (in the triggerer when ``deferrable``). A 404 on the listing (a mistyped GUID, a
    wrong host or ``list_path``) fails at once naming the GUID and the path, as does a purged
    snapshot (410, or a listing whose generation time is more than 30 days ago).

    :param snapshot_guid: the GUID MX handed out (e.g. ``CSS-1234``); templated.
    :param conn_id: an ``mx_snapshots`` connection (default ``mx_snapshots_default``).
    """

    hook_class: ClassVar[type[MxSnapshotsHook]] = MxSnapshotsHook
    job_ref_field: ClassVar[str] = "snapshot_guid"
    wait_for: ClassVar[str] = "ready"
    template_fields: tuple[str, ...] = ("conn_id", "snapshot_guid")
    ui_color = "#d9f0e3"

    def __init__(self, *, snapshot_guid: str, conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(conn_id=conn_id, **kwargs)
        self.snapshot_guid = snapshot_guid

    def job_ref(self) -> str:
        return MxSnapshotsHook.check_guid(self.snapshot_guid)
