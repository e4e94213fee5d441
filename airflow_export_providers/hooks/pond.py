"""SGI POND snapshots: OAuth2 client-credentials token, snapshot status, re-signed CSV downloads.

The contract (seeds/pond-snapshots.txt): a Cognito token endpoint hands out one-hour bearer tokens;
``POST /insights/snapshots`` (form-encoded) schedules a snapshot and answers 202 with its ``href``;
``GET href`` shows each item's ``state``, and complete items carry a presigned S3 ``href`` (valid one
hour, re-signed by repeating the GET), ``size`` in bytes and ``count`` of rows. Snapshots are kept for
seven days.

The job id is the snapshot ``href``. Presigned links are never stored in the ExportJob: a file's key
is its item index, and ``file_request`` reads the snapshot again for the current link.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import reprlib
import time
from calendar import timegm
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from airflow_export_providers.core.auth import TokenAuth
from airflow_export_providers.core.errors import ExportInputError, ExportJobFailed, VendorHTTPError
from airflow_export_providers.core.hook import ExportHook, require_secure_url
from airflow_export_providers.core.http import Auth, Request, parse_json
from airflow_export_providers.core.job import ExportFile, ExportJob, JobState, map_state
from airflow_export_providers.core.redact import register_secret

log = logging.getLogger(__name__)

DEFAULT_HOST = "https://api.sgipond.com"
DEFAULT_TOKEN_URL = "https://sgipond.auth.us-west-2.amazoncognito.com/oauth2/token"
DEFAULT_SCOPE = "pond/insights.snapshots"
SNAPSHOTS_PATH = "/insights/snapshots"
FORM = "application/x-www-form-urlencoded"
RETENTION_NOTE = "POND keeps snapshots for 7 days after they are created; schedule a new snapshot"

# The seed names "pending" and "complete"; "failed"/"error" are not documented but would be final.
ITEM_STATES = {
    "pending": JobState.PENDING,
    "complete": JobState.SUCCESS,
    "failed": JobState.FAILED,
    "error": JobState.FAILED,
}

# Token-endpoint refusals (OAuth2 / Cognito error codes) in the words a DAG author needs.
TOKEN_ERRORS = {
    "invalid_client": "the token endpoint rejected the client credentials: check the connection's Client ID (login) "
    "and Client secret (password)",
    "unauthorized_client": "this client may not use the client_credentials grant: ask SGI to enable it",
    "invalid_scope": "the token endpoint refused the scope {scope!r}: check the connection extra 'scope' "
    "(POND snapshots need 'pond/insights.snapshots')",
    "unsupported_grant_type": "the token endpoint does not accept grant_type=client_credentials",
    "invalid_request": "the token endpoint refused the request as malformed",
}


def snapshot_id(job_id: str) -> str:
    """The snapshot id: the last path segment of its href (a bare id is accepted too)."""
    try:
        path = urlsplit(job_id).path if "://" in job_id else job_id
    except ValueError:  # e.g. "https://[": not a URL at all
        path = ""
    sid = path.rstrip("/").rsplit("/", 1)[-1]
    if not sid or not re.fullmatch(r"[A-Za-z0-9._~-]+", sid):
        raise ExportInputError(f"snapshot: {reprlib.repr(job_id)} is neither a POND snapshot href nor a snapshot id")
    return sid


def link_expires_at(href: str) -> float | None:
    """When a presigned S3 link stops working: SigV4 (X-Amz-Date + X-Amz-Expires) or SigV2 (Expires)."""
    query = {k.lower(): v for k, v in parse_qsl(urlsplit(href).query)}
    try:
        if "x-amz-date" in query and "x-amz-expires" in query:
            signed = timegm(time.strptime(query["x-amz-date"], "%Y%m%dT%H%M%SZ"))
            return float(signed + int(query["x-amz-expires"]))
        if "expires" in query:
            return float(query["expires"])
    except ValueError:
        return None
    return None


def is_url(value: str) -> bool:
    """Whether ``value`` parses as a URL (urlsplit and its port refuse e.g. "https://[" or ":99999")."""
    try:
        _ = urlsplit(value).port
    except ValueError:
        return False
    return True


def _instant(value: Any) -> float | None:
    """An ISO 8601 time as epoch seconds (milliseconds kept), None when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo else None


