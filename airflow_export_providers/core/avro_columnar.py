"""Columnar Avro decoding: the container cut into groups of blocks, each decoded by polars into Arrow.

Why: decoding record by record into Python dicts (fastavro) and building Arrow tables from them is
what bounded the conversions (make bench P3). polars' Avro reader decodes a whole container into
columns in Rust. It reads whole files, so the stream is cut at block boundaries: each group of
blocks (about ``group_rows`` records) gets the file's header in front of it and is decoded as a
small file of its own. Memory holds one group, whatever the file size.

polars reads fewer shapes than fastavro, so the writer schema is first *planned*: maps become
arrays of key/value records and enums become their int index (the same bytes on the wire, so the
header is rewritten, never the data), named types are inlined. What still has no columnar reading
(unions of several types, recursive records, the ``null`` type, bzip2/xz/zstandard blocks, decimals
wider than 38 digits, unknown logical types, non-record files) raises ``Unsupported`` naming the
reason, and the caller converts that file row by row. After decoding, the columns are shaped into
what the row converter writes: the same Arrow types for Parquet, the same text for JSONL and CSV
(docs/transfers.md lists the few spellings that differ).
"""

from __future__ import annotations

import io
import json
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from airflow_export_providers.core.errors import VerificationError

AVRO_MAGIC = b"Obj\x01"
SYNC_SIZE = 16
READ_SIZE = 1 << 20
CODECS = ("null", "deflate", "snappy")  # what polars' reader decompresses
LEAF_LOGICAL = {
    ("int", "date"), ("long", "timestamp-millis"), ("long", "timestamp-micros"),
    ("long", "local-timestamp-millis"), ("long", "local-timestamp-micros"),
    ("int", "time-millis"), ("long", "time-micros"), ("string", "uuid"),
}
PRIMITIVES = ("boolean", "int", "long", "float", "double", "bytes", "string")
TEXT_DECIMAL_MAX_SCALE = 6  # str(Decimal) switches to exponent notation below 1e-6: the row converter's spelling


class Unsupported(Exception):
    """This file's schema or codec has no columnar reading; the reason says which part."""


def available() -> bool:
    """True when polars and pyarrow are importable (the ``[parquet]`` extra)."""
    try:
        import polars  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


# ---- the container, read block by block ---------------------------------------------------------
class _Buffered:
    """Exact reads over a stream that may return short reads (network, inflate)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.buf = bytearray()
        self.pos = 0
        self.seen = bytearray()  # every byte taken so far, while ``keep`` (the header, for a fallback replay)
        self.keep = True

    def _fill(self, n: int) -> bool:
        while len(self.buf) - self.pos < n:
            data = self.stream.read(max(READ_SIZE, n))
            if not data:
                return False
            if self.pos:
                del self.buf[: self.pos]
                self.pos = 0
            self.buf += data
            if self.keep:
                self.seen += data
        return True

    def read(self, n: int) -> bytes:
        if not self._fill(n):
            raise VerificationError("the Avro file is truncated")
        with memoryview(self.buf) as view:
            out = bytes(view[self.pos : self.pos + n])  # one copy (a bytearray slice would make two)
        self.pos += n
        return out

    def at_eof(self) -> bool:
        return not self._fill(1)

    def varint(self) -> int:
        shift = result = 0
        while True:
            if not self._fill(1):
                raise VerificationError("the Avro file is truncated")
            b = self.buf[self.pos]
            self.pos += 1
            result |= (b & 0x7F) << shift
            if b < 0x80:
                return (result >> 1) ^ -(result & 1)
            shift += 7
            if shift > 63:
                raise VerificationError("not valid Avro: a varint is longer than 10 bytes")

    def replay(self) -> tuple[bytes, Any]:
        """(everything read so far, the rest of the stream): the file from its first byte."""
        return bytes(self.seen), self.stream


def _zigzag(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        if z < 0x80:
            out.append(z)
            return bytes(out)
        out.append((z & 0x7F) | 0x80)
        z >>= 7


def _avro_bytes(data: bytes) -> bytes:
    return _zigzag(len(data)) + data


@dataclass
class Header:
    meta: dict[str, bytes]
    sync: bytes

    @property
    def schema(self) -> Any:
        return json.loads(self.meta["avro.schema"])

    @property
    def codec(self) -> str:
        return self.meta.get("avro.codec", b"null").decode() or "null"

    def encode(self, schema: Any) -> bytes:
        """The header of a file with ``schema`` instead of the writer's (same codec, same sync marker)."""
        meta = {"avro.schema": json.dumps(schema).encode(), "avro.codec": self.codec.encode()}
        body = b"".join(_avro_bytes(k.encode()) + _avro_bytes(v) for k, v in meta.items())
        return AVRO_MAGIC + _zigzag(len(meta)) + body + _zigzag(0) + self.sync


