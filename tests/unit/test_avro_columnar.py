"""The columnar Avro converter (polars) writes the same values as the row converter (fastavro).

Every case converts one file both ways (``columnar=False`` and ``columnar=True``) and compares:
Parquet as Arrow tables (values, types, row groups), JSONL as parsed JSON (and byte for byte where
no float needs an exponent), CSV as parsed cells. Files the columnar reader cannot read fall back
to the row converter, file by file.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json
import math
import uuid
from typing import Any

import fastavro
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_export_providers.core import avro, avro_columnar
from airflow_export_providers.core.errors import VerificationError
from airflow_export_providers.sandbox.mx import EVOLVED_FIELD, SCHEMAS, _Generator
from tests.support.avro_samples import SCHEMA_V1, SCHEMA_V2, avro_bytes, record
from tests.support.streams import Chunked

UTC = dt.timezone.utc


class Sink:
    def __init__(self) -> None:
        self.buf = io.BytesIO()

    def write(self, data: bytes) -> None:
        self.buf.write(data)


def write_avro(schema: Any, records: list[Any], codec: str = "null", sync_interval: int = 2000) -> bytes:
    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(schema), records, codec=codec, sync_interval=sync_interval, validator=False)
    return buf.getvalue()


def both(data: bytes, fmt: str, columnar_mode: bool | None = True, **kwargs: Any) -> tuple[tuple[int, bytes], tuple[int, bytes]]:
    """(row converter, columnar converter) outputs; ``columnar_mode=None`` lets the file fall back."""
    out = []
    for columnar in (False, columnar_mode):
        sink = Sink()
        n = avro.convert_avro(io.BytesIO(data), sink, fmt, name="t.avro", columnar=columnar, **kwargs)
        out.append((n, sink.buf.getvalue()))
    return out[0], out[1]


def same_float(a: str, b: str) -> bool:
    try:
        x, y = float(a), float(b)
    except ValueError:
        return False
    return x == y or (math.isnan(x) and math.isnan(y))


def assert_same(data: bytes, fmt: str, *, exact_text: bool = True, **kwargs: Any) -> None:
    (n_row, row), (n_col, col) = both(data, fmt, **kwargs)
    assert n_row == n_col
    if fmt == "parquet":
        a, b = pq.ParquetFile(io.BytesIO(row)), pq.ParquetFile(io.BytesIO(col))
        assert b.schema_arrow == a.schema_arrow
        assert [b.metadata.row_group(i).num_rows for i in range(b.num_row_groups)] == \
            [a.metadata.row_group(i).num_rows for i in range(a.num_row_groups)]
        ta, tb = a.read(), b.read()
        assert tb.equals(ta) or nan_safe(tb.to_pylist()) == nan_safe(ta.to_pylist())
    elif fmt == "jsonl":
        assert [json.loads(x) for x in col.splitlines()] == [json.loads(x) for x in row.splitlines()]
        if exact_text:
            assert col == row
    else:
        rows_a = list(csv.reader(io.StringIO(row.decode())))
        rows_b = list(csv.reader(io.StringIO(col.decode())))
        assert len(rows_a) == len(rows_b)
        for ra, rb in zip(rows_a, rows_b, strict=True):
            assert len(ra) == len(rb)
            for ca, cb in zip(ra, rb, strict=True):
                assert ca == cb or same_float(ca, cb), (ca, cb)
        if exact_text:
            assert col == row


def nan_safe(value: Any) -> Any:
    """NaN compared as a value (Table.equals, like ==, says NaN differs from itself)."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, list):
        return [nan_safe(v) for v in value]
    if isinstance(value, dict):
        return {k: nan_safe(v) for k, v in value.items()}
    return value


def record_schema(*fields: tuple[str, Any], name: str = "R") -> dict[str, Any]:
    return {"type": "record", "name": name, "namespace": "t.ns", "fields": [{"name": n, "type": t} for n, t in fields]}


# ---- MX: every resource's schema, generated records, the evolved file ------------------------------
@pytest.mark.parametrize("resource", sorted(SCHEMAS))
@pytest.mark.parametrize("fmt", avro.FORMATS)
def test_mx_resources(resource: str, fmt: str) -> None:
    gen = _Generator(f"snap-{resource}", {"users": 30, "members": 40, "accounts": 50})
    records = gen.records(resource, 2500, 0)
    assert_same(write_avro(SCHEMAS[resource], records, codec="deflate"), fmt, batch_rows=700)


