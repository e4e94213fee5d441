"""Leanplum exports: a historical export of Pacific-time dates, and a watermark-driven streaming export.

Leanplum's dates are Pacific (America/Los_Angeles) days, Airflow's data intervals are UTC instants:
``leanplum_date`` / ``leanplum_end_date`` convert one into the other (DST-aware) and are offered as
``user_defined_macros`` through ``LEANPLUM_MACROS``.
"""

from __future__ import annotations

import math
import time
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow_export_providers.core.errors import ExportInputError
from airflow_export_providers.core.hook import require_secure_url
from airflow_export_providers.core.interval import run_interval
from airflow_export_providers.core.job import ExportJob, JobState, Watermark
from airflow_export_providers.core.operator import ExportOperator
from airflow_export_providers.core.validate import positive_seconds, strict_bool
from airflow_export_providers.core.watermark import (
    DEFAULT_POOL,
    drop_inflight,
    inflight_variable,
    overlap_problem,
    pool_size,
    read_inflight,
    read_watermark,
    write_inflight,
)
from airflow_export_providers.hooks.leanplum import GONE_STATE, PACIFIC, LeanplumHook

if TYPE_CHECKING:
    from airflow.sdk import Context

EXPORT_FORMATS = ("json", "csv")
WINDOW_DAYS = 60
STREAM_LOOKBACK = timedelta(days=8)  # sessions may arrive up to 8 days late (offline devices)
STREAM_LOOKAHEAD = timedelta(days=2)  # the seed's "now + 2 days" end date (scheduled sends)
STREAM_WINDOW_KEY = "leanplum_stream_window"


# ---- Pacific dates -------------------------------------------------------------------------------
def _aware(moment: datetime | date | str | float) -> datetime:
    if isinstance(moment, (int, float)):
        return datetime.fromtimestamp(float(moment), timezone.utc)
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    if not isinstance(moment, datetime):  # a plain date: its Pacific midnight
        return datetime(moment.year, moment.month, moment.day, tzinfo=PACIFIC)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def leanplum_date(moment: datetime | date | str | float) -> str:
    """The Pacific-time day (YYYYMMDD) of an instant (datetime, ISO string or epoch seconds); naive = UTC.

    ``{{ leanplum_date(data_interval_start) }}`` is the first day of a run's interval.
    """
    return _aware(moment).astimezone(PACIFIC).strftime("%Y%m%d")


def leanplum_end_date(interval_end: datetime | date | str | float) -> str:
    """The last Pacific day *inside* an interval whose end is exclusive (Airflow's ``data_interval_end``).

    A daily interval from Pacific midnight to Pacific midnight yields the same day as ``leanplum_date``
    of its start, on 23- and 25-hour days too.
    """
    return leanplum_date(_aware(interval_end) - timedelta(microseconds=1))


def leanplum_dates(start: datetime | date | str, end: datetime | date | str) -> tuple[str, str]:
    """(startDate, endDate) covering the UTC interval [start, end) in Pacific days."""
    return leanplum_date(start), leanplum_end_date(end)


def run_days(start: datetime | None, end: datetime | None, run_after: datetime | None = None) -> tuple[date, date]:
    """The Pacific days a run exports: its data interval's, else the last complete Pacific day.

    A zero-length interval (Airflow 3's ``"@daily"`` is a cron *trigger* timetable) or a run without
    one (the UI's Trigger button, the REST API with ``logical_date: null``) says nothing about what
    to export; the day that ended last before the interval (else the run's ``run_after``) is the one
    every try of the run, and the prefix that names it, agree on.
    """
    if start is not None and end is not None and _aware(end) > _aware(start):
        first, last = leanplum_dates(start, end)
        return datetime.strptime(first, "%Y%m%d").date(), datetime.strptime(last, "%Y%m%d").date()
    day_start, _ = run_interval(start, end, run_after, tz=PACIFIC)
    return day_start.date(), day_start.date()


