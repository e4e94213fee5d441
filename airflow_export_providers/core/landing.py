"""Land one export file in object storage: stream, measure, verify, then commit — bounded memory.

The pipeline for one file, pulled from the consuming end so that nothing holds more than one part:

    ResumableReader (hook.open_file + Range resumes)
      -> _Tap (size, checksum, progress; raw bytes to the upload when landing as-is)
        -> _Inflate (gzip, streaming ISA-L or zlib) when the source is gzip and something needs plain bytes
          -> CSV record counter (csv rows) | line counter (jsonl rows) | Avro block counter | Avro converter
             | decompressed upload

Writers (one per destination, each beside its transfer operator in ``transfers/``) stage the bytes
where no reader can see them (S3 multipart parts, Azure uncommitted blocks); ``stage_file`` leaves a
verified file staged and ``StagedFile.commit`` makes it appear atomically under its final key. Any
failure aborts what was staged. A whole export is published by ``core.manifest``. Why not ``S3Hook.load_file_obj`` / ``HttpToS3Operator``: they read or
spool whole bodies and publish before anyone could compare sizes, rows or checksums.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import logging
import math
import socket
import time
from abc import ABC, abstractmethod
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import requests
import urllib3.exceptions

from airflow_export_providers.core import avro, gunzip
from airflow_export_providers.core.errors import (
    ExportError,
    ExportInputError,
    TransientHTTPError,
    VerificationError,
)
from airflow_export_providers.core.hook import ExportHook, SourceStream
from airflow_export_providers.core.job import ExportFile
from airflow_export_providers.core.redact import redact_text

log = logging.getLogger(__name__)

MiB = 1 << 20
CHUNK = 1 * MiB
CONVERT_FORMATS = avro.FORMATS
PROGRESS_INTERVAL = 30.0
CHECKSUM_ALGORITHMS = ("md5", "sha1", "sha256")

# What a dropped connection looks like while reading a streamed body.
RESUMABLE_ERRORS: tuple[type[BaseException], ...] = (
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.ReadTimeoutError,
    urllib3.exceptions.IncompleteRead,
    http.client.IncompleteRead,
    requests.exceptions.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.Timeout,
    ConnectionError,
    socket.timeout,
)


# ---- reading --------------------------------------------------------------------------------
class ResumableReader:
    """The source bytes of one file; a dropped connection resumes with Range from the last good byte.

    If the server ignores Range (answers 200 from byte 0) the bytes already seen are skipped; a link
    that expired meanwhile is re-signed by ``hook.open_file``. At most ``max_resumes`` resumes.
    """

    def __init__(self, hook: ExportHook, file: ExportFile, *, max_resumes: int = 5, backoff: float = 0.5) -> None:
        self.hook = hook
        self.file = file
        self.max_resumes = max_resumes
        self.backoff = backoff
        self.pos = 0
        self.resumes = 0
        self.stream: SourceStream = hook.open_file(file, offset=0)
        self.total: int | None = self.stream.total if self.stream.total is not None else file.size

    def read(self, n: int = CHUNK) -> bytes:
        if n is None or n < 0:
            n = CHUNK
        while True:
            try:
                data = self.stream.read(n)
            except RESUMABLE_ERRORS as exc:
                self._resume(f"{type(exc).__name__}: {redact_text(exc)}")
                continue
            if not data and self.total is not None and self.pos < self.total:
                self._resume(f"body ended at byte {self.pos} of {self.total}")
                continue
            self.pos += len(data)
            return data

    def _resume(self, why: str) -> None:
        while True:
            self.resumes += 1
            if self.resumes > self.max_resumes:
                raise TransientHTTPError(
                    f"{self.hook.vendor}: download of {self.file.name} broke {self.resumes} times, last at byte {self.pos}: {why}"
                )
            log.warning("%s: download of %s interrupted at byte %d (%s); resuming (%d/%d)",
                        self.hook.vendor, self.file.name, self.pos, why, self.resumes, self.max_resumes)
            try:
                self.stream.close()
            except Exception:  # the connection is already broken
                pass
            time.sleep(min(self.backoff * self.resumes, 10.0))
            try:
                self.stream = self.hook.open_file(self.file, offset=self.pos)
                if self.stream.offset == self.pos:
                    return
                if self.stream.offset != 0:
                    raise ExportError(f"{self.hook.vendor}: asked for {self.file.name} from byte {self.pos}, got byte {self.stream.offset}")
                log.info("%s: the server ignored Range for %s; skipping %d bytes already landed", self.hook.vendor, self.file.name, self.pos)
                self._skip(self.pos)
                return
            except RESUMABLE_ERRORS as exc:
                why = f"{type(exc).__name__}: {redact_text(exc)}"

    def _skip(self, count: int) -> None:
        left = count
        while left:
            data = self.stream.read(min(CHUNK, left))
            if not data:
                raise http.client.IncompleteRead(b"", left)
            left -= len(data)

    def close(self) -> None:
        try:
            self.stream.close()
        except Exception:
            pass


class _Progress:
    """A log line at least every ``interval`` seconds: bytes so far, rate, ETA."""

    def __init__(self, name: str, total: int | None, interval: float = PROGRESS_INTERVAL) -> None:
        self.name = name
        self.total = total
        self.interval = interval
        self.start = time.monotonic()
        self.last = self.start

    def update(self, done: int) -> None:
        now = time.monotonic()
        if now - self.last < self.interval:
            return
        self.last = now
        elapsed = max(now - self.start, 1e-6)
        rate = done / elapsed
        if self.total:
            eta = (self.total - done) / rate if rate > 0 else float("inf")
            log.info("%s: %s of %s (%.0f%%), %s/s, ETA %s", self.name, _human(done), _human(self.total),
                     100.0 * done / self.total, _human(rate), _duration(eta))
        else:
            log.info("%s: %s so far, %s/s", self.name, _human(done), _human(rate))


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def _duration(seconds: float) -> str:
    if math.isinf(seconds) or seconds != seconds:
        return "unknown"
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


class _Tap:
    """Counts and hashes the source bytes as they pass; optionally hands them to a sink too."""

    def __init__(self, source: ResumableReader, algorithm: str | None, progress: _Progress, sink: Any = None) -> None:
        self.source = source
        self.hasher = hashlib.new(algorithm) if algorithm else None
        self.progress = progress
        self.sink = sink
        self.size = 0
        self.eof = False

    def read(self, n: int = CHUNK) -> bytes:
        if self.eof:
            return b""
        data = self.source.read(CHUNK if n is None or n < 0 else n)
        if not data:
            self.eof = True
            return b""
        self.size += len(data)
        if self.hasher is not None:
            self.hasher.update(data)
        if self.sink is not None:
            self.sink(data)
        self.progress.update(self.size)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


class _Inflate:
    """Streaming gunzip of a byte stream, multi-member aware, as a readable stream.

    ISA-L inflates when ``isal`` is installed, zlib otherwise (core/gunzip.py; same bytes out).
    Output per step is capped (``CHUNK``), so a small, highly compressed chunk cannot blow up into
    a large buffer.
    """

    def __init__(self, source: Any, name: str, backend: str | None = None) -> None:
        self.source = source
        self.name = name
        self.backend = backend or gunzip.BACKEND
        self._d = gunzip.new_member(self.backend)
        self._buf = b""
        self._pos = 0  # bytes of _buf already returned (small reads never copy the rest of the buffer)
        self._pending = b""
        self._eof = False
        self._started = False

    def _fill(self) -> None:
        while self._pos >= len(self._buf) and not self._eof:
            if self._d.needs_input:
                if self._pending:
                    data, self._pending = self._pending, b""
                else:
                    data = self.source.read(CHUNK)
                if not data:
                    self._eof = True
                    if self._started:
                        raise VerificationError(f"{self.name}: the gzip stream is truncated")
                    return
                if not self._started and not data.strip(b"\x00"):
                    continue  # zero padding after the last member
                self._started = True
            else:
                data = b""  # output still inside the inflater: drain it first
            try:
                out = self._d.decompress(data, CHUNK)
            except gunzip.ERRORS as exc:
                raise VerificationError(f"{self.name}: not valid gzip ({exc})") from None
            if self._d.eof:
                self._pending = self._d.unused_data + self._pending
                self._d = gunzip.new_member(self.backend)  # the next member, if any
                self._started = False
            self._buf, self._pos = out, 0

    def read(self, n: int = CHUNK) -> bytes:
        if n is None or n < 0:
            n = CHUNK
        self._fill()
        buf, pos = self._buf, self._pos
        if pos == 0 and len(buf) <= n:
            self._buf = b""
            return buf
        out = buf[pos : pos + n]
        self._pos = pos + len(out)
        return out


class _LineCounter:
    """Counts lines in a byte stream (a last line without a newline counts too)."""

    def __init__(self) -> None:
        self.newlines = 0
        self.last = b""
        self.any = False

    def update(self, data: bytes) -> None:
        if data:
            self.any = True
            self.newlines += data.count(b"\n")
            self.last = data[-1:]

    def lines(self) -> int:
        if not self.any:
            return 0
        return self.newlines + (0 if self.last == b"\n" else 1)


#: Every byte but the quote and the newline: deleted to leave what decides where a CSV record ends.
_CSV_NOISE = bytes(b for b in range(256) if b not in (0x22, 0x0A))


class _CsvRecordCounter:
    """Counts CSV records (RFC 4180), streaming: a newline inside a quoted field ends no record.

    Per chunk, only quotes and newlines are kept (``bytes.translate``); adjacent quote pairs are
    dropped (an empty field ``""``, an escaped quote, a field without newlines: none changes the
    quoting state); the few quotes left split the chunk into outside / inside pieces, and only the
    outside newlines are counted. All in C-level bytes operations, one chunk in memory. Every
    newline outside quotes ends a record (blank lines too, as in a line count); a bare ``\r`` does not.
    """

    def __init__(self) -> None:
        self.ends = 0  # newlines outside quotes so far
        self.quoted = False  # inside a quoted field at the end of the data so far
        self.pending = False  # a record started after the last record end

    def update(self, data: bytes) -> None:
        if not data:
            return
        marks = data.translate(None, _CSV_NOISE).replace(b'""', b"")
        if b'"' not in marks:
            if not self.quoted:
                self.ends += len(marks)  # only newlines are left
        else:
            pieces = marks.split(b'"')
            self.ends += sum(len(piece) for piece in pieces[1 if self.quoted else 0::2])
            self.quoted ^= (len(pieces) - 1) % 2 == 1
        self.pending = self.quoted or data[-1:] != b"\n"

    def lines(self) -> int:
        """Records seen (the header included), a last record without a newline too."""
        return self.ends + (1 if self.pending else 0)


class _Passthrough:
    """A readable stream that also hands every chunk it returns to a callback."""

    def __init__(self, source: Any, callback: Any) -> None:
        self.source = source
        self.callback = callback

    def read(self, n: int = CHUNK) -> bytes:
        data = self.source.read(n)
        if data:
            self.callback(data)
        return bytes(data)


# ---- writing --------------------------------------------------------------------------------
class WriteConflict(ExportError):
    """A conditional write found the object changed since it was read (another writer got there first)."""


@dataclass
class StoredObject:
    """A small object read back whole (a landing manifest) and the version a conditional write names."""

    data: bytes
    version: str


class UploadTracker(Protocol):
    """Remembers the uploads a task started, so that only its own retry cleans up what a killed try left."""

    def started(self, key: str, token: str) -> None: ...

    def ended(self, key: str, token: str) -> None: ...


class Upload(ABC):
    """An object being written: invisible under its key until ``commit``; ``abort`` discards it.

    ``finish`` sends whatever is still buffered and waits for every part, so that a staged upload
    holds no memory while it waits for the rest of its export; ``commit`` then only publishes.
    ``abort`` may come from another place than the writing code (``on_kill`` runs in a signal
    handler): it is idempotent, and a write or commit after it fails instead of starting over.
    The SHA-256 of the bytes written is kept: the landing manifest records it, and two landings of
    one export can tell whether they produced the same object.
    """

    def __init__(self, key: str, writer: ObjectWriter | None = None) -> None:
        self.key = key
        self.written = 0
        self.aborted = False
        self.finished = False
        self.committed = False
        self._owner = writer
        self._hash = hashlib.sha256()

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def write(self, data: bytes) -> None:
        if self.aborted:
            raise ExportError(f"the upload of {self.key} was aborted")
        if self.finished:
            raise ExportError(f"the upload of {self.key} is finished; nothing more can be written")
        if data:
            self._hash.update(data)
        self._write(data)

    def finish(self) -> None:
        """Send what is buffered and wait for every part; still invisible under the key."""
        if self.aborted:
            raise ExportError(f"the upload of {self.key} was aborted")
        if not self.finished:
            self._finish()
            self.finished = True

    def commit(self) -> None:
        if self.aborted:
            raise ExportError(f"the upload of {self.key} was aborted")
        self.finish()
        self._commit()
        self.committed = True
        self._release()

    def abort(self) -> None:
        if self.committed:
            return  # published: nothing staged is left to discard
        self.aborted = True
        self._abort()
        self._release()

    def _release(self) -> None:
        if self._owner is not None:
            self._owner.active.discard(self)

    @abstractmethod
    def _write(self, data: bytes) -> None: ...

    def _finish(self) -> None:
        """Flush the buffer and wait for the parts in flight (default: nothing is buffered)."""
        return None

    @abstractmethod
    def _commit(self) -> None: ...

    @abstractmethod
    def _abort(self) -> None:
        """Discard what was staged; must be safe to call more than once."""

    def landed_size(self) -> int | None:
        """Size of the committed object as the store reports it (a last sanity check)."""
        return None


class ObjectWriter(ABC):
    """A destination (bucket, container) that starts uploads under keys.

    Besides the streamed uploads a destination offers three small-object operations, all a landing
    manifest needs: ``read`` (body and version), ``put`` (atomic, conditional on the version read)
    and ``delete``. ``tracker`` (optional) is told about every server-side upload a writer opens and
    closes, so that a retry can abort exactly what its killed try left (``abort_left_over``).
    """

    def __init__(self) -> None:
        self.active: set[Upload] = set()
        self.tracker: UploadTracker | None = None

    def begin(self, key: str, size_hint: int | None = None, part_size: int | None = None) -> Upload:
        """Start an upload; ``size_hint`` (when known) sizes the parts, ``part_size`` overrides the minimum."""
        upload = self._begin(key, size_hint, part_size)
        self.active.add(upload)
        return upload

    def abort_all(self) -> None:
        """Abort every upload in progress (the task is being killed)."""
        for upload in list(self.active):
            upload.abort()

    def track(self, key: str, token: str) -> None:
        if self.tracker is not None:
            self.tracker.started(key, token)

    def untrack(self, key: str, token: str) -> None:
        if self.tracker is not None:
            self.tracker.ended(key, token)

    def abort_left_over(self, uploads: list[tuple[str, str]]) -> None:
        """Abort server-side uploads an earlier try of this task opened (``tracker`` tokens); default: none exist."""
        return None

    @abstractmethod
    def _begin(self, key: str, size_hint: int | None, part_size: int | None) -> Upload: ...

    @abstractmethod
    def uri(self, key: str) -> str: ...

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove a committed object; no error when it is already gone."""

    @abstractmethod
    def read(self, key: str) -> StoredObject | None:
        """A small object's body and version, or None when there is none."""

    @abstractmethod
    def put(self, key: str, data: bytes, *, expect: str | None) -> str:
        """Write a small object atomically if its version is still ``expect`` (None: if it does not exist).

        Returns the new version; raises WriteConflict when the condition does not hold.
        """