@pytest.mark.parametrize("fmt", avro.FORMATS)
def test_mx_evolved_writer_schema(fmt: str) -> None:
    schema = {**SCHEMAS["transactions"], "fields": [*SCHEMAS["transactions"]["fields"], EVOLVED_FIELD]}
    gen = _Generator("snap-evolved", {"users": 5, "members": 5, "accounts": 5})
    records = [{**r, EVOLVED_FIELD["name"]: ["PURCHASE", None][i % 2]} for i, r in enumerate(gen.records("transactions", 900, 0))]
    assert_same(write_avro(schema, records), fmt)
    (_, col), _ = both(write_avro(schema, records), fmt)
    if fmt == "csv":
        assert col.splitlines()[0].decode().endswith(EVOLVED_FIELD["name"])


# ---- the test schemas (enum, map, array, nullable record, timestamp-millis) -------------------------
@pytest.mark.parametrize("v2", [False, True], ids=["v1", "v2-evolved"])
@pytest.mark.parametrize("fmt", avro.FORMATS)
def test_sample_schemas(v2: bool, fmt: str) -> None:
    data = avro_bytes(1234, v2=v2, codec="deflate", block_rows=37)
    if fmt == "parquet":
        assert_same(data, fmt, batch_rows=100)  # the map column is read columnar too
    else:
        assert_same(data, fmt, columnar_mode=None)  # maps go row by row in text formats: the default falls back
        with pytest.raises(avro_columnar.Unsupported, match="map"):
            avro.convert_avro(io.BytesIO(data), Sink(), fmt, columnar=True)


def _without_map(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "fields": [f for f in schema["fields"] if f["name"] != "attrs"]}


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_sample_schema_text_columnar(fmt: str) -> None:
    """The same records without the map column: enum, array, nullable record and timestamps in text."""
    schema = _without_map(SCHEMA_V2)
    records = [{k: v for k, v in record(i, v2=True).items() if k != "attrs"} for i in range(600)]
    assert_same(write_avro(schema, records), fmt, batch_rows=64)


@pytest.mark.parametrize("fmt", avro.FORMATS)
@pytest.mark.parametrize("v2", [False, True], ids=["v1", "v2-evolved"])
def test_header_only_files(fmt: str, v2: bool) -> None:
    assert_same(avro_bytes(0, v2=v2), fmt, columnar_mode=True if fmt == "parquet" else None)
    assert_same(write_avro(_without_map(SCHEMA_V2 if v2 else SCHEMA_V1), []), fmt)


# ---- logical types, unions, nesting --------------------------------------------------------------
LOGICAL_SCHEMA = record_schema(
    ("day", {"type": "int", "logicalType": "date"}),
    ("ts_ms", {"type": "long", "logicalType": "timestamp-millis"}),
    ("ts_us", ["null", {"type": "long", "logicalType": "timestamp-micros"}]),
    ("local_ms", {"type": "long", "logicalType": "local-timestamp-millis"}),
    ("local_us", {"type": "long", "logicalType": "local-timestamp-micros"}),
    ("t_ms", {"type": "int", "logicalType": "time-millis"}),
    ("t_us", [{"type": "long", "logicalType": "time-micros"}, "null"]),
    ("price", {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}),
    ("big", ["null", {"type": "fixed", "name": "Big", "size": 12, "logicalType": "decimal", "precision": 28, "scale": 6}]),
    ("whole", {"type": "bytes", "logicalType": "decimal", "precision": 18, "scale": 0}),
    ("id", {"type": "string", "logicalType": "uuid"}),
    ("raw", {"type": "fixed", "name": "Four", "size": 4}),
    ("blob", ["null", "bytes"]),
    ("f32", "float"),
    ("i32", ["null", "int"]),
    ("flag", ["null", "boolean"]),
)


