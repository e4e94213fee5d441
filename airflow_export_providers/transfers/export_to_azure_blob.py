"""The Azure Blob destination: its writer (through the Azure provider's WasbHook) and ExportToAzureBlobOperator.

Staged blocks, one commit when the whole export is published. Everything destination-agnostic
(reading, resuming, inflating, counting, verifying, the export's manifest) is in ``core``; this
module says only how bytes are staged, committed and aborted in Azure Blob, and how a small blob is
read and conditionally written.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from airflow_export_providers.core.compat import require_extra
from airflow_export_providers.core.errors import ExportError, ExportInputError
from airflow_export_providers.core.landing import MiB, ObjectWriter, PartSender, StoredObject, Upload, WriteConflict
from airflow_export_providers.core.lineage import static_name
from airflow_export_providers.transfers.base import ExportTransferOperator

AZURE_DEFAULT_BLOCK = 8 * MiB
AZURE_MAX_BLOCKS = 50_000
AZURE_MAX_BLOCK = 4000 * MiB
BLOB_TIERS = ("Hot", "Cool", "Cold", "Archive")
CONTENT_SETTINGS = ("content_type", "content_encoding", "content_language", "content_disposition", "cache_control")
LOAD_OPTIONS = ("content_settings", "metadata", "tags", "standard_blob_tier", "encryption_scope")


def azure_block_size(size: int | None, minimum: int = AZURE_DEFAULT_BLOCK) -> int:
    if not size:
        return minimum
    needed = -(-size // (AZURE_MAX_BLOCKS - 1))
    needed = -(-needed // MiB) * MiB
    return min(max(minimum, needed), AZURE_MAX_BLOCK)


def _str_dict(name: str, value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ExportInputError(f"load_options.{name}: expected a dict of strings to strings, got {value!r}")
    return dict(value)


def blob_options(load_options: Any) -> dict[str, Any]:
    """The Azure SDK keyword arguments every blob of a landing is committed with, or one clear error.

    Accepted keys are those a ``WasbHook.load_file`` user sets for a block blob: ``content_settings``
    (a ``ContentSettings`` or a dict of its fields), ``metadata``, ``tags``, ``standard_blob_tier``
    and ``encryption_scope``.
    """
    from azure.storage.blob import ContentSettings, StandardBlobTier

    if load_options is None:
        return {}
    if not isinstance(load_options, dict):
        raise ExportInputError(f"load_options: expected a dict with keys among {', '.join(LOAD_OPTIONS)}, got {type(load_options).__name__}")
    unknown = [k for k in load_options if k not in LOAD_OPTIONS]
    if unknown:
        raise ExportInputError(f"load_options: {', '.join(map(repr, unknown))} not supported; accepted keys: {', '.join(LOAD_OPTIONS)}")
    out: dict[str, Any] = {}
    settings = load_options.get("content_settings")
    if settings is not None:
        if isinstance(settings, dict):
            wrong = [k for k in settings if k not in CONTENT_SETTINGS]
            if wrong:
                raise ExportInputError(
                    f"load_options.content_settings: {', '.join(map(repr, wrong))} not supported; accepted: {', '.join(CONTENT_SETTINGS)}"
                )
            fields: dict[str, Any] = {k: str(v) for k, v in settings.items()}
            settings = ContentSettings(**fields)
        elif not isinstance(settings, ContentSettings):
            raise ExportInputError(f"load_options.content_settings: expected a dict or ContentSettings, got {type(settings).__name__}")
        out["content_settings"] = settings
    for name in ("metadata", "tags"):
        if load_options.get(name) is not None:
            out[name] = _str_dict(name, load_options[name])
    tier = load_options.get("standard_blob_tier")
    if tier is not None:
        tier = getattr(tier, "value", tier)
        if tier not in BLOB_TIERS:
            raise ExportInputError(f"load_options.standard_blob_tier: {tier!r} not supported; accepted values: {', '.join(BLOB_TIERS)}")
        out["standard_blob_tier"] = StandardBlobTier(tier)
    scope = load_options.get("encryption_scope")
    if scope is not None:
        if not isinstance(scope, str) or not scope.strip():
            raise ExportInputError(f"load_options.encryption_scope: expected the name of an encryption scope, got {scope!r}")
        out["encryption_scope"] = scope
    return out


def _status(exc: Exception) -> tuple[str, int]:
    code = getattr(exc, "error_code", None)
    return str(getattr(code, "value", code) or ""), int(getattr(exc, "status_code", 0) or 0)


class AzureBlobWriter(ObjectWriter):
    """Azure Blob through the Azure provider's WasbHook: staged blocks, one commit at the very end.

    Uncommitted blocks are invisible; a commit replaces the blob atomically. Every upload names its
    blocks with its own random id (all ids of a blob have one length, as Azure requires), so two
    uploads of one blob never mix; the service keeps only the committed list, so the later commit
    of two finds its blocks gone (``InvalidBlockList``) and fails without touching the blob. Blocks
    of an aborted upload are discarded by the service (by the next commit of the blob, or after a week).
    """

    def __init__(self, container: str, wasb_conn_id: str = "wasb_default", *, block_size: int | None = None,
                 service: Any = None, concurrency: int = 2, options: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.concurrency = concurrency
        self.container = container
        self.wasb_conn_id = wasb_conn_id
        self.block_size = max(int(block_size or AZURE_DEFAULT_BLOCK), 1)
        self.options = dict(options or {})
        self._service = service
        self._container_url: str | None = None

    @property
    def service(self) -> Any:
        if self._service is None:
            require_extra("microsoft.azure", "The Azure Blob destination")
            from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

            self._service = WasbHook(wasb_conn_id=self.wasb_conn_id).get_conn()
        return self._service

    def container_url(self) -> str:
        """The container's URL at the service the connection really points at (Azure, or Azurite's
        ``http://127.0.0.1:10000/devstoreaccount1``), without the SAS a client URL may carry."""
        if self._container_url is None:
            parts = urlsplit(str(self.service.primary_endpoint))
            self._container_url = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", "")) + "/" + self.container
        return self._container_url

    def uri(self, key: str) -> str:
        # The blob's URL: where the data is, and an Asset URI every Airflow keeps whole (Airflow 3.0
        # drops the user-info of an Asset URI, the container of wasbs://container@account/...).
        return f"{self.container_url()}/{key}"

    def lineage_namespace(self) -> str:
        """The OpenLineage namespace: ``wasbs://{container}@{host}`` (the Hadoop form other producers
        use) for an account host, the container URL for a path-style endpoint such as Azurite's."""
        parts = urlsplit(self.container_url())
        account_path = parts.path.rsplit("/", 1)[0]
        if account_path:  # http://host:port/{account}/{container}
            return self.container_url()
        return f"wasbs://{self.container}@{parts.netloc}"

    def blob(self, key: str) -> Any:
        return self.service.get_blob_client(container=self.container, blob=key)

    def _begin(self, key: str, size_hint: int | None, part_size: int | None) -> Upload:
        return _AzureUpload(self, self.blob(key), key, azure_block_size(size_hint, int(part_size) if part_size else self.block_size))

    def delete(self, key: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            self.blob(key).delete_blob()
        except ResourceNotFoundError:
            pass

    def read(self, key: str) -> StoredObject | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            downloader = self.blob(key).download_blob()
            return StoredObject(bytes(downloader.readall()), str(downloader.properties.etag))
        except ResourceNotFoundError:
            return None

    def put(self, key: str, data: bytes, *, expect: str | None) -> str:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
        from azure.storage.blob import ContentSettings

        # the manifest stays readable: JSON, and in the account's default tier even when the data is archived
        options = {k: v for k, v in self.options.items() if k != "standard_blob_tier"}
        options["content_settings"] = ContentSettings(content_type="application/json")
        condition: dict[str, Any] = (
            {"overwrite": True, "etag": expect, "match_condition": MatchConditions.IfNotModified} if expect is not None
            else {"overwrite": False}
        )
        try:
            resp = self.blob(key).upload_blob(data, length=len(data), **options, **condition)
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
            raise WriteConflict(f"{self.uri(key)} changed since it was read") from None
        except Exception as exc:
            if _status(exc)[1] == 412:
                raise WriteConflict(f"{self.uri(key)} changed since it was read") from None
            raise
        return str(resp["etag"])


class _AzureUpload(Upload):
    def __init__(self, writer: AzureBlobWriter, blob: Any, key: str, block_size: int) -> None:
        super().__init__(key, writer)
        self.w = writer
        self.blob = blob
        self.block_size = block_size
        self.buf = bytearray()
        self.block_ids: list[str] = []
        self.sender = PartSender(writer.concurrency)
        self.token = uuid.uuid4().hex  # this upload's own block names

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
        # unique per upload, one length for every id of every upload (Azure refuses mixed lengths in a blob)
        block_id = base64.b64encode(f"aep-{self.token}-{len(self.block_ids):08d}".encode()).decode("ascii")
        self.block_ids.append(block_id)
        scope = {"encryption_scope": self.w.options["encryption_scope"]} if "encryption_scope" in self.w.options else {}
        self.sender.submit(self.blob.stage_block, block_id=block_id, data=block, length=len(block), **scope)

    def _finish(self) -> None:
        if self.buf:
            self._stage(bytes(self.buf))
            self.buf = bytearray()
        self.sender.drain()

    def _commit(self) -> None:
        from azure.core.exceptions import HttpResponseError
        from azure.storage.blob import BlobBlock

        if not self.block_ids:
            self.blob.upload_blob(b"", overwrite=True, **self.w.options)  # an empty object: nothing to stage
            return
        try:
            self.blob.commit_block_list([BlobBlock(block_id=b) for b in self.block_ids], **self.w.options)
        except HttpResponseError as exc:
            if _status(exc)[0] == "InvalidBlockList":
                raise ExportError(
                    f"{self.w.uri(self.key)}: another upload of this blob was committed while this one ran, which discarded "
                    "this upload's blocks; the blob holds the other upload, nothing of this one was published"
                ) from None
            raise

    def _abort(self) -> None:
        self.buf = bytearray()
        self.sender.close()
        self.block_ids = []

    def landed_size(self) -> int | None:
        return int(self.blob.get_blob_properties().size)


class ExportToAzureBlobOperator(ExportTransferOperator):
    """Stream every file of an ExportJob into ``{container}/{prefix}/{file name}``, published whole.

    :param export: the ExportJob (``export_task.output``); templated.
    :param container: target container; templated.
    :param prefix: blob name prefix; templated.
    :param wasb_conn_id: the Azure Blob connection used through WasbHook.
    :param convert: None, ``"jsonl"``, ``"csv"`` or ``"parquet"`` (Avro sources only).
    :param decompress: land gzip files inflated.
    :param load_options: blob options for every blob, as ``LocalFilesystemToWasbOperator`` names them:
        ``content_settings`` (dict of ``content_type``, ``content_encoding``, ``content_language``,
        ``content_disposition``, ``cache_control``), ``metadata``, ``tags``, ``standard_blob_tier``
        (``Hot``, ``Cool``, ``Cold``, ``Archive``), ``encryption_scope``; templated.

    Other parameters: see ``ExportTransferOperator``. Returns ``[{"uri", "size", "rows", "file"}, ...]``.
    """

    template_fields: Sequence[str] = ("export", "container", "prefix", "load_options")
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
        load_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        require_extra("microsoft.azure", type(self).__name__)
        super().__init__(export=export, prefix=prefix, convert=convert, decompress=decompress, **kwargs)
        self.container = container
        self.wasb_conn_id = wasb_conn_id
        self.load_options = load_options if load_options is not None else {}
        self.declare_asset({"container": container, "prefix": prefix, "wasb_conn_id": wasb_conn_id})

    @classmethod
    def static_writer(cls, args: Mapping[str, Any]) -> ObjectWriter | None:
        """The container at the connection's service: read while the DAG is parsed, as the URI needs
        the account's real endpoint (pass ``asset=`` to name the Asset without reading it)."""
        container = args.get("container")
        return AzureBlobWriter(str(container), args.get("wasb_conn_id") or "wasb_default") if static_name(container) else None

    def lineage_namespace(self, writer: ObjectWriter) -> str:
        assert isinstance(writer, AzureBlobWriter)
        return writer.lineage_namespace()

    def destination(self) -> str:
        return self.container

    def validate_destination(self) -> None:
        blob_options(self.load_options)

    def make_writer(self) -> ObjectWriter:
        return AzureBlobWriter(self.container, self.wasb_conn_id, block_size=self.part_size, concurrency=self.upload_concurrency,
                               options=blob_options(self.load_options))
