"""Apache Airflow provider for asynchronous vendor export APIs (MX, SGI POND, Indicative, Leanplum,
Azure Mobile Engagement), landing the files in S3 or Azure Blob."""

from __future__ import annotations

import importlib.util
from typing import Any

__version__ = "0.1.0"

PACKAGE = "airflow_export_providers"
VENDORS = ("mx", "pond", "indicative", "leanplum", "mobile_engagement")

_STR = {"type": ["string", "null"]}


def _field(label: str, description: str = "", example: str | None = None, secret: bool = False) -> dict[str, Any]:
    """A conn-field as Airflow reads it: label, description and a JSON schema.

    Airflow 3.2+ turns the schema's ``examples`` into the input's suggestions ("Start typing to see
    options"); the example also goes into ``ui-field-behaviour.placeholders`` (see ``_behaviour``).
    """
    schema: dict[str, Any] = dict(_STR)
    if secret:
        schema["format"] = "password"
    if example:
        schema["examples"] = [example]
        if example not in description:  # the form shows descriptions as they are: the hint is visible at once
            description = f"{description} (e.g. {example})" if description else f"e.g. {example}"
    field: dict[str, Any] = {"label": label, "schema": schema}
    if description:
        field["description"] = description
    return field


#: Extras every vendor connection understands (core/hook.py reads them), with their defaults as examples.
COMMON_FIELDS: dict[str, dict[str, Any]] = {
    "timeout": _field("Timeout (seconds)", "Read timeout of each vendor call; default 60", "60"),
    "retry_max_attempts": _field("Retry: max attempts", "Attempts of a call on 429, 5xx and network errors; default 5", "5"),
    "retry_backoff_base": _field("Retry: backoff base (seconds)", "First wait of the jittered exponential backoff (Retry-After wins); default 1", "1"),
    "retry_backoff_max": _field("Retry: backoff max (seconds)", "Longest wait between two attempts; default 60", "60"),
    "ca_bundle": _field("CA bundle", "CA file for a private CA or a TLS-inspecting proxy; verification stays on", "/etc/ssl/certs/corp-ca.pem"),
}