def read_header(reader: _Buffered) -> Header:
    if reader.read(4) != AVRO_MAGIC:
        raise VerificationError("not valid Avro: no magic")
    meta: dict[str, bytes] = {}
    while True:
        count = reader.varint()
        if count == 0:
            break
        if count < 0:
            count = -count
            reader.varint()  # the block's size in bytes
        for _ in range(count):
            key = reader.read(reader.varint()).decode()
            meta[key] = reader.read(reader.varint())
    sync = reader.read(SYNC_SIZE)
    if "avro.schema" not in meta:
        raise VerificationError("not valid Avro: the header has no avro.schema")
    return Header(meta, sync)


def block_groups(reader: _Buffered, header: Header, group_rows: int) -> Iterator[tuple[int, list[bytes]]]:
    """(records, the encoded blocks' pieces) for groups of whole blocks holding at least ``group_rows`` records."""
    blocks: list[bytes] = []
    records = 0
    while not reader.at_eof():
        count, size = reader.varint(), reader.varint()
        if count < 0 or size < 0:
            raise VerificationError(f"not valid Avro: a block announces {count} records in {size} bytes")
        body = reader.read(size + SYNC_SIZE)  # the block's data and its sync marker, copied once
        if body[size:] != header.sync:
            raise VerificationError("not valid Avro: a block does not end with the file's sync marker")
        if count == 0:
            continue
        blocks += (_zigzag(count) + _zigzag(size), body)  # joined once, behind the header, by decode()
        records += count
        if records >= group_rows:
            yield records, blocks
            blocks, records = [], 0
    if blocks:
        yield records, blocks


def ahead(groups: Iterator[tuple[int, list[bytes]]], work: Callable[[list[bytes]], Any]) -> Iterator[tuple[int, Any]]:
    """(records, ``work(blocks)``) for each group, the next group's work running in a thread meanwhile.

    Decoding (polars) and writing (pyarrow, the upload) both release the GIL: while the caller writes
    one group, the next one decodes. Reading the source stays in the caller's thread; at most two
    groups are decoded at a time.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="avro-decode") as pool:
        pending: deque[tuple[int, Future[Any]]] = deque()
        try:
            for records, blocks in groups:
                pending.append((records, pool.submit(work, blocks)))
                if len(pending) > 1:
                    records0, done = pending.popleft()
                    yield records0, done.result()
            while pending:
                records0, done = pending.popleft()
                yield records0, done.result()
        finally:
            for _, future in pending:
                future.cancel()


# ---- the plan: what polars reads, and how each column is shaped back -----------------------------
@dataclass
class Node:
    """One Avro type as planned: ``kind`` is record/array/map/enum/leaf; ``leaf`` names the leaf's type."""

    kind: str
    leaf: str = ""  # boolean int long float double bytes fixed string uuid decimal date time-millis ...
    scale: int = 0
    symbols: list[str] = field(default_factory=list)
    fields: list[tuple[str, Node]] = field(default_factory=list)
    items: Node | None = None

    @property
    def plain(self) -> bool:
        """Read by polars exactly as the row converter types it (no shaping needed for Parquet)."""
        if self.kind == "leaf":
            return self.leaf in ("boolean", "int", "long", "float", "double", "date", "timestamp-millis",
                                 "timestamp-micros", "local-timestamp-millis", "local-timestamp-micros", "decimal")
        return False