class PartSender:
    """Sends parts in the background, at most ``concurrency`` at a time, results kept in order.

    Downloading the next part while the previous one uploads roughly halves the wall time on real
    networks; memory stays bounded at about ``concurrency + 1`` parts. ``concurrency=1`` sends inline.
    """

    def __init__(self, concurrency: int) -> None:
        self.concurrency = max(int(concurrency), 1)
        self.pending: deque[Future[Any]] = deque()
        self.results: list[Any] = []
        self._pool: ThreadPoolExecutor | None = None

    def make_room(self) -> None:
        """Wait until one more part may go; called before a part is cut, so at most ``concurrency`` exist."""
        while len(self.pending) >= self.concurrency:
            self.results.append(self.pending.popleft().result())

    def submit(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        if self.concurrency == 1:
            self.results.append(fn(*args, **kwargs))
            return
        self.make_room()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="export-upload")
        self.pending.append(self._pool.submit(fn, *args, **kwargs))

    def drain(self) -> list[Any]:
        """Wait for every part; the first failure is raised."""
        while self.pending:
            self.results.append(self.pending.popleft().result())
        self.close()
        return self.results

    def close(self) -> None:
        for future in self.pending:
            future.cancel()
        self.pending.clear()
        if self._pool is not None:
            # parts already on the wire finish first, so an abort that follows really is the last word
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


