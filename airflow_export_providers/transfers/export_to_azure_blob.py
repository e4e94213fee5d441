"""ExportToAzureBlobOperator: land an export's files in Azure Blob (staged blocks, one final commit)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow_export_providers.core.landing import AzureBlobWriter, ObjectWriter
from airflow_export_providers.transfers.base import ExportTransferOperator


class ExportToAzureBlobOperator(ExportTransferOperator):
    """Stream every file of an ExportJob into ``{container}/{prefix}/{file name}``.

    :param export: the ExportJob (``export_task.output``); templated.
    :param container: target container; templated.
    :param prefix: blob name prefix; templated.
    :param wasb_conn_id: the Azure Blob connection used through WasbHook.
    :param convert: None, ``"jsonl"``, ``"csv"`` or ``"parquet"`` (Avro sources only).
    :param decompress: land gzip files inflated.

    Other parameters: see ``ExportTransferOperator``. Returns ``[{"uri", "size", "rows", "file"}, ...]``.
    """

    template_fields: Sequence[str] = ("export", "container", "prefix")
    destination_field = "container"

    def __init__(
        self,
        *,
        export: Any,
        container: str,
        prefix: str = "",
        wasb_conn_id: str = "wasb_default",
        convert: str | None = None,
        decompress: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(export=export, prefix=prefix, convert=convert, decompress=decompress, **kwargs)
        self.container = container
        self.wasb_conn_id = wasb_conn_id

    def destination(self) -> str:
        return self.container

    def make_writer(self) -> ObjectWriter:
        return AzureBlobWriter(self.container, self.wasb_conn_id, block_size=self.part_size, concurrency=self.upload_concurrency)
