"""MX test helpers: unique snapshots in the shared sandbox, reading gzip'd Avro back."""

from __future__ import annotations

import gzip
import io
import uuid
from typing import Any

import fastavro


def new_guid() -> str:
    """A GUID no other test uses (the sandbox is shared by the whole session)."""
    return f"CSS-{uuid.uuid4().hex[:10]}"


def make_snapshot(state: Any, **options: Any) -> Any:
    """A sandbox snapshot, ready at once unless ``ready_after`` says otherwise."""
    from airflow_export_providers.sandbox.mx import add_snapshot

    options.setdefault("ready_after", 0.0)
    return add_snapshot(state, options.pop("guid", None) or new_guid(), **options)


def read_avro_gz(data: bytes) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Writer schema and records of one gzip'd Avro file (fastavro, schema read from the file)."""
    reader = fastavro.reader(io.BytesIO(gzip.decompress(data)))
    return reader.writer_schema, list(reader)  # type: ignore[return-value]


def mx_conn(sandbox: Any, **extra: Any) -> dict[str, Any]:
    """The sandbox's MX connection, with extras overridden."""
    conn = dict(sandbox.connections()["mx_snapshots_default"])
    conn["extra"] = {**conn["extra"], **extra}
    return conn