# ---- landing --------------------------------------------------------------------------------
@dataclass
class LandedObject:
    """What landed where; ``to_xcom()`` is what the transfer operators return (never data)."""

    uri: str
    key: str
    file: str
    size: int  # bytes of the landed object
    rows: int | None  # counted rows (data rows for csv, records for Avro), None when not counted
    source_size: int
    checksum: str | None = None  # hex digest of the source bytes, in ``checksum_algorithm``
    checksum_algorithm: str | None = None
    resource: str | None = None
    seconds: float = 0.0
    resumes: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    sha256: str | None = None  # hex SHA-256 of the landed bytes (what the landing manifest records)

    def to_xcom(self) -> dict[str, Any]:
        return {"uri": self.uri, "size": self.size, "rows": self.rows, "file": self.file}


def validate_convert(convert: str | None) -> str | None:
    if convert in (None, ""):
        return None
    if convert not in CONVERT_FORMATS:
        raise ExportInputError(
            f"convert: {convert!r} is not supported; accepted values: None, {', '.join(repr(f) for f in CONVERT_FORMATS)}"
        )
    return convert


def landed_name(name: str, *, convert: str | None = None, decompress: bool = False, gzip: bool | None = None) -> str:
    """The object name: ``.gz`` dropped when the bytes are inflated, the new extension when converting."""
    lowered = name.lower()
    if convert or decompress:
        for ext in (".gz", ".gzip"):
            if lowered.endswith(ext) and gzip is not False:
                name, lowered = name[: -len(ext)], lowered[: -len(ext)]
                break
    if convert:
        if lowered.endswith(".avro"):
            name = name[: -len(".avro")]
        name = f"{name}.{convert}"
    return name


