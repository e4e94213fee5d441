"""Avro test files shaped like MX's: gzip'd, one writer schema per file, fields added over time."""

from __future__ import annotations

import datetime as dt
import gzip
import io
from typing import Any

import fastavro

SCHEMA_V1: dict[str, Any] = {
    "type": "record",
    "name": "Transaction",
    "namespace": "com.mx.logs",
    "fields": [
        {"name": "guid", "type": "string"},
        {"name": "amount", "type": "double"},
        {"name": "count", "type": "long"},
        {"name": "memo", "type": ["null", "string"], "default": None},
        {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["POSTED", "PENDING"]}},
        {"name": "created_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "attrs", "type": {"type": "map", "values": "long"}},
        {
            "name": "merchant",
            "type": ["null", {"type": "record", "name": "Merchant", "fields": [
                {"name": "name", "type": "string"},
                {"name": "category", "type": ["null", "string"], "default": None},
            ]}],
            "default": None,
        },
    ],
}

# MX adds fields at any time: the same resource, one more column.
SCHEMA_V2: dict[str, Any] = {
    **SCHEMA_V1,
    "fields": [*SCHEMA_V1["fields"], {"name": "currency_code", "type": ["null", "string"], "default": None}],
}

EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def record(i: int, v2: bool = False) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "guid": f"TRN-{i:06d}",
        "amount": round(i * 1.25, 2),
        "count": i,
        "memo": None if i % 3 == 0 else f"memo, \"quoted\" {i}\nsecond line" if i % 5 == 0 else f"memo {i}",
        "status": "POSTED" if i % 2 else "PENDING",
        "created_at": EPOCH + dt.timedelta(seconds=i),
        "tags": [f"t{i % 4}", "x"] if i % 2 else [],
        "attrs": {"a": i, "b": -i},
        "merchant": None if i % 4 == 0 else {"name": f"shop {i}", "category": None if i % 8 == 1 else "food"},
    }
    if v2:
        rec["currency_code"] = "USD" if i % 2 else None
    return rec


def avro_bytes(n: int, *, v2: bool = False, codec: str = "null", block_rows: int = 100) -> bytes:
    buf = io.BytesIO()
    schema = fastavro.parse_schema(SCHEMA_V2 if v2 else SCHEMA_V1)
    fastavro.writer(buf, schema, (record(i, v2) for i in range(n)), codec=codec, sync_interval=block_rows * 200)
    return buf.getvalue()


def avro_gz(n: int, **kwargs: Any) -> bytes:
    return gzip.compress(avro_bytes(n, **kwargs), compresslevel=1)