def leanplum_day(dag_run: Any) -> str:
    """Template macro: the first Pacific day (YYYYMMDD) a run exports, e.g. for its prefix.

    ``prefix="leanplum/sessions/{{ leanplum_day(dag_run) }}"`` is ``leanplum_date(data_interval_start)``
    for a scheduled run and the last complete Pacific day for a run without a data interval, the same
    day the operator exports, so a re-run replaces its objects.
    """
    first, _ = run_days(getattr(dag_run, "data_interval_start", None), getattr(dag_run, "data_interval_end", None),
                        getattr(dag_run, "run_after", None))
    return f"{first:%Y%m%d}"


LEANPLUM_MACROS = {"leanplum_date": leanplum_date, "leanplum_end_date": leanplum_end_date, "leanplum_dates": leanplum_dates,
                   "leanplum_day": leanplum_day}


def oldest_allowed_date(now: float | None = None) -> date:
    """The oldest startDate Leanplum accepts: 60 days before today in Pacific time."""
    today = datetime.fromtimestamp(time.time() if now is None else now, PACIFIC).date()
    return today - timedelta(days=WINDOW_DAYS)


def parse_day(value: Any, field: str) -> date:
    """A YYYYMMDD Pacific day (a ``date`` is accepted as is); anything else names the field."""
    if isinstance(value, datetime):
        return value.astimezone(PACIFIC).date() if value.tzinfo else value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip() if value is not None else ""
    if len(text) == 8 and text.isdigit():
        try:
            return datetime.strptime(text, "%Y%m%d").date()
        except ValueError:
            pass
    raise ExportInputError(
        f"{field}: {value!r} is not a Pacific-time date in YYYYMMDD form (e.g. 20260131); "
        "convert a UTC data interval with {{ leanplum_date(data_interval_start) }}"
    )


def parse_epoch(value: Any, field: str) -> int | None:
    """Epoch seconds from an int, a numeric string, a datetime or an ISO-8601 string; None stays None."""
    if value is None or value == "" or value == "None":
        return None
    if isinstance(value, datetime):
        return int(_aware(value).timestamp())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ExportInputError(f"{field}: {value!r} is neither epoch seconds nor an ISO-8601 datetime")
        return int(value)
    text = str(value).strip()
    try:
        return int(float(text))
    except (ValueError, OverflowError):  # OverflowError: "inf", "1e999"
        pass
    try:
        return int(_aware(text).timestamp())
    except ValueError:
        raise ExportInputError(f"{field}: {value!r} is neither epoch seconds nor an ISO-8601 datetime") from None