NAME_RULE = (
    "a landed name must be a relative path under the prefix: not empty, no leading '/', no '.', '..' or empty "
    "segments, no backslash or control characters"
)


def unsafe_name_reason(name: str) -> str | None:
    """Why ``name`` could leave the prefix (or land on it) as an object key, or None when it is safe.

    Object stores take ``a/../b`` literally, but the tools that read them (sync clients, Hadoop, a
    download to disk) resolve it: a vendor's file name must never address anything outside the prefix.
    """
    if not isinstance(name, str) or not name:
        return "it is empty"
    if name.startswith("/"):
        return "it is absolute (starts with '/')"
    if "\\" in name:
        return "it contains a backslash (read as '/' by Azure and Windows tools)"
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        return "it contains control characters"
    for segment in name.split("/"):
        if segment == "":
            return "it has an empty path segment ('//' or a trailing '/')"
        if segment in (".", ".."):
            return f"it has a {segment!r} path segment"
    return None


def object_key(prefix: str | None, name: str) -> str:
    """``{prefix}/{name}``, refusing names (and prefixes) that would address something outside the prefix."""
    why = unsafe_name_reason(name)
    if why is not None:
        raise ExportInputError(f"file name {name!r}: {why}; {NAME_RULE}")
    prefix = (prefix or "").strip("/")
    if prefix and any(seg in (".", "..") for seg in prefix.split("/")):
        raise ExportInputError(f"prefix: {prefix!r} has a '.' or '..' segment; give a plain path such as 'vendor/{{{{ ds }}}}'")
    return f"{prefix}/{name}" if prefix else name


