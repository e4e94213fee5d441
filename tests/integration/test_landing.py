"""Landing against real servers: the sandbox's file route -> moto's S3 server and Azurite.

Each test registers bytes in ``state.files``, opens them through the test vendor hook
(tests/support/files_hook.py, presigned-link style) and lands them with ``land_file`` or a transfer
operator, then reads the landed object back.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import uuid
from typing import Any

import pyarrow.parquet as pq
import pytest

from airflow_export_providers.core.errors import ExportInputError, VerificationError
from airflow_export_providers.core.landing import MiB, land_file
from airflow_export_providers.transfers.export_to_s3 import S3Writer
from tests.support.avro_samples import avro_gz, record
from tests.support.destinations import PART, Dest, put
from tests.support.files_hook import FilesHook, export_file, random_bytes

pytest_plugins = ("tests.support.destination_fixtures",)  # the `dest` (S3 and Azure) and `files` fixtures

@pytest.mark.parametrize("concurrency", [1, 3])
def test_file_bigger_than_several_parts(files: Any, dest: Dest, concurrency: int) -> None:
    dest.writer.concurrency = concurrency  # parts sent inline, or several in the background
    data = random_bytes(17 * MiB + 123, seed=1)
    name = put(files, data, "big.bin")
    f = export_file(name, data, checksum=hashlib.sha256(data).hexdigest(), checksum_algorithm="sha256")
    landed = land_file(FilesHook(), f, dest.writer, prefix="raw/2026-01-01")
    assert landed.key == "raw/2026-01-01/big.bin" and landed.size == len(data) and landed.rows is None
    assert dest.read(landed.key) == data
    assert dest.parts_or_blocks(landed.key) == 4  # 5 + 5 + 5 + 2 MiB
    assert dest.pending_uploads() == []
    assert landed.to_xcom() == {"uri": landed.uri, "size": len(data), "rows": None, "file": "big.bin"}


def csv_gz(rows: int) -> tuple[bytes, bytes]:
    plain = "id,name\n" + "".join(f"{i},name {i}\n" for i in range(rows))
    return plain.encode(), gzip.compress(plain.encode())


def test_gzip_kept_as_is_with_rows_counted(files: Any, dest: Dest) -> None:
    plain, gz = csv_gz(5000)
    name = put(files, gz, f"snap-{uuid.uuid4().hex[:6]}.csv.gz")
    f = export_file(name, gz, rows=5000, row_format="csv", compression="gzip", checksum=hashlib.md5(gz).hexdigest())
    landed = land_file(FilesHook(), f, dest.writer, prefix="p")
    assert landed.key == f"p/{name}" and landed.rows == 5000
    assert dest.read(landed.key) == gz  # the very bytes the vendor stored


def test_gzip_inflated_on_request(files: Any, dest: Dest) -> None:
    plain, gz = csv_gz(3000)
    more = b"3000,tail\n"
    both = gz + gzip.compress(more)  # two gzip members, as concatenating exporters produce
    name = put(files, both, f"snap-{uuid.uuid4().hex[:6]}.csv.gz")
    f = export_file(name, both, rows=3001, row_format="csv", compression="gzip")
    landed = land_file(FilesHook(), f, dest.writer, prefix="p", decompress=True)
    assert landed.key == f"p/{name[:-3]}" and landed.rows == 3001 and landed.size == len(plain + more)
    assert landed.source_size == len(both)
    assert dest.read(landed.key) == plain + more


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_avro_converted(files: Any, dest: Dest, fmt: str) -> None:
    if dest.kind == "azure" and fmt != "parquet":
        pytest.skip("the converters do not depend on the destination; Azure runs the Parquet case")
    gz = avro_gz(1200, v2=True)
    name = put(files, gz, f"transactions-{uuid.uuid4().hex[:6]}.avro.gz")
    f = export_file(name, gz, rows=1200, row_format="avro", compression="gzip", resource="transactions")
    landed = land_file(FilesHook(), f, dest.writer, prefix="mx", convert=fmt, batch_rows=500)
    assert landed.key == f"mx/{name[: -len('.avro.gz')]}.{fmt}" and landed.rows == 1200
    body = dest.read(landed.key)
    assert landed.size == len(body)
    if fmt == "jsonl":
        rows = [json.loads(line) for line in body.decode().splitlines()]
        assert len(rows) == 1200 and rows[42]["guid"] == "TRN-000042" and rows[43]["currency_code"] == "USD"
        assert rows[41]["merchant"] == record(41)["merchant"]
    elif fmt == "csv":
        table = list(csv.DictReader(io.StringIO(body.decode())))
        assert len(table) == 1200 and table[42]["guid"] == "TRN-000042" and table[43]["currency_code"] == "USD"
        assert json.loads(table[41]["merchant"]) == record(41)["merchant"]
    else:
        t = pq.read_table(io.BytesIO(body))
        assert t.num_rows == 1200 and t.column_names[-1] == "currency_code"
        assert pq.ParquetFile(io.BytesIO(body)).metadata.num_row_groups == 3
        assert t.slice(42, 1).to_pylist()[0]["amount"] == record(42)["amount"]


def test_avro_header_only_and_evolving_schema_to_parquet(files: Any, dest: Dest) -> None:
    empty, old, new = avro_gz(0), avro_gz(10), avro_gz(10, v2=True)
    names = {k: put(files, v, f"{k}-{uuid.uuid4().hex[:6]}.avro.gz") for k, v in (("empty", empty), ("old", old), ("new", new))}
    data = {"empty": empty, "old": old, "new": new}
    out = {}
    for k, name in names.items():
        f = export_file(name, data[k], rows=0 if k == "empty" else 10, row_format="avro", compression="gzip")
        out[k] = land_file(FilesHook(), f, dest.writer, prefix="mx", convert="parquet")
    empty_t = pq.read_table(io.BytesIO(dest.read(out["empty"].key)))
    assert empty_t.num_rows == 0 and "merchant" in empty_t.column_names and out["empty"].rows == 0
    old_t = pq.read_table(io.BytesIO(dest.read(out["old"].key)))
    new_t = pq.read_table(io.BytesIO(dest.read(out["new"].key)))
    assert "currency_code" not in old_t.column_names and new_t.column_names[-1] == "currency_code"  # schema per file


def test_avro_rows_verified_without_conversion(files: Any, dest: Dest) -> None:
    gz = avro_gz(300)
    name = put(files, gz, f"accounts-{uuid.uuid4().hex[:6]}.avro.gz")
    landed = land_file(FilesHook(), export_file(name, gz, rows=300, row_format="avro", compression="gzip"), dest.writer)
    assert landed.rows == 300 and dest.read(landed.key) == gz
    with pytest.raises(VerificationError, match="rows: expected 301, counted 300"):
        land_file(FilesHook(), export_file(name, gz, rows=301, row_format="avro", compression="gzip"), dest.writer, key="wrong")
    assert not dest.exists("wrong")


def test_reset_mid_download_resumes_with_range(files: Any, dest: Dest) -> None:
    data = random_bytes(12 * MiB, seed=2)
    name = put(files, data)
    files.add_fault(path=f"/files/{name}$", kind="reset")
    before = len(files.requests)
    landed = land_file(FilesHook(), export_file(name, data, checksum=hashlib.md5(data).hexdigest()), dest.writer)
    assert landed.resumes == 1
    assert dest.read(landed.key) == data
    gets = [r for r in files.requests[before:] if r["path"] == f"/files/{name}"]
    assert len(gets) == 2 and "Range" not in gets[0]["headers"]
    start = int(gets[1]["headers"]["Range"].split("=")[1].rstrip("-"))
    assert 0 < start < len(data)  # resumed from the last good byte, not from zero


class RangeIgnoringHook(FilesHook):
    """A source that cannot resume: every open starts at byte 0, as a server ignoring Range would."""

    def open_file(self, file: Any, offset: int = 0) -> Any:
        return super().open_file(file, 0)


def test_reset_on_a_server_without_range_skips_what_it_had(files: Any, dest: Dest) -> None:
    data = random_bytes(6 * MiB + 17, seed=3)
    name = put(files, data)
    files.add_fault(path=f"/files/{name}$", kind="reset")
    landed = land_file(RangeIgnoringHook(), export_file(name, data), dest.writer)
    assert landed.resumes == 1 and dest.read(landed.key) == data


def test_expired_link_is_resigned(files: Any, dest: Dest) -> None:
    data = b"id\n1\n2\n"
    name = put(files, data)
    hook = FilesHook(stale_first=True)
    landed = land_file(hook, export_file(name, data, rows=2, row_format="csv"), dest.writer)
    assert hook.links == [False, True]  # the stale link got 403, a fresh one was asked for
    assert dest.read(landed.key) == data and landed.rows == 2


def test_rerun_overwrites(files: Any, dest: Dest) -> None:
    name = put(files, b"v1 " * 1000, "daily.csv")
    land_file(FilesHook(), export_file(name, files.files[name]), dest.writer, prefix="d/2026-01-01")
    files.files[name] = b"v2-bigger " * 1000
    land_file(FilesHook(), export_file(name, files.files[name]), dest.writer, prefix="d/2026-01-01")
    assert dest.keys() == ["d/2026-01-01/daily.csv"]
    assert dest.read("d/2026-01-01/daily.csv") == b"v2-bigger " * 1000


@pytest.mark.parametrize("wrong", ["size", "rows", "checksum"])
def test_verification_failure_leaves_nothing(files: Any, dest: Dest, wrong: str) -> None:
    body = b"id,v\n" + b"".join(b"%d,%s\n" % (i, b"x" * 80) for i in range(130_000))  # > 2 parts
    name = put(files, body)
    kwargs: dict[str, Any] = {"rows": 130_000, "row_format": "csv", "checksum": hashlib.md5(body).hexdigest()}
    if wrong == "size":
        kwargs["size"] = len(body) + 1
    elif wrong == "rows":
        kwargs["rows"] = 129_999
    else:
        kwargs["checksum"] = hashlib.md5(b"other").hexdigest()
    with pytest.raises(VerificationError, match=rf"{name}: verification failed, nothing landed — {wrong}: (md5 )?expected"):
        land_file(FilesHook(), export_file(name, body if wrong != "size" else None, **kwargs), dest.writer, prefix="v")
    assert dest.keys() == []
    assert dest.pending_uploads() == []  # the multipart upload was aborted, not orphaned


class ListTracker:
    """What a transfer keeps in its task_state_store: the server-side uploads its try has open."""

    def __init__(self) -> None:
        self.open: list[tuple[str, str]] = []

    def started(self, key: str, token: str) -> None:
        self.open.append((key, token))

    def ended(self, key: str, token: str) -> None:
        self.open.remove((key, token))


def test_retry_aborts_only_the_uploads_its_killed_try_recorded(files: Any, dest: Dest) -> None:
    if dest.kind != "s3":
        pytest.skip("Azure has no open upload object: uncommitted blocks are discarded by the next commit")
    key = "k/killed.bin"
    other = dest.raw.create_multipart_upload(Bucket=dest.name, Key=key)["UploadId"]  # another run's live upload
    killed = dest.writer  # the killed try: its writer recorded the upload it opened, then the worker vanished
    killed.tracker = tracker = ListTracker()
    upload = killed.begin(key)
    upload.write(random_bytes(PART + 10, seed=40))  # one part goes up, so S3 holds an open upload
    assert len(tracker.open) == 1 and tracker.open[0][0] == key
    retry = S3Writer(dest.name, "aws_default", part_size=PART)
    retry.abort_left_over(list(tracker.open))
    data = random_bytes(1000, seed=4)
    land_file(FilesHook(), export_file(put(files, data, "killed.bin"), data), retry, prefix="k")
    assert [u["UploadId"] for u in dest.raw.list_multipart_uploads(Bucket=dest.name).get("Uploads", [])] == [other]
    assert dest.read(key) == data
    # the other run's upload was not touched: it still takes parts and completes
    part = dest.raw.upload_part(Bucket=dest.name, Key=key, UploadId=other, PartNumber=1, Body=b"theirs")
    dest.raw.complete_multipart_upload(Bucket=dest.name, Key=key, UploadId=other,
                                       MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    assert dest.read(key) == b"theirs"


def test_a_second_landing_of_one_key_neither_kills_nor_mixes_with_the_first(files: Any, dest: Dest) -> None:
    """Issue 16 points 1 and 2: two uploads of one key at once, the second one committed first.

    S3: the first upload is left alone and its later commit wins, whole. Azure: block ids are per
    upload, so the blob is never a mix; the first upload's commit finds its blocks discarded by the
    other commit and fails cleanly, the blob stays the second upload's bytes.
    """
    key = f"same/{uuid.uuid4().hex[:6]}.bin"
    first_bytes, second_bytes = random_bytes(3 * PART + 7, seed=41), random_bytes(3 * PART + 7, seed=42)
    first = dest.writer.begin(key)
    first.write(first_bytes[: 2 * PART + 1])  # two parts / blocks staged
    name = put(files, second_bytes)
    land_file(FilesHook(), export_file(name, second_bytes), dest.new_writer(), key=key)
    assert dest.read(key) == second_bytes
    first.write(first_bytes[2 * PART + 1:])
    if dest.kind == "s3":
        first.commit()
        assert dest.read(key) == first_bytes
        assert dest.pending_uploads() == []
    else:
        from airflow_export_providers.core.errors import ExportError

        with pytest.raises(ExportError, match="another upload of this blob was committed"):
            first.commit()
        assert dest.read(key) == second_bytes  # intact: one source, not a mix
        committed, uncommitted = dest.raw.get_blob_client(key).get_block_list("all")
        ids = [b.id for b in committed]
        assert len(set(ids)) == len(ids) == 4 and len({len(i) for i in ids}) == 1


@pytest.mark.parametrize("name", ["../../etc/passwd", "a/../../b", "/abs.csv", "", "a//b", "./a", "a\\..\\b", "a/\x00b", "dir/"])
def test_names_that_leave_the_prefix_are_refused(files: Any, dest: Dest, name: str) -> None:
    data = b"x"
    files.files[name or "empty"] = data
    before = len(files.requests)
    with pytest.raises(ExportInputError, match=r"file name .*: it (is|has|contains) .*a landed name must be a relative path"):
        land_file(FilesHook(), export_file(name, data), dest.writer, prefix="p")
    assert len(files.requests) == before, "refused before the file was opened"
    assert dest.keys() == [] and dest.pending_uploads() == []


def test_non_avro_with_convert_is_refused(files: Any, dest: Dest) -> None:
    data = b"id,name\n1,a\n"
    name = put(files, data)
    with pytest.raises(ExportInputError, match=r"convert='jsonl'.*not Avro.*convert=None"):
        land_file(FilesHook(), export_file(name, data), dest.writer, convert="jsonl")
    with pytest.raises(ExportInputError, match=r"convert='csv'.*not Avro"):
        land_file(FilesHook(), export_file(name, data, row_format="csv"), dest.writer, convert="csv")
    assert dest.keys() == [] and dest.pending_uploads() == []


class KillingHook(FilesHook):
    """Calls ``writer.abort_all()`` part-way through the body, as ``on_kill`` does from a SIGTERM handler."""

    def __init__(self, writer: Any, after: int) -> None:
        super().__init__()
        self.writer, self.after, self.seen = writer, after, 0

    def open_file(self, file: Any, offset: int = 0) -> Any:
        stream = super().open_file(file, offset)
        read = stream.read

        def killing_read(n: int) -> bytes:
            data = read(n)
            self.seen += len(data)
            if self.seen >= self.after and self.writer.active:
                self.writer.abort_all()
            return data

        stream.read = killing_read  # type: ignore[method-assign]
        return stream


def test_kill_mid_upload_leaves_nothing(files: Any, dest: Dest) -> None:
    from airflow_export_providers.core.errors import ExportError

    data = random_bytes(13 * MiB, seed=5)
    name = put(files, data)
    with pytest.raises(ExportError, match="aborted"):
        land_file(KillingHook(dest.writer, after=11 * MiB), export_file(name, data), dest.writer, prefix="kill")
    assert dest.keys() == [] and dest.pending_uploads() == [] and not dest.writer.active


def test_progress_lines_say_bytes_rate_and_eta(files: Any, dest: Dest, caplog: pytest.LogCaptureFixture) -> None:
    if dest.kind != "s3":
        pytest.skip("progress reporting does not depend on the destination")
    data = random_bytes(3 * MiB, seed=6)
    name = put(files, data)
    with caplog.at_level("INFO", logger="airflow_export_providers.core.landing"):
        land_file(FilesHook(), export_file(name, data), dest.writer, progress_interval=0.0)
    lines = [r.getMessage() for r in caplog.records if "ETA" in r.getMessage()]
    assert lines and "of 3.0 MiB" in lines[-1] and "/s" in lines[-1]


def test_empty_file_lands_as_an_empty_object(files: Any, dest: Dest) -> None:
    name = put(files, b"")
    landed = land_file(FilesHook(), export_file(name, b"", rows=0, row_format="jsonl"), dest.writer, prefix="e")
    assert landed.size == 0 and landed.rows == 0 and dest.read(landed.key) == b""
