"""Wait for a Leanplum export job started elsewhere (another task, another DAG, or by hand)."""

from __future__ import annotations

from typing import Any, ClassVar

from airflow_export_providers.core.hook import ExportHook
from airflow_export_providers.core.sensor import ExportJobSensor
from airflow_export_providers.hooks.leanplum import LeanplumHook


class LeanplumExportSensor(ExportJobSensor):
    """Succeed with the ExportJob once getExportResults says FINISHED; fail with Leanplum's words on FAILED.

    :param job_id: the ``jobId`` exportData answered (templated; an ExportJob dict is accepted too).
    """

    hook_class: ClassVar[type[ExportHook]] = LeanplumHook
    job_ref_field: ClassVar[str] = "job_id"
    template_fields: tuple[str, ...] = ("conn_id", "job_id")

    def __init__(self, *, job_id: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job_id = job_id