def _matches_checksum(expected: str, digest: bytes) -> bool:
    exp = expected.strip()
    if ":" in exp and exp.split(":", 1)[0].lower() in CHECKSUM_ALGORITHMS:
        exp = exp.split(":", 1)[1]
    return exp.lower() == digest.hex() or exp == base64.b64encode(digest).decode("ascii")


@dataclass
class StagedFile:
    """A verified file whose upload is complete but not yet published under its key."""

    landed: LandedObject
    upload: Upload
    writer: ObjectWriter

    def commit(self) -> LandedObject:
        """Publish the object (one request), then check the size the store reports."""
        upload = self.upload
        try:
            upload.commit()
        except BaseException:
            upload.abort()
            raise
        landed = upload.landed_size()
        if landed is not None and landed != upload.written:
            self.writer.delete(upload.key)
            raise VerificationError(f"{self.landed.uri}: the store reports {landed} bytes, {upload.written} were written; object removed")
        return self.landed

    def abort(self) -> None:
        self.upload.abort()


def land_file(hook: ExportHook, file: ExportFile, writer: ObjectWriter, **kwargs: Any) -> LandedObject:
    """Stream ``file`` from ``hook`` into ``writer`` and publish it only after it verified (``stage_file`` + commit)."""
    return stage_file(hook, file, writer, **kwargs).commit()