class _Planner:
    def __init__(self) -> None:
        self.named: dict[str, Any] = {}
        self.visiting: set[str] = set()
        self.fresh = 0

    def _name(self) -> str:
        self.fresh += 1
        return f"aep_columnar_{self.fresh}"

    def plan(self, schema: Any, namespace: str | None) -> tuple[Any, Node, bool]:
        """(schema polars reads, node, nullable)."""
        if isinstance(schema, list):
            branches = [s for s in schema if s != "null" and s != {"type": "null"}]
            if len(branches) != 1 or len(schema) > 2:
                raise Unsupported(f"a union of {len(branches)} non-null types")
            out, node, _ = self.plan(branches[0], namespace)
            if len(branches) == len(schema):
                return out, node, False
            return (["null", out] if schema.index(branches[0]) == 1 else [out, "null"]), node, True
        if isinstance(schema, str):
            if schema in PRIMITIVES:
                return schema, Node("leaf", leaf=schema), False
            if schema == "null":
                raise Unsupported("a field of type null")
            full = schema if "." in schema or not namespace else f"{namespace}.{schema}"
            key = full if full in self.named else schema
            if key not in self.named:
                raise Unsupported(f"an unknown type name {schema!r}")
            if key in self.visiting:
                raise Unsupported(f"a recursive record ({schema})")
            target = self.named[key]
            ns = target.get("namespace", full.rsplit(".", 1)[0] if "." in full else namespace)
            return self.plan(target, ns)
        if not isinstance(schema, dict):
            raise Unsupported(f"a schema of {type(schema).__name__}")
        typ, logical = schema.get("type"), schema.get("logicalType")
        if isinstance(typ, (list, dict)):
            return self.plan(typ, namespace)
        if logical is not None:
            return self._logical(schema, str(typ), str(logical), namespace)
        if typ in PRIMITIVES or typ == "null":
            return self.plan(typ, namespace)
        if typ in ("record", "error"):
            full = self._register(schema, namespace)
            ns = full.rsplit(".", 1)[0] if "." in full else None
            self.visiting.add(full)
            try:
                fields, out = [], []
                for f in schema.get("fields", []):
                    fschema, fnode, _ = self.plan(f["type"], ns)
                    fields.append((f["name"], fnode))
                    out.append({"name": f["name"], "type": fschema})
            finally:
                self.visiting.discard(full)
            if not fields:
                raise Unsupported("a record without fields")
            return {"type": "record", "name": self._name(), "fields": out}, Node("record", fields=fields), False
        if typ == "enum":
            self._register(schema, namespace)
            return "int", Node("enum", symbols=[str(s) for s in schema["symbols"]]), False
        if typ == "fixed":
            self._register(schema, namespace)
            size = int(schema["size"])
            return {"type": "fixed", "name": self._name(), "size": size}, Node("leaf", leaf="fixed", scale=size), False
        if typ == "array":
            items, node, _ = self.plan(schema["items"], namespace)
            return {"type": "array", "items": items}, Node("array", items=node), False
        if typ == "map":
            values, node, _ = self.plan(schema["values"], namespace)
            entry = {"type": "record", "name": self._name(),
                     "fields": [{"name": "key", "type": "string"}, {"name": "value", "type": values}]}
            return {"type": "array", "items": entry}, Node("map", items=node), False
        raise Unsupported(f"the type {typ!r}")

    def _register(self, schema: dict[str, Any], namespace: str | None) -> str:
        name = str(schema.get("name", ""))
        ns = schema.get("namespace", namespace)
        full = name if "." in name or not ns else f"{ns}.{name}"
        self.named[full] = schema
        self.named.setdefault(name, schema)
        return full

    def _logical(self, schema: dict[str, Any], typ: str, logical: str, namespace: str | None) -> tuple[Any, Node, bool]:
        if logical == "decimal" and typ in ("bytes", "fixed"):
            precision, scale = int(schema.get("precision", 38)), int(schema.get("scale", 0))
            if precision > 38:
                raise Unsupported(f"a decimal of precision {precision} (more than 38 digits)")
            out: dict[str, Any] = {"type": typ, "logicalType": "decimal", "precision": precision, "scale": scale}
            if typ == "fixed":
                self._register(schema, namespace)
                out.update(name=self._name(), size=int(schema["size"]))
            return out, Node("leaf", leaf="decimal", scale=scale), False
        if (typ, logical) in LEAF_LOGICAL:
            return {"type": typ, "logicalType": logical}, Node("leaf", leaf=logical), False
        raise Unsupported(f"the logical type {logical!r} on {typ!r}")


