"""Wait for a POND snapshot someone else scheduled (another task, another DAG, or a person)."""

from __future__ import annotations

from typing import Any

from airflow_export_providers.core.sensor import ExportJobSensor
from airflow_export_providers.core.validate import positive_seconds
from airflow_export_providers.hooks.pond import PondHook


class PondSnapshotSensor(ExportJobSensor):
    """Wait until every item of a POND snapshot is complete; return its ExportJob.

    :param snapshot: the snapshot href (or bare id) — templated, so ``"{{ ti.xcom_pull('start') }}"``
        or a ``PondSnapshotOperator(wait_for_completion=False).output`` works.
    :param link_refresh_margin: passed to the hook the transfer rebuilds from the ExportJob.
    """

    hook_class = PondHook
    job_ref_field = "snapshot"
    template_fields: tuple[str, ...] = (*ExportJobSensor.template_fields, "snapshot")

    def __init__(self, *, snapshot: Any, link_refresh_margin: float = 60.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.snapshot = snapshot
        self.link_refresh_margin = positive_seconds(link_refresh_margin, "link_refresh_margin", zero_ok=True)

    def hook_params(self) -> dict[str, Any]:
        return {"link_refresh_margin": self.link_refresh_margin}
