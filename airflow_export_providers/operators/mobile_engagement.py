"""MobileEngagementExportOperator: one Azure Mobile Engagement export task, every kind in the spec.

The operator derives a write + list container SAS from the wasb connection at submit time (users
never paste SAS tokens). It lives until the job's deadline plus a margin, so the service can write
however late within ``job_timeout`` it starts; the SAS lives only in the request body: it is not a
template field, not in XCom, not in the trigger and never logged.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow_export_providers.core.errors import ExportInputError
from airflow_export_providers.core.hook import ExportHook
from airflow_export_providers.core.interval import context_interval
from airflow_export_providers.core.operator import ExportOperator
from airflow_export_providers.hooks.mobile_engagement import (
    CAMPAIGN_TYPES,
    EXPORT_FORMATS,
    FEEDBACK_KINDS,
    HISTORICAL_KINDS,
    KINDS,
    SNAPSHOT_KINDS,
    MobileEngagementHook,
    container_sas,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

#: The SAS outlives the job's deadline by this much (clock skew, the service's last writes).
SAS_MARGIN = timedelta(hours=1)
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_NO_DEVICE_KIND = (
    "kind: {kind!r} — the 'Device' snapshot described in the Mobile Engagement export overview has no REST kind in "
    "the export API (api-version 2014-12-01), so it cannot be requested here; device tags (app-info) come with "
    "kind 'tags' and push tokens with kind 'tokens'. Valid kinds: {kinds}"
)


def _kinds_text() -> str:
    return (
        f"snapshot {', '.join(SNAPSHOT_KINDS)}; historical {', '.join(HISTORICAL_KINDS)} (need start/end dates); "
        f"push feedback {', '.join(FEEDBACK_KINDS)}"
    )


def resolve_kind(kind: Any) -> str:
    """The spec's spelling of ``kind`` (case-insensitive), or one error listing every valid kind."""
    text = str(kind or "").strip()
    if text in KINDS:
        return text
    for valid in KINDS:
        if valid.lower() == text.lower():
            return valid
    if text.lower() in ("device", "devices", "device_snapshot", "devicesnapshot"):
        raise ExportInputError(_NO_DEVICE_KIND.format(kind=kind, kinds=_kinds_text()))
    raise ExportInputError(f"kind: {kind!r} is not an export kind. Valid kinds: {_kinds_text()}")


def _as_date(field: str, value: Any) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    text = str(value).strip()
    if not _DATE_RE.match(text):
        raise ExportInputError(f"{field}: {value!r} is not a full date YYYY-MM-DD (RFC 3339 full-date)")
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise ExportInputError(f"{field}: {value!r} is not a valid calendar date") from None