# ---- shared parameters -------------------------------------------------------------------------
class _LeanplumOperatorBase(ExportOperator):
    """Format, callback, direct-to-S3 and quota options shared by both Leanplum operators."""

    hook_class = LeanplumHook
    template_fields: tuple[str, ...] = (
        "conn_id", "export_format", "callback_url", "s3_bucket_name", "s3_object_prefix", "s3_aws_conn_id",
    )

    def __init__(
        self,
        *,
        export_format: str = "json",
        callback_url: str | None = None,
        s3_bucket_name: str | None = None,
        s3_object_prefix: str | None = None,
        s3_aws_conn_id: str = "aws_default",
        compress_data: bool = False,
        quota_retry_seconds: float | None = None,
        max_resubmits: int = 2,
        **kwargs: Any,
    ) -> None:
        super().__init__(max_resubmits=max_resubmits, **kwargs)
        self.export_format = export_format
        self.callback_url = callback_url
        self.s3_bucket_name = s3_bucket_name
        self.s3_object_prefix = s3_object_prefix
        self.s3_aws_conn_id = s3_aws_conn_id
        self.compress_data = strict_bool(compress_data, "compress_data")
        self.quota_retry_seconds = None if quota_retry_seconds is None else positive_seconds(quota_retry_seconds, "quota_retry_seconds")

    def hook_params(self) -> dict[str, Any]:
        return {"quota_retry_seconds": self.quota_retry_seconds} if self.quota_retry_seconds is not None else {}

    def validate_common(self) -> None:
        fmt = str(self.export_format or "").lower()
        if fmt not in EXPORT_FORMATS:
            raise ExportInputError(f"export_format: {self.export_format!r} is not accepted; use one of {', '.join(EXPORT_FORMATS)}")
        self.export_format = fmt
        if self.callback_url:
            require_secure_url(str(self.callback_url), "callback_url")
        if self.compress_data and not self.s3_bucket_name:
            raise ExportInputError("compress_data: Leanplum compresses only files it copies to S3; set s3_bucket_name too")
        if self.s3_bucket_name and not self.s3_aws_conn_id:
            raise ExportInputError("s3_aws_conn_id: the direct-to-S3 copy needs an AWS connection holding the access keys")

    def s3_params(self) -> dict[str, Any]:
        """Direct-to-S3 parameters; the keys come from the AWS connection, never from DAG code."""
        if not self.s3_bucket_name:
            return {}
        from airflow_export_providers.core.compat import require_extra

        require_extra("amazon", "Leanplum's direct copy to S3 (s3_bucket_name)")
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        from airflow_export_providers.core.redact import register_secret

        creds = AwsBaseHook(aws_conn_id=self.s3_aws_conn_id, client_type="s3").get_credentials()
        register_secret(creds.access_key)
        register_secret(creds.secret_key)
        if not creds.access_key or not creds.secret_key:
            raise ExportInputError(f"s3_aws_conn_id: connection {self.s3_aws_conn_id!r} yields no access key id / secret key")
        if creds.token:
            self.log.warning("s3_aws_conn_id %s has temporary credentials: Leanplum's copy fails once they expire", self.s3_aws_conn_id)
        return {
            "s3_bucket_name": self.s3_bucket_name,
            "s3_access_id": creds.access_key,
            "s3_access_key": creds.secret_key,
            "s3_object_prefix": self.s3_object_prefix,
            "compress_data": bool(self.compress_data),
        }

    def s3_extra(self) -> dict[str, Any]:
        if not self.s3_bucket_name:
            return {}
        return {"s3": {"bucket": self.s3_bucket_name, "prefix": self.s3_object_prefix or "", "compressed": bool(self.compress_data)}}