def plan(schema: Any, codec: str) -> tuple[dict[str, Any], Node]:
    """The schema polars reads for a writer schema, and the nodes that shape its columns back."""
    if codec not in CODECS:
        raise Unsupported(f"the {codec!r} codec")
    if not (isinstance(schema, dict) and schema.get("type") == "record"):
        raise Unsupported("a file whose schema is not a record")
    out, node, _ = _Planner().plan(schema, None)
    return out, node


def decode(header_bytes: bytes, blocks: list[bytes]) -> Any:
    """One group of blocks as a polars DataFrame (a panic in the reader becomes a VerificationError)."""
    import polars as pl

    data = io.BytesIO(b"".join([header_bytes, *blocks]))
    try:
        return pl.read_avro(data)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # pyo3 panics derive from BaseException
        raise VerificationError(f"not valid Avro: {type(exc).__name__}: {str(exc)[:300]}") from None


# ---- shaping for Parquet (Arrow) -----------------------------------------------------------------
def conform_table(table: Any, root: Node, schema: Any) -> Any:
    """The decoded Arrow table with the row converter's Arrow types (``schema``, from core.avro.arrow_schema)."""
    import pyarrow as pa

    columns = []
    for (_, node), target in zip(root.fields, schema, strict=True):
        col = table.column(target.name)
        if node.plain and col.type == target.type:
            columns.append(col)
            continue
        columns.append(pa.chunked_array([_conform(chunk, node, target.type) for chunk in col.chunks], type=target.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _conform(arr: Any, node: Node, typ: Any) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    if node.kind == "enum":
        return pc.take(pa.array(node.symbols, pa.string()), arr)
    mask = arr.is_null() if arr.null_count else None
    if node.kind == "record":
        children = [_conform(arr.field(i), child, typ.field(i).type) for i, (_, child) in enumerate(node.fields)]
        # a non-nullable field is null only under a null record: Parquet refuses that, so drop its validity
        children = [c if f.nullable or not c.null_count else _all_valid(c) for c, f in zip(children, typ, strict=True)]
        return pa.StructArray.from_arrays(children, fields=list(typ), mask=mask)
    if node.kind == "array":
        assert node.items is not None
        values = _conform(arr.values, node.items, typ.value_type)
        return pa.ListArray.from_arrays(arr.offsets.cast(pa.int32()), values, type=typ, mask=mask)
    if node.kind == "map":
        assert node.items is not None
        entries = arr.values
        keys = entries.field(0).cast(pa.string())
        items = _conform(entries.field(1), node.items, typ.item_type)
        return pa.MapArray.from_arrays(arr.offsets.cast(pa.int32()), keys, items, type=typ, mask=mask)
    if node.leaf == "uuid":  # fastavro returns uuid.UUID, written canonical (lower case)
        return pc.utf8_lower(arr).cast(typ)
    return arr.cast(typ)


def _all_valid(arr: Any) -> Any:
    """``arr`` without its validity bitmap (the values under it are masked by the parent record)."""
    import pyarrow as pa

    typ = arr.type
    if pa.types.is_struct(typ):
        return pa.StructArray.from_arrays([arr.field(i) for i in range(typ.num_fields)], fields=list(typ))
    if pa.types.is_map(typ):
        return pa.MapArray.from_arrays(arr.offsets, arr.keys, arr.items, type=typ)
    if pa.types.is_list(typ):
        return pa.ListArray.from_arrays(arr.offsets, arr.values, type=typ)
    return pa.Array.from_buffers(typ, len(arr), [None, *arr.buffers()[1:]], offset=arr.offset)


# ---- shaping for JSONL and CSV (polars expressions) --------------------------------------------
def text_columns(root: Node, csv: bool) -> list[Any]:
    """polars expressions giving each column as the row converter spells it (JSON values or CSV cells)."""
    import polars as pl

    return [_text(pl.col(name), node, csv=csv, top=True).alias(name) for name, node in root.fields]


def _needs_text_shaping(node: Node, csv: bool, top: bool) -> bool:
    if node.kind != "leaf":
        return True
    if node.leaf in ("int", "long"):
        return False
    if node.leaf == "string" and not (csv and top):
        return False
    return True


def _text(e: Any, node: Node, *, csv: bool, top: bool) -> Any:
    """JSON-ready value (``csv=False``, or nested in a CSV cell) or CSV cell text (``csv and top``)."""
    import polars as pl

    if node.kind == "map":
        raise Unsupported("a map (JSONL/CSV are written row by row for it)")
    if node.kind == "enum":
        return e.replace_strict(list(range(len(node.symbols))), node.symbols, return_dtype=pl.String)
    if node.kind == "record":
        shaped = pl.struct([
            (_text(e.struct.field(n), child, csv=False, top=False) if _needs_text_shaping(child, False, False)
             else e.struct.field(n)).alias(n)
            for n, child in node.fields
        ])
        value = pl.when(e.is_null()).then(None).otherwise(shaped)
        return _json_text(value) if csv and top else value
    if node.kind == "array":
        assert node.items is not None
        value = e.list.eval(_text(pl.element(), node.items, csv=False, top=False)) \
            if _needs_text_shaping(node.items, False, False) else e
        return _json_text(value) if csv and top else value
    return _leaf_text(e, node, csv=csv and top)


def _json_text(value: Any) -> Any:
    """A nested value as JSON text (a CSV cell), null kept as null."""
    import polars as pl

    encoded = pl.struct(value.alias("v")).struct.json_encode()  # {"v":<json>}
    return pl.when(value.is_null()).then(None).otherwise(encoded.str.slice(5, encoded.str.len_bytes() - 6))


def _leaf_text(e: Any, node: Node, *, csv: bool) -> Any:
    import polars as pl

    leaf = node.leaf
    if leaf in ("int", "long"):
        return e
    if leaf in ("float", "double"):
        value = e.cast(pl.Float64) if leaf == "float" else e  # fastavro widens float32 to a Python float
        if csv:
            return value
        return pl.when(value.is_nan() | value.is_infinite()).then(None).otherwise(value)  # msgspec writes null
    if leaf == "boolean":
        if not csv:
            return e
        return pl.when(e.is_null()).then(None).when(e).then(pl.lit("True")).otherwise(pl.lit("False"))  # str(True)
    if leaf in ("string", "uuid", "bytes", "fixed"):
        if leaf in ("bytes", "fixed"):
            value = e.bin.encode("base64")
        else:
            value = e.str.to_lowercase() if leaf == "uuid" else e  # fastavro returns uuid.UUID: canonical, lower case
        return pl.when(value == "").then(None).otherwise(value) if csv else value  # csv: an empty cell, unquoted
    if leaf == "decimal":
        if node.scale > TEXT_DECIMAL_MAX_SCALE:
            raise Unsupported(f"a decimal of scale {node.scale} in text (Python spells small ones with an exponent)")
        return e.cast(pl.String)
    if leaf == "date":
        return e.dt.strftime("%Y-%m-%d")
    if leaf.startswith("time-"):
        return _with_fraction(e, "%H:%M:%S", "")
    if leaf.startswith("timestamp-"):
        return _with_fraction(e, "%Y-%m-%dT%H:%M:%S", "+00:00" if csv else "Z")
    if leaf.startswith("local-timestamp-"):
        return _with_fraction(e, "%Y-%m-%dT%H:%M:%S", "")
    raise Unsupported(f"the leaf type {leaf!r}")


def _with_fraction(e: Any, fmt: str, suffix: str) -> Any:
    """isoformat()'s spelling: no fraction when it is zero, else six digits."""
    import polars as pl

    whole = e.dt.strftime(fmt + suffix)
    return pl.when(e.dt.microsecond() == 0).then(whole).otherwise(e.dt.strftime(fmt + "%.6f" + suffix))
