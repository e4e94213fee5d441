"""A vendor-neutral hook on the sandbox's /generic and /files routes, for engine-level tests.

It is as thin as a real vendor hook is meant to be, which is the point: everything it does not
say (retries, deferral, resume, redaction, re-signing) must come from the engine.
"""

from __future__ import annotations

from typing import Any

from airflow_export_providers.core.hook import ExportHook
from airflow_export_providers.core.http import Auth, Request
from airflow_export_providers.core.job import ExportFile, ExportJob, JobState, map_state
from airflow_export_providers.core.operator import ExportOperator
from airflow_export_providers.core.sensor import ExportJobSensor

STATES = {"PENDING": JobState.PENDING, "RUNNING": JobState.RUNNING, "SUCCESS": JobState.SUCCESS, "FAILED": JobState.FAILED}


class _Bearer(Auth):
    def __init__(self, token: str) -> None:
        self.token = token

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class GenericHook(ExportHook):
    vendor = "generic"
    conn_type = "generic"
    default_conn_name = "generic_default"
    hook_name = "Generic (tests)"

    def make_auth(self) -> Auth:
        return _Bearer(self.conn.password)

    def submit(self) -> str:
        return str(self.client.json(Request("POST", self.url("/generic/jobs"), data={"x": "1"}, idempotent=False))["id"])

    def status_request(self, job_id: str) -> Request:
        return Request("GET", self.url(f"/generic/jobs/{job_id}"))

    def parse_job(self, job_id: str, payload: Any) -> ExportJob:
        files = [ExportFile(vendor=self.vendor, conn_id=self.conn_id, job_id=job_id, key=n, name=n) for n in payload.get("files", [])]
        return ExportJob(self.vendor, self.conn_id, job_id, map_state(payload["state"], STATES), raw_state=payload["state"], files=files)

    def file_request(self, file: ExportFile, refresh: bool = False) -> Request:
        sig = self.extras.get("sig", "")
        return Request("GET", self.url(f"/files/{file.key}"), params={"sig": sig}, auth=False)

    def check_connection(self) -> str:
        return "ok"


class GenericExportOperator(ExportOperator):
    hook_class = GenericHook

    def submit_job(self, hook: ExportHook, context: Any) -> str:
        assert isinstance(hook, GenericHook)
        return hook.submit()


class GenericJobSensor(ExportJobSensor):
    hook_class = GenericHook
    template_fields = ("conn_id", "job_id")

    def __init__(self, *, job_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job_id = job_id


def generic_connection(base_url: str, token: str, sig: str = "") -> dict[str, Any]:
    return {"conn_type": "generic", "host": base_url, "password": token, "extra": {"sig": sig}}