# ---- historical ----------------------------------------------------------------------------------
class LeanplumExportOperator(_LeanplumOperatorBase):
    """Export the sessions of a range of Pacific days (Leanplum "historical export").

    Named ``export_start_date`` / ``export_end_date`` because ``start_date`` / ``end_date`` belong to
    every Airflow operator. Left empty, both come from the run's data interval, converted to Pacific
    days (``leanplum_date(data_interval_start)`` .. ``leanplum_end_date(data_interval_end)``); a
    zero-length interval (a cron *trigger* schedule such as Airflow 3's ``@daily``, or a manual run)
    exports the last complete Pacific day before it.

    :param export_start_date: first Pacific day, YYYYMMDD (templated).
    :param export_end_date: last Pacific day, included (templated); defaults to the start day when the
        start is given, else to the end of the data interval.
    :param start_time: optional epoch seconds (Leanplum's ``startTime``): first availability time to include.
    :param end_time: optional epoch seconds (Leanplum's ``endTime``): last availability time to include
        (whether Leanplum includes the instant itself is not documented; chain ranges end-to-start).
    :param export_format: ``json`` (one session per line) or ``csv`` (a file family per data type).
    :param callback_url: Leanplum POSTs the result there when the job is done (https).
    :param s3_bucket_name: also let Leanplum copy the files to this bucket; the access keys are read
        from ``s3_aws_conn_id`` at run time. ``s3_object_prefix`` and ``compress_data`` (gzip) apply.
    :param max_resubmits: how many times a FAILED Leanplum job is submitted again (default 2).
    :param quota_retry_seconds: when the 24-a-day quota refuses a submit, wait this long (at most until
        the next Pacific midnight) before trying again; deferred, holding no worker slot.
    """

    template_fields: tuple[str, ...] = (
        *_LeanplumOperatorBase.template_fields, "export_start_date", "export_end_date", "start_time", "end_time",
    )

    def __init__(
        self,
        *,
        export_start_date: str | date | None = None,
        export_end_date: str | date | None = None,
        start_time: int | str | datetime | None = None,
        end_time: int | str | datetime | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.export_start_date = export_start_date
        self.export_end_date = export_end_date
        self.start_time = start_time
        self.end_time = end_time

    def resolve_dates(self, context: Context) -> tuple[date, date]:
        if self.export_start_date not in (None, ""):
            start = parse_day(self.export_start_date, "export_start_date")
            end = parse_day(self.export_end_date, "export_end_date") if self.export_end_date not in (None, "") else start
            return start, end
        dag_run = context.get("dag_run")
        start, end = run_days(context.get("data_interval_start"), context.get("data_interval_end"),
                              getattr(dag_run, "run_after", None))
        if self.export_end_date not in (None, ""):
            end = parse_day(self.export_end_date, "export_end_date")
        return start, end

    def window(self, context: Context) -> dict[str, Any]:
        """The rendered range: Pacific days and optional availability times."""
        start, end = self.resolve_dates(context)
        t0, t1 = parse_epoch(self.start_time, "start_time"), parse_epoch(self.end_time, "end_time")
        return {"start_date": f"{start:%Y%m%d}", "end_date": f"{end:%Y%m%d}", "start_time": t0, "end_time": t1}

    def validate(self, context: Context) -> None:
        self.validate_common()
        start, end = self.resolve_dates(context)
        if end < start:
            raise ExportInputError(f"export_end_date: {end:%Y%m%d} is before export_start_date {start:%Y%m%d}")
        oldest = oldest_allowed_date()
        if start < oldest:
            raise ExportInputError(
                f"export_start_date: {start:%Y%m%d} is outside Leanplum's {WINDOW_DAYS}-day window; "
                f"the oldest date accepted today is {oldest:%Y%m%d}"
            )
        t0, t1 = parse_epoch(self.start_time, "start_time"), parse_epoch(self.end_time, "end_time")
        if t0 is not None and t1 is not None and t1 < t0:
            raise ExportInputError(f"end_time: {t1} is before start_time {t0}")

    def submit_job(self, hook: Any, context: Context) -> str:
        w = self.window(context)
        self.log.info(
            "Leanplum export %s..%s (Pacific)%s, format %s",
            w["start_date"], w["end_date"],
            f", available {w['start_time']}..{w['end_time']}" if w["start_time"] or w["end_time"] else "",
            self.export_format,
        )
        return str(hook.submit(
            start_date=w["start_date"], end_date=w["end_date"], start_time=w["start_time"], end_time=w["end_time"],
            export_format=self.export_format, callback_url=self.callback_url, **self.s3_params(),
        ))

    def complete(self, hook: Any, job: ExportJob, context: Context) -> ExportJob:
        job.extra.update({**self.window(context), "export_format": self.export_format, **self.s3_extra()})
        return job


# ---- streaming ----------------------------------------------------------------------------------
class LeanplumStreamingExportOperator(_LeanplumOperatorBase):
    """Export what became available since the last landed export (Leanplum "streaming export").

    Each run asks for startDate = now - 8 days, endDate = now + 2 days (Pacific), startTime = the
    watermark exactly (the seed: "the endTime of the last successful export job"), endTime = now.
    Consecutive ranges share their boundary: nothing is lost whether Leanplum's window is half-open
    or includes both ends (then a session available exactly at the boundary is exported twice and
    can be dropped downstream by its ``sessionId``). The ExportJob carries
    ``Watermark(variable, previous, proposed=endTime, job_id)``; the transfer operator moves the
    Variable only after every file has landed, and refuses to land when another run moved it.

    The job in flight is claimed in the Variable ``<watermark_variable>.inflight`` (job id, range,
    owning run). A run that finds the export of the current watermark still in flight resumes it
    instead of starting another; if the run owning it is still running (it may be landing), this run
    is skipped so a range is never exported twice. If that export finished but was never committed
    (its landing failed), FAILED, or can no longer be read (Leanplum forgot it), the same range is
    exported again from the watermark.

    Runs must not overlap: a DAG allowing more than one active run (``max_active_runs``) with the task
    in no 1-slot pool is refused when the DAG is parsed, and again before any call to Leanplum.

    :param watermark_variable: Airflow Variable holding the last landed ``endTime`` (epoch seconds).
    :param initial_start_time: where a stream without a Variable starts (epoch seconds, datetime or ISO
        string); None exports everything Leanplum still holds for the date range on the first run.
    """

    template_fields: tuple[str, ...] = (*_LeanplumOperatorBase.template_fields, "watermark_variable", "initial_start_time")

    def __init__(
        self,
        *,
        watermark_variable: str,
        initial_start_time: int | str | datetime | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.watermark_variable = watermark_variable
        self.initial_start_time = initial_start_time
        problem = overlap_problem(self, self.dag if self.has_dag() else None)
        if problem:
            raise ExportInputError(problem)  # at parse time: the DAG shows as broken, naming the fix

    @property
    def inflight_variable(self) -> str:
        return inflight_variable(self.watermark_variable)

    def validate(self, context: Context) -> None:
        dag = context.get("dag") or (self.dag if self.has_dag() else None)
        pool = getattr(self, "pool", None)
        problem = overlap_problem(self, dag, pool_size(pool) if pool and pool != DEFAULT_POOL else None)
        if problem:
            raise ExportInputError(problem)
        self.validate_common()
        if not self.watermark_variable:
            raise ExportInputError("watermark_variable: the name of an Airflow Variable is required")
        if not self.wait_for_completion:
            raise ExportInputError("wait_for_completion: a streaming export must wait, or its watermark would never move")
        parse_epoch(self.initial_start_time, "initial_start_time")

    # -- state in Variables --
    def read_mark(self) -> tuple[Any, int | None]:
        """The committed value as stored (the Watermark's ``previous``) and as epoch seconds."""
        value = read_watermark(self.watermark_variable, None)
        return value, parse_epoch(value, f"Variable {self.watermark_variable}")

    def read_inflight(self) -> dict[str, Any] | None:
        return read_inflight(self.watermark_variable)

    def write_inflight(self, record: dict[str, Any]) -> None:
        write_inflight(self.watermark_variable, record)

    @staticmethod
    def _owner(context: Context) -> dict[str, Any]:
        ti = context.get("ti")
        return {"dag_id": getattr(ti, "dag_id", None), "run_id": getattr(ti, "run_id", None), "task_id": getattr(ti, "task_id", None)}

    def _owner_running(self, owner: dict[str, Any], context: Context) -> bool:
        """Is another DAG run that owns the in-flight export still going (it may be landing right now)?"""
        me = self._owner(context)
        if not owner or (owner.get("dag_id"), owner.get("run_id")) == (me["dag_id"], me["run_id"]):
            return False
        ti = context.get("ti")
        try:
            state = ti.get_dagrun_state(owner["dag_id"], owner["run_id"])  # type: ignore[union-attr]
        except Exception as exc:
            from airflow_export_providers.core.redact import redact_text

            self.log.warning("Could not read the state of run %s (%s: %s); treating it as ended", owner.get("run_id"),
                             type(exc).__name__, redact_text(exc))
            return False
        return str(state).lower().rsplit(".", 1)[-1] in ("running", "queued")

    # -- the range --
    def submit_job(self, hook: Any, context: Context) -> str:
        from airflow.providers.common.compat.sdk import AirflowSkipException

        stored, mark = self.read_mark()
        inflight = self.read_inflight()
        store = self._store(context)
        if inflight is not None and inflight.get("previous") == stored:
            job_id = str(inflight["job_id"])
            if self._owner_running(inflight.get("owner") or {}, context):
                raise AirflowSkipException(
                    f"Leanplum export {job_id} of stream {self.watermark_variable} (from {mark}) belongs to run "
                    f"{inflight['owner'].get('run_id')}, which is still running; skipping so the range is exported once"
                )
            job = hook.get_job(job_id)
            if not job.state.is_final:
                self.log.info("Resuming in-flight Leanplum export %s (%s) of stream %s instead of starting another",
                              job_id, job.raw_state, self.watermark_variable)
                inflight["owner"] = self._owner(context)
                self.write_inflight(inflight)
                if store is not None:
                    store.set(STREAM_WINDOW_KEY, inflight)
                return job_id
            if job.state == JobState.SUCCESS:
                self.log.warning("Export %s finished but its range was never committed (its landing failed?): "
                                 "exporting the same range again from %s", job_id, mark)
            elif job.raw_state == GONE_STATE:
                self.log.warning("In-flight export %s of stream %s can no longer be read (%s); dropping it and "
                                 "exporting the range again from the watermark %s", job_id, self.watermark_variable,
                                 job.message, mark)
                drop_inflight(self.watermark_variable)
            else:
                self.log.warning("Export %s of stream %s FAILED (%s): exporting the same range again", job_id, self.watermark_variable, job.raw_state)
        now = time.time()
        if mark is not None:
            start_time: int | None = mark  # the seed: startTime = the endTime of the last export, exactly
        else:
            start_time = parse_epoch(self.initial_start_time, "initial_start_time")
        end_time = int(now)
        if start_time is not None and start_time >= end_time:
            raise AirflowSkipException(f"stream {self.watermark_variable}: watermark {mark} is not in the past yet; nothing to export")
        earliest = min(now, float(start_time)) if start_time is not None else now
        start_day = max(datetime.fromtimestamp(earliest, PACIFIC).date() - STREAM_LOOKBACK, oldest_allowed_date(now))
        end_day = (datetime.fromtimestamp(now, PACIFIC) + STREAM_LOOKAHEAD).date()
        window = {
            "previous": stored, "start_time": start_time, "end_time": end_time,
            "start_date": f"{start_day:%Y%m%d}", "end_date": f"{end_day:%Y%m%d}",
        }
        self.log.info("Leanplum streaming export of %s: available %s..%s, dates %s..%s",
                      self.watermark_variable, start_time, end_time, window["start_date"], window["end_date"])
        job_id = str(hook.submit(
            start_date=window["start_date"], end_date=window["end_date"], start_time=start_time, end_time=end_time,
            export_format=self.export_format, callback_url=self.callback_url, **self.s3_params(),
        ))
        record = {**window, "job_id": job_id, "owner": self._owner(context), "submitted_at": now}
        self.write_inflight(record)
        if store is not None:
            store.set(STREAM_WINDOW_KEY, record)
        return job_id

    def complete(self, hook: Any, job: ExportJob, context: Context) -> ExportJob:
        window = self.read_inflight()
        if window is None or window.get("job_id") != job.job_id:
            store = self._store(context)
            window = store.get(STREAM_WINDOW_KEY) if store is not None else None
        if not isinstance(window, dict) or window.get("job_id") != job.job_id:
            raise ExportInputError(
                f"watermark_variable: no record of the range exported by job {job.job_id}; not proposing a watermark"
            )
        job.watermark = Watermark(variable=self.watermark_variable, previous=window["previous"], proposed=window["end_time"],
                                  job_id=job.job_id)
        job.extra.update({
            "start_date": window["start_date"], "end_date": window["end_date"], "start_time": window["start_time"],
            "end_time": window["end_time"], "export_format": self.export_format, **self.s3_extra(),
        })
        return job