def logical_record(i: int) -> dict[str, Any]:
    base = dt.datetime(1969, 12, 31, 23, 59, 58, tzinfo=UTC) + dt.timedelta(seconds=i * 7919, milliseconds=i * 37 % 1000)
    return {
        "day": dt.date(1960, 1, 1) + dt.timedelta(days=i * 97),
        "ts_ms": base,
        "ts_us": None if i % 5 == 0 else base + dt.timedelta(microseconds=i % 3),
        "local_ms": base.replace(tzinfo=None),
        "local_us": base.replace(tzinfo=None) + dt.timedelta(microseconds=i),
        "t_ms": dt.time(i % 24, i % 60, (i * 7) % 60, (i % 2) * 123000),
        "t_us": None if i % 4 == 0 else dt.time(i % 24, 0, 0, i * 11 % 1_000_000),
        "price": decimal.Decimal(i * 37 - 500).scaleb(-2),
        "big": None if i % 3 == 0 else decimal.Decimal(i * 1234567 - 99).scaleb(-6),
        "whole": decimal.Decimal(i * 10**12 - 7),
        "id": str(uuid.UUID(int=i * 2**100 + i)).upper() if i % 2 else str(uuid.UUID(int=i)),  # read back canonical
        "raw": bytes([i % 256, 0, 255, 7]),
        "blob": None if i % 2 else bytes(range(i % 9)),
        "f32": i / 3.0,
        "i32": None if i % 6 == 0 else -i * 1000,
        "flag": [None, True, False][i % 3],
    }


@pytest.mark.parametrize("fmt", avro.FORMATS)
def test_logical_types(fmt: str) -> None:
    data = write_avro(LOGICAL_SCHEMA, [logical_record(i) for i in range(500)], codec="deflate")
    assert_same(data, fmt, batch_rows=128)


NESTED_SCHEMA = record_schema(
    ("kind", {"type": "enum", "name": "Kind", "symbols": ["A", "B", "C"]}),
    ("maybe_kind", ["null", "Kind"]),  # a named type used twice
    ("point", {"type": "record", "name": "Point", "fields": [
        {"name": "x", "type": "double"}, {"name": "label", "type": ["null", "string"]},
        {"name": "when", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
    ]}),
    ("other", ["null", "Point"]),
    ("points", {"type": "array", "items": "Point"}),
    ("grid", ["null", {"type": "array", "items": {"type": "array", "items": ["null", "long"]}}]),
    ("kinds", {"type": "array", "items": "Kind"}),
    ("blobs", {"type": "array", "items": "bytes"}),
)


def nested_record(i: int) -> dict[str, Any]:
    def point(j: int) -> dict[str, Any]:
        return {"x": j * 0.5, "label": None if j % 2 else f"p{j}", "when": dt.datetime(2026, 1, 1, tzinfo=UTC) + dt.timedelta(milliseconds=j),
                "tags": [f"t{k}" for k in range(j % 3)]}

    return {
        "kind": "ABC"[i % 3], "maybe_kind": None if i % 2 else "CBA"[i % 3], "point": point(i),
        "other": None if i % 3 == 0 else point(i + 1), "points": [point(i + k) for k in range(i % 4)],
        "grid": None if i % 5 == 0 else [[k, None] for k in range(i % 3)], "kinds": ["A", "C"][: i % 3],
        "blobs": [bytes([i % 256])] * (i % 2),
    }


@pytest.mark.parametrize("fmt", avro.FORMATS)
def test_nested_records_arrays_enums(fmt: str) -> None:
    data = write_avro(NESTED_SCHEMA, [nested_record(i) for i in range(400)])
    assert_same(data, fmt, batch_rows=50)


MAP_SCHEMA = record_schema(
    ("counts", {"type": "map", "values": "long"}),
    ("maybe", ["null", {"type": "map", "values": {"type": "record", "name": "V", "fields": [
        {"name": "n", "type": "int"}, {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["X", "Y"]}}]}}]),
    ("lists", {"type": "map", "values": {"type": "array", "items": ["null", "string"]}}),
)


def test_maps_to_parquet() -> None:
    records = [{
        "counts": {f"k{j}": j * i for j in range(i % 4)},
        "maybe": None if i % 3 == 0 else {"a": {"n": i, "e": "XY"[i % 2]}},
        "lists": {"l": [None, "s"][: i % 3]},
    } for i in range(300)]
    assert_same(write_avro(MAP_SCHEMA, records), "parquet", batch_rows=40)


