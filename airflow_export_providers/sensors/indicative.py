"""Wait for an Indicative export someone else started (another task, DAG, or a person)."""

from __future__ import annotations

from typing import Any

from airflow_export_providers.core.sensor import ExportJobSensor
from airflow_export_providers.hooks.indicative import IndicativeHook


class IndicativeExportSensor(ExportJobSensor):
    """Wait until an Indicative export is COMPLETE and return its ExportJob (fails on FAILED).

    :param export_id: the exportId (templated; an ExportJob dict is accepted too).
    """

    hook_class = IndicativeHook
    job_ref_field = "export_id"
    template_fields: tuple[str, ...] = (*ExportJobSensor.template_fields, "export_id")

    def __init__(self, *, export_id: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.export_id = export_id