def _connection(conn_type: str, hook: str, name: str, relabeling: dict[str, str], placeholders: dict[str, str],
                fields: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One connection type: its own fields, then the common ones; every example is also a placeholder."""
    conn_fields = {**fields, **COMMON_FIELDS}
    extra_placeholders = {key: f["schema"]["examples"][0] for key, f in conn_fields.items() if f["schema"].get("examples")}
    return {
        "connection-type": conn_type,
        "hook-class-name": f"{PACKAGE}.hooks.{hook}",
        "hook-name": name,
        "ui-field-behaviour": {
            "hidden-fields": ["schema", "port"],
            "relabeling": relabeling,
            "placeholders": {**placeholders, **extra_placeholders},
        },
        "conn-fields": conn_fields,
    }


CONNECTION_TYPES: list[dict[str, Any]] = [
    _connection(
        "mx_snapshots", "mx.MxSnapshotsHook", "MX Snapshots",
        {"login": "Client ID", "password": "API key", "host": "API base URL"},
        {"host": "https://logs.moneydesktop.com", "login": "your MX client id", "password": "MX API key"},
        {
            "auth_style": _field("Auth style", "md-api-key (Reporting API header) or basic (Platform API)", "md-api-key"),
            "list_path": _field("Listing path template", "Lists a snapshot's files by GUID", "/snapshots/{guid}/files"),
            "download_path": _field("Download path template", "Used when the listing returns file names, not URLs", "/snapshots/{guid}/files/{name}"),
            "files_key": _field("Listing files key", "Key of the list of files when the listing holds several lists", "files"),
        },
    ),
    _connection(
        "pond", "pond.PondHook", "SGI POND",
        {"login": "Client ID", "password": "Client secret", "host": "API base URL"},
        {"host": "https://api.sgipond.com", "login": "OAuth client_id", "password": "OAuth client_secret"},
        {
            "token_url": _field("Token URL", "OAuth2 client-credentials endpoint", "https://sgipond.auth.us-west-2.amazoncognito.com/oauth2/token"),
            "scope": _field("Scope", "OAuth2 scope", "pond/insights.snapshots"),
        },
    ),
    _connection(
        "indicative", "indicative.IndicativeHook", "Indicative (mParticle Analytics)",
        {"login": "API key", "password": "Access token", "host": "API base URL"},
        {"host": "https://query.indicative.com", "login": "project API key", "password": "access token"},
        {"aws_conn_id": _field("AWS connection for s3:// results", "Reads result files given as s3:// URIs", "aws_default")},
    ),
    _connection(
        "leanplum", "leanplum.LeanplumHook", "Leanplum",
        {"login": "App ID", "password": "Data export key (clientKey)", "host": "API base URL"},
        {"host": "https://api.leanplum.com", "login": "app_...", "password": "exp_..."},
        {
            "api_version": _field("API version", "Leanplum apiVersion parameter", "1.0.6"),
            "quota_retry_seconds": _field(
                "Quota retry (seconds)", "After a 24-exports-a-day refusal, try again after this long at most", "3600"
            ),
        },
    ),
    _connection(
        "azure_mobile_engagement", "mobile_engagement.MobileEngagementHook", "Azure Mobile Engagement",
        {"login": "Client ID", "password": "Client secret", "host": "ARM base URL"},
        {"host": "https://management.azure.com", "login": "AAD application (client) id", "password": "client secret"},
        {
            "tenant_id": _field("Tenant ID", "Azure AD tenant", "00000000-0000-0000-0000-000000000000"),
            "subscription_id": _field("Subscription ID", "Azure subscription of the app collection", "00000000-0000-0000-0000-000000000000"),
            "resource_group": _field("Resource group", "Resource group of the app collection", "my-rg"),
            "app_collection": _field("App collection", "Mobile Engagement app collection", "my-app-collection"),
            "app_name": _field("App name", "Mobile Engagement app resource name", "my-app"),
            "authority_host": _field("Authority host", "Azure AD authority", "https://login.microsoftonline.com"),
            "blob_prefix": _field("Blob prefix template", "Where the service writes a task's blobs: {task_id}, {export_type}, {description}", "{task_id}/"),
        },
    ),
]

#: vendor module -> (integration name, the vendor's own API documentation)
INTEGRATIONS: dict[str, tuple[str, str]] = {
    "mx": ("MX Snapshots", "https://docs.mx.com/api-reference/more-apis/reporting/"),
    "pond": ("SGI POND", "https://docs.sgipond.com/api/snapshots.html"),
    "indicative": (
        "Indicative (mParticle Analytics)",
        "https://docs.mparticle.com/guides/analytics-deprecated/developer-docs/apis/user-segments-export-api",
    ),
    "leanplum": ("Leanplum", "https://docs.leanplum.com/docs/exporting-raw-data-via-the-api"),
    "mobile_engagement": (
        "Azure Mobile Engagement",
        "https://github.com/Azure/azure-rest-api-specs/tree/main/specification/mobileengagement/resource-manager",
    ),
}
DESTINATIONS = {
    "export_to_s3": "Amazon Simple Storage Service (S3)",
    "export_to_azure_blob": "Microsoft Azure Blob Storage",
}


def _docs_url() -> str:
    """Where our docs live: the Documentation URL of the installed distribution, else the repository's docs/ path."""
    from importlib import metadata

    try:
        for entry in metadata.metadata("airflow-export-providers").get_all("Project-URL") or []:
            label, _, url = entry.partition(",")
            if label.strip().lower() == "documentation":
                return url.strip().rstrip("/")
    except metadata.PackageNotFoundError:
        pass
    return "docs"


def _existing(kind: str) -> list[str]:
    """Modules of ``kind`` that exist in this install."""
    if kind == "transfers":
        names = [f"{PACKAGE}.transfers.{m}" for m in DESTINATIONS]
    elif kind == "triggers":
        names = [f"{PACKAGE}.triggers.export_job"]
    else:
        names = [f"{PACKAGE}.{kind}.{v}" for v in VENDORS]
    return [n for n in names if importlib.util.find_spec(n) is not None]


def _per_vendor(kind: str) -> list[dict[str, Any]]:
    found = set(_existing(kind))
    return [
        {"integration-name": INTEGRATIONS[v][0], "python-modules": [f"{PACKAGE}.{kind}.{v}"]}
        for v in VENDORS if f"{PACKAGE}.{kind}.{v}" in found
    ]


def get_provider_info() -> dict[str, Any]:
    """What Airflow's ProvidersManager reads (entry point ``apache_airflow_provider``), in the shape of provider.yaml."""
    docs = _docs_url()
    hook_modules = set(_existing("hooks"))
    return {
        "package-name": "airflow-export-providers",
        "name": "Vendor export APIs",
        "description": "Bulk exports from MX, SGI POND, Indicative, Leanplum and Azure Mobile Engagement into S3 or Azure Blob.",
        "versions": [__version__],
        "integrations": [
            {"integration-name": name, "external-doc-url": url, "how-to-guide": [f"{docs}/{vendor}.md"], "tags": ["service"]}
            for vendor, (name, url) in INTEGRATIONS.items()
        ],
        "hooks": _per_vendor("hooks"),
        "operators": _per_vendor("operators"),
        "sensors": _per_vendor("sensors"),
        # One trigger serves every vendor (it imports the vendor's hook by path), so it is listed under each.
        "triggers": [
            {"integration-name": name, "python-modules": _existing("triggers")} for name, _ in INTEGRATIONS.values()
        ],
        "transfers": [
            {"source-integration-name": name, "target-integration-name": DESTINATIONS[m.rsplit(".", 1)[1]], "python-module": m,
             "how-to-guide": f"{docs}/transfers.md"}
            for name, _ in INTEGRATIONS.values() for m in _existing("transfers")
        ],
        "connection-types": [c for c in CONNECTION_TYPES if c["hook-class-name"].rsplit(".", 1)[0] in hook_modules],
    }