def check_echoed_query(sid: str, items: Any, entity: str, created_at_from: str, created_at_to: str) -> None:
    """Fail when the snapshot POND scheduled is not the one asked for.

    Every item echoes its ``query`` (entity, ``created_at`` range). The seed: without the form
    Content-type "the parameters will be ignored", and POND then snapshots its defaults (another
    range, maybe the whole history). Landing that under this run's key would be a silent wrong
    data set: compare, and stop at once with what to fix.
    """
    sent = {"entity": entity, "created_at": [created_at_from, created_at_to]}
    echoed = [item.get("query") for item in items if isinstance(item, dict)] if isinstance(items, list) else []
    queries: list[dict[str, Any]] = [q for q in echoed if isinstance(q, dict)]
    if not queries or len(queries) != len(echoed):
        log.warning("pond: snapshot %s does not echo its query; cannot check that POND read the parameters %s", sid, sent)
        return
    for query in queries:
        echoed_range = query.get("created_at")
        bounds = list(echoed_range) if isinstance(echoed_range, (list, tuple)) and len(echoed_range) == 2 else [None, None]
        same_range = [_instant(b) for b in bounds] == [_instant(created_at_from), _instant(created_at_to)]
        if query.get("entity", "event") != entity or not same_range:
            raise ExportJobFailed(
                f"pond: POND ignored the snapshot parameters: snapshot {sid} echoes the query {json.dumps(query, sort_keys=True)} "
                f"but {json.dumps(sent, sort_keys=True)} was sent. The API reads the parameters only from a form body with "
                f"'Content-type: {FORM}' (\"or the parameters will be ignored\"): check that no proxy or gateway between "
                "Airflow and POND drops or rewrites that header. Nothing of this snapshot is landed."
            )


class PondTokenAuth(TokenAuth):
    """Client-credentials token from the Cognito endpoint (Basic client auth, form body)."""

    def __init__(self, token_url: str, client_id: str, client_secret: str, scope: str, verify: bool | str = True) -> None:
        super().__init__("pond", verify=verify)
        self.token_url = token_url
        self.scope = scope
        basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode("ascii")
        register_secret(basic)
        self._basic = basic

    def token_request(self) -> Request:
        return Request(
            "POST",
            self.token_url,
            data=urlencode({"grant_type": "client_credentials", "scope": self.scope}, safe="/", quote_via=quote),
            headers={"Authorization": f"Basic {self._basic}", "Content-type": FORM, "Accept": "application/json"},
            auth=False,
        )

    def describe_error(self, status: int, body: bytes) -> str:
        code = ""
        try:
            payload = json.loads(body)
            code = str(payload.get("error", "")) if isinstance(payload, dict) else ""
        except ValueError:
            pass
        if code in TOKEN_ERRORS:
            return f"{TOKEN_ERRORS[code].format(scope=self.scope)} ({code})"
        if status == 401:
            return TOKEN_ERRORS["invalid_client"]
        return super().describe_error(status, body)


