"""Lineage of a landing: one Airflow Asset per destination, and OpenLineage datasets.

An Asset per landed file would add a row to the Assets table for every file of every run; instead a
transfer declares ONE Asset per landing destination when the DAG is parsed (so Airflow registers
it), and every landing emits one event on it whose ``extra`` lists what this run landed. The URI is
the destination and the *static* part of the prefix: what comes before the first template, cut back
to the last ``/`` (``prefix="pond/{{ ds }}"`` -> ``s3://bucket/pond``). The day a run landed, its
files and its manifest are in the event's ``extra``.

OpenLineage sees the same shape: the vendor export as the input (``{vendor}://{host}``, named by the
vendor's job id, which is one export the vendor keeps for a few days), the landing destination as
the output, with the run's rows, bytes and files in its output statistics.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_export_providers.core.errors import ExportInputError

if TYPE_CHECKING:
    from airflow.sdk import Asset

    from airflow_export_providers.core.job import ExportJob
    from airflow_export_providers.core.landing import LandedObject
    from airflow_export_providers.core.manifest import ExportLanding

log = logging.getLogger(__name__)

TEMPLATE_MARKERS = ("{{", "{%", "{#")
EVENT_FILES = 1000  # files listed in an Asset event's extra (the manifest lists them all)
ASSET_RULE = ("None (derived from the destination and the static part of the prefix), False (no Asset), "
              "a URI string or an airflow.sdk.Asset")


def is_static(value: Any) -> bool:
    """A plain string Airflow will not render (no Jinja in it): known when the DAG is parsed."""
    return isinstance(value, str) and not any(m in value for m in TEMPLATE_MARKERS)


def static_name(value: Any) -> bool:
    """A bucket / container name known when the DAG is parsed (and plausible: not empty, no ``/``)."""
    return is_static(value) and bool(value.strip()) and "/" not in value


def static_prefix(prefix: Any) -> str | None:
    """The part of a prefix before its first template, cut back to the last ``/`` ('' is the root).

    ``"pond/{{ ds }}"`` -> ``"pond"``; ``"files/{{ ds }}_x"`` -> ``"files"``; ``"final"`` -> ``"final"``;
    ``"{{ params.p }}"`` -> ``""``. None when the prefix is not a string (an XComArg, say).
    """
    if prefix is None:
        return ""
    if not isinstance(prefix, str):
        return None
    cut = min((prefix.find(m) for m in TEMPLATE_MARKERS if m in prefix), default=-1)
    if cut >= 0:
        prefix = prefix[:cut]
        prefix = prefix[: prefix.rfind("/") + 1] if "/" in prefix else ""
    return prefix.strip("/")


def make_asset(uri: str) -> Asset:
    """An Asset whose name is its normalised URI, so ``Asset("<that uri>")`` downstream is the same one."""
    from airflow.sdk import Asset

    asset = Asset(uri=uri)
    return asset if asset.name == asset.uri else Asset(name=asset.uri, uri=asset.uri)


def resolve_asset(asset: Any, derive: Callable[[], str | None], what: str) -> Asset | None:
    """The Asset a transfer declares: the one given, none (``False``), or one derived from the destination.

    ``derive`` returns the destination URI, or None when the destination is templated; a derivation
    that fails (an Azure connection that cannot be read while parsing) declares no Asset and says why.
    """
    from airflow.sdk import Asset

    if asset is False:
        return None
    if isinstance(asset, Asset):
        return asset
    if isinstance(asset, str):
        if not asset.strip() or not is_static(asset):
            raise ExportInputError(f"asset: expected a URI known when the DAG is parsed (not templated, not empty), got {asset!r}")
        return make_asset(asset)
    if asset is not None and asset is not True:
        raise ExportInputError(f"asset: expected {ASSET_RULE}; got {type(asset).__name__}")
    try:
        uri = derive()
    except Exception as exc:
        from airflow_export_providers.core.redact import redact_text

        log.warning("%s: no Asset declared, the destination's URI could not be derived (%s); pass asset='<uri>' "
                    "to name one, or asset=False", what, redact_text(exc))
        return None
    return make_asset(uri) if uri else None


def same_asset(a: Any, b: Any) -> bool:
    return getattr(a, "name", None) == getattr(b, "name", None) and getattr(a, "uri", None) == getattr(b, "uri", None)


def with_outlet(outlets: Iterable[Any], asset: Any) -> list[Any]:
    """``outlets`` with ``asset`` added once."""
    outlets = list(outlets or [])
    if asset is not None and not any(same_asset(o, asset) for o in outlets):
        outlets.append(asset)
    return outlets


def event_extra(job: ExportJob, landed: list[LandedObject], landing: ExportLanding) -> dict[str, Any]:
    """What one landing tells the consumers of its Asset (JSON): the committed export, where and from which vendor job.

    It describes the export as the manifest holds it after ``landing.commit()``: the same files
    (key, size, rows, sha256), the manifest's part and the landing id of that part. A consumer that
    reads the manifest later can tell whether the prefix still holds this export (the part's
    ``landing_id`` is the event's) or a later landing replaced it.
    """
    rows = [o.rows for o in landed]
    committed = landing.committed
    return {
        "vendor": job.vendor,
        "job_id": job.job_id,
        "conn_id": job.conn_id,
        "prefix": landing.prefix,
        "manifest": landing.uri,
        "part": landing.part,
        "landing_id": committed.landing_id if committed is not None else None,
        "committed_at": committed.committed_at if committed is not None else None,
        "file_count": len(landed),
        "bytes": sum(o.size for o in landed),
        "rows": sum(r for r in rows if r is not None) if all(r is not None for r in rows) else None,
        "files": [{"uri": o.uri, "key": o.key, "file": o.file, "size": o.size, "rows": o.rows, "sha256": o.sha256}
                  for o in landed[:EVENT_FILES]],
        "files_complete": len(landed) <= EVENT_FILES,
    }


# ---- OpenLineage --------------------------------------------------------------------------------
def vendor_namespace(vendor: str, base_url: str) -> str:
    """``{vendor}://{host[:port]}`` of the vendor's API (a URI scheme cannot hold ``_``)."""
    return f"{vendor.replace('_', '-')}://{urlsplit(base_url).netloc}"


def export_input(vendor: str, base_url: str, job_id: str, files: list[Any] | None = None) -> Any:
    """The OpenLineage input dataset of a vendor export: namespace the vendor's host, name its job id."""
    from airflow.providers.common.compat.openlineage.facet import InputDataset

    facets: dict[str, Any] = {}
    if files:
        from openlineage.client.generated.input_statistics_input_dataset import InputStatisticsInputDatasetFacet

        sizes = [f.size for f in files]
        rows = [f.rows for f in files]
        facets["inputStatistics"] = InputStatisticsInputDatasetFacet(
            rowCount=sum(rows) if all(r is not None for r in rows) else None,
            size=sum(sizes) if all(s is not None for s in sizes) else None,
            fileCount=len(files),
        )
    return InputDataset(namespace=vendor_namespace(vendor, base_url), name=str(job_id), inputFacets=facets)


def external_job_facets(vendor: str, base_url: str, job_id: str) -> dict[str, Any]:
    """The run facet naming the vendor job this task run worked on."""
    from airflow.providers.common.compat.openlineage.facet import ExternalQueryRunFacet

    return {"externalQuery": ExternalQueryRunFacet(externalQueryId=str(job_id), source=vendor_namespace(vendor, base_url))}


def landing_output(namespace: str, name: str, landed: list[LandedObject]) -> Any:
    """The OpenLineage output dataset of a landing: the destination's static prefix, with this run's statistics."""
    from airflow.providers.common.compat.openlineage.facet import OutputDataset, OutputStatisticsOutputDatasetFacet

    rows = [o.rows for o in landed]
    stats = OutputStatisticsOutputDatasetFacet(
        rowCount=sum(r for r in rows if r is not None) if all(r is not None for r in rows) else None,
        size=sum(o.size for o in landed),
        fileCount=len(landed),
    )
    return OutputDataset(namespace=namespace, name=name or "/", outputFacets={"outputStatistics": stats})


def split_uri(uri: str) -> tuple[str, str]:
    """``scheme://authority`` and the path after it (``s3://bucket/a/b`` -> ``("s3://bucket", "a/b")``)."""
    scheme, _, rest = uri.partition("://")
    authority, _, path = rest.partition("/")
    return f"{scheme}://{authority}", path

