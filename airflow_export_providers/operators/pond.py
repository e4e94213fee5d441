"""PondSnapshotOperator: schedule an SGI POND snapshot for a time range and wait until it is complete."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow_export_providers.core.errors import ExportInputError
from airflow_export_providers.core.hook import ExportHook
from airflow_export_providers.core.interval import context_interval
from airflow_export_providers.core.operator import ExportOperator
from airflow_export_providers.core.validate import positive_seconds
from airflow_export_providers.hooks.pond import PondHook

if TYPE_CHECKING:
    from airflow.sdk import Context

ENTITY_RE = re.compile(r"[a-z][a-z0-9_]*")


def pond_timestamp(value: Any, field: str) -> str:
    """ISO 8601 UTC with milliseconds, as POND wants it: ``2019-03-13T18:00:00.000Z``.

    Accepts a timezone-aware datetime (pendulum too) or an ISO 8601 string with an offset (what a
    template such as ``{{ data_interval_start }}`` renders to). Naive values are refused: POND asks
    for timezone-aware dates, and guessing a zone would shift the snapshot.
    """
    if isinstance(value, str):
        text = value.strip()
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T", 1))
        except ValueError:
            raise ExportInputError(
                f"{field}: {text!r} is not an ISO 8601 timestamp; accepted: a timezone-aware datetime or a string "
                "such as '2019-03-13T18:00:00.000Z' or '2019-03-13T10:00:00-08:00'"
            ) from None
    if not isinstance(value, datetime):
        raise ExportInputError(f"{field}: expected a timezone-aware datetime or ISO 8601 string, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ExportInputError(f"{field}: {value.isoformat()!r} has no timezone; give an offset or 'Z' (UTC)")
    utc = value.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


class PondSnapshotOperator(ExportOperator):
    """Schedule a POND snapshot of ``entity`` created in ``[created_at_from, created_at_to)`` and wait for it.

    Returns the ExportJob (XCom): one CSV file per snapshot item with its ``size`` and ``count``, ready
    for ``ExportToS3Operator`` / ``ExportToAzureBlobOperator``. With ``wait_for_completion=False`` it
    returns the snapshot href right after scheduling (wait with ``PondSnapshotSensor``).

    :param entity: the data entity to snapshot (POND's default is ``event``).
    :param created_at_from: start of the range (templated); default the run's data interval start.
    :param created_at_to: end of the range (templated); default the run's data interval end. A run
        without a data interval (triggered by hand without a logical date) or with a zero-length one
        (a cron trigger timetable) snapshots the last complete UTC day before it.
    :param link_refresh_margin: seconds before a presigned link expires at which downloads re-sign it.
    """

    hook_class = PondHook
    template_fields: tuple[str, ...] = (*ExportOperator.template_fields, "entity", "created_at_from", "created_at_to")

    def __init__(
        self,
        *,
        entity: str = "event",
        created_at_from: Any = None,
        created_at_to: Any = None,
        link_refresh_margin: float = 60.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.entity = entity
        self.created_at_from = created_at_from
        self.created_at_to = created_at_to
        self.link_refresh_margin = positive_seconds(link_refresh_margin, "link_refresh_margin", zero_ok=True)

    def hook_params(self) -> dict[str, Any]:
        return {"link_refresh_margin": self.link_refresh_margin}

    def _range(self, context: Context) -> tuple[str, str]:
        default_from, default_to = context_interval(context)  # the data interval, else the last complete UTC day
        bounds = []
        for field, value, default in (
            ("created_at_from", self.created_at_from, default_from),
            ("created_at_to", self.created_at_to, default_to),
        ):
            bounds.append(pond_timestamp(default if value is None or value == "" else value, field))
        return bounds[0], bounds[1]

    def validate(self, context: Context) -> None:
        if not isinstance(self.entity, str) or not ENTITY_RE.fullmatch(self.entity):
            raise ExportInputError(f"entity: {self.entity!r} is not an entity name; accepted: lower-case names such as 'event'")
        start, end = self._range(context)
        # Same fixed-width format, so string order is time order.
        if start >= end:
            raise ExportInputError(
                f"created_at_from ({start}) must be before created_at_to ({end}): POND snapshots a non-empty range"
            )

    def submit_job(self, hook: ExportHook, context: Context) -> str:
        assert isinstance(hook, PondHook)
        start, end = self._range(context)
        self.log.info("Scheduling a POND %s snapshot for %s .. %s", self.entity, start, end)
        return hook.submit(start, end, entity=self.entity)
