"""Avro conversion and the landing pipeline's pure parts: formats, schemas, gzip, names, part sizes."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_export_providers.core import avro
from airflow_export_providers.core.errors import ExportInputError, VerificationError
from airflow_export_providers.core.landing import (
    MiB,
    _Inflate,
    _LineCounter,
    landed_name,
    object_key,
    validate_convert,
)
from airflow_export_providers.transfers.export_to_s3 import S3_MAX_OBJECT, S3_MAX_PARTS, s3_part_size
from tests.support.avro_samples import EPOCH, avro_bytes, record
from tests.support.streams import Chunked


class Sink:
    """Collects what a converter writes, and how many writes it took."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.writes = 0
        self.largest = 0

    def write(self, data: bytes) -> None:
        self.buf.write(data)
        self.writes += 1
        self.largest = max(self.largest, len(data))

    def value(self) -> bytes:
        return self.buf.getvalue()


def convert(data: bytes, fmt: str, **kwargs: object) -> tuple[int, Sink]:
    sink = Sink()
    n = avro.convert_avro(io.BytesIO(data), sink, fmt, name="t.avro", **kwargs)  # type: ignore[arg-type]
    return n, sink


def test_jsonl_values_and_types() -> None:
    n, sink = convert(avro_bytes(25), "jsonl", batch_rows=7)
    lines = sink.value().decode().splitlines()
    assert n == 25 and len(lines) == 25
    first, fifth = json.loads(lines[1]), json.loads(lines[5])
    assert first["guid"] == "TRN-000001" and first["amount"] == 1.25 and first["status"] == "POSTED"
    assert first["created_at"].endswith("Z")  # RFC 3339 UTC
    assert dt.datetime.fromisoformat(first["created_at"]) == EPOCH.replace(second=1)
    assert first["merchant"] == {"name": "shop 1", "category": None}
    assert first["attrs"] == {"a": 1, "b": -1} and first["tags"] == ["t1", "x"]
    assert fifth["memo"] == 'memo, "quoted" 5\nsecond line'
    assert sink.writes >= 4  # written in batches of 7 rows, not in one piece


def test_csv_header_from_schema_nested_as_json() -> None:
    n, sink = convert(avro_bytes(12), "csv", batch_rows=5)
    rows = list(csv.reader(io.StringIO(sink.value().decode())))
    assert n == 12 and len(rows) == 13
    header = rows[0]
    assert header == ["guid", "amount", "count", "memo", "status", "created_at", "tags", "attrs", "merchant"]
    by_name = [dict(zip(header, r, strict=True)) for r in rows[1:]]
    assert by_name[0]["memo"] == "" and by_name[0]["merchant"] == ""  # nulls are empty cells
    assert json.loads(by_name[1]["merchant"]) == {"name": "shop 1", "category": None}
    assert json.loads(by_name[1]["tags"]) == ["t1", "x"]
    assert by_name[5]["memo"] == 'memo, "quoted" 5\nsecond line'  # quoted multi-line cell survives
    assert sink.writes >= 3


def test_csv_extra_field_gets_its_own_column() -> None:
    _, sink = convert(avro_bytes(3, v2=True), "csv")
    rows = list(csv.reader(io.StringIO(sink.value().decode())))
    assert rows[0][-1] == "currency_code"
    assert [r[-1] for r in rows[1:]] == ["", "USD", ""]


def test_parquet_types_row_groups_and_values() -> None:
    n, sink = convert(avro_bytes(25, codec="deflate"), "parquet", batch_rows=10)
    assert n == 25
    pf = pq.ParquetFile(io.BytesIO(sink.value()))
    assert pf.metadata.num_rows == 25 and pf.metadata.num_row_groups == 3  # row groups of at most 10 rows
    schema = pf.schema_arrow
    assert schema.field("created_at").type == pa.timestamp("ms", tz="UTC")
    assert schema.field("count").type == pa.int64() and not schema.field("count").nullable
    assert schema.field("memo").nullable
    assert pa.types.is_struct(schema.field("merchant").type)
    assert pa.types.is_map(schema.field("attrs").type)
    table = pf.read()
    rows = table.to_pylist()
    assert rows[7]["guid"] == "TRN-000007" and rows[7]["merchant"] == {"name": "shop 7", "category": "food"}
    assert dict(rows[7]["attrs"]) == {"a": 7, "b": -7}
    assert rows[7]["created_at"] == record(7)["created_at"]


def test_parquet_header_only_file_has_columns() -> None:
    n, sink = convert(avro_bytes(0, v2=True), "parquet")
    assert n == 0
    pf = pq.ParquetFile(io.BytesIO(sink.value()))
    assert pf.metadata.num_rows == 0
    assert pf.schema_arrow.names[-1] == "currency_code" and len(pf.schema_arrow.names) == 10


def test_header_only_csv_and_jsonl() -> None:
    n, sink = convert(avro_bytes(0), "csv")
    assert n == 0 and sink.value().decode().splitlines() == [
        "guid,amount,count,memo,status,created_at,tags,attrs,merchant"
    ]
    n, sink = convert(avro_bytes(0), "jsonl")
    assert n == 0 and sink.value() == b""