def stage_file(
    hook: ExportHook,
    file: ExportFile,
    writer: ObjectWriter,
    *,
    key: str | None = None,
    prefix: str | None = None,
    convert: str | None = None,
    decompress: bool = False,
    part_size: int | None = None,
    batch_rows: int = avro.DEFAULT_BATCH_ROWS,
    row_group_rows: int | None = None,
    max_resumes: int = 5,
    progress_interval: float = PROGRESS_INTERVAL,
    count_rows: bool = True,
) -> StagedFile:
    """Stream ``file`` from ``hook`` into ``writer``, verify it, and leave it staged (invisible) for ``commit``.

    ``key`` defaults to ``{prefix}/{landed name}``. ``part_size`` overrides the writer's minimum
    part/block size for this file. Rows are counted whenever ``file.row_format`` is known (and
    ``count_rows``) and compared with ``file.rows`` when the vendor announced them. Raises
    VerificationError (nothing under the key) on any mismatch, ExportInputError for a non-Avro
    file with ``convert`` set. The returned upload holds no buffered bytes: staging every file of an
    export first keeps memory bounded by one file's parts.
    """
    convert = validate_convert(convert)
    if key is None:
        object_key(prefix, file.name)  # a name that would leave the prefix is refused before the file is opened
    if file.checksum and (file.checksum_algorithm or "md5").lower() not in CHECKSUM_ALGORITHMS:
        raise ExportInputError(
            f"{file.name}: checksum_algorithm {file.checksum_algorithm!r} is not supported; accepted values: {', '.join(CHECKSUM_ALGORITHMS)}"
        )
    if convert and file.row_format not in (None, "avro"):
        raise avro.not_avro_error(convert, file.name, f"<row_format {file.row_format}>".encode())
    algorithm = (file.checksum_algorithm or "md5").lower() if file.checksum else "md5"
    started = time.monotonic()
    reader = ResumableReader(hook, file, max_resumes=max_resumes)
    upload: Upload | None = None
    try:
        progress = _Progress(file.name, reader.total, progress_interval)
        tap = _Tap(reader, algorithm if file.checksum else None, progress)  # no hashing when nothing to compare
        head, source = avro.peek(tap, 2)
        is_gzip = file.compression == "gzip" or (file.compression is None and head == b"\x1f\x8b")
        name = landed_name(file.name, convert=convert, decompress=decompress and is_gzip, gzip=is_gzip)
        key = key or object_key(prefix, name)
        uri = writer.uri(key)
        progress.name = f"{file.name} -> {uri}"
        raw_as_is = not convert and not (decompress and is_gzip)
        upload = writer.begin(key, size_hint=reader.total if raw_as_is else None, part_size=part_size)
        if raw_as_is:
            upload.write(head)  # the sniffed bytes went through the tap before the sink was attached
            tap.sink = upload.write
        row_format = file.row_format
        need_plain = bool(convert) or not raw_as_is or (count_rows and row_format in ("csv", "jsonl", "avro"))
        rows: int | None = None
        if need_plain:
            plain: Any = _Inflate(source, file.name) if is_gzip else source
            if not raw_as_is and not convert:
                plain = _Passthrough(plain, upload.write)
            if convert:
                rows = avro.convert_avro(plain, upload, convert, name=file.name, batch_rows=batch_rows, row_group_rows=row_group_rows)
            elif count_rows and row_format == "avro":
                head4, plain = avro.peek(plain, 4)
                if head4 != avro.AVRO_MAGIC:
                    raise VerificationError(f"{file.name}: rows: row_format is 'avro' but the file is not Avro (starts with {head4!r})")
                rows = avro.count_avro_records(plain)
            else:
                counter = _CsvRecordCounter() if row_format == "csv" else _LineCounter()
                while True:
                    data = plain.read(CHUNK)
                    if not data:
                        break
                    counter.update(data)
                if count_rows and row_format in ("csv", "jsonl"):
                    rows = counter.lines()
                    if row_format == "csv":
                        rows = max(rows - 1, 0)
            # a decoder may stop before the end (trailing bytes): every source byte still counts
            while plain.read(CHUNK):
                pass
        tap.drain()
        digest = tap.hasher.digest() if tap.hasher is not None else b""
        _verify(file, tap.size, rows, digest, algorithm)
        upload.finish()
    except BaseException:
        if upload is not None:
            upload.abort()
        raise
    finally:
        reader.close()
    seconds = time.monotonic() - started
    log.info("staged %s -> %s: %s in %.1fs (%s rows, %d resume(s))", file.name, uri, _human(upload.written), seconds,
             "?" if rows is None else rows, reader.resumes)
    landed_object = LandedObject(
        uri=uri, key=key, file=file.name, size=upload.written, rows=rows, source_size=tap.size,
        checksum=digest.hex() if file.checksum else None, checksum_algorithm=algorithm if file.checksum else None,
        resource=file.resource, seconds=seconds, resumes=reader.resumes, sha256=upload.sha256,
    )
    return StagedFile(landed_object, upload, writer)


def _verify(file: ExportFile, size: int, rows: int | None, digest: bytes, algorithm: str) -> None:
    problems = []
    if file.size is not None and int(file.size) != size:
        problems.append(f"size: expected {file.size} bytes, got {size}")
    if file.rows is not None and rows is not None and int(file.rows) != rows:
        problems.append(f"rows: expected {file.rows}, counted {rows} ({file.row_format})")
    if file.checksum and not _matches_checksum(file.checksum, digest):
        problems.append(f"checksum: {algorithm} expected {file.checksum}, got {digest.hex()}")
    if problems:
        raise VerificationError(f"{file.name}: verification failed, nothing landed — " + "; ".join(problems))