class PondHook(ExportHook):
    """SGI POND snapshots API.

    Connection: login = OAuth client_id, password = client_secret, host = API base URL (default
    ``https://api.sgipond.com``); extras ``token_url`` and ``scope``.

    :param link_refresh_margin: ask for a fresh presigned link when the cached one has fewer seconds
        left than this (capped at a quarter of the link's lifetime); a 403 re-signs in any case.
    """

    vendor: ClassVar[str] = "pond"
    conn_type = "pond"
    default_conn_name = "pond_default"
    hook_name = "SGI POND"
    default_host: ClassVar[str] = DEFAULT_HOST

    def __init__(self, conn_id: str | None = None, *, link_refresh_margin: float = 60.0, **kwargs: Any) -> None:
        super().__init__(conn_id, **kwargs)
        self.link_refresh_margin = float(link_refresh_margin)
        self._links: dict[tuple[str, str], str] = {}  # (snapshot id, item index) -> current presigned href

    def hook_kwargs(self) -> dict[str, Any]:
        return {"link_refresh_margin": self.link_refresh_margin}

    # ---- auth ---------------------------------------------------------------------------------
    @property
    def token_url(self) -> str:
        url = str(self.extras.get("token_url") or DEFAULT_TOKEN_URL)
        return require_secure_url(url, f"{self.conn_id}.extra.token_url")

    @property
    def scope(self) -> str:
        return str(self.extras.get("scope") or DEFAULT_SCOPE).strip()

    def make_auth(self) -> Auth:
        conn = self.conn
        if not conn.login or not conn.password:
            raise ExportInputError(
                f"{self.conn_id}: POND needs the OAuth client_id in 'login' and the client_secret in 'password'"
            )
        return PondTokenAuth(self.token_url, conn.login, conn.password, self.scope, verify=self.verify)

    @property
    def token_auth(self) -> PondTokenAuth:
        auth = self.auth
        assert isinstance(auth, PondTokenAuth)
        return auth

    def describe_error(self, status: int, body: bytes) -> str:
        if body.lstrip().startswith(b"<?xml") or b"<Error>" in body[:200]:
            # S3 answering a presigned download, not the POND API: say so, not "scope" or "token"
            code = re.search(rb"<Code>([^<]{1,64})</Code>", body)
            text = re.search(rb"<Message>([^<]{1,200})</Message>", body)
            return (f"the presigned download link was refused by S3: "
                    f"{(code.group(1).decode('utf-8', 'replace') if code else 'error')}"
                    f"{': ' + text.group(1).decode('utf-8', 'replace') if text else ''}")
        message = ""
        try:
            payload = json.loads(body)
            if isinstance(payload, dict):
                message = str(payload.get("message") or payload.get("error") or "")
        except ValueError:
            message = super().describe_error(status, body)
        if status == 401:
            return f"POND refused the access token (expired or revoked){': ' + message if message else ''}"
        if status == 403:
            return f"the token is not allowed to use snapshots (scope {self.scope!r}){': ' + message if message else ''}"
        return message or super().describe_error(status, body)

    # ---- submit -------------------------------------------------------------------------------
    def snapshots_url(self) -> str:
        return self.url(SNAPSHOTS_PATH)

    def submit(self, created_at_from: str, created_at_to: str, entity: str = "event") -> str:
        """Schedule a snapshot; return its href (the job id).

        The body is exactly the seed's: ``created_at_from=...&created_at_to=...`` (``entity`` only
        when it is not the default ``event``), with the Content-type header POND needs to read it.
        """
        pairs = [("created_at_from", created_at_from), ("created_at_to", created_at_to)]
        if entity != "event":
            pairs.append(("entity", entity))
        req = Request(
            "POST",
            self.snapshots_url(),
            data=urlencode(pairs, safe=":", quote_via=quote),
            headers={"Content-type": FORM, "Accept": "application/json"},
            idempotent=False,
        )
        resp = self.client.send(req)
        try:
            status, body = resp.status_code, resp.content
        finally:
            resp.close()
        payload = parse_json(self.vendor, body, req.url)
        snapshot = payload.get("snapshot") if isinstance(payload, dict) else None
        href = snapshot.get("href") if isinstance(snapshot, dict) else None
        if not isinstance(href, str) or not href:
            raise VendorHTTPError(self.vendor, status, "schedule answer has no snapshot.href", url=req.url)
        if status != 202:
            log.warning("pond: schedule answered HTTP %s (the API documents 202)", status)
        sid = snapshot_id(href)  # validates its shape
        check_echoed_query(sid, snapshot.get("items") if isinstance(snapshot, dict) else None, entity, created_at_from, created_at_to)
        return href

    # ---- status -------------------------------------------------------------------------------
    def status_request(self, job_id: str) -> Request:
        # The bearer token goes only to the configured API host, whatever host the href names.
        return Request("GET", f"{self.snapshots_url()}/{snapshot_id(job_id)}", headers={"Accept": "application/json"})

    def job_from_error(self, job_id: str, error: VendorHTTPError) -> ExportJob:
        if error.status in (404, 410):
            raise VendorHTTPError(self.vendor, error.status, f"snapshot {snapshot_id(job_id)} is gone: {RETENTION_NOTE}")
        raise error

    def parse_job(self, job_id: str, payload: Any) -> ExportJob:
        sid = snapshot_id(job_id)
        if isinstance(payload, dict) and isinstance(payload.get("snapshot"), dict):
            payload = payload["snapshot"]  # the schedule answer's shape
        items = payload.get("items") if isinstance(payload, dict) else None
        if not isinstance(items, list) or not items:
            raise VendorHTTPError(self.vendor, 200, f"snapshot {sid}: answer has no items list")
        states: list[JobState] = []
        raw_states: list[str] = []
        files: list[ExportFile] = []
        query: Any = None
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise VendorHTTPError(self.vendor, 200, f"snapshot {sid}: items[{index}] is not an object")
            raw = item.get("state")
            raw_text = str(raw)
            if raw_text not in raw_states:
                raw_states.append(raw_text)
            if not isinstance(raw, str) or raw.lower() not in ITEM_STATES:
                log.warning("pond: snapshot %s items[%d] has an unknown state %r; treating it as still running", sid, index, raw)
            state = map_state(raw if isinstance(raw, str) else None, ITEM_STATES)
            states.append(state)
            query = query or item.get("query")
            if state == JobState.SUCCESS:
                files.append(self._file(sid, job_id, index, item))
        if any(s == JobState.FAILED for s in states):
            state = JobState.FAILED
        elif all(s == JobState.SUCCESS for s in states):
            state = JobState.SUCCESS
        elif all(s == JobState.PENDING for s in states):
            state = JobState.PENDING
        else:
            state = JobState.RUNNING
        entity = query.get("entity") if isinstance(query, dict) else None
        return ExportJob(
            vendor=self.vendor,
            conn_id=self.conn_id,
            job_id=job_id,
            state=state,
            raw_state=",".join(raw_states),
            files=files if state == JobState.SUCCESS else [],
            message=f"{sum(s == JobState.SUCCESS for s in states)}/{len(states)} item(s) complete",
            extra={"snapshot_id": sid, "entity": entity, "query": query if isinstance(query, dict) else None,
                   "items": len(items)},
        )

    def _file(self, sid: str, job_id: str, index: int, item: dict[str, Any]) -> ExportFile:
        for name in ("size", "count"):
            value = item.get(name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise VendorHTTPError(self.vendor, 200, f"snapshot {sid}: items[{index}].{name} is {reprlib.repr(value)}, expected a count")
        href = item.get("href")
        if not isinstance(href, str) or not href:
            raise VendorHTTPError(self.vendor, 200, f"snapshot {sid}: items[{index}].href is missing on a complete item")
        if not is_url(href):
            raise VendorHTTPError(self.vendor, 200, f"snapshot {sid}: items[{index}].href is not a URL")
        self._remember_link(sid, str(index), href)
        raw_query = item.get("query")
        query: dict[str, Any] = raw_query if isinstance(raw_query, dict) else {}
        stem = urlsplit(href).path.rstrip("/").rsplit("/", 1)[-1] or f"{query.get('entity') or 'item'}_{index:03d}"
        return ExportFile(
            vendor=self.vendor,
            conn_id=self.conn_id,
            job_id=job_id,
            key=str(index),
            name=stem if stem.lower().endswith(".csv") else f"{stem}.csv",
            size=item["size"],
            rows=item["count"],
            row_format="csv",
            resource=query.get("entity"),
        )

    # ---- downloads ----------------------------------------------------------------------------
    def _remember_link(self, sid: str, key: str, href: str) -> None:
        query = urlsplit(href).query
        register_secret(query)
        for _name, value in parse_qsl(query):
            if len(value) >= 16:
                register_secret(value)
        self._links[(sid, key)] = href

    def _fresh_enough(self, href: str) -> bool:
        expires = link_expires_at(href)
        if expires is None:
            return True  # unknown shape: use it, a 403 re-signs
        lifetime = self._link_lifetime(href)
        margin = min(self.link_refresh_margin, lifetime / 4) if lifetime else self.link_refresh_margin
        return time.time() < expires - margin

    @staticmethod
    def _link_lifetime(href: str) -> float | None:
        query = {k.lower(): v for k, v in parse_qsl(urlsplit(href).query)}
        value = query.get("x-amz-expires")
        return float(value) if value and value.isdigit() else None

    def file_request(self, file: ExportFile, refresh: bool = False) -> Request:
        """The item's presigned link as a plain GET (no Authorization header may go to that host).

        Links come from the last snapshot read; one that has expired, is about to, or was refused
        (``refresh``) is replaced by reading the snapshot again, which signs it anew.
        """
        sid = snapshot_id(file.job_id)
        href = None if refresh else self._links.get((sid, file.key))
        if href is None or not self._fresh_enough(href):
            log.info("pond: reading snapshot %s for a %s link to %s", sid, "fresh" if href or refresh else "current", file.name)
            try:
                payload = self.client.json(self.status_request(file.job_id))
            except VendorHTTPError as err:
                self.job_from_error(file.job_id, err)
                raise
            job = self.parse_job(file.job_id, payload)
            if job.state != JobState.SUCCESS:
                raise VendorHTTPError(self.vendor, 200, f"snapshot {sid} is no longer complete ({job.raw_state})")
            href = self._links.get((sid, file.key))
            if href is None:
                raise VendorHTTPError(self.vendor, 200, f"snapshot {sid} has no item {file.key} for {file.name}")
        href = require_secure_url(href, f"snapshot {sid} items[{file.key}].href")
        return Request("GET", href, auth=False)

    def file_gone_message(self, file: ExportFile, status: int) -> str | None:
        if status in (404, 410):
            return f"{file.name} of snapshot {snapshot_id(file.job_id)} is gone (HTTP {status}): {RETENTION_NOTE}"
        return None

    # ---- UI -----------------------------------------------------------------------------------
    def check_connection(self) -> str:
        self.token_auth.invalidate()
        self.token_auth.token()
        return f"POND token obtained for scope {self.scope!r}"