def _as_timestamp(field: str, value: Any) -> str:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    else:
        text = str(value).strip()
        try:
            moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        except ValueError:
            raise ExportInputError(f"{field}: {value!r} is not an RFC 3339 date-time (e.g. 2026-01-31T00:00:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _as_campaign_ids(value: Any) -> list[int]:
    items: Sequence[Any]
    if isinstance(value, str):
        items = [p for p in re.split(r"[,\s]+", value.strip().strip("[]")) if p]
    elif isinstance(value, (list, tuple, set)):
        items = list(value)
    elif isinstance(value, int):
        items = [value]
    else:
        raise ExportInputError(f"campaign_ids: expected a list of integer campaign ids, got {type(value).__name__}")
    ids: list[int] = []
    for item in items:
        try:
            number = int(str(item).strip())
        except ValueError:
            raise ExportInputError(f"campaign_ids: {item!r} is not an integer campaign id") from None
        if number < 0:
            raise ExportInputError(f"campaign_ids: {number} is negative")
        ids.append(number)
    if not ids:
        raise ExportInputError("campaign_ids: feedbackByCampaign needs at least one campaign id")
    return ids


class MobileEngagementExportOperator(ExportOperator):
    """Export Azure Mobile Engagement data into an Azure Blob container and return the ExportJob.

    :param kind: snapshot ``tags`` | ``tokens``; historical ``activities`` | ``crashes`` | ``errors`` |
        ``events`` | ``jobs`` | ``sessions``; push feedback ``feedbackByDate`` | ``feedbackByCampaign``.
    :param export_start_date: first day (YYYY-MM-DD) of a historical export; defaults to the day the
        data interval starts. (Named so because ``start_date`` is the task's own Airflow start date.)
    :param export_end_date: last day (YYYY-MM-DD, inclusive) of a historical export; defaults to the last
        day inside the data interval (the same day for a daily DAG). A run without a data interval
        (triggered by hand without a logical date) or with a zero-length one exports the last
        complete UTC day before it.
    :param export_format: ``JsonBlob`` (default) or ``CsvBlob``.
    :param wasb_conn_id: Azure Blob connection the container SAS is derived from (account key or an
        Azure AD identity that may ask for a user delegation key).
    :param container: the container the service writes into; created when missing (``create_container``).
    :param campaign_type: Announcement | DataPush | NativePush | Poll (feedback kinds only).
    :param campaign_window_start: RFC 3339 date-time (feedbackByDate only).
    :param campaign_window_end: RFC 3339 date-time (feedbackByDate only).
    :param campaign_ids: integer campaign ids (feedbackByCampaign only).
    :param description: the task's description; defaults to ``airflow:{dag_id}/{task_id}/{run_id}``.
    :param blob_prefix: where the task's blobs are found, template with ``{task_id}``, ``{export_type}``,
        ``{description}`` (default: the connection extra ``blob_prefix``, else ``{task_id}/``). A
        Succeeded task with no blob there fails the task, naming the container and the prefix.
    :param sas_lifetime: how long the write + list SAS stays valid (a timedelta or seconds, > 0). Default:
        until the job's deadline (``job_timeout`` from the first submit, capped by ``execution_timeout``)
        plus one hour, as a job may take minutes to start and then hours to run.
    """

    hook_class = MobileEngagementHook
    template_fields: tuple[str, ...] = (
        *ExportOperator.template_fields,
        "kind", "export_start_date", "export_end_date", "export_format", "wasb_conn_id", "container",
        "campaign_type", "campaign_window_start", "campaign_window_end", "campaign_ids", "description", "blob_prefix",
    )
    ui_color = "#d5e8fb"

    def __init__(
        self,
        *,
        kind: str,
        container: str,
        export_start_date: str | date | None = None,
        export_end_date: str | date | None = None,
        export_format: str = "JsonBlob",
        wasb_conn_id: str = "wasb_default",
        campaign_type: str | None = None,
        campaign_window_start: str | datetime | None = None,
        campaign_window_end: str | datetime | None = None,
        campaign_ids: Sequence[int] | str | None = None,
        description: str | None = None,
        blob_prefix: str | None = None,
        sas_lifetime: timedelta | float | None = None,
        create_container: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.kind = kind
        self.container = container
        self.export_start_date = export_start_date
        self.export_end_date = export_end_date
        self.export_format = export_format
        self.wasb_conn_id = wasb_conn_id
        self.campaign_type = campaign_type
        self.campaign_window_start = campaign_window_start
        self.campaign_window_end = campaign_window_end
        self.campaign_ids = campaign_ids
        self.description = description
        self.blob_prefix = blob_prefix
        self.sas_lifetime = sas_lifetime  # checked in validate(), before any call
        self.create_container = create_container
        self._fields: dict[str, Any] | None = None
        self._kind: str | None = None

    def hook_params(self) -> dict[str, Any]:
        return {"wasb_conn_id": self.wasb_conn_id, "container": self.container, "blob_prefix": self.blob_prefix}

    # ---- validation (before any call) ---------------------------------------------------------
    def _unused(self, kind: str, names: Sequence[str]) -> None:
        given = [n for n in names if getattr(self, n) not in (None, "", [])]
        if given:
            raise ExportInputError(
                f"{given[0]}: not used by kind {kind!r} (dates go with {', '.join(HISTORICAL_KINDS)}; "
                "campaign_window_* with feedbackByDate; campaign_ids with feedbackByCampaign); remove it"
            )

    def _interval_dates(self, context: Context) -> tuple[str, str]:
        """The days of the data interval; without one (a run triggered without a logical date, or a
        zero-length interval), the last complete UTC day before the run."""
        start, end = context_interval(context)
        last = end - timedelta(microseconds=1)
        return start.date().isoformat(), last.date().isoformat()

    def build_fields(self, context: Context) -> tuple[str, dict[str, Any]]:
        """The request body without containerUrl, checked against the spec's schema for the kind."""
        kind = resolve_kind(self.kind)
        if self.export_format not in EXPORT_FORMATS:
            raise ExportInputError(f"export_format: {self.export_format!r} is not one of {', '.join(EXPORT_FORMATS)}")
        if not self.container or not str(self.container).strip():
            raise ExportInputError("container: the Azure Blob container the export is written into is required")
        if not self.wasb_conn_id:
            raise ExportInputError("wasb_conn_id: the Azure Blob connection the container SAS is derived from is required")
        fields: dict[str, Any] = {"description": self.description or self._default_description(context)}
        if kind in HISTORICAL_KINDS:
            self._unused(kind, ("campaign_type", "campaign_window_start", "campaign_window_end", "campaign_ids"))
            start_value, end_value = self.export_start_date, self.export_end_date
            if start_value in (None, "") or end_value in (None, ""):
                default_start, default_end = self._interval_dates(context)
                start_value, end_value = start_value or default_start, end_value or default_end
            start = _as_date("export_start_date", start_value)
            end = _as_date("export_end_date", end_value)
            if end < start:
                raise ExportInputError(f"export_end_date: {end} is before export_start_date {start}")
            fields.update(startDate=start, endDate=end)
        else:
            self._unused(kind, ("export_start_date", "export_end_date"))
        if kind in SNAPSHOT_KINDS:
            self._unused(kind, ("campaign_type", "campaign_window_start", "campaign_window_end", "campaign_ids"))
        if kind in FEEDBACK_KINDS:
            if self.campaign_type not in CAMPAIGN_TYPES:
                raise ExportInputError(
                    f"campaign_type: {self.campaign_type!r} is required by kind {kind!r} and must be one of {', '.join(CAMPAIGN_TYPES)}"
                )
            fields["campaignType"] = self.campaign_type
        if kind == "feedbackByDate":
            self._unused(kind, ("campaign_ids",))
            for name in ("campaign_window_start", "campaign_window_end"):
                if getattr(self, name) in (None, ""):
                    raise ExportInputError(f"{name}: required by kind 'feedbackByDate' (an RFC 3339 date-time)")
            window_start = _as_timestamp("campaign_window_start", self.campaign_window_start)
            window_end = _as_timestamp("campaign_window_end", self.campaign_window_end)
            if window_end < window_start:
                raise ExportInputError(f"campaign_window_end: {window_end} is before campaign_window_start {window_start}")
            fields.update(campaignWindowStart=window_start, campaignWindowEnd=window_end)
        if kind == "feedbackByCampaign":
            self._unused(kind, ("campaign_window_start", "campaign_window_end"))
            if self.campaign_ids in (None, "", []):
                raise ExportInputError("campaign_ids: required by kind 'feedbackByCampaign' (a list of integer campaign ids)")
            fields["campaignIds"] = _as_campaign_ids(self.campaign_ids)
        fields["exportFormat"] = self.export_format
        return kind, fields

    @staticmethod
    def _default_description(context: Context) -> str:
        ti = context.get("ti")
        dag_id = getattr(ti, "dag_id", None) or "dag"
        task_id = getattr(ti, "task_id", None) or "task"
        run_id = context.get("run_id") or getattr(ti, "run_id", None) or "run"
        return f"airflow:{dag_id}/{task_id}/{run_id}"

    def validate(self, context: Context) -> None:
        self._checked_sas_lifetime()
        self._kind, self._fields = self.build_fields(context)

    def _checked_sas_lifetime(self) -> timedelta | None:
        value = self.sas_lifetime
        if value is None:
            return None
        lifetime: timedelta | None = value if isinstance(value, timedelta) else None
        if lifetime is None and isinstance(value, (int, float)) and not isinstance(value, bool):
            lifetime = timedelta(seconds=float(value))
        if lifetime is None or not lifetime.total_seconds() > 0:
            raise ExportInputError(
                f"sas_lifetime: {value!r} is not a positive duration (a timedelta or seconds > 0); leave it unset to keep "
                "the SAS valid until the job's deadline plus one hour"
            )
        return lifetime

    def sas_lifetime_for(self, context: Context) -> timedelta:
        """How long the SAS must live: ``sas_lifetime``, else until the job's deadline plus SAS_MARGIN."""
        deadline = self._deadline(context, self._store(context))  # the engine's deadline, already set by the submit
        until_deadline = timedelta(seconds=max(0.0, deadline - time.time()))
        lifetime = self._checked_sas_lifetime()
        if lifetime is None:
            return until_deadline + SAS_MARGIN
        if lifetime < until_deadline:
            self.log.warning(
                "sas_lifetime %s ends before the job's deadline (in %s): if the export still runs then, the service can no "
                "longer write into %s and the task fails", lifetime, until_deadline, self.container,
            )
        return lifetime

    # ---- submit -------------------------------------------------------------------------------
    def container_url(self, context: Context | None = None) -> str:
        """The container URL with a fresh write + list SAS (a secret: never store or log it)."""
        from azure.core.exceptions import ResourceExistsError
        from azure.storage.blob import ContainerSasPermissions

        from airflow_export_providers.hooks.mobile_engagement import _blob_service

        service = _blob_service(self.wasb_conn_id)
        container = service.get_container_client(self.container)
        if self.create_container:
            try:
                container.create_container()
                self.log.info("Created container %s", self.container)
            except ResourceExistsError:
                pass
        lifetime = self.sas_lifetime_for(context if context is not None else {})  # type: ignore[arg-type]
        sas = container_sas(
            self.wasb_conn_id, self.container, ContainerSasPermissions(write=True, list=True), lifetime, service=service,
        )
        return f"{container.url}?{sas}"

    def submit_job(self, hook: ExportHook, context: Context) -> str:
        assert isinstance(hook, MobileEngagementHook)
        if self._fields is None or self._kind is None:
            self.validate(context)
        assert self._fields is not None and self._kind is not None
        body = {"containerUrl": self.container_url(context), **self._fields}
        self.log.info(
            "Creating a %s export task into container %s (%s)", self._kind, self.container,
            ", ".join(f"{k}={v}" for k, v in self._fields.items() if k != "description"),
        )
        return hook.submit(self._kind, body)
