"""The Azure Blob destination: its writer (through the Azure provider's WasbHook) and ExportToAzureBlobOperator.

Staged blocks, one final commit. Everything destination-agnostic (reading, resuming, inflating,
counting, verifying) is in ``core.landing``; this module says only how bytes are staged, committed
and aborted in Azure Blob.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from airflow_export_providers.core.compat import require_extra
from airflow_export_providers.core.errors import ExportError
from airflow_export_providers.core.landing import MiB, ObjectWriter, PartSender, Upload
from airflow_export_providers.transfers.base import ExportTransferOperator

AZURE_DEFAULT_BLOCK = 8 * MiB
AZURE_MAX_BLOCKS = 50_000
AZURE_MAX_BLOCK = 4000 * MiB


def azure_block_size(size: int | None, minimum: int = AZURE_DEFAULT_BLOCK) -> int:
    if not size:
        return minimum
    needed = -(-size // (AZURE_MAX_BLOCKS - 1))
    needed = -(-needed // MiB) * MiB
    return min(max(minimum, needed), AZURE_MAX_BLOCK)


class AzureBlobWriter(ObjectWriter):
    """Azure Blob through the Azure provider's WasbHook: staged blocks, one commit at the very end.

    Uncommitted blocks are invisible; a commit replaces the blob atomically. Blocks of an aborted
    upload are discarded by the service (by the next commit of the key, or after a week).
    """

    def __init__(self, container: str, wasb_conn_id: str = "wasb_default", *, block_size: int | None = None,
                 service: Any = None, concurrency: int = 2) -> None:
        super().__init__()
        self.concurrency = concurrency
        self.container = container
        self.wasb_conn_id = wasb_conn_id
        self.block_size = max(int(block_size or AZURE_DEFAULT_BLOCK), 1)
        self._service = service

    @property
    def service(self) -> Any:
        if self._service is None:
            require_extra("microsoft.azure", "The Azure Blob destination")
            from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

            self._service = WasbHook(wasb_conn_id=self.wasb_conn_id).get_conn()
        return self._service

    def uri(self, key: str) -> str:
        account = getattr(self.service, "account_name", None) or "account"
        return f"wasbs://{self.container}@{account}.blob.core.windows.net/{key}"

    def _begin(self, key: str, size_hint: int | None, part_size: int | None) -> Upload:
        blob = self.service.get_blob_client(container=self.container, blob=key)
        return _AzureUpload(self, blob, key, azure_block_size(size_hint, int(part_size) if part_size else self.block_size))

    def delete(self, key: str) -> None:
        self.service.get_blob_client(container=self.container, blob=key).delete_blob()


class _AzureUpload(Upload):
    def __init__(self, writer: AzureBlobWriter, blob: Any, key: str, block_size: int) -> None:
        super().__init__(key, writer)
        self.w = writer
        self.blob = blob
        self.block_size = block_size
        self.buf = bytearray()
        self.block_ids: list[str] = []
        self.sender = PartSender(writer.concurrency)

    def _write(self, data: bytes) -> None:
        self.buf += data
        self.written += len(data)
        while len(self.buf) >= self.block_size:
            self.sender.make_room()
            with memoryview(self.buf) as view:  # one copy, not two (a bytearray slice, then bytes of it)
                block = bytes(view[: self.block_size])
            del self.buf[: self.block_size]
            self._stage(block)

    def _stage(self, block: bytes) -> None:
        if len(self.block_ids) >= AZURE_MAX_BLOCKS:
            raise ExportError(f"{self.w.uri(self.key)}: more than {AZURE_MAX_BLOCKS} blocks; raise the block size")
        # fixed-length ids: Azure requires every block id of a blob to have the same length
        block_id = base64.b64encode(f"aep-{len(self.block_ids):08d}".encode()).decode("ascii")
        self.block_ids.append(block_id)
        self.sender.submit(self.blob.stage_block, block_id=block_id, data=block, length=len(block))

    def _commit(self) -> None:
        from azure.storage.blob import BlobBlock

        if not self.block_ids and not self.buf:
            self.blob.upload_blob(b"", overwrite=True)  # an empty object: nothing to stage
            return
        if self.buf:
            self._stage(bytes(self.buf))
            self.buf = bytearray()
        self.sender.drain()
        self.blob.commit_block_list([BlobBlock(block_id=b) for b in self.block_ids])

    def _abort(self) -> None:
        self.buf = bytearray()
        self.sender.close()
        self.block_ids = []

    def landed_size(self) -> int | None:
        return int(self.blob.get_blob_properties().size)


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
        require_extra("microsoft.azure", type(self).__name__)
        super().__init__(export=export, prefix=prefix, convert=convert, decompress=decompress, **kwargs)
        self.container = container
        self.wasb_conn_id = wasb_conn_id

    def destination(self) -> str:
        return self.container

    def make_writer(self) -> ObjectWriter:
        return AzureBlobWriter(self.container, self.wasb_conn_id, block_size=self.part_size, concurrency=self.upload_concurrency)
