"""ExportToS3Operator: land an export's files in S3 (multipart, verified before it becomes visible)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow_export_providers.core.landing import ObjectWriter, S3Writer
from airflow_export_providers.transfers.base import ExportTransferOperator


class ExportToS3Operator(ExportTransferOperator):
    """Stream every file of an ExportJob into ``s3://{bucket}/{prefix}/{file name}``.

    :param export: the ExportJob (``export_task.output``); templated.
    :param bucket: target bucket; templated.
    :param prefix: key prefix; templated (e.g. ``"leanplum/{{ ds }}"``).
    :param aws_conn_id: the Amazon connection used through S3Hook.
    :param convert: None, ``"jsonl"``, ``"csv"`` or ``"parquet"`` (Avro sources only).
    :param decompress: land gzip files inflated.
    :param extra_args: extra arguments for the PUT / CreateMultipartUpload (e.g. ``ServerSideEncryption``).

    Other parameters: see ``ExportTransferOperator``. Returns ``[{"uri", "size", "rows", "file"}, ...]``.
    """

    template_fields: Sequence[str] = ("export", "bucket", "prefix")
    destination_field = "bucket"

    def __init__(
        self,
        *,
        export: Any,
        bucket: str,
        prefix: str = "",
        aws_conn_id: str | None = "aws_default",
        convert: str | None = None,
        decompress: bool = False,
        extra_args: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(export=export, prefix=prefix, convert=convert, decompress=decompress, **kwargs)
        self.bucket = bucket
        self.aws_conn_id = aws_conn_id
        self.extra_args = dict(extra_args or {})

    def destination(self) -> str:
        return self.bucket

    def make_writer(self) -> ObjectWriter:
        return S3Writer(self.bucket, self.aws_conn_id, part_size=self.part_size, extra_args=self.extra_args,
                        concurrency=self.upload_concurrency)