TEXT_SCHEMA = record_schema(
    ("s", ["null", "string"]), ("d", ["null", "double"]), ("f", "float"), ("n", "long"), ("b", "boolean"),
)
AWKWARD_STRINGS = ["plain", "", "comma, inside", 'quote " inside', "new\nline", "tab\there", "ctl \x01\x1f",
                   "unicode é 日本 \u2028", "back\\slash", " lead and trail ", "/slash", "x" * 3000, None]


def test_awkward_strings_and_numbers_jsonl() -> None:
    floats = [0.1, -0.0, 1.25, 123456789.125, 2.0**53, 1e16, 1e-7, 5e-324, float("nan"), float("inf"), -float("inf"), None]
    records = [{"s": AWKWARD_STRINGS[i % len(AWKWARD_STRINGS)], "d": floats[i % len(floats)], "f": floats[i % 4] or 0.0,
                "n": (-1) ** i * 2**62 // (i + 1), "b": bool(i % 2)} for i in range(200)]
    data = write_avro(TEXT_SCHEMA, records)
    assert_same(data, "jsonl", exact_text=False)  # 1e16 is spelled 1e+16 (the same number)
    tame = write_avro(TEXT_SCHEMA, [{**r, "d": r["d"] if r["d"] is None or 1e-4 < abs(r["d"]) < 1e15 else 0.5} for r in records])
    assert_same(tame, "jsonl")  # otherwise byte for byte: escapes, NaN/inf as null, float32 widened


def test_awkward_strings_and_numbers_csv() -> None:
    floats = [0.1, -0.0, 1.25, 123456789.125, 1e16, 1e-7, float("nan"), float("inf"), None]
    records = [{"s": AWKWARD_STRINGS[i % len(AWKWARD_STRINGS)], "d": floats[i % len(floats)], "f": 1.1,
                "n": i - 100, "b": bool(i % 2)} for i in range(150)]
    assert_same(write_avro(TEXT_SCHEMA, records), "csv", exact_text=False)
    tame = [{**r, "d": r["d"] if r["d"] is None or 1e-4 < abs(r["d"]) < 1e15 else 0.5} for r in records]
    assert_same(write_avro(TEXT_SCHEMA, tame), "csv")


def test_carriage_return_is_quoted_in_csv() -> None:
    """The one CSV spelling that differs on purpose: the row converter leaves a bare CR (a line break to readers)."""
    data = write_avro(TEXT_SCHEMA, [{"s": "a\rb", "d": 1.0, "f": 1.0, "n": 1, "b": True}])
    (_, row), (_, col) = both(data, "csv")
    assert b'"a\rb"' in col and b'"a\rb"' not in row
    assert list(csv.reader(io.StringIO(col.decode(), newline="")))[1][0] == "a\rb"


@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.fixed_dictionaries({
    # no CR: the row converter leaves it unquoted in CSV (test_carriage_return_is_quoted_in_csv)
    "s": st.none() | st.text(st.characters(blacklist_characters="\r", blacklist_categories=("Cs",)), max_size=20),
    "d": st.none() | st.floats(allow_nan=True, allow_infinity=True),
    "f": st.floats(width=32, allow_nan=False, allow_infinity=False),
    "n": st.integers(-(2**63), 2**63 - 1),
    "b": st.booleans(),
}), max_size=60))
def test_generated_records_every_format(records: list[dict[str, Any]]) -> None:
    data = write_avro(TEXT_SCHEMA, records, sync_interval=300)
    for fmt in avro.FORMATS:
        assert_same(data, fmt, exact_text=False, batch_rows=7)


# ---- codecs, fallbacks, errors ----------------------------------------------------------------------
@pytest.mark.parametrize("codec", ["null", "deflate", "snappy"])
def test_codecs_read_columnar(codec: str) -> None:
    if codec == "snappy":
        pytest.importorskip("cramjam")  # fastavro needs it to write snappy blocks
    assert_same(avro_bytes(300, codec=codec, block_rows=16), "parquet", batch_rows=50)


FALLBACKS = {
    "a union of two types": (record_schema(("either", ["null", "string", "long"])), [{"either": "a"}, {"either": 5}]),
    "a recursive record": (record_schema(("next", ["null", "R"])), [{"next": {"next": None}}]),
    "the null type": (record_schema(("nothing", "null"), ("n", "long")), [{"nothing": None, "n": 1}]),
    "a wide decimal": (record_schema(("d", {"type": "bytes", "logicalType": "decimal", "precision": 40, "scale": 2})),
                       [{"d": decimal.Decimal("1.25")}]),
    "a non-record file": ("long", [1, 2, 3]),
    "an unknown logical type": (record_schema(("x", {"type": "string", "logicalType": "postal-code"})), [{"x": "1"}]),
}


