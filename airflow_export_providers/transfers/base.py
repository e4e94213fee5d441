"""Shared base of the transfer operators: ExportJob in, landed objects out (S3 or Azure Blob).

Each file is opened through its vendor hook (rebuilt from the job's ``hook_class`` / ``conn_id`` /
``hook_kwargs``), streamed through ``core.landing.stage_file`` towards ``{prefix}/{file name}`` and
left staged (invisible) once it verified. When every file is staged, ``core.manifest`` publishes the
export whole: the files, the removal of the previous export's other files, and the manifest last.
Then Assets are emitted for the landed objects and a watermark the job carries is committed. On any
failure nothing of this export is published and the watermark stays where it was.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator

from airflow_export_providers.core.compat import task_state
from airflow_export_providers.core.errors import ExportError, ExportInputError
from airflow_export_providers.core.hook import ExportHook, import_hook
from airflow_export_providers.core.job import ExportFile, ExportJob, JobState
from airflow_export_providers.core.landing import (
    CONVERT_FORMATS,
    LandedObject,
    ObjectWriter,
    landed_name,
    object_key,
    stage_file,
    validate_convert,
)
from airflow_export_providers.core.manifest import MANIFEST_NAME, ExportLanding
from airflow_export_providers.core.redact import redact_text
from airflow_export_providers.core.validate import positive_int
from airflow_export_providers.core.watermark import check_unmoved, commit_watermark

if TYPE_CHECKING:
    from airflow.sdk import Context

ACCEPTED_CONVERT = "None, " + ", ".join(repr(f) for f in CONVERT_FORMATS)
UPLOADS_KEY = "export_landing_uploads"


class StoreTracker:
    """Keeps the server-side uploads a try has open in the task instance's store.

    A try killed with SIGKILL cannot abort its S3 multipart uploads; its retry reads this list and
    aborts exactly those — never an upload another run has open for the same key. The store is
    ``task_state_store`` on Airflow 3.3, the Variable fallback of ``core.compat.task_state`` below it.
    """

    def __init__(self, store: Any) -> None:
        self.store = store
        self.open: list[list[str]] = []

    def left_over(self) -> list[tuple[str, str]]:
        raw = self.store.get(UPLOADS_KEY) if self.store is not None else None
        if not isinstance(raw, list):
            return []
        return [(str(e[0]), str(e[1])) for e in raw if isinstance(e, list) and len(e) == 2]

    def started(self, key: str, token: str) -> None:
        self.open.append([key, token])
        self._save()

    def ended(self, key: str, token: str) -> None:
        # not saved at once: an entry left behind only costs an abort that finds nothing
        self.open = [e for e in self.open if e != [key, token]]

    def _save(self) -> None:
        if self.store is None:
            return
        if self.open:
            self.store.set(UPLOADS_KEY, [list(e) for e in self.open])
        else:
            self.store.delete(UPLOADS_KEY)

    def close(self) -> None:
        self._save()


def landing_identity(context: Any) -> dict[str, Any]:
    """Who lands (recorded in the manifest): the task instance, and which try."""
    ti = context.get("ti") if context else None
    if ti is None:
        return {}
    return {name: getattr(ti, name, None) for name in ("dag_id", "task_id", "run_id", "map_index", "try_number")}


def parse_export(value: Any) -> ExportJob:
    """An ExportJob from what an export operator returned (dict, or its JSON), or one clear error."""
    if isinstance(value, ExportJob):
        return value
    if isinstance(value, (str, bytes)):
        try:
            value = json.loads(value)
        except ValueError:
            raise ExportInputError(
                "export: expected an ExportJob (the XCom of an export operator, e.g. export=job_task.output), "
                f"got a string that is not JSON: {redact_text(str(value)[:80])!r}"
            ) from None
    try:
        return ExportJob.from_dict(value)
    except (TypeError, ValueError, KeyError) as exc:
        raise ExportInputError(
            f"export: expected an ExportJob dict (the XCom of an export operator, e.g. export=job_task.output); {redact_text(exc)}"
        ) from None


class ExportTransferOperator(BaseOperator):
    """Land every file of an ExportJob in object storage (base of the S3 and Azure Blob operators).

    :param export: the ExportJob (``export_task.output``, or its dict); templated.
    :param prefix: key prefix; objects land at ``{prefix}/{file name}``; templated.
    :param convert: None (bytes as they are), ``"jsonl"``, ``"csv"`` or ``"parquet"`` (Avro sources only).
    :param decompress: land gzip files inflated (``.gz`` dropped from the name).
    :param order: resources to land first, in this order (e.g. MX ``["users", "members", "accounts",
        "transactions"]``); other files follow in the job's order.
    :param part_size: minimum multipart part / block size in bytes (default 8 MiB; raised for big files).
    :param batch_rows: rows per write when converting (and per Parquet row group by default).
    :param row_group_rows: Parquet row-group size limit in rows.
    :param upload_concurrency: parts / blocks uploaded at the same time while the next one downloads
        (memory: about ``upload_concurrency + 1`` parts).
    :param asset_alias: name of the AssetAlias the landed objects are emitted under (default
        ``export-landing/{dag_id}/{task_id}``); False turns Asset events off.
    :param count_rows: False skips counting rows (and so the row-count check) — size and checksum
        are still verified. The way out when a vendor's row count means something else than the
        records in its file.
    """

    template_fields: Sequence[str] = ("export", "prefix")
    ui_color = "#e6f5e6"
    destination_field: ClassVar[str] = ""

    def __init__(
        self,
        *,
        export: Any,
        prefix: str = "",
        convert: str | None = None,
        decompress: bool = False,
        order: list[str] | None = None,
        part_size: int | None = None,
        batch_rows: int = 10_000,
        row_group_rows: int | None = None,
        upload_concurrency: int = 2,
        asset_alias: str | bool | None = None,
        count_rows: bool = True,
        **kwargs: Any,
    ) -> None:
        alias_name: str | None = None
        if asset_alias is not False:
            alias_name = asset_alias if isinstance(asset_alias, str) else None
        super().__init__(**kwargs)
        self.export = export
        self.prefix = prefix
        self.convert = convert
        self.decompress = decompress
        self.order = list(order) if order else None
        self.part_size = part_size
        self.batch_rows = batch_rows
        self.row_group_rows = row_group_rows
        self.upload_concurrency = upload_concurrency
        self.count_rows = count_rows
        self.asset_alias: str | None = None
        if asset_alias is not False:
            from airflow.sdk import AssetAlias

            dag_id = self.dag_id if self.has_dag() else "no-dag"
            self.asset_alias = alias_name or f"export-landing/{dag_id}/{self.task_id}"
            self.outlets = [*self.outlets, AssetAlias(self.asset_alias)]
        self.landed: list[LandedObject] = []
        self.manifest_uri: str | None = None
        self._writer: ObjectWriter | None = None

    # ---- what a destination provides ----------------------------------------------------------
    def destination(self) -> str:
        """The rendered bucket / container name."""
        raise NotImplementedError

    def make_writer(self) -> ObjectWriter:
        raise NotImplementedError

    def validate_destination(self) -> None:
        """Check the destination's own rendered options (encryption, ACL, blob options)."""

    # ---- input -------------------------------------------------------------------------------
    def validate(self) -> ExportJob:
        """Check every rendered parameter before anything is opened or written."""
        validate_convert(self.convert)
        if not isinstance(self.decompress, bool):
            raise ExportInputError(f"decompress: expected True or False, got {self.decompress!r}")
        if not isinstance(self.count_rows, bool):
            raise ExportInputError(f"count_rows: expected True or False, got {self.count_rows!r}")
        dest = self.destination()
        if not isinstance(dest, str) or not dest.strip() or "/" in dest:
            raise ExportInputError(
                f"{self.destination_field}: expected a {self.destination_field} name (no slashes, not empty), got {dest!r}"
            )
        if self.prefix is not None and not isinstance(self.prefix, str):
            raise ExportInputError(f"prefix: expected a string, got {type(self.prefix).__name__}")
        self.validate_destination()
        if self.order is not None and not all(isinstance(o, str) for o in self.order):
            raise ExportInputError(f"order: expected a list of resource names, got {self.order!r}")
        for name, value in (("part_size", self.part_size), ("batch_rows", self.batch_rows), ("row_group_rows", self.row_group_rows),
                            ("upload_concurrency", self.upload_concurrency)):
            if value is not None:
                positive_int(value, name)
        job = parse_export(self.export)
        if job.state != JobState.SUCCESS:
            raise ExportInputError(f"export: job {job.job_id} is {job.state.value} ({job.raw_state}); only a SUCCESS job can be landed")
        if not job.hook_class:
            raise ExportInputError("export: the ExportJob has no hook_class; pass the XCom of an export operator of this package")
        if self.convert:
            wrong = [f"{f.name} ({f.row_format})" for f in job.files if f.row_format not in (None, "avro")]
            if wrong:
                raise ExportInputError(
                    f"convert={self.convert!r}: {', '.join(wrong[:5])} not Avro; convert accepts Avro sources only "
                    f"(accepted values: {ACCEPTED_CONVERT}) — use convert=None to land these files as they are"
                )
        manifest = object_key(self.prefix, MANIFEST_NAME)
        keys: dict[str, str] = {manifest: "<the landing manifest>"}
        for f in job.files:
            try:
                key = self.key_for(f)
            except ExportInputError as exc:
                raise ExportInputError(f"export: job {job.job_id}: {exc}") from None
            if key in keys:
                raise ExportError(f"export: files {keys[key]!r} and {f.name!r} would both land at {key!r}; refusing to overwrite one with the other")
            keys[key] = f.name
        return job

    def key_for(self, file: ExportFile) -> str:
        gzip = file.compression == "gzip" if file.compression else None
        return object_key(self.prefix, landed_name(file.name, convert=self.convert, decompress=self.decompress, gzip=gzip))

    def ordered(self, files: list[ExportFile]) -> list[ExportFile]:
        """Files whose resource is in ``order`` first, in that order; the rest keep the job's order."""
        if not self.order:
            return list(files)
        rank = {name: i for i, name in enumerate(self.order)}
        return sorted(files, key=lambda f: rank.get(f.resource or "", len(rank)))

    # ---- run ---------------------------------------------------------------------------------
    def execute(self, context: Context) -> list[dict[str, Any]]:
        job = self.validate()
        check_unmoved(job.watermark)  # before anything is written: another run may have landed this range
        self.landed = self.land(context, job)
        self.emit_assets(context, job)
        if job.watermark is not None:
            commit_watermark(job.watermark)
        return [obj.to_xcom() for obj in self.landed]

    def land(self, context: Context, job: ExportJob) -> list[LandedObject]:
        """Stage every file, then publish the export whole (``core.manifest``); nothing is published on failure."""
        writer = self._writer = self.make_writer()
        tracker = StoreTracker(task_state(context) if context else None)
        left = tracker.left_over()
        if left:
            self.log.info("aborting %d upload(s) an earlier try of this task left open", len(left))
            writer.abort_left_over(left)
        writer.tracker = tracker
        landing = ExportLanding(writer, self.prefix, by=landing_identity(context), export={"vendor": job.vendor, "job_id": job.job_id})
        self.manifest_uri = landing.uri
        hooks: dict[str, ExportHook] = {}
        files = self.ordered(job.files)
        self.log.info("Landing %d file(s) of %s job %s into %s", len(files), job.vendor, job.job_id, writer.uri(f"{(self.prefix or '').strip('/')}/".lstrip("/")))
        try:
            landing.open()
            for file in files:
                hook = hooks.get(file.conn_id or job.conn_id)
                if hook is None:
                    hook = hooks[file.conn_id or job.conn_id] = self.make_hook(job, file)
                landing.add(stage_file(
                    hook, file, writer, key=self.key_for(file), convert=self.convert, decompress=self.decompress,
                    part_size=self.part_size, batch_rows=self.batch_rows, row_group_rows=self.row_group_rows,
                    count_rows=self.count_rows,
                ))
            return landing.commit()
        except BaseException:
            landing.abort()
            raise
        finally:
            tracker.close()
            for hook in hooks.values():
                hook.close()

    def make_hook(self, job: ExportJob, file: ExportFile) -> ExportHook:
        assert job.hook_class
        try:
            cls = import_hook(job.hook_class)
        except (ImportError, ValueError) as exc:
            raise ExportInputError(f"export: hook_class {job.hook_class!r} cannot be used: {redact_text(exc)}") from None
        hook: ExportHook = cls(conn_id=file.conn_id or job.conn_id, **job.hook_kwargs)
        return hook

    # ---- lineage -----------------------------------------------------------------------------
    def emit_assets(self, context: Context, job: ExportJob) -> None:
        """One Asset event per landed object, under this task's AssetAlias."""
        if not self.asset_alias or not self.landed:
            return
        from airflow.sdk import Asset, AssetAlias

        events = context.get("outlet_events")
        if events is None:
            return
        alias = events[AssetAlias(self.asset_alias)]
        for obj in self.landed:
            extra: dict[str, Any] = {"vendor": job.vendor, "job_id": job.job_id, "file": obj.file, "size": obj.size, "rows": obj.rows}
            alias.add(Asset(uri=obj.uri, name=obj.uri), extra=extra)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Output datasets for OpenLineage, when its provider is installed (None otherwise)."""
        try:
            from airflow.providers.common.compat.openlineage.facet import Dataset
            from airflow.providers.openlineage.extractors import OperatorLineage
        except ImportError:
            return None
        outputs = []
        for obj in self.landed:
            scheme, _, rest = obj.uri.partition("://")
            authority, _, path = rest.partition("/")  # bucket, or container@account host
            outputs.append(Dataset(namespace=f"{scheme}://{authority}", name=path))
        return OperatorLineage(inputs=[], outputs=outputs)

    def on_kill(self) -> None:
        """Abort the uploads in progress and staged: nothing of the export is published, no upload stays open.

        (A SIGKILLed worker cannot clean up; the retry aborts the uploads it recorded, see StoreTracker.)
        """
        if self._writer is not None and self._writer.active:
            self.log.warning("killed while landing: aborting %d upload(s) in progress", len(self._writer.active))
            self._writer.abort_all()
