"""Shared base of the transfer operators: ExportJob in, landed objects out (S3 or Azure Blob).

Each file is opened through its vendor hook (rebuilt from the job's ``hook_class`` / ``conn_id`` /
``hook_kwargs``), streamed through ``core.landing.stage_file`` towards ``{prefix}/{file name}`` and
left staged (invisible) once it verified. When every file is staged, ``core.manifest`` publishes the
export whole: the files, the removal of the previous export's other files (and of the task's map
indexes this run no longer has), and the manifest last.
Then one event is emitted on the destination's Asset (``core.lineage``) and a watermark the job
carries is committed. On any failure nothing of this export is published and the watermark stays
where it was.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
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
from airflow_export_providers.core.lineage import (
    event_extra,
    export_input,
    external_job_facets,
    landing_output,
    resolve_asset,
    split_uri,
    static_prefix,
    with_outlet,
)
from airflow_export_providers.core.manifest import MANIFEST_NAME, ExportLanding
from airflow_export_providers.core.redact import redact_text
from airflow_export_providers.core.validate import positive_int
from airflow_export_providers.core.watermark import check_unmoved, commit_watermark

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger(__name__)
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


def live_map_indexes(context: Any) -> range | None:
    """The map indexes the landing task has in this run: ``range(-1, 0)`` when it is not mapped, else
    ``0 .. n-1`` for its n mapped instances that are not ``removed`` (a re-run expanded to fewer marks
    the rest removed). The manifest retires the task's parts under any other index. None when Airflow
    cannot say (no task instance, or the count failed): then no part is retired."""
    ti = context.get("ti") if context else None
    if ti is None or getattr(ti, "dag_id", None) is None:
        return None
    if getattr(ti, "map_index", -1) in (None, -1):
        return range(-1, 0)
    count = getattr(ti, "get_ti_count", None)
    if count is None:
        return None
    where = {"dag_id": ti.dag_id, "task_ids": [ti.task_id], "run_ids": [ti.run_id]}
    try:
        live = int(count(**where)) - int(count(**where, states=["removed"]))
    except Exception as exc:  # an API server that cannot count: keep every part rather than guess
        log.warning("could not count the mapped instances of %s (%s); parts of map indexes this run no longer has "
                    "stay in the manifest", ti.task_id, redact_text(str(exc)))
        return None
    return range(max(live, ti.map_index + 1))


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
    :param asset: the Asset every landing emits one event on (declared as an outlet when the DAG is
        parsed). None (default): derived from the destination and the static part of the prefix —
        what comes before the first template, cut back to the last ``/`` (``s3://raw/pond`` for
        ``bucket="raw", prefix="pond/{{ ds }}"``); no Asset when the bucket / container is templated.
        A URI string or an ``airflow.sdk.Asset`` names it; False declares none. Not templated.
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
        asset: Any = None,
        count_rows: bool = True,
        **kwargs: Any,
    ) -> None:
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
        self.asset_arg = asset
        self.prefix_arg = prefix  # as written in the DAG (``prefix`` is rendered before execute)
        self.asset: Any = None
        self.landed: list[LandedObject] = []
        self.manifest_uri: str | None = None
        self._landing: ExportLanding | None = None
        self._writer: ObjectWriter | None = None
        self._job: ExportJob | None = None
        self._published = False

    # ---- the Asset (parse time) --------------------------------------------------------------
    @classmethod
    def static_writer(cls, args: Mapping[str, Any]) -> ObjectWriter | None:
        """A writer for the destination the DAG names (``args``: the operator's arguments as written),
        None when it is templated. Only its ``uri()`` is used."""
        raise NotImplementedError

    @classmethod
    def destination_uri(cls, args: Mapping[str, Any]) -> str | None:
        """The landing destination's stable URI: the destination and the static part of the prefix."""
        static = static_prefix(args.get("prefix", ""))
        writer = cls.static_writer(args)
        if writer is None or static is None:
            return None
        return writer.uri(static)

    def declare_asset(self, args: Mapping[str, Any]) -> None:
        """Resolve ``asset`` while the DAG is parsed and add it to the outlets (a destination's
        ``__init__`` calls this last, with its arguments)."""
        self.asset = resolve_asset(self.asset_arg, lambda: self.destination_uri(args), f"{type(self).__name__} {self.task_id!r}")
        self.outlets = with_outlet(self.outlets, self.asset)

    @classmethod
    def partial(cls, **kwargs: Any) -> Any:  # type: ignore[override]
        """A mapped transfer declares its Asset from the arguments given to ``partial`` (a mapped
        destination or prefix counts as templated); every mapped task instance emits on it."""
        asset = resolve_asset(kwargs.get("asset"), lambda: cls.destination_uri(kwargs), f"{cls.__name__} {kwargs.get('task_id')!r}")
        outlets = kwargs.get("outlets")
        outlets = list(outlets) if isinstance(outlets, (list, tuple)) else ([] if outlets is None else [outlets])
        kwargs["outlets"] = with_outlet(outlets, asset)
        kwargs["asset"] = asset if asset is not None else False  # each mapped instance takes it as it is
        return super().partial(**kwargs)

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
        job = self._job = self.validate()
        check_unmoved(job.watermark)  # before anything is written: another run may have landed this range
        self.landed = self.land(context, job)
        self._published = True
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
        landing = ExportLanding(writer, self.prefix, by=landing_identity(context), export={"vendor": job.vendor, "job_id": job.job_id},
                                live_indexes=live_map_indexes(context))
        self.manifest_uri = landing.uri
        self._landing = landing
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
        """The landing's event on the destination's Asset: what landed, the manifest, the vendor job."""
        if self.asset is None:
            if self.asset_arg is None:
                self.log.info("No Asset declared: the destination is templated; pass asset='<uri>' to name one")
            return
        events = context.get("outlet_events") if context else None
        if events is None or self._landing is None:
            return
        events[self.asset].extra.update(event_extra(job, self.landed, self._landing))

    def lineage_namespace(self, writer: ObjectWriter) -> str:
        """The OpenLineage namespace of the destination (``s3://bucket``)."""
        return split_uri(writer.uri(""))[0]

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the vendor export in, the landing destination (its static prefix) out.

        One output dataset per destination, not per file, for the reason the Asset is one: the
        files change every run, the destination does not. The run's rows, bytes and files are the
        output statistics; the run facet ``externalQuery`` names the vendor job. A landing that
        failed published nothing: no output. None without the OpenLineage provider.
        """
        try:
            from airflow.providers.openlineage.extractors import OperatorLineage
        except ImportError:
            return None
        job = self._job
        if job is None:
            return OperatorLineage()
        base_url = ""
        if job.hook_class:
            try:
                base_url = import_hook(job.hook_class)(conn_id=job.conn_id, **job.hook_kwargs).base_url
            except Exception as exc:
                self.log.warning("OpenLineage: the vendor host of %s is unknown: %s", job.conn_id, redact_text(exc))
        outputs = []
        writer = self._writer
        if self._published and writer is not None:
            static = static_prefix(self.prefix_arg)
            name = static if static is not None else (self.prefix or "").strip("/")
            outputs.append(landing_output(self.lineage_namespace(writer), name, self.landed))
        return OperatorLineage(
            inputs=[export_input(job.vendor, base_url, job.job_id, job.files)],
            outputs=outputs,
            run_facets=external_job_facets(job.vendor, base_url, job.job_id),
        )

    def on_kill(self) -> None:
        """Abort the uploads in progress and staged: nothing of the export is published, no upload stays open.

        (A SIGKILLed worker cannot clean up; the retry aborts the uploads it recorded, see StoreTracker.)
        """
        if self._writer is not None and self._writer.active:
            self.log.warning("killed while landing: aborting %d upload(s) in progress", len(self._writer.active))
            self._writer.abort_all()