def test_unusual_schemas_map_to_arrow() -> None:
    schema = {
        "type": "record", "name": "Odd", "fields": [
            {"name": "either", "type": ["null", "string", "long"]},
            {"name": "day", "type": {"type": "int", "logicalType": "date"}},
            {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
            {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
            {"name": "raw", "type": {"type": "fixed", "name": "Four", "size": 4}},
            {"name": "next", "type": ["null", "Odd"]},
        ],
    }
    import datetime as dt
    import decimal
    import uuid

    import fastavro

    buf = io.BytesIO()
    uid = uuid.UUID(int=5)
    fastavro.writer(buf, fastavro.parse_schema(schema), [
        {"either": 5, "day": dt.date(2026, 2, 3), "price": decimal.Decimal("12.34"), "id": str(uid), "raw": b"abcd",
         "next": {"either": "s", "day": dt.date(2026, 2, 4), "price": decimal.Decimal("0.01"), "id": str(uid), "raw": b"wxyz", "next": None}},
    ])
    _, sink = convert(buf.getvalue(), "parquet")
    table = pq.read_table(io.BytesIO(sink.value()))
    assert table.schema.field("either").type == pa.string()  # a multi-type union becomes JSON text
    assert table.schema.field("day").type == pa.date32()
    assert table.schema.field("price").type == pa.decimal128(10, 2)
    assert table.schema.field("raw").type == pa.binary(4)
    row = table.to_pylist()[0]
    assert row["either"] == "5" and row["price"] == decimal.Decimal("12.34") and row["id"] == str(uid)
    assert table.schema.field("next").type == pa.string()  # a recursive record has no Arrow type: JSON text
    assert json.loads(row["next"])["either"] == "s" and json.loads(row["next"])["next"] is None


def test_not_avro_names_convert() -> None:
    with pytest.raises(ExportInputError, match=r"convert='parquet'.*not Avro.*convert=None"):
        convert(b"a,b\n1,2\n", "parquet")


def test_unknown_convert_lists_accepted_values() -> None:
    with pytest.raises(ExportInputError, match=r"convert: 'xml'.*None, 'jsonl', 'csv', 'parquet'"):
        validate_convert("xml")
    assert validate_convert(None) is None and validate_convert("csv") == "csv"


def test_count_avro_records_without_decoding() -> None:
    assert avro.count_avro_records(io.BytesIO(avro_bytes(250, block_rows=10))) == 250
    assert avro.count_avro_records(io.BytesIO(avro_bytes(0))) == 0
    data = avro_bytes(90, block_rows=10)
    _, stream = avro.peek(Chunked(data, 777), 4)  # a non-seekable stream, as in landing
    assert avro.count_avro_records(stream) == 90


def read_all(stream: object) -> bytes:
    out = b""
    while chunk := stream.read(65536):  # type: ignore[attr-defined]
        out += chunk
    return out


def test_inflate_streams_multi_member_gzip() -> None:
    plain1, plain2 = b"x" * (3 * MiB) + b"\n", b"second member\n"
    data = gzip.compress(plain1) + gzip.compress(plain2)
    out = read_all(_Inflate(Chunked(data, 1000), "f.gz"))
    assert out == plain1 + plain2


def test_inflate_bounds_each_step() -> None:
    bomb = gzip.compress(b"\0" * (50 * MiB))
    inflater = _Inflate(Chunked(bomb, len(bomb)), "bomb.gz")
    inflater.read(10)
    assert len(inflater._buf) <= MiB  # one highly compressed chunk does not inflate at once


def test_inflate_refuses_truncated_and_garbage() -> None:
    data = gzip.compress(b"hello world" * 1000)
    with pytest.raises(VerificationError, match="truncated"):
        read_all(_Inflate(Chunked(data[:-20], 100), "cut.gz"))
    with pytest.raises(VerificationError, match="not valid gzip"):
        read_all(_Inflate(Chunked(b"plain text, not gzip", 100), "bad.gz"))


def test_line_counter() -> None:
    c = _LineCounter()
    for part in (b"h\na", b"\nb\n", b"c"):
        c.update(part)
    assert c.lines() == 4
    empty = _LineCounter()
    assert empty.lines() == 0


def test_part_size_keeps_5tb_under_10000_parts() -> None:
    assert s3_part_size(None) == 8 * MiB and s3_part_size(100 * MiB) == 8 * MiB
    size = s3_part_size(S3_MAX_OBJECT)
    assert -(-S3_MAX_OBJECT // size) < S3_MAX_PARTS and size % MiB == 0
    assert s3_part_size(100 * MiB, minimum=5 * MiB) == 5 * MiB


def test_names_and_keys() -> None:
    assert landed_name("users-0.avro.gz", convert="parquet") == "users-0.parquet"
    assert landed_name("snap.csv.gz", decompress=True) == "snap.csv"
    assert landed_name("snap.csv.gz") == "snap.csv.gz"
    assert landed_name("export-output-0", decompress=True, gzip=True) == "export-output-0"
    assert landed_name("a.avro", convert="jsonl") == "a.jsonl"
    assert object_key("/raw/2026-01-01/", "f.csv") == "raw/2026-01-01/f.csv" and object_key("", "f") == "f"
