"""Azure Mobile Engagement export tasks (ARM REST API, api-version 2014-12-01).

The service is told where to write through a container URL carrying a SAS; it writes its blobs there
and reports ``Succeeded``. This hook submits tasks, reads their state, and on success lists the blobs
the task wrote (under a per-task prefix) as ExportFiles, read back through the Azure Blob (wasb)
connection so the transfer operators can copy them on.

Tokens come from azure-identity's client-secret credential (it caches and refreshes them); the
credential is wrapped in a ``core.http.Auth`` so every ARM call goes through the engine's clients.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, ClassVar, cast
from urllib.parse import quote, unquote, urlsplit

from airflow_export_providers.core.compat import require_extra
from airflow_export_providers.core.errors import (
    ExportError,
    ExportInputError,
    ExportJobFailed,
    VendorAuthError,
    VendorHTTPError,
)
from airflow_export_providers.core.hook import ExportHook, SourceStream
from airflow_export_providers.core.http import Auth, Request, parse_json
from airflow_export_providers.core.job import ExportFile, ExportJob, JobState, map_state
from airflow_export_providers.core.redact import redact_text, register_secret

if TYPE_CHECKING:
    from azure.storage.blob import BlobServiceClient, ContainerSasPermissions

log = logging.getLogger(__name__)

API_VERSION = "2014-12-01"
ARM_SCOPE = "https://management.azure.com/.default"
DEFAULT_ARM_HOST = "https://management.azure.com"
DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
# Authorities msal knows; any other host needs instance discovery switched off (sovereign, private, sandbox).
KNOWN_AUTHORITIES = frozenset({"login.microsoftonline.com", "login.chinacloudapi.cn", "login.microsoftonline.us"})

STATES = {"Queued": JobState.PENDING, "Started": JobState.RUNNING, "Succeeded": JobState.SUCCESS, "Failed": JobState.FAILED}

# REST kind -> (body schema in the spec, exportType the service reports)
SNAPSHOT_KINDS = ("tags", "tokens")
HISTORICAL_KINDS = ("activities", "crashes", "errors", "events", "jobs", "sessions")
FEEDBACK_KINDS = ("feedbackByDate", "feedbackByCampaign")
KINDS = SNAPSHOT_KINDS + HISTORICAL_KINDS + FEEDBACK_KINDS
EXPORT_TYPES = {
    "tags": "Tag", "tokens": "Token", "activities": "Activity", "crashes": "Crash", "errors": "Error",
    "events": "Event", "jobs": "Job", "sessions": "Session", "feedbackByDate": "Push", "feedbackByCampaign": "Push",
}
EXPORT_FORMATS = ("JsonBlob", "CsvBlob")
CAMPAIGN_TYPES = ("Announcement", "DataPush", "NativePush", "Poll")
REQUIRED_EXTRAS = ("tenant_id", "subscription_id", "resource_group", "app_collection", "app_name")
DEFAULT_BLOB_PREFIX = "{task_id}/"
#: Azure limits a user delegation key (the Azure AD way to sign a SAS) to seven days.
USER_DELEGATION_MAX = timedelta(days=7)
DOWNLOAD_CHUNK = 4 * 1024 * 1024


class AzureIdentityAuth(Auth):
    """Bearer tokens from azure-identity's ClientSecretCredential (sync) and its aio twin (async).

    azure-identity owns the token cache and its refresh rules; ``invalidate`` (after a 401) drops
    the credentials so the next call asks Azure AD for a brand-new token.
    """

    def __init__(
        self,
        *,
        tenant_id: str,
        client_id: str,
        client_secret: str,
        authority: str = DEFAULT_AUTHORITY,
        verify: bool | str = True,
        scope: str = ARM_SCOPE,
        disable_instance_discovery: bool | None = None,
    ) -> None:
        self.tenant_id = tenant_id
        self.client_id = client_id
        self._secret = client_secret
        self.authority = authority
        self.verify = verify
        self.scope = scope
        host = urlsplit(authority if "://" in authority else "https://" + authority).hostname or ""
        self.disable_instance_discovery = (
            host not in KNOWN_AUTHORITIES if disable_instance_discovery is None else disable_instance_discovery
        )
        self._sync: Any = None
        self._async: Any = None
        self._stale: list[Any] = []  # async credentials dropped by invalidate(), closed in aclose()
        self.token_requests = 0  # how many times a token was asked of the credential (not of AAD)

    def _kwargs(self) -> dict[str, Any]:
        # connection_verify is azure-core's transport option: True, False or a CA bundle path.
        return {"authority": self.authority, "connection_verify": self.verify}

    def _wrap(self, exc: Exception) -> ExportError:
        from azure.core.exceptions import ClientAuthenticationError

        text = redact_text(getattr(exc, "message", None) or exc)
        where = f"Azure AD ({self.authority}, tenant {self.tenant_id})"
        if "CERTIFICATE_VERIFY_FAILED" in text or "SSLError" in text or "SSLCertVerificationError" in text:
            # not transient: fail at once with the fix instead of polling until the deadline
            return ExportError(
                f"{where}: TLS verification failed ({text}); if the authority uses a private CA, name its CA file in "
                "the connection extra ca_bundle"
            )
        if isinstance(exc, ClientAuthenticationError) and ("AADSTS" in text or getattr(exc, "response", None) is not None):
            return VendorAuthError("mobile_engagement", 401, f"{where} refused the client credentials: {text}")
        return VendorHTTPError("mobile_engagement", 503, f"{where} gave no token: {type(exc).__name__}: {text}")

    def token(self) -> str:
        require_extra("microsoft.azure", "Azure Mobile Engagement")
        from azure.identity import ClientSecretCredential

        if self._sync is None:
            self._sync = ClientSecretCredential(
                self.tenant_id, self.client_id, self._secret,
                disable_instance_discovery=self.disable_instance_discovery, **self._kwargs(),
            )
        self.token_requests += 1
        try:
            value = cast(str, self._sync.get_token(self.scope).token)
        except Exception as exc:
            raise self._wrap(exc) from None
        register_secret(value)
        return value

    async def atoken(self) -> str:
        require_extra("microsoft.azure", "Azure Mobile Engagement")
        from azure.identity.aio import ClientSecretCredential as AsyncClientSecretCredential

        if self._async is None:
            self._async = AsyncClientSecretCredential(self.tenant_id, self.client_id, self._secret, **self._kwargs())
        self.token_requests += 1
        try:
            value = cast(str, (await self._async.get_token(self.scope)).token)
        except Exception as exc:
            raise self._wrap(exc) from None
        register_secret(value)
        return value

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}

    async def aheaders(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.atoken()}"}

    def invalidate(self) -> bool:
        if self._sync is not None:
            self._sync.close()
            self._sync = None
        if self._async is not None:
            self._stale.append(self._async)
            self._async = None
        return True

    async def aclose(self) -> None:
        for cred in [*self._stale, self._async]:
            if cred is not None:
                await cred.close()
        self._stale.clear()
        self._async = None

    def close(self) -> None:
        if self._sync is not None:
            self._sync.close()
            self._sync = None


# ---- Azure Blob side -----------------------------------------------------------------------------
def _blob_service(wasb_conn_id: str) -> BlobServiceClient:
    require_extra("microsoft.azure", "Azure Mobile Engagement (it exports into an Azure Blob container)")
    from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

    return cast("BlobServiceClient", WasbHook(wasb_conn_id=wasb_conn_id).blob_service_client)


def container_sas(
    wasb_conn_id: str,
    container: str,
    permission: ContainerSasPermissions,
    lifetime: timedelta,
    service: BlobServiceClient | None = None,
) -> str:
    """A short-lived container SAS (query string) derived from a wasb connection.

    With an account key it is signed locally; with an Azure AD identity it is signed with a user
    delegation key (the identity needs a Storage Blob Data role). The SAS is registered as a
    secret at once so no log line can carry it.
    """
    from azure.storage.blob import generate_container_sas

    service = service or _blob_service(wasb_conn_id)
    now = datetime.now(timezone.utc)
    start, expiry = now - timedelta(minutes=5), now + lifetime  # start back-dated for clock skew
    protocol = "https" if urlsplit(service.url).scheme == "https" else "https,http"
    credential = service.credential
    account_key = getattr(credential, "account_key", None)
    if account_key:
        sas = generate_container_sas(
            service.account_name, container, account_key=account_key,  # type: ignore[arg-type]
            permission=permission, start=start, expiry=expiry, protocol=protocol,
        )
    elif hasattr(credential, "get_token"):
        if expiry - start > USER_DELEGATION_MAX:
            raise ExportInputError(
                f"sas_lifetime: a container SAS signed with an Azure AD identity (wasb connection {wasb_conn_id!r}) lives "
                f"at most 7 days, this one would need {lifetime}; lower job_timeout (the SAS lives until the job's "
                "deadline) or sas_lifetime, or use a wasb connection with an account key"
            )
        key = service.get_user_delegation_key(key_start_time=start, key_expiry_time=expiry)
        sas = generate_container_sas(
            service.account_name, container, user_delegation_key=key,  # type: ignore[arg-type]
            permission=permission, start=start, expiry=expiry, protocol=protocol,
        )
    else:
        raise ExportInputError(
            f"wasb_conn_id: connection {wasb_conn_id!r} has neither an account key nor an Azure AD identity; "
            "a container SAS can only be derived from one of those (a connection that itself holds a SAS cannot sign another)"
        )
    register_secret(sas)
    for part in sas.split("&"):
        if part.startswith("sig="):
            register_secret(part[4:])
            register_secret(unquote(part[4:]))  # the same signature as it appears once decoded
    return sas


class _BlobRangeReader:
    """Read a blob from ``start`` in bounded ranged GETs (the SDK retries each one)."""

    def __init__(self, blob: Any, start: int, total: int, chunk: int = DOWNLOAD_CHUNK) -> None:
        self.blob = blob
        self.pos = start
        self.total = total
        self.chunk = chunk
        self._buf = b""

    def read(self, n: int) -> bytes:
        if not self._buf and self.pos < self.total:
            from azure.core.exceptions import ServiceRequestError, ServiceResponseError

            length = min(self.chunk, self.total - self.pos)
            try:
                self._buf = self.blob.download_blob(offset=self.pos, length=length, max_concurrency=1).readall()
            except (ServiceRequestError, ServiceResponseError) as exc:
                # the SDK already retried this range: hand the landing a network error it resumes from
                raise ConnectionError(f"blob read at byte {self.pos} failed: {type(exc).__name__}: {redact_text(exc)}") from None
            self.pos += len(self._buf)
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def close(self) -> None:
        self._buf = b""


class MobileEngagementHook(ExportHook):
    """Azure Mobile Engagement export tasks through Azure Resource Manager.

    :param conn_id: connection of type ``azure_mobile_engagement`` (login = client id, password =
        client secret, extras tenant_id, subscription_id, resource_group, app_collection, app_name,
        authority_host, ca_bundle).
    :param wasb_conn_id: Azure Blob connection of the container the tasks write into.
    :param container: that container (needed to list and read a task's blobs).
    :param blob_prefix: where a task's blobs are, as a template with ``{task_id}``, ``{export_type}``
        and ``{description}``; the REST spec does not say how the service names its blobs. Default:
        the connection extra ``blob_prefix``, else ``{task_id}/``. A Succeeded task that left no blob
        there fails, naming the container, the prefix and this setting.
    """

    vendor = "mobile_engagement"
    conn_type = "azure_mobile_engagement"
    default_conn_name = "azure_mobile_engagement_default"
    hook_name = "Azure Mobile Engagement"
    default_host: ClassVar[str] = DEFAULT_ARM_HOST
    known_extras: ClassVar[tuple[str, ...] | None] = (*REQUIRED_EXTRAS, "authority_host", "disable_instance_discovery", "blob_prefix")

    def __init__(
        self,
        conn_id: str | None = None,
        *,
        wasb_conn_id: str = "wasb_default",
        container: str | None = None,
        blob_prefix: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(conn_id, **kwargs)
        self.wasb_conn_id = wasb_conn_id
        self.container = container
        self.blob_prefix = blob_prefix or None  # None: the connection extra, else DEFAULT_BLOB_PREFIX

    def hook_kwargs(self) -> dict[str, Any]:
        return {"wasb_conn_id": self.wasb_conn_id, "container": self.container, "blob_prefix": self.blob_prefix}

    def close(self) -> None:
        super().close()
        if isinstance(self._auth, AzureIdentityAuth):
            self._auth.close()

    # ---- connection ---------------------------------------------------------------------------
    def extra(self, name: str) -> str:
        value = self.extras.get(name)
        if not value or not isinstance(value, str):
            raise ExportInputError(
                f"{self.conn_id}: connection extra {name!r} is empty; an azure_mobile_engagement connection needs "
                f"{', '.join(REQUIRED_EXTRAS)} (and login = client id, password = client secret)"
            )
        return value.strip()

    def make_auth(self) -> Auth:
        conn = self.conn
        if not conn.login or not conn.password:
            raise ExportInputError(f"{self.conn_id}: login (client id) and password (client secret) are required")
        authority = (self.extras.get("authority_host") or DEFAULT_AUTHORITY).strip().rstrip("/")
        if "://" not in authority:
            authority = "https://" + authority
        if urlsplit(authority).scheme != "https":
            raise ExportInputError(
                f"{self.conn_id}: extra authority_host {authority!r} must be https:// (azure-identity refuses other "
                "schemes; for a local Azure AD stand-in serve TLS and name its CA in the extra ca_bundle)"
            )
        discovery = self.extras.get("disable_instance_discovery")
        return AzureIdentityAuth(
            tenant_id=self.extra("tenant_id"),
            client_id=conn.login,
            client_secret=conn.password,
            authority=authority,
            verify=self.verify,
            disable_instance_discovery=None if discovery is None else str(discovery).lower() in ("1", "true", "yes"),
        )

    @property
    def tasks_path(self) -> str:
        q = lambda name: quote(self.extra(name), safe="")  # noqa: E731 - one-line path segment quoting
        return (
            f"/subscriptions/{q('subscription_id')}/resourceGroups/{q('resource_group')}"
            f"/providers/Microsoft.MobileEngagement/appcollections/{q('app_collection')}"
            f"/apps/{q('app_name')}/devices/exportTasks"
        )

    def describe_error(self, status: int, body: bytes) -> str:
        """ARM errors are ``{"error": {"code", "message"}}``; say them in those words."""
        try:
            payload = parse_json(self.vendor, body)
        except VendorHTTPError:
            return super().describe_error(status, body)
        error = payload.get("error") if isinstance(payload, dict) else None
        if isinstance(error, dict) and (error.get("code") or error.get("message")):
            text = f"{error.get('code') or 'Error'}: {error.get('message') or ''}".strip()
            if status == 401:
                text += " (the Azure AD token was refused; check the app registration's access to the subscription)"
            elif status == 403:
                text += " (the service principal lacks a role on the Mobile Engagement app)"
            return text
        return super().describe_error(status, body)

    # ---- jobs ---------------------------------------------------------------------------------
    def submit(self, kind: str, body: dict[str, Any]) -> str:
        """Create an export task of ``kind``; returns the task id (202 + Location)."""
        if kind not in KINDS:
            raise ExportInputError(f"kind: {kind!r} is not an export kind; valid kinds: {', '.join(KINDS)}")
        req = Request(
            "POST", self.url(f"{self.tasks_path}/{kind}"), params={"api-version": API_VERSION}, json=body, idempotent=False,
        )
        resp = self.client.send(req)
        try:
            payload = parse_json(self.vendor, resp.content, req.url) if resp.content.strip() else {}
            location = resp.headers.get("Location", "")
        finally:
            resp.close()
        task_id = payload.get("id") if isinstance(payload, dict) else None
        if not task_id and location:
            task_id = urlsplit(location).path.rstrip("/").rsplit("/", 1)[-1]
        if not task_id or not isinstance(task_id, str):
            raise VendorHTTPError(self.vendor, resp.status_code, "export task created but the answer has no 'id' and no Location")
        return task_id

    def status_request(self, job_id: str) -> Request:
        return Request("GET", self.url(f"{self.tasks_path}/{quote(job_id, safe='')}"), params={"api-version": API_VERSION})

    def parse_job(self, job_id: str, payload: Any) -> ExportJob:
        if not isinstance(payload, dict) or not isinstance(payload.get("state"), str):
            raise VendorHTTPError(
                self.vendor, 200,
                f"export task {job_id}: the answer has no 'state' string (expected Queued|Started|Succeeded|Failed): "
                f"{redact_text(str(payload)[:200])}",
            )
        raw = payload["state"]
        state = map_state(raw, STATES)
        message = None
        if state == JobState.FAILED:
            message = str(payload.get("errorDetails") or "the service gave no errorDetails")
        extra = {k: payload[k] for k in ("description", "dateCreated", "dateCompleted", "exportType") if payload.get(k) is not None}
        if self.container:
            extra["container"] = self.container
        return ExportJob(self.vendor, self.conn_id, job_id, state, raw_state=raw, message=message, extra=extra)

    def get_job(self, job_id: str) -> ExportJob:
        job = super().get_job(job_id)
        if job.state == JobState.SUCCESS:
            job.files = self.list_task_files(job)
        return job

    async def aget_job(self, job_id: str) -> ExportJob:
        job = await super().aget_job(job_id)
        if job.state == JobState.SUCCESS:
            job.files = await self.alist_task_files(job)
        return job

    def list_tasks(self, top: int = 20, skip: int = 0, orderby: str | None = None) -> dict[str, Any]:
        """One page of export tasks (``$top`` 1-40)."""
        if not 1 <= top <= 40:
            raise ExportInputError(f"top: {top} is outside 1-40 (the service's page limit)")
        params: dict[str, Any] = {"api-version": API_VERSION, "$top": top, "$skip": skip}
        if orderby:
            params["$orderby"] = orderby
        payload = self.client.json(Request("GET", self.url(self.tasks_path), params=params))
        if not isinstance(payload, dict) or not isinstance(payload.get("value"), list):
            raise VendorHTTPError(self.vendor, 200, "export task list has no 'value' array")
        return payload

    def check_connection(self) -> str:
        page = self.list_tasks(top=1)
        return f"Connected: {self.extra('app_collection')}/{self.extra('app_name')} answered ({len(page['value'])} export task(s) on the first page)"

    # ---- files --------------------------------------------------------------------------------
    @property
    def prefix_template(self) -> str:
        """The ``blob_prefix`` argument, else the connection extra ``blob_prefix``, else ``{task_id}/``."""
        if self.blob_prefix:
            return self.blob_prefix
        extra = self.extras.get("blob_prefix")
        return extra if isinstance(extra, str) and extra.strip() else DEFAULT_BLOB_PREFIX

    def _prefix_origin(self) -> str:
        if self.blob_prefix:
            return "the operator's / sensor's blob_prefix"
        if self.prefix_template != DEFAULT_BLOB_PREFIX:
            return f"the connection {self.conn_id!r} extra blob_prefix"
        return "the default; set blob_prefix on the operator / sensor or as the connection extra blob_prefix"

    def task_prefix(self, job: ExportJob) -> str:
        template = self.prefix_template
        try:
            return template.format(
                task_id=job.job_id, export_type=job.extra.get("exportType", ""), description=job.extra.get("description", "")
            )
        except (KeyError, IndexError, ValueError) as exc:
            raise ExportInputError(
                f"blob_prefix: {template!r} is not a valid template ({exc}); use {{task_id}}, {{export_type}}, {{description}}"
            ) from None

    def _file(self, job: ExportJob, prefix: str, blob: Any) -> ExportFile:
        md5 = getattr(getattr(blob, "content_settings", None), "content_md5", None)
        name: str = blob.name[len(prefix):].lstrip("/") if blob.name.startswith(prefix) else blob.name
        return ExportFile(
            vendor=self.vendor,
            conn_id=self.conn_id,
            job_id=job.job_id,
            key=blob.name,
            name=name or blob.name.rsplit("/", 1)[-1],
            size=int(blob.size) if blob.size is not None else None,
            checksum=bytes(md5).hex() if md5 else None,
            checksum_algorithm="md5" if md5 else None,
            compression="gzip" if blob.name.endswith(".gz") else None,
            resource=job.extra.get("exportType"),
            extra={"container": self.container, "wasb_conn_id": self.wasb_conn_id},
        )

    def _no_container(self, job: ExportJob) -> list[ExportFile]:
        log.warning("%s: task %s succeeded but no container was given to this hook: its blobs are not listed", self.vendor, job.job_id)
        return []

    def _report(self, job: ExportJob, prefix: str, files: list[ExportFile]) -> list[ExportFile]:
        if not files:
            # The blob names the service writes are not public: nothing where we look is a wrong
            # prefix far more often than an empty export, and a green task with nothing landed hides it.
            raise ExportJobFailed(
                f"{self.vendor}: export task {job.job_id} Succeeded but container {self.container!r} has no blob under "
                f"prefix {prefix!r} (blob_prefix {self.prefix_template!r}: {self._prefix_origin()}); look in the container "
                "for where the service wrote this task's files and set blob_prefix to that template "
                "({task_id}, {export_type}, {description})"
            )
        return sorted(files, key=lambda f: f.key)

    def list_task_files(self, job: ExportJob) -> list[ExportFile]:
        """The blobs the task wrote: everything under its prefix in the container."""
        if not self.container:
            return self._no_container(job)
        prefix = self.task_prefix(job)
        client = _blob_service(self.wasb_conn_id).get_container_client(self.container)
        files = [self._file(job, prefix, b) for b in client.list_blobs(name_starts_with=prefix)]
        return self._report(job, prefix, files)

    async def alist_task_files(self, job: ExportJob) -> list[ExportFile]:
        """Async twin for the triggerer (never blocks its event loop)."""
        if not self.container:
            return self._no_container(job)
        require_extra("microsoft.azure", "Azure Mobile Engagement (it exports into an Azure Blob container)")
        from airflow.providers.microsoft.azure.hooks.wasb import WasbAsyncHook

        prefix = self.task_prefix(job)
        service = await WasbAsyncHook(wasb_conn_id=self.wasb_conn_id).get_async_conn()
        try:
            client = service.get_container_client(self.container)
            files = [self._file(job, prefix, b) async for b in client.list_blobs(name_starts_with=prefix)]
        finally:
            await service.close()
        return self._report(job, prefix, files)

    def _blob_client(self, file: ExportFile) -> Any:
        container = file.extra.get("container") or self.container
        if not container:
            raise ExportInputError(f"{file.name}: no container known for this file (give the hook a container)")
        wasb_conn_id = file.extra.get("wasb_conn_id") or self.wasb_conn_id
        return _blob_service(wasb_conn_id).get_blob_client(container, file.key)

    def open_file(self, file: ExportFile, offset: int = 0) -> SourceStream:
        """Read the blob through the wasb connection, from ``offset``, in bounded ranged reads."""
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        blob = self._blob_client(file)
        try:
            total = int(blob.get_blob_properties().size)
        except ResourceNotFoundError:
            raise VendorHTTPError(
                self.vendor, 404, f"blob {file.key!r} is gone from container {blob.container_name!r} (deleted or never written)"
            ) from None
        except HttpResponseError as exc:
            raise VendorHTTPError(self.vendor, exc.status_code or 500, f"blob {file.key!r}: {redact_text(exc.message)}") from None
        start = min(max(offset, 0), total)
        return SourceStream(_BlobRangeReader(blob, start, total), offset=start, total=total)  # type: ignore[arg-type]

    def file_request(self, file: ExportFile, refresh: bool = False) -> Request:
        """A plain GET with a 15-minute read-only SAS (for callers that want a URL, not a stream)."""
        from azure.storage.blob import ContainerSasPermissions

        blob = self._blob_client(file)
        sas = container_sas(
            file.extra.get("wasb_conn_id") or self.wasb_conn_id, blob.container_name,
            ContainerSasPermissions(read=True), timedelta(minutes=15),
        )
        return Request("GET", f"{blob.url}?{sas}", auth=False)
