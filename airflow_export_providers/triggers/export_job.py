"""ExportJobTrigger: poll any vendor hook asynchronously until a final state or a wall-clock deadline."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_export_providers.core.errors import VendorAuthError, VendorHTTPError
from airflow_export_providers.core.hook import import_hook
from airflow_export_providers.core.redact import redact_text

log = logging.getLogger(__name__)




class ExportJobTrigger(BaseTrigger):
    """Wait for one vendor job; yields exactly one event.

    Everything in ``serialize()`` is a primitive, so the triggerer can rebuild it from the metadata
    DB after a restart and go on polling the same job (state is always re-read from the vendor).

    ``mode="ready"`` is for sensors of things that are not jobs: the event fires as soon as the
    hook's job is not PENDING (e.g. an MX snapshot that lists its files).
    """

    def __init__(
        self,
        *,
        hook_class: str,
        conn_id: str,
        job_id: str,
        poll_interval: float = 60.0,
        deadline: float | None = None,
        hook_kwargs: dict[str, Any] | None = None,
        mode: str = "final",
    ) -> None:
        super().__init__()
        self.hook_class = hook_class
        self.conn_id = conn_id
        self.job_id = job_id
        self.poll_interval = float(poll_interval)
        self.deadline = deadline
        self.hook_kwargs = dict(hook_kwargs or {})
        self.mode = mode

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "hook_class": self.hook_class,
                "conn_id": self.conn_id,
                "job_id": self.job_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "hook_kwargs": self.hook_kwargs,
                "mode": self.mode,
            },
        )

    def _done(self, job: Any) -> bool:
        from airflow_export_providers.core.job import JobState

        if self.mode == "ready":
            return bool(job.state != JobState.PENDING)
        return bool(job.state.is_final)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # The event leaves only after the polling generator is closed, i.e. after the hook closed
        # its aiohttp sessions: a consumer that stops at the first event (dag.test, a triggerer
        # cancelling the trigger) would otherwise leave them to garbage collection, unclosed.
        polls = self._poll()
        try:
            event = await anext(polls)
        finally:
            await polls.aclose()
        yield event

    async def _poll(self) -> AsyncGenerator[TriggerEvent, None]:
        from airflow_export_providers.core.job import JobState

        hook = import_hook(self.hook_class)(conn_id=self.conn_id, **self.hook_kwargs)
        try:
            while True:
                try:
                    job = await hook.aget_job(self.job_id)
                except (VendorAuthError, VendorHTTPError) as err:
                    # < 400: the vendor answered, but not in a shape the hook can read (HTML page, a field
                    # missing): polling again would only repeat it until the deadline, as the worker fails at once.
                    if isinstance(err, VendorAuthError) or err.status < 400 or err.status in (400, 403, 404, 410):
                        yield TriggerEvent(self._event("error", message=str(err)))
                        return
                    log.warning("%s: status read failed, will poll again: %s", self.job_id, err)
                    job = None
                except Exception as exc:  # never crash the triggerer: report and let the task decide
                    yield TriggerEvent(self._event("error", message=f"{type(exc).__name__}: {redact_text(exc)}"))
                    return
                if job is not None:
                    log.info("%s job %s: %s (%s)", job.vendor, self.job_id, job.state.value, job.raw_state)
                    if self._done(job):
                        status = "success" if job.state != JobState.FAILED else "failed"
                        yield TriggerEvent(self._event(status, job=job.to_dict(), message=job.message))
                        return
                now = time.time()
                if self.deadline is not None and now >= self.deadline:
                    yield TriggerEvent(
                        self._event("timeout", message=f"job {self.job_id} not finished by its deadline", job=job.to_dict() if job else None)
                    )
                    return
                sleep_for = self.poll_interval
                if self.deadline is not None:
                    sleep_for = max(0.0, min(sleep_for, self.deadline - now))
                await asyncio.sleep(sleep_for)
        finally:
            await hook.aclose()

    def _event(self, status: str, **kwargs: Any) -> dict[str, Any]:
        event = {"status": status, "job_id": self.job_id}
        for key, value in kwargs.items():
            event[key] = redact_text(value) if key == "message" and value else value
        return event
