"""ExportOperator: submit once (resumable across retries), defer or poll, return the ExportJob."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.common.compat.sdk import AirflowException, conf
from airflow.sdk import BaseOperator

from airflow_export_providers.core import compat
from airflow_export_providers.core.errors import ExportJobFailed, QuotaExceeded
from airflow_export_providers.core.hook import ExportHook
from airflow_export_providers.core.job import ExportJob, JobState
from airflow_export_providers.core.redact import redact_obj, redact_text
from airflow_export_providers.core.validate import (
    non_negative_int,
    optional_timedelta,
    poll_sleep,
    positive_duration,
    positive_seconds,
    strict_bool,
)
from airflow_export_providers.triggers.export_job import ExportJobTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

JOB_ID_KEY = "export_job_id"
DEADLINE_KEY = "export_deadline"
RESUBMITS_KEY = "export_resubmits"
DEFAULT_JOB_TIMEOUT = timedelta(days=3)


def default_deferrable() -> bool:
    return conf.getboolean("operators", "default_deferrable", fallback=False)


class ExportOperator(BaseOperator):
    """Base of every vendor export operator.

    A retry of the task never starts a second vendor export: the job id is kept in the task
    instance's ``task_state_store`` right after the submit, and the next try resumes that job
    (unless it FAILED, which is resubmitted within ``max_resubmits``).

    :param conn_id: the vendor connection.
    :param deferrable: wait in the triggerer (no worker slot); default ``[operators] default_deferrable``.
    :param poll_interval: seconds between status reads, > 0 (a number or a timedelta); a sleep never
        lasts longer than ``MAX_POLL_INTERVAL`` (one hour) nor past the deadline.
    :param job_timeout: wall-clock limit for the vendor job, counted from the first submit (> 0, at most
        365 days; default 3 days); also capped by ``execution_timeout`` when that is set.
    :param wait_for_completion: False returns the job reference right after the submit.
    :param max_resubmits: how many times a FAILED vendor job is submitted again (an int >= 0).

    These engine parameters are not templated and are checked when the operator is built and again
    before the first vendor call of each try (see docs/parameters.md).
    """

    hook_class: ClassVar[type[ExportHook]]
    template_fields: tuple[str, ...] = ("conn_id",)
    ui_color = "#e8f4fd"

    def __init__(
        self,
        *,
        conn_id: str | None = None,
        deferrable: bool | None = None,
        poll_interval: float | timedelta = 60.0,
        job_timeout: timedelta | float | None = None,
        wait_for_completion: bool = True,
        max_resubmits: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id or self.hook_class.default_conn_name
        self._set_engine_params(
            default_deferrable() if deferrable is None else deferrable, wait_for_completion, poll_interval,
            DEFAULT_JOB_TIMEOUT if job_timeout is None else job_timeout, max_resubmits,
        )
        self.job_id: str | None = None
        self._hook: ExportHook | None = None
        self._resubmits = 0  # fallback count when there is no task_state_store (keeps resubmits bounded)

    # ---- what a vendor operator provides ------------------------------------------------------
    def validate(self, context: Context) -> None:
        """Check rendered parameters before any call; raise ExportInputError naming the field."""

    def submit_job(self, hook: ExportHook, context: Context) -> str:
        raise NotImplementedError

    def complete(self, hook: ExportHook, job: ExportJob, context: Context) -> ExportJob:
        """Enrich a finished job (e.g. with a proposed watermark) before it goes to XCom."""
        return job

    def hook_params(self) -> dict[str, Any]:
        return {}

    # ---- engine ------------------------------------------------------------------------------
    def _set_engine_params(self, deferrable: Any, wait_for_completion: Any, poll_interval: Any, job_timeout: Any,
                           max_resubmits: Any) -> None:
        """Refuse a bad engine parameter (one error naming it); keep numbers as float / timedelta."""
        self.deferrable = strict_bool(deferrable, "deferrable")
        self.wait_for_completion = strict_bool(wait_for_completion, "wait_for_completion")
        self.poll_interval = positive_seconds(poll_interval, "poll_interval")
        self.job_timeout = positive_duration(job_timeout, "job_timeout")
        self.max_resubmits = non_negative_int(max_resubmits, "max_resubmits")
        optional_timedelta(self.execution_timeout, "execution_timeout")

    def check_engine_params(self) -> None:
        """The constructor's checks again, before a try's first vendor call (catches values set after parsing)."""
        self._set_engine_params(self.deferrable, self.wait_for_completion, self.poll_interval, self.job_timeout, self.max_resubmits)

    @property
    def hook(self) -> ExportHook:
        if self._hook is None:
            self._hook = self.hook_class(conn_id=self.conn_id, **self.hook_params())
        return self._hook

    @staticmethod
    def _store(context: Context) -> compat.TaskState | None:
        """``task_state_store`` (Airflow 3.3+) or, below 3.3, a Variable per task instance (core/compat.py)."""
        return compat.task_state(context)

    def _deadline(self, context: Context, store: Any) -> float:
        deadline = store.get(DEADLINE_KEY) if store is not None else None
        if deadline is None:
            deadline = time.time() + self.job_timeout.total_seconds()
            if store is not None:
                store.set(DEADLINE_KEY, deadline)
        if self.execution_timeout is not None:
            ti = context.get("ti")
            start = getattr(ti, "start_date", None)
            if start is not None:
                deadline = min(float(deadline), start.timestamp() + self.execution_timeout.total_seconds())
        return float(deadline)

    @staticmethod
    def _forget(store: Any) -> None:
        """Drop the resume state once the export is done: a later re-run (clear, backfill) exports anew."""
        if store is not None:
            for key in (JOB_ID_KEY, DEADLINE_KEY, RESUBMITS_KEY):
                store.delete(key)

    def execute(self, context: Context) -> Any:
        return self._run(context, fresh=True)

    def _run(self, context: Context, fresh: bool) -> Any:
        self.check_engine_params()
        self.validate(context)
        store = self._store(context)
        hook = self.hook
        job_id = store.get(JOB_ID_KEY) if store is not None else None
        job: ExportJob | None = None
        if not job_id and fresh:
            self._forget(store)  # no export in flight: a new deadline and resubmit budget
        if job_id:
            job = hook.get_job(job_id)
            if job.state == JobState.FAILED:
                self.log.warning("Job %s from an earlier try FAILED (%s): submitting a new one", job_id, job.raw_state)
                job_id, job = None, None
            else:
                self.log.info("Resuming %s job %s submitted by an earlier try (%s)", hook.vendor, job_id, job.raw_state)
        if not job_id:
            job_id = self._submit(hook, context, store)
            if job_id is None:
                return None  # deferred until the vendor's quota allows a submit
        self.job_id = job_id
        if not self.wait_for_completion:
            self.log.info("wait_for_completion=False: %s job %s submitted, not waiting", hook.vendor, job_id)
            self._forget(store)
            return job_id
        if job is None:
            job = hook.get_job(job_id)
        return self._wait(hook, job, context, store)

    def _submit(self, hook: ExportHook, context: Context, store: Any) -> str | None:
        deadline = self._deadline(context, store)
        if time.time() >= deadline:  # nothing submitted could be waited for: keep the vendor's quota
            raise AirflowException(
                f"job_timeout / execution_timeout: the deadline ({datetime.fromtimestamp(deadline, timezone.utc):%Y-%m-%d %H:%M:%S} UTC) "
                f"has passed; not submitting a {hook.vendor} job"
            )
        while True:
            try:
                job_id = self.submit_job(hook, context)
                break
            except QuotaExceeded as quota:
                if quota.retry_at >= deadline:
                    raise AirflowException(f"{quota} — and the deadline passes before the quota frees up") from None
                self.log.warning("%s; waiting until %s to submit", quota, datetime.fromtimestamp(quota.retry_at, timezone.utc))
                if self.deferrable:
                    from airflow.providers.standard.triggers.temporal import DateTimeTrigger

                    self.defer(
                        trigger=DateTimeTrigger(moment=datetime.fromtimestamp(quota.retry_at, timezone.utc)),
                        method_name="execute_after_quota",
                    )
                time.sleep(max(0.0, quota.retry_at - time.time()))
        if store is not None:
            store.set(JOB_ID_KEY, job_id, retention=compat.NEVER_EXPIRE)
        self.log.info("Submitted %s job %s", hook.vendor, job_id)
        return job_id

    def execute_after_quota(self, context: Context, event: Any = None) -> Any:
        return self._run(context, fresh=False)  # keep the deadline set before the quota wait

    def _wait(self, hook: ExportHook, job: ExportJob, context: Context, store: Any) -> Any:
        deadline = self._deadline(context, store)
        if not job.state.is_final and self.deferrable:
            self.log.info("Deferring: %s job %s is %s", hook.vendor, job.job_id, job.raw_state)
            self.defer(
                trigger=ExportJobTrigger(
                    hook_class=f"{type(hook).__module__}.{type(hook).__qualname__}",
                    conn_id=self.conn_id,
                    job_id=job.job_id,
                    poll_interval=self.poll_interval,
                    deadline=deadline,
                    hook_kwargs=hook.hook_kwargs(),
                ),
                method_name="execute_complete",
                timeout=timedelta(seconds=max(1.0, deadline - time.time()) + 300),
            )
        while not job.state.is_final:
            if time.time() >= deadline:
                raise AirflowException(f"{hook.vendor} job {job.job_id} not finished by its deadline ({job.raw_state})")
            sleep = poll_sleep(self.poll_interval, deadline, time.time())
            self.log.info("%s job %s is %s; next check in %.1fs", hook.vendor, job.job_id, job.raw_state, sleep)
            time.sleep(sleep)
            job = hook.get_job(job.job_id)
        return self._finish(hook, job, context, store)

    def _finish(self, hook: ExportHook, job: ExportJob, context: Context, store: Any) -> Any:
        if job.state == JobState.FAILED:
            resubmits = int(store.get(RESUBMITS_KEY) or 0) if store is not None else self._resubmits
            if resubmits < self.max_resubmits:
                self._resubmits = resubmits + 1
                self.log.warning(
                    "%s job %s FAILED (%s): resubmitting (%d/%d)", hook.vendor, job.job_id, job.message, resubmits + 1, self.max_resubmits
                )
                if store is not None:
                    store.set(RESUBMITS_KEY, resubmits + 1)
                    store.delete(JOB_ID_KEY)
                job_id = self._submit(hook, context, store)
                if job_id is None:
                    return None
                return self._wait(hook, hook.get_job(job_id), context, store)
            raise ExportJobFailed(f"{hook.vendor} job {job.job_id} FAILED ({job.raw_state}): {job.message or 'no details'}")
        job = self.complete(hook, job, context)
        self.log.info("%s job %s succeeded with %d file(s)", hook.vendor, job.job_id, len(job.files))
        result = redact_obj(job.to_dict())
        self._forget(store)
        return result

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        if not isinstance(event, dict) or "status" not in event:
            raise AirflowException(f"unexpected trigger event: {redact_text(event)!r}")
        status = event["status"]
        store = self._store(context)
        self.job_id = event.get("job_id")
        if status in ("success", "failed") and isinstance(event.get("job"), dict):
            return self._finish(self.hook, ExportJob.from_dict(event["job"]), context, store)
        if status == "timeout":
            raise AirflowException(f"{self.hook.vendor}: {event.get('message')}")
        raise AirflowException(f"{self.hook.vendor} job {event.get('job_id')}: {event.get('message') or status}")

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the vendor export as this task's input (``{vendor}://{host}``, named by its job id).

        The export stays at the vendor until a transfer lands it; the run facet ``externalQuery``
        names the vendor job too. None without the OpenLineage provider.
        """
        try:
            from airflow.providers.openlineage.extractors import OperatorLineage
        except ImportError:
            return None
        from airflow_export_providers.core.lineage import export_input, external_job_facets

        if not self.job_id:
            return OperatorLineage()
        hook = self.hook
        return OperatorLineage(
            inputs=[export_input(hook.vendor, hook.base_url, self.job_id)],
            run_facets=external_job_facets(hook.vendor, hook.base_url, self.job_id),
        )

    def on_kill(self) -> None:
        if self.job_id:
            try:
                self.hook.cancel(self.job_id)
            except Exception as exc:
                self.log.warning("could not cancel %s: %s", self.job_id, redact_text(exc))
