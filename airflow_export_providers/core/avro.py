"""Avro -> JSONL / CSV / Parquet, streaming, with the writer schema read from each file.

Vendors (MX in particular) add fields at any time, so nothing here knows a schema in advance: every
file carries its own writer schema in its header and the output columns follow it. Two decoders:

- columnar (core/avro_columnar.py, when polars is installed): groups of about ``batch_rows`` records,
  cut at block boundaries, decoded by polars into columns — several times faster;
- row by row (fastavro), written out in batches of ``batch_rows``: the fallback when polars is not
  installed or a file's schema or codec has no columnar reading (the log line says why).

Both give the same values (tests/unit/test_avro_columnar.py), and memory depends on the batch size,
never on the file size. A header-only file (zero records) still produces a valid output: a CSV
header line, an empty JSONL object, or an empty Parquet file with the right columns.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import decimal
import functools
import io
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import IO, Any, Protocol

import msgspec

from airflow_export_providers.core import avro_columnar as columnar_reader
from airflow_export_providers.core.errors import ExportInputError

log = logging.getLogger(__name__)

AVRO_MAGIC = b"Obj\x01"
FORMATS = ("jsonl", "csv", "parquet")
DEFAULT_BATCH_ROWS = 10_000
FLUSH_BYTES = 1 << 20  # text formats: hand bytes to the sink once about 1 MiB is buffered


class BinarySink(Protocol):
    """Where converted bytes go (an upload in progress)."""

    def write(self, data: bytes) -> Any: ...


class PeekedStream:
    """A read-only stream whose first bytes were already read (to sniff a format) and are replayed.

    ``read(n)`` returns exactly ``n`` bytes unless the stream ends, as a file does: network and
    inflating streams return short reads, and fastavro would take one for the end of the file.
    """

    def __init__(self, head: bytes, rest: IO[bytes] | Any) -> None:
        self._head = head
        self._rest = rest
        self._pos = 0

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            data, self._head = self._head + self._rest.read(), b""
        else:
            data, self._head = self._head[:n], self._head[n:]
            while len(data) < n:  # a full read, like a file: fastavro takes a short read for EOF
                chunk = self._rest.read(n - len(data))
                if not chunk:
                    break
                data += chunk
        self._pos += len(data)
        return bytes(data)

    def tell(self) -> int:
        """Bytes returned so far (fastavro's block reader records block positions)."""
        return self._pos

    def readable(self) -> bool:
        return True


def peek(stream: Any, n: int) -> tuple[bytes, PeekedStream]:
    """Read up to ``n`` bytes (fewer only at EOF) and return them with a stream that replays them."""
    head = b""
    while len(head) < n:
        chunk = stream.read(n - len(head))
        if not chunk:
            break
        head += chunk
    return head, PeekedStream(head, stream)


def not_avro_error(convert: str, name: str, head: bytes) -> ExportInputError:
    return ExportInputError(
        f"convert={convert!r}: file {name!r} is not Avro (it starts with {head[:8]!r}, not the Avro magic 'Obj\\x01'); "
        f"convert accepts Avro sources only — use convert=None to land the file as it is"
    )


def open_avro(stream: Any, convert: str, name: str) -> Any:
    """A fastavro reader over ``stream`` (already inflated), or one clear error if it is not Avro."""
    import fastavro

    head, replay = peek(stream, len(AVRO_MAGIC))
    if head != AVRO_MAGIC:
        raise not_avro_error(convert, name, head)
    return fastavro.reader(replay)  # type: ignore[arg-type]


def count_avro_records(stream: Any) -> int:
    """Count records block by block (the block headers hold the counts; records are not decoded)."""
    import fastavro

    return sum(block.num_records for block in fastavro.block_reader(stream))


# ---- value shaping ----------------------------------------------------------------------------
def json_default(value: Any) -> Any:
    """JSON for what fastavro decodes into non-JSON Python types (logical types, bytes)."""
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# One msgspec encoder for every record: the stdlib encoder cost about half of the JSONL conversion
# time (make bench P3: 6.3 us a record against fastavro's 12.4 us decode; msgspec 0.9 us). Output is
# the same JSON but for two things: UTC timestamps end in "Z" (RFC 3339) instead of "+00:00", and
# NaN/Infinity become null instead of tokens that are not JSON at all.
_ENCODER = msgspec.json.Encoder(enc_hook=json_default, decimal_format="string", uuid_format="canonical")


def dumps_bytes(value: Any) -> bytes:
    return _ENCODER.encode(value)


def dumps(value: Any) -> str:
    return _ENCODER.encode(value).decode("utf-8")


def csv_cell(value: Any) -> Any:
    """Scalars as they are, nested values (records, arrays, maps) JSON-encoded, null as empty."""
    if value is None:
        return ""
    if isinstance(value, (dict, list, tuple)):
        return dumps(value)
    if isinstance(value, (bytes, bytearray, uuid.UUID, decimal.Decimal)):
        return json_default(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    return value


def field_names(schema: Any) -> list[str]:
    """Column names: the top-level record's fields, or one ``value`` column for a non-record schema."""
    if isinstance(schema, dict) and schema.get("type") == "record":
        return [f["name"] for f in schema.get("fields", [])]
    return ["value"]


def _as_row(record: Any, names: list[str]) -> dict[str, Any]:
    if isinstance(record, dict) and names != ["value"]:
        return record
    return {"value": record}


# ---- Avro schema -> Arrow schema --------------------------------------------------------------
def _fullname(schema: dict[str, Any], namespace: str | None) -> str:
    name = str(schema.get("name", ""))
    ns = schema.get("namespace", namespace)
    return name if "." in name or not ns else f"{ns}.{name}"


class ArrowMapper:
    """Map an Avro schema onto Arrow types plus, per column, a function shaping decoded values.

    Where Arrow has no faithful type (unions of several non-null branches, recursive records) the
    column becomes a JSON string, so no file is refused for its shape.
    """

    def __init__(self) -> None:
        self.named: dict[str, Any] = {}
        self._visiting: set[str] = set()

    def map(self, schema: Any, namespace: str | None = None) -> tuple[Any, bool, Callable[[Any], Any] | None]:
        """(arrow type, nullable, shaper or None when values pass through unchanged)."""
        import pyarrow as pa

        if isinstance(schema, list):
            branches = [s for s in schema if s != "null" and s != {"type": "null"}]
            nullable = len(branches) < len(schema)
            if len(branches) == 1:
                typ, _, shape = self.map(branches[0], namespace)
                return typ, nullable, shape
            if not branches:
                return pa.null(), True, None
            return pa.string(), True, _json_or_none
        if isinstance(schema, str):
            prim = _primitives().get(schema)
            if prim is not None:
                return prim(), schema == "null", None
            full = schema if "." in schema or not namespace else f"{namespace}.{schema}"
            target = self.named.get(full) or self.named.get(schema)
            if target is None or full in self._visiting or schema in self._visiting:
                return pa.string(), True, _json_or_none  # recursive or unknown reference
            return self.map(target, namespace)
        if not isinstance(schema, dict):
            return pa.string(), True, _json_or_none
        typ = schema.get("type")
        logical = schema.get("logicalType")
        if isinstance(typ, (list, dict)) or (isinstance(typ, str) and typ not in _COMPLEX and not logical):
            return self.map(typ, namespace)
        if logical:
            mapped = self._logical(schema, str(logical))
            if mapped is not None:
                return mapped
        if typ in ("record", "error"):
            full = _fullname(schema, namespace)
            self.named[full] = schema
            self.named.setdefault(str(schema.get("name")), schema)
            self._visiting.add(full)
            try:
                ns = schema.get("namespace", namespace) if "." not in str(schema.get("name")) else full.rsplit(".", 1)[0]
                fields, shapers = [], {}
                for f in schema.get("fields", []):
                    ftype, fnull, fshape = self.map(f["type"], ns)
                    fields.append(pa.field(f["name"], ftype, nullable=fnull))
                    if fshape is not None:
                        shapers[f["name"]] = fshape
            finally:
                self._visiting.discard(full)
            if not fields:
                return pa.string(), True, _json_or_none  # Parquet cannot store a struct without children
            return pa.struct(fields), False, _record_shaper(shapers) if shapers else None
        if typ == "enum":
            self.named[_fullname(schema, namespace)] = schema
            return pa.string(), False, None
        if typ == "fixed":
            self.named[_fullname(schema, namespace)] = schema
            return pa.binary(int(schema["size"])), False, None
        if typ == "array":
            item, inull, ishape = self.map(schema["items"], namespace)
            shape = (lambda v, s=ishape: None if v is None else [s(x) for x in v]) if ishape else None
            return pa.list_(pa.field("item", item, nullable=inull)), False, shape
        if typ == "map":
            val, vnull, vshape = self.map(schema["values"], namespace)
            shape = (lambda v, s=vshape: None if v is None else {k: s(x) for k, x in v.items()}) if vshape else None
            return pa.map_(pa.string(), pa.field("value", val, nullable=vnull)), False, shape
        if isinstance(typ, str) and typ in _primitives():
            return _primitives()[typ](), typ == "null", None
        return pa.string(), True, _json_or_none

    def _logical(self, schema: dict[str, Any], logical: str) -> tuple[Any, bool, Callable[[Any], Any] | None] | None:
        import pyarrow as pa

        base = schema.get("type")
        if logical == "date" and base == "int":
            return pa.date32(), False, None
        if logical == "timestamp-millis" and base == "long":
            return pa.timestamp("ms", tz="UTC"), False, None
        if logical == "timestamp-micros" and base == "long":
            return pa.timestamp("us", tz="UTC"), False, None
        if logical == "local-timestamp-millis" and base == "long":
            return pa.timestamp("ms"), False, None
        if logical == "local-timestamp-micros" and base == "long":
            return pa.timestamp("us"), False, None
        if logical == "time-millis" and base == "int":
            return pa.time32("ms"), False, None
        if logical == "time-micros" and base == "long":
            return pa.time64("us"), False, None
        if logical == "uuid" and base == "string":
            return pa.string(), False, _str_or_none
        if logical == "decimal" and base in ("bytes", "fixed"):
            precision, scale = int(schema.get("precision", 38)), int(schema.get("scale", 0))
            if base == "fixed":
                self.named[_fullname(schema, None)] = schema
            if precision <= 38:
                return pa.decimal128(precision, scale), False, None
            return pa.decimal256(precision, scale), False, None
        return None


def _json_or_none(value: Any) -> Any:
    return None if value is None else dumps(value)


def _str_or_none(value: Any) -> Any:
    return None if value is None else str(value)


def _record_shaper(shapers: dict[str, Callable[[Any], Any]]) -> Callable[[Any], Any]:
    def shape(value: Any) -> Any:
        if value is None:
            return None
        out = dict(value)
        for name, fn in shapers.items():
            if name in out:
                out[name] = fn(out[name])
        return out

    return shape


@functools.lru_cache(maxsize=1)
def _primitives() -> dict[str, Callable[[], Any]]:
    """Avro primitive -> Arrow type factory; pyarrow is imported only when Parquet is asked for."""
    import pyarrow as pa

    return {
        "null": pa.null,
        "boolean": pa.bool_,
        "int": pa.int32,
        "long": pa.int64,
        "float": pa.float32,
        "double": pa.float64,
        "bytes": pa.binary,
        "string": pa.string,
    }


_COMPLEX = frozenset({"record", "error", "enum", "fixed", "array", "map"})


def arrow_schema(avro_schema: Any) -> tuple[Any, Callable[[dict[str, Any]], dict[str, Any]] | None]:
    """The Arrow schema for an Avro writer schema, and a row shaper (None when rows pass unchanged)."""
    import pyarrow as pa

    mapper = ArrowMapper()
    if isinstance(avro_schema, dict) and avro_schema.get("type") == "record" and avro_schema.get("fields"):
        typ, _, shape = mapper.map(avro_schema)
        if isinstance(typ, pa.StructType):
            fields = [typ.field(i) for i in range(typ.num_fields)]
            return pa.schema(fields), shape
    typ, nullable, vshape = mapper.map(avro_schema)
    row_shape = (lambda row, s=vshape: {"value": s(row["value"])}) if vshape else None
    return pa.schema([pa.field("value", typ, nullable=nullable)]), row_shape


# ---- converters -------------------------------------------------------------------------------
class _SinkFile(io.RawIOBase):
    """A write-only file object over a sink, for pyarrow's ParquetWriter (it asks for tell())."""

    def __init__(self, sink: BinarySink) -> None:
        super().__init__()
        self._sink = sink
        self._pos = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        if chunk:
            self._sink.write(chunk)
            self._pos += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._pos


def _batches(records: Iterator[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for record in records:
        batch.append(record)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def convert_avro(
    stream: Any,
    sink: BinarySink,
    convert: str,
    *,
    name: str = "",
    batch_rows: int = DEFAULT_BATCH_ROWS,
    row_group_rows: int | None = None,
    columnar: bool | None = None,
) -> int:
    """Decode the Avro in ``stream`` (inflated bytes) and write it to ``sink`` as ``convert``.

    Returns the number of records written. ``row_group_rows`` caps Parquet row groups (default
    ``batch_rows``); each batch is written as it fills, so memory holds one batch at a time.
    ``columnar``: None picks the columnar decoder when it can read the file, False always decodes
    row by row, True refuses a file it cannot read columnar (tests).
    """
    if convert not in FORMATS:
        raise ExportInputError(f"convert: {convert!r} is not supported; accepted values: None, {', '.join(map(repr, FORMATS))}")
    head, stream = peek(stream, len(AVRO_MAGIC))
    if head != AVRO_MAGIC:
        raise not_avro_error(convert, name, head)
    if columnar is not False:
        if columnar_reader.available():
            done = _convert_columnar(stream, sink, convert, name, batch_rows, row_group_rows or batch_rows, strict=bool(columnar))
            if isinstance(done, int):
                return done
            stream = done  # the file from its first byte again, for the row converter
        elif columnar:
            raise columnar_reader.Unsupported("polars is not installed")
        else:
            log.debug("%s: Avro -> %s row by row: polars is not installed", name, convert)
    reader = open_avro(stream, convert, name)
    schema = reader.writer_schema
    if convert == "jsonl":
        return _to_jsonl(reader, schema, sink, batch_rows)
    if convert == "csv":
        return _to_csv(reader, schema, sink, batch_rows)
    return _to_parquet(reader, schema, sink, row_group_rows or batch_rows)


def _to_jsonl(reader: Iterator[Any], schema: Any, sink: BinarySink, batch_rows: int) -> int:
    names = field_names(schema)
    count = 0
    buf: list[bytes] = []
    size = 0
    encode = _ENCODER.encode
    for record in reader:
        line = encode(_as_row(record, names))
        buf.append(line)
        size += len(line) + 1
        count += 1
        if len(buf) >= batch_rows or size >= FLUSH_BYTES:
            sink.write(b"\n".join(buf) + b"\n")
            buf, size = [], 0
    if buf:
        sink.write(b"\n".join(buf) + b"\n")
    return count


def _to_csv(reader: Iterator[Any], schema: Any, sink: BinarySink, batch_rows: int) -> int:
    names = field_names(schema)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(names)
    count = 0
    pending = 0
    for record in reader:
        row = _as_row(record, names)
        writer.writerow([csv_cell(row.get(n)) for n in names])
        count += 1
        pending += 1
        if pending >= batch_rows or text.tell() >= FLUSH_BYTES:
            sink.write(text.getvalue().encode("utf-8"))
            text.seek(0)
            text.truncate()
            pending = 0
    if text.tell():
        sink.write(text.getvalue().encode("utf-8"))
    return count


def _to_parquet(reader: Iterator[Any], schema: Any, sink: BinarySink, row_group_rows: int) -> int:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is in the test extras
        raise ExportInputError("convert='parquet' needs pyarrow: pip install 'airflow-export-providers[parquet]'") from None
    arrow, shape = arrow_schema(schema)
    names = field_names(schema)
    count = 0
    out = _SinkFile(sink)
    writer = pq.ParquetWriter(out, arrow, compression="snappy")
    try:
        for batch in _batches(iter(reader), row_group_rows):
            rows = [_as_row(r, names) for r in batch]
            if shape is not None:
                rows = [shape(r) for r in rows]
            table = pa.Table.from_pylist(rows, schema=arrow)
            writer.write_table(table, row_group_size=row_group_rows)
            count += len(rows)
    finally:
        writer.close()
    return count


# ---- columnar ----------------------------------------------------------------------------------
def _convert_columnar(stream: Any, sink: BinarySink, convert: str, name: str, batch_rows: int, row_group_rows: int,
                      *, strict: bool) -> int | PeekedStream:
    """Convert through the columnar reader; a file it cannot read comes back as a stream from byte 0."""
    reader = columnar_reader._Buffered(stream)
    header = columnar_reader.read_header(reader)
    schema = header.schema
    try:
        polars_schema, root = columnar_reader.plan(schema, header.codec)
        exprs = columnar_reader.text_columns(root, csv=convert == "csv") if convert != "parquet" else None
    except columnar_reader.Unsupported as why:
        if strict:
            raise
        log.info("%s: Avro -> %s row by row (fastavro): the columnar reader does not read %s", name, convert, why)
        return PeekedStream(*reader.replay())
    reader.keep, reader.seen = False, bytearray()
    header_bytes = header.encode(polars_schema)
    groups = columnar_reader.block_groups(reader, header, batch_rows)
    if convert == "parquet":
        return _columnar_parquet(groups, header_bytes, root, schema, sink, row_group_rows)
    names = field_names(schema)
    count = 0
    if convert == "csv":
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerow(names)
        sink.write(text.getvalue().encode("utf-8"))

    def encode(blocks: list[bytes]) -> bytes:
        frame = columnar_reader.decode(header_bytes, blocks).select(exprs)
        out = io.BytesIO()
        if convert == "jsonl":
            frame.write_ndjson(out)
        else:
            frame.write_csv(out, include_header=False, line_terminator="\n", quote_style="necessary", null_value="")
        return out.getvalue()

    for records, data in columnar_reader.ahead(groups, encode):
        sink.write(data)
        count += records
    return count


def _columnar_parquet(groups: Iterator[tuple[int, list[bytes]]], header_bytes: bytes, root: Any, schema: Any,
                      sink: BinarySink, row_group_rows: int) -> int:
    """Write the decoded groups as row groups of exactly ``row_group_rows`` (the last one shorter), as the row converter does."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrow, _ = arrow_schema(schema)
    writer = pq.ParquetWriter(_SinkFile(sink), arrow, compression="snappy")
    pending: list[Any] = []
    held = count = 0

    def decode(blocks: list[bytes]) -> Any:
        return columnar_reader.conform_table(columnar_reader.decode(header_bytes, blocks).to_arrow(), root, arrow)

    try:
        for records, table in columnar_reader.ahead(groups, decode):
            pending.append(table)
            held += table.num_rows
            count += records
            if held >= row_group_rows:
                whole = pa.concat_tables(pending)
                cut = held - held % row_group_rows
                writer.write_table(whole.slice(0, cut), row_group_size=row_group_rows)
                pending, held = [whole.slice(cut)], held - cut
        if held:
            writer.write_table(pa.concat_tables(pending), row_group_size=row_group_rows)
    finally:
        writer.close()
    return count
