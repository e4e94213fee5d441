"""Operators for Indicative user-segment exports: export one segment (by name or id), list segments."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_export_providers.core.errors import ExportInputError
from airflow_export_providers.core.hook import ExportHook
from airflow_export_providers.core.job import ExportJob
from airflow_export_providers.core.operator import ExportOperator
from airflow_export_providers.hooks.indicative import OUTPUT_FORMATS, SEGMENT_TYPES, IndicativeHook

if TYPE_CHECKING:
    from airflow.sdk import Context


def _describe(seg: dict[str, Any]) -> str:
    return f"{seg.get('name')!r} ({seg.get('type')}, segmentId {seg.get('segmentId')})"


def _norm(name: str) -> str:
    return " ".join(name.split()).casefold()


def resolve_segment(segments: Sequence[dict[str, Any]], ref: str) -> dict[str, Any]:
    """Find the one segment ``ref`` names: a segmentId, else an exact name, else a unique case-insensitive name.

    Users think in names, but Indicative does not keep names unique: two segments with the same
    name fail with both listed (pass the segmentId then); an unknown name fails with the close ones.
    """
    by_id = [s for s in segments if s.get("segmentId") == ref]
    if by_id:
        return by_id[0]
    for candidates in ([s for s in segments if s.get("name") == ref], [s for s in segments if _norm(str(s.get("name"))) == _norm(ref)]):
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1:
            listed = "; ".join(_describe(s) for s in candidates)
            raise ExportInputError(
                f"segment: the name {ref!r} is ambiguous, {len(candidates)} segments match: {listed}. Pass the segmentId instead."
            )
    names = sorted({str(s.get("name")) for s in segments})
    close = difflib.get_close_matches(ref, names, n=5, cutoff=0.6)
    close += [n for n in names if n not in close and _norm(ref) in _norm(n)][: 5 - len(close)]
    if close:
        hint = "close matches: " + "; ".join(_describe(s) for n in close for s in segments if s.get("name") == n)
    else:
        hint = f"the project has {len(segments)} segment(s)" + (f": {', '.join(repr(n) for n in names[:20])}" if names else "")
    raise ExportInputError(f"segment: no segment named {ref!r} or with that segmentId; {hint}")


class IndicativeSegmentExportOperator(ExportOperator):
    """Export one Indicative User Segment and return the finished ExportJob (its file is an ``s3://`` or https result).

    :param segment: a segmentId, or a segment name resolved through the segments list (an unknown or
        ambiguous name fails, listing the close matches). Templated.
    :param output_format: ``csv`` (the only format the Export API documents). Templated.

    The ExportJob's ``extra`` carries ``segment_id``, ``segment_name``, ``segment_type`` (Static /
    Dynamic) and ``last_run``; its one file is the result, read later by the transfer operators.
    """

    hook_class = IndicativeHook
    template_fields: tuple[str, ...] = (*ExportOperator.template_fields, "segment", "output_format")

    def __init__(self, *, segment: str, output_format: str = "csv", poll_interval: float = 30.0, **kwargs: Any) -> None:
        super().__init__(poll_interval=poll_interval, **kwargs)
        self.segment = segment
        self.output_format = output_format

    def validate(self, context: Context) -> None:
        if not isinstance(self.segment, str) or not self.segment.strip():
            raise ExportInputError(f"segment: expected a segment name or segmentId, got {self.segment!r}")
        self.segment = self.segment.strip()
        if self.output_format not in OUTPUT_FORMATS:
            raise ExportInputError(f"output_format: {self.output_format!r} is not supported; accepted: {', '.join(OUTPUT_FORMATS)}")

    def submit_job(self, hook: ExportHook, context: Context) -> str:
        assert isinstance(hook, IndicativeHook)
        seg = resolve_segment(hook.list_segments(), self.segment)
        if seg.get("segmentId") != self.segment:
            self.log.info("Segment %r resolved to %s", self.segment, _describe(seg))
        answer = hook.start_export(str(seg["segmentId"]), self.output_format)
        self.log.info("Indicative export %s of %s started (%s)", answer["exportId"], _describe(seg), answer.get("status"))
        return str(answer["exportId"])

    def complete(self, hook: ExportHook, job: ExportJob, context: Context) -> ExportJob:
        job.extra.setdefault("output_format", self.output_format)
        return job


class IndicativeListSegmentsOperator(BaseOperator):
    """Return the project's User Segments (a list of dicts), e.g. to export each one with ``.expand``.

    :param segment_type: keep only ``Static`` or ``Dynamic`` segments (None = all). Templated.
    :param conn_id: the Indicative connection.
    """

    template_fields: Sequence[str] = ("conn_id", "segment_type")

    def __init__(self, *, conn_id: str = IndicativeHook.default_conn_name, segment_type: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.segment_type = segment_type

    def execute(self, context: Context) -> list[dict[str, Any]]:
        if self.segment_type is not None and self.segment_type not in SEGMENT_TYPES:
            raise ExportInputError(f"segment_type: {self.segment_type!r} is not valid; accepted: {', '.join(SEGMENT_TYPES)} or None")
        segments = IndicativeHook(conn_id=self.conn_id).list_segments()
        if self.segment_type:
            segments = [s for s in segments if s.get("type") == self.segment_type]
        self.log.info("%d segment(s)%s: %s", len(segments), f" of type {self.segment_type}" if self.segment_type else "",
                      ", ".join(_describe(s) for s in segments))
        return segments
