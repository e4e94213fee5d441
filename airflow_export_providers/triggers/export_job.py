"""ExportJobTrigger: poll any vendor hook asynchronously until a final state or a wall-clock deadline."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_export_providers.core.errors import ExportInputError, VendorAuthError, VendorHTTPError
from airflow_export_providers.core.hook import import_hook
from airflow_export_providers.core.redact import redact_text
from airflow_export_providers.core.validate import one_of, poll_sleep, positive_seconds

log = logging.getLogger(__name__)

FIRST_POLL_SPREAD = 60.0  # seconds: the longest a first poll waits (at most one poll interval)


class ExportJobTrigger(BaseTrigger):
    """Wait for one vendor job; yields exactly one event.

    Everything in ``serialize()`` is a primitive, so the triggerer can rebuild it from the metadata
    DB after a restart and go on polling the same job (state is always re-read from the vendor).

    ``mode="ready"`` is for sensors of things that are not jobs: the event fires as soon as the
    hook's job is not PENDING (e.g. an MX snapshot that lists its files).

    The arguments are checked here too, since the triggerer rebuilds a trigger from its stored
    kwargs: ``poll_interval`` > 0, ``deadline`` epoch seconds or None. A sleep between two status
    reads lasts at most ``MAX_POLL_INTERVAL`` (one hour) and never runs past the deadline.
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
        for field, value in (("hook_class", hook_class), ("conn_id", conn_id), ("job_id", job_id)):
            if not isinstance(value, str) or not value:
                raise ExportInputError(f"{field}: expected a non-empty string, got {value!r}")
        if hook_kwargs is not None and not isinstance(hook_kwargs, dict):
            raise ExportInputError(f"hook_kwargs: expected a dict or None, got {type(hook_kwargs).__name__}")
        self.hook_class = hook_class
        self.conn_id = conn_id
        self.job_id = job_id
        self.poll_interval = positive_seconds(poll_interval, "poll_interval")
        self.deadline = None if deadline is None else positive_seconds(deadline, "deadline")
        self.hook_kwargs = dict(hook_kwargs or {})
        self.mode = one_of(mode, "mode", ("final", "ready"))

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
            # The task read the job's state just before it deferred, so the first poll can wait a random part of
            # one interval: a triggerer that (re)starts with thousands of triggers then does not poll them all at once.
            await asyncio.sleep(random.uniform(0.0, poll_sleep(min(self.poll_interval, FIRST_POLL_SPREAD), self.deadline, time.time())))
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
                await asyncio.sleep(poll_sleep(self.poll_interval, self.deadline, now))
        finally:
            await hook.aclose()
            # a closed transport finishes closing on the loop's next turn (connection_lost): give it that turn
            # before the event leaves, or a loop closed right after it (dag.test) finds it "unclosed"
            await asyncio.sleep(0)

    def _event(self, status: str, **kwargs: Any) -> dict[str, Any]:
        event = {"status": status, "job_id": self.job_id}
        for key, value in kwargs.items():
            event[key] = redact_text(value) if key == "message" and value else value
        return event
