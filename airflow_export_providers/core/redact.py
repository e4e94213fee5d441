"""Strip secrets from URLs, headers and messages before anything is logged, raised or stored.

Two layers: pattern rules for secret *shapes* (query strings, bearer tokens, SAS ``sig``,
``X-Amz-Signature``) and exact values registered at runtime (connection passwords, fetched tokens),
which are also handed to Airflow's secrets masker so task logs are covered even where our code
is not the one writing.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

log = logging.getLogger(__name__)

MASK = "***"
# Query parameters whose values are never secret and help a reader of the log.
SAFE_QUERY_KEYS = frozenset(
    {"action", "apiversion", "api-version", "jobid", "$top", "$skip", "$orderby", "restype", "comp", "exportformat"}
)
# Azure's filesystem URIs name the container where other URIs carry credentials.
CONTAINER_SCHEMES = frozenset({"wasb", "wasbs", "abfs", "abfss"})
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "md-api-key", "x-api-key", "cookie", "set-cookie"})

_registered: set[str] = set()
_lock = threading.Lock()

_URL_RE = re.compile(r"(?:https?|s3|wasbs?|abfss?)://[^\s'\"<>]+", re.IGNORECASE)
# A relative request target, as urllib3 logs it: '"GET /api?appId=..&clientKey=.. HTTP/1.1"'.
_REQUEST_TARGET_RE = re.compile(r"\b(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) (/[^\s?'\"]*)\?([^\s'\"]+)")
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}"), r"\1 " + MASK),
    (re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)[^'\",}\n]+"), r"\1" + MASK),
    (
        re.compile(
            r"(?i)\b(sig|x-amz-signature|x-amz-credential|x-amz-security-token|clientkey|client_secret|"
            r"access_token|refresh_token|s3accesskey|s3accessid|accountkey|sharedaccesssignature|signature|"
            r"awsaccesskeyid|md-api-key|api_key|apikey|password)(['\"]?\s*[=:]\s*['\"]?)[^&\s'\",;}]+"
        ),
        r"\1\2" + MASK,
    ),
]


def register_secret(value: Any, name: str | None = None) -> None:
    """Remember a secret value so every later redaction removes it, and tell Airflow's masker."""
    if not value or not isinstance(value, str) or len(value) < 4:
        return
    with _lock:
        _registered.add(value)
    try:
        from airflow_export_providers.core.compat import mask_secret

        mask_secret(value, name)
    except Exception:  # pragma: no cover - masker unavailable outside a task/triggerer
        log.debug("secrets masker unavailable")


def redact_url(url: str) -> str:
    """Keep scheme, host and path; replace every query value but a few harmless ones with ***."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        # wasbs://container@account...: the user-info is the container, no secret; anything else
        # there (user:password, a token as user name) is masked whole.
        if not (parts.scheme.lower() in CONTAINER_SCHEMES and ":" not in userinfo and userinfo):
            netloc = MASK + "@" + host
    query = ""
    if parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        query = urlencode(
            [(k, v if k.lower() in SAFE_QUERY_KEYS else MASK) for k, v in pairs], safe="*$"
        ) if pairs else MASK
    return _redact_values(urlunsplit((parts.scheme, netloc, parts.path, query, "")))


def _redact_target(match: re.Match[str]) -> str:
    redacted = redact_url(f"http://h{match.group(2)}?{match.group(3)}")
    return f"{match.group(1)} {redacted[len('http://h'):]}"


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: (MASK if k.lower() in SECRET_HEADERS else redact_text(str(v))) for k, v in headers.items()}


def _redact_values(text: str) -> str:
    with _lock:
        values = sorted(_registered, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    return text


def redact_text(text: Any) -> str:
    """Redact a free-form message: URLs lose their query values, secret shapes and values vanish."""
    s = str(text)
    s = _URL_RE.sub(lambda m: redact_url(m.group(0)), s)
    s = _REQUEST_TARGET_RE.sub(_redact_target, s)
    for pattern, repl in _PATTERNS:
        s = pattern.sub(repl, s)
    return _redact_values(s)


def redact_obj(obj: Any) -> Any:
    """Redact every string inside a JSON-like structure (for XCom values and trigger events)."""
    if isinstance(obj, str):
        return redact_text(obj)
    if isinstance(obj, Mapping):
        return {k: redact_obj(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_obj(v) for v in obj]
    return obj


class RedactingFilter(logging.Filter):
    """Rewrites a record's message through ``redact_text`` (third-party loggers print full URLs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


_FILTERED_LOGGERS = ("urllib3.connectionpool", "aiohttp.client", "aiohttp.access", "requests", "azure.core.pipeline.policies.http_logging_policy")


def install_log_filters() -> None:
    """Attach the redacting filter to the HTTP libraries' loggers (idempotent)."""
    for name in _FILTERED_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())


install_log_filters()
