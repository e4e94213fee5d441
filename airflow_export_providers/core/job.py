"""Job model shared by every vendor: plain, JSON-serialisable, safe for XCom and trigger events.

Nothing in here may hold a secret: file locations that carry signatures (presigned URLs, SAS) are
resolved by the hook at download time from ``ExportFile.key``, never stored.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class JobState(str, Enum):
    """Normalised state; each vendor maps its raw names onto these."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"

    @property
    def is_final(self) -> bool:
        return self in (JobState.SUCCESS, JobState.FAILED)


def map_state(raw: str | None, mapping: dict[str, JobState], default: JobState = JobState.RUNNING) -> JobState:
    """Map a vendor's raw state (case-insensitive); unknown states count as still running.

    Treating an unknown state as running (until the wall-clock deadline) is safer than failing a
    job the vendor may still finish, and the raw value is kept beside it for the logs.
    """
    if raw is None:
        return default
    lowered = {k.lower(): v for k, v in mapping.items()}
    return lowered.get(str(raw).lower(), default)


@dataclass
class ExportFile:
    """One file of an export: where it comes from (by stable key) and what to verify after landing."""

    vendor: str
    conn_id: str
    job_id: str
    key: str
    name: str
    size: int | None = None
    rows: int | None = None
    checksum: str | None = None
    checksum_algorithm: str | None = None  # "md5" | "sha256" | "sha1"
    row_format: str | None = None  # "csv" (rows exclude header) | "jsonl" | "avro" | None
    compression: str | None = None  # "gzip" | None
    resource: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExportFile:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class Watermark:
    """A proposed move of a Variable-backed watermark, committed only after landing.

    ``job_id`` names the export that proposes it: the commit records it, so a retry of the same
    landing is recognised and another run's commit (even of the same value) is refused.
    """

    variable: str
    previous: Any
    proposed: Any
    job_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class ExportJob:
    """One vendor export job as seen by Airflow; what goes to XCom, never data."""

    vendor: str
    conn_id: str
    job_id: str
    state: JobState
    raw_state: str | None = None
    files: list[ExportFile] = field(default_factory=list)
    message: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    watermark: Watermark | None = None
    hook_class: str | None = None
    hook_kwargs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "vendor": self.vendor,
            "conn_id": self.conn_id,
            "job_id": self.job_id,
            "state": self.state.value,
            "raw_state": self.raw_state,
            "files": [f.to_dict() for f in self.files],
            "message": self.message,
            "extra": dict(self.extra),
            "watermark": self.watermark.to_dict() if self.watermark else None,
            "hook_class": self.hook_class,
            "hook_kwargs": dict(self.hook_kwargs),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExportJob:
        if not isinstance(data, dict):
            raise TypeError(f"export: expected an ExportJob dict (an export operator's XCom), got {type(data).__name__}")
        missing = [k for k in ("vendor", "conn_id", "job_id", "state") if k not in data]
        if missing:
            raise ValueError(f"export: not an ExportJob, missing field(s) {', '.join(missing)}")
        wm = data.get("watermark")
        return cls(
            vendor=data["vendor"],
            conn_id=data["conn_id"],
            job_id=data["job_id"],
            state=JobState(data["state"]),
            raw_state=data.get("raw_state"),
            files=[ExportFile.from_dict(f) for f in data.get("files") or []],
            message=data.get("message"),
            extra=dict(data.get("extra") or {}),
            watermark=Watermark(**wm) if wm else None,
            hook_class=data.get("hook_class"),
            hook_kwargs=dict(data.get("hook_kwargs") or {}),
        )
