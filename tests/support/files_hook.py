"""A test-only vendor hook over the sandbox's generic file route (``GET /files/{name}?sig=...``).

It behaves like a vendor that hands out presigned links: the download carries no credentials, only a
signature. With ``stale_first=True`` the first link it builds carries an expired signature (the
sandbox answers 403 like S3 does), and ``refresh=True`` yields the good one — what a vendor hook does
when it asks the vendor again for a fresh link.
"""

from __future__ import annotations

import os
from typing import Any

from airflow_export_providers.core.hook import ExportHook
from airflow_export_providers.core.http import Request, RetryPolicy
from airflow_export_providers.core.job import ExportFile, ExportJob, JobState

HOOK_CLASS = "tests.support.files_hook.FilesHook"
CONN_ID = "files_default"


class FilesHook(ExportHook):
    vendor = "files"
    conn_type = "http"
    default_conn_name = CONN_ID
    hook_name = "Sandbox files (tests)"

    def __init__(self, conn_id: str | None = None, *, stale_first: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("retry_policy", RetryPolicy(max_attempts=3, backoff_base=0.05, backoff_max=0.2))
        super().__init__(conn_id, **kwargs)
        self.stale_first = stale_first
        self.links: list[bool] = []  # True for each fresh link handed out, False for a stale one

    def hook_kwargs(self) -> dict[str, Any]:
        return {"stale_first": self.stale_first}

    def file_request(self, file: ExportFile, refresh: bool = False) -> Request:
        fresh = refresh or not self.stale_first
        self.links.append(fresh)
        sig = self.conn.password if fresh else "expired-signature"
        return Request("GET", self.url(f"/files/{file.key}"), params={"sig": sig}, auth=False)


def connection(sandbox_url: str, state: Any) -> dict[str, Any]:
    return {"conn_type": "http", "host": sandbox_url, "password": state.secret("files-sig")}


def set_files_connection(monkeypatch: Any, sandbox: Any) -> str:
    import json

    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(connection(sandbox.url, sandbox.state)))
    return CONN_ID


def export_file(name: str, data: bytes | None = None, **kwargs: Any) -> ExportFile:
    """An ExportFile for ``state.files[name]``; size defaults to ``len(data)`` when data is given."""
    if data is not None:
        kwargs.setdefault("size", len(data))
    return ExportFile(vendor="files", conn_id=CONN_ID, job_id="job-1", key=name, name=name, **kwargs)


def export_job(files: list[ExportFile], *, stale_first: bool = False, watermark: Any = None, job_id: str = "job-1") -> ExportJob:
    return ExportJob(
        vendor="files", conn_id=CONN_ID, job_id=job_id, state=JobState.SUCCESS, raw_state="done", files=files,
        hook_class=HOOK_CLASS, hook_kwargs={"stale_first": stale_first}, watermark=watermark,
    )


def random_bytes(n: int, seed: int = 0) -> bytes:
    """Incompressible test bytes (deterministic per seed, fast to make)."""
    import random

    rnd = random.Random(seed)
    return rnd.randbytes(n) if hasattr(rnd, "randbytes") else os.urandom(n)
