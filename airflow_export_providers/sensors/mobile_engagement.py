"""MobileEngagementExportSensor: wait for an export task started elsewhere (another task, DAG or by hand)."""

from __future__ import annotations

from typing import Any

from airflow_export_providers.core.sensor import ExportJobSensor
from airflow_export_providers.hooks.mobile_engagement import MobileEngagementHook


class MobileEngagementExportSensor(ExportJobSensor):
    """Wait until an Azure Mobile Engagement export task is Succeeded (or fail with its errorDetails).

    Returns the ExportJob with the blobs the task wrote, so a transfer operator can take it from here.

    :param export_task_id: the task id (templated; an XComArg of an operator run with
        ``wait_for_completion=False`` works).
    :param wasb_conn_id: Azure Blob connection of the container the task wrote into.
    :param container: that container (its blobs are listed when the task succeeded).
    :param blob_prefix: where the task's blobs are, template with ``{task_id}``, ``{export_type}``,
        ``{description}`` (default: the connection extra ``blob_prefix``, else ``{task_id}/``). A
        Succeeded task with no blob there fails the sensor, naming the container and the prefix.
    """

    hook_class = MobileEngagementHook
    job_ref_field = "export_task_id"
    template_fields: tuple[str, ...] = ("conn_id", "export_task_id", "wasb_conn_id", "container", "blob_prefix")

    def __init__(
        self,
        *,
        export_task_id: str,
        container: str | None = None,
        wasb_conn_id: str = "wasb_default",
        blob_prefix: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.export_task_id = export_task_id
        self.container = container
        self.wasb_conn_id = wasb_conn_id
        self.blob_prefix = blob_prefix

    def hook_params(self) -> dict[str, Any]:
        return {"wasb_conn_id": self.wasb_conn_id, "container": self.container, "blob_prefix": self.blob_prefix}
