"""Apache Airflow provider for asynchronous vendor export APIs (MX, SGI POND, Indicative, Leanplum,
Azure Mobile Engagement), landing the files in S3 or Azure Blob."""

from __future__ import annotations

import importlib.util
from typing import Any

__version__ = "0.1.0"

PACKAGE = "airflow_export_providers"
VENDORS = ("mx", "pond", "indicative", "leanplum", "mobile_engagement")

_STR = {"type": ["string", "null"]}


def _field(label: str, description: str = "", placeholder: str | None = None, secret: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = dict(_STR)
    if secret:
        schema["format"] = "password"
    field: dict[str, Any] = {"label": label, "schema": schema}
    if description:
        field["description"] = description
    if placeholder:
        field["placeholder"] = placeholder
    return field


CONNECTION_TYPES: list[dict[str, Any]] = [
    {
        "connection-type": "mx_snapshots",
        "hook-class-name": f"{PACKAGE}.hooks.mx.MxSnapshotsHook",
        "hook-name": "MX Snapshots",
        "ui-field-behaviour": {
            "hidden-fields": ["schema", "port"],
            "relabeling": {"login": "Client ID", "password": "API key", "host": "API base URL"},
            "placeholders": {"host": "https://logs.moneydesktop.com", "login": "your MX client id", "password": "MX API key"},
        },
        "conn-fields": {
            "auth_style": _field("Auth style", "md-api-key (Reporting API header) or basic (Platform API)", "md-api-key"),
            "list_path": _field("Listing path template", "Lists a snapshot's files by GUID", "/snapshots/{guid}/files"),
            "download_path": _field("Download path template", "Used when the listing returns file names, not URLs", "/snapshots/{guid}/files/{name}"),
            "files_key": _field("Listing files key", "Key of the list of files when the listing holds several lists", "files"),
        },
    },
    {
        "connection-type": "pond",
        "hook-class-name": f"{PACKAGE}.hooks.pond.PondHook",
        "hook-name": "SGI POND",
        "ui-field-behaviour": {
            "hidden-fields": ["schema", "port"],
            "relabeling": {"login": "Client ID", "password": "Client secret", "host": "API base URL"},
            "placeholders": {"host": "https://api.sgipond.com", "login": "OAuth client_id", "password": "OAuth client_secret"},
        },
        "conn-fields": {
            "token_url": _field("Token URL", "OAuth2 client-credentials endpoint", "https://sgipond.auth.us-west-2.amazoncognito.com/oauth2/token"),
            "scope": _field("Scope", "OAuth2 scope", "pond/insights.snapshots"),
        },
    },
    {
        "connection-type": "indicative",
        "hook-class-name": f"{PACKAGE}.hooks.indicative.IndicativeHook",
        "hook-name": "Indicative (mParticle Analytics)",
        "ui-field-behaviour": {
            "hidden-fields": ["schema", "port"],
            "relabeling": {"login": "API key", "password": "Access token", "host": "API base URL"},
            "placeholders": {"host": "https://query.indicative.com", "login": "project API key", "password": "access token"},
        },
        "conn-fields": {
            "aws_conn_id": _field("AWS connection for s3:// results", "Reads result files given as s3:// URIs", "aws_default"),
        },
    },
    {
        "connection-type": "leanplum",
        "hook-class-name": f"{PACKAGE}.hooks.leanplum.LeanplumHook",
        "hook-name": "Leanplum",
        "ui-field-behaviour": {
            "hidden-fields": ["schema", "port"],
            "relabeling": {"login": "App ID", "password": "Data export key (clientKey)", "host": "API base URL"},
            "placeholders": {"host": "https://api.leanplum.com", "login": "app_...", "password": "exp_..."},
        },
        "conn-fields": {
            "api_version": _field("API version", "Leanplum apiVersion parameter", "1.0.6"),
            "quota_retry_seconds": _field(
                "Quota retry (seconds)", "After a 24-exports-a-day refusal, try again after this long at most", "3600"
            ),
        },
    },
    {
        "connection-type": "azure_mobile_engagement",
        "hook-class-name": f"{PACKAGE}.hooks.mobile_engagement.MobileEngagementHook",
        "hook-name": "Azure Mobile Engagement",
        "ui-field-behaviour": {
            "hidden-fields": ["schema", "port"],
            "relabeling": {"login": "Client ID", "password": "Client secret", "host": "ARM base URL"},
            "placeholders": {"host": "https://management.azure.com", "login": "AAD application (client) id", "password": "client secret"},
        },
        "conn-fields": {
            "tenant_id": _field("Tenant ID", "Azure AD tenant", "00000000-0000-0000-0000-000000000000"),
            "subscription_id": _field("Subscription ID", "", "00000000-0000-0000-0000-000000000000"),
            "resource_group": _field("Resource group", "", "my-rg"),
            "app_collection": _field("App collection", "", "my-app-collection"),
            "app_name": _field("App name", "", "my-app"),
            "authority_host": _field("Authority host", "Azure AD authority", "https://login.microsoftonline.com"),
            "blob_prefix": _field("Blob prefix template", "Where the service writes a task's blobs: {task_id}, {export_type}, {description}", "{task_id}/"),
        },
    },
]


def _existing(kind: str) -> list[str]:
    """Modules of ``kind`` that exist in this install (each vendor adds its own as it lands)."""
    names = [f"{PACKAGE}.{kind}.{v}" for v in VENDORS]
    if kind == "transfers":
        names = [f"{PACKAGE}.transfers.export_to_s3", f"{PACKAGE}.transfers.export_to_azure_blob"]
    if kind == "triggers":
        names = [f"{PACKAGE}.triggers.export_job"]
    return [n for n in names if importlib.util.find_spec(n) is not None]


def get_provider_info() -> dict[str, Any]:
    integration = "Vendor export APIs"
    modules = {kind: _existing(kind) for kind in ("hooks", "operators", "sensors", "triggers", "transfers")}
    hook_modules = set(modules["hooks"])
    return {
        "package-name": "airflow-export-providers",
        "name": "Vendor export APIs",
        "description": "Bulk exports from MX, SGI POND, Indicative, Leanplum and Azure Mobile Engagement into S3 or Azure Blob.",
        "versions": [__version__],
        "integrations": [{"integration-name": integration, "tags": ["service"]}],
        "hooks": [{"integration-name": integration, "python-modules": modules["hooks"]}],
        "operators": [{"integration-name": integration, "python-modules": modules["operators"]}],
        "sensors": [{"integration-name": integration, "python-modules": modules["sensors"]}],
        "triggers": [{"integration-name": integration, "python-modules": modules["triggers"]}],
        "transfers": [
            {"source-integration-name": integration,
             "target-integration-name": "Microsoft Azure Blob Storage" if m.endswith("azure_blob") else "Amazon Simple Storage Service (S3)",
             "python-module": m}
            for m in modules["transfers"]
        ],
        "connection-types": [c for c in CONNECTION_TYPES if c["hook-class-name"].rsplit(".", 1)[0] in hook_modules],
    }
