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
from airflow_export_providers.core.validate import one_of, poll_sleep, positive_duration, positive_seconds, strict_bool
from airflow_export_providers.triggers.export_job import ExportJobTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context


class ExportJobSensor(BaseSensorOperator):
    """Wait until a vendor job is final; return its ExportJob (so a transfer can take it from here).

    ``wait_for`` = ``"final"`` (a job: SUCCESS or FAILED) or ``"ready"`` (anything not PENDING).

    ``poke_interval`` must be > 0 (0 would read the vendor's status in a busy loop) and ``timeout``
    > 0 and at most 365 days; as in the operators, no wait between two reads lasts longer than
    ``MAX_POLL_INTERVAL`` (one hour) nor past the timeout, in the worker and in the triggerer.
    """

    hook_class: ClassVar[type[ExportHook]]
    job_ref_field: ClassVar[str] = "job_id"
    wait_for: ClassVar[str] = "final"
    template_fields: tuple[str, ...] = ("conn_id",)

    def __init__(self, *, conn_id: str | None = None, deferrable: bool | None = None, **kwargs: Any) -> None:
        # Checked before BaseSensorOperator sees them, so the error names the field and what it accepts.
        kwargs["poke_interval"] = positive_seconds(kwargs.get("poke_interval", 60), "poke_interval")
        if kwargs.get("timeout") is not None:
            kwargs["timeout"] = positive_duration(kwargs["timeout"], "timeout").total_seconds()
        kwargs["mode"] = one_of(kwargs.get("mode", "poke"), "mode", self.valid_modes)
        super().__init__(**kwargs)
        self.conn_id = conn_id or self.hook_class.default_conn_name
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.check_engine_params()
        self._hook: ExportHook | None = None

    def check_engine_params(self) -> None:
        """Refuse a bad wait parameter before any vendor call (at parse time, and again when the task runs)."""
        self.deferrable = strict_bool(self.deferrable, "deferrable")
        self.poke_interval = positive_seconds(self.poke_interval, "poke_interval")
        self.timeout = positive_duration(self.timeout, "timeout").total_seconds()  # also [sensors] default_timeout
        one_of(self.mode, "mode", self.valid_modes)

    def _get_next_poke_interval(self, started_at: Any, run_duration: Any, poke_count: int) -> float:
        """Airflow's interval (with its backoff), but never longer than MAX_POLL_INTERVAL nor past the timeout."""
        interval = float(super()._get_next_poke_interval(started_at, run_duration, poke_count))
        return poll_sleep(interval, deadline=self.timeout, now=run_duration())  # both counted from the sensor's start

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
        self.check_engine_params()
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
