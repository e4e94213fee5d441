"""Deferrable sensor base: wait for a vendor job (or a snapshot) someone else started."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.common.compat.sdk import AirflowException, AirflowSensorTimeout, AirflowSkipException
from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_export_providers.core.errors import ExportJobFailed
from airflow_export_providers.core.hook import ExportHook
from airflow_export_providers.core.job import ExportJob, JobState
from airflow_export_providers.core.operator import default_deferrable
from airflow_export_providers.core.redact import redact_obj
from airflow_export_providers.triggers.export_job import ExportJobTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context


class ExportJobSensor(BaseSensorOperator):
    """Wait until a vendor job is final; return its ExportJob (so a transfer can take it from here).

    ``wait_for`` = ``"final"`` (a job: SUCCESS or FAILED) or ``"ready"`` (anything not PENDING).
    """

    hook_class: ClassVar[type[ExportHook]]
    job_ref_field: ClassVar[str] = "job_id"
    wait_for: ClassVar[str] = "final"
    template_fields: tuple[str, ...] = ("conn_id",)

    def __init__(self, *, conn_id: str | None = None, deferrable: bool | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("poke_interval", 60)
        super().__init__(**kwargs)
        self.conn_id = conn_id or self.hook_class.default_conn_name
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self._hook: ExportHook | None = None

    def job_ref(self) -> str:
        ref = getattr(self, self.job_ref_field)
        if isinstance(ref, dict) and "job_id" in ref:  # an ExportJob passed as reference
            ref = ref["job_id"]
        if not ref or not isinstance(ref, str) or ref.strip() in ("None", "null"):  # an unset template renders "None"
            from airflow_export_providers.core.errors import ExportInputError

            raise ExportInputError(f"{self.job_ref_field}: expected a non-empty job reference string, got {ref!r}")
        return ref

    def hook_params(self) -> dict[str, Any]:
        return {}

    def get_hook(self) -> ExportHook:
        """One hook per task process, so pokes reuse its HTTP session and token (no token request per poke)."""
        if self._hook is None:
            self._hook = self.hook_class(conn_id=self.conn_id, **self.hook_params())
        return self._hook

    def _done(self, job: ExportJob) -> bool:
        return job.state != JobState.PENDING if self.wait_for == "ready" else job.state.is_final

    def _result(self, hook: ExportHook, job: ExportJob) -> dict[str, Any]:
        if job.state == JobState.FAILED:
            raise ExportJobFailed(f"{hook.vendor} job {job.job_id} FAILED ({job.raw_state}): {job.message or 'no details'}")
        return redact_obj(job.to_dict())  # type: ignore[no-any-return]

    def poke(self, context: Context) -> PokeReturnValue | bool:
        hook = self.get_hook()
        job = hook.get_job(self.job_ref())
        self.log.info("%s job %s: %s (%s)", hook.vendor, job.job_id, job.state.value, job.raw_state)
        if not self._done(job):
            return False
        return PokeReturnValue(is_done=True, xcom_value=self._result(hook, job))

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        hook = self.get_hook()
        job = hook.get_job(self.job_ref())
        if self._done(job):
            return self._result(hook, job)
        self.defer(
            trigger=ExportJobTrigger(
                hook_class=f"{type(hook).__module__}.{type(hook).__qualname__}",
                conn_id=self.conn_id,
                job_id=job.job_id,
                poll_interval=float(self.poke_interval),
                deadline=time.time() + float(self.timeout),
                hook_kwargs=hook.hook_kwargs(),
                mode=self.wait_for,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=float(self.timeout) + 300),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        if not isinstance(event, dict):
            raise AirflowException(f"unexpected trigger event {event!r}")
        if event.get("status") == "timeout":
            if self.soft_fail:
                raise AirflowSkipException(f"sensor timed out: {event.get('message')}")
            raise AirflowSensorTimeout(f"sensor timed out: {event.get('message')}")
        if isinstance(event.get("job"), dict):
            return self._result(self.get_hook(), ExportJob.from_dict(event["job"]))
        raise AirflowException(f"job {event.get('job_id')}: {event.get('message') or event.get('status')}")