@pytest.mark.parametrize("case", sorted(FALLBACKS))
@pytest.mark.parametrize("fmt", avro.FORMATS)
def test_unreadable_files_fall_back_to_rows(case: str, fmt: str, caplog: pytest.LogCaptureFixture) -> None:
    schema, records = FALLBACKS[case]
    data = write_avro(schema, records)
    with pytest.raises(avro_columnar.Unsupported):
        avro.convert_avro(io.BytesIO(data), Sink(), fmt, columnar=True)
    row, auto = Sink(), Sink()
    avro.convert_avro(io.BytesIO(data), row, fmt, columnar=False)
    with caplog.at_level("INFO", logger="airflow_export_providers.core.avro"):
        n = avro.convert_avro(io.BytesIO(data), auto, fmt, name="odd.avro")
    assert n == len(records) and auto.buf.getvalue() == row.buf.getvalue()
    assert "odd.avro" in caplog.text and "row by row" in caplog.text


def test_bzip2_blocks_fall_back() -> None:
    data = avro_bytes(50, codec="bzip2")
    with pytest.raises(avro_columnar.Unsupported, match="bzip2"):
        avro.convert_avro(io.BytesIO(data), Sink(), "parquet", columnar=True)
    assert_same_default_as_rows(data, "parquet")


def assert_same_default_as_rows(data: bytes, fmt: str) -> None:
    a, b = Sink(), Sink()
    avro.convert_avro(io.BytesIO(data), a, fmt, columnar=False)
    avro.convert_avro(io.BytesIO(data), b, fmt)
    assert pq.read_table(io.BytesIO(a.buf.getvalue())).equals(pq.read_table(io.BytesIO(b.buf.getvalue())))


def test_without_polars_the_row_converter_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(avro_columnar, "available", lambda: False)
    data = avro_bytes(20)
    assert_same_default_as_rows(data, "parquet")
    with pytest.raises(avro_columnar.Unsupported, match="polars is not installed"):
        avro.convert_avro(io.BytesIO(data), Sink(), "parquet", columnar=True)


def test_default_reads_columnar(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default path really decodes through polars (not a silent fallback)."""
    calls: list[int] = []
    decode = avro_columnar.decode
    monkeypatch.setattr(avro_columnar, "decode", lambda h, blocks: calls.append(len(blocks)) or decode(h, blocks))
    n = avro.convert_avro(io.BytesIO(avro_bytes(500, block_rows=10)), Sink(), "parquet", batch_rows=100)
    assert n == 500 and len(calls) >= 4  # groups of whole blocks (about 100 records each), not one read of the file


def test_short_reads_and_large_headers() -> None:
    schema = {**SCHEMA_V2, "doc": "x" * 5000}  # a header larger than one read
    records = [record(i, v2=True) for i in range(300)]
    data = write_avro(schema, records)
    a, b = Sink(), Sink()
    avro.convert_avro(Chunked(data, 333), a, "parquet", columnar=False)
    avro.convert_avro(Chunked(data, 333), b, "parquet", columnar=True)
    assert pq.read_table(io.BytesIO(b.buf.getvalue())).equals(pq.read_table(io.BytesIO(a.buf.getvalue())))
    fallback = Sink()  # the map column sends JSONL row by row: the replay must start at byte 0
    assert avro.convert_avro(Chunked(data, 333), fallback, "jsonl") == 300
    assert len(fallback.buf.getvalue().splitlines()) == 300


def test_corrupt_blocks_fail_clearly() -> None:
    data = bytearray(avro_bytes(200, block_rows=20))
    data[-5] ^= 0xFF  # inside the last sync marker
    with pytest.raises(VerificationError, match="sync marker"):
        avro.convert_avro(io.BytesIO(bytes(data)), Sink(), "parquet", columnar=True)
    with pytest.raises(VerificationError, match="truncated"):
        avro.convert_avro(io.BytesIO(bytes(data[:-40])), Sink(), "parquet", columnar=True)
