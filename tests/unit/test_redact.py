"""Every secret kind the engine knows is removed from URLs, headers, messages, exceptions and logs."""

from __future__ import annotations

import logging

import pytest

from airflow_export_providers.core.errors import ExportError, VendorHTTPError
from airflow_export_providers.core.redact import (
    MASK,
    redact_headers,
    redact_obj,
    redact_text,
    redact_url,
    register_secret,
)
from tests.support.secrets import register

CLIENT_KEY = register("leanplum-client-key", "exp_Q2xpZW50S2V5VmFsdWVGb3JUZXN0cw")
SAS_SIG = register("sas-sig", "r1k0XkD8aZ%2BqvJd3yX9hXUJk0lFyg3J4u%2FvE1mQ7Dw%3D")
AMZ_SIG = register("amz-sig", "9f3c2b1a0e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b")
BEARER = register("bearer", "eyJraWQiOiJwRno5eTBxaTlnaGh2VStZbkY5Z.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl")


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"https://api.leanplum.com/api?appId=app_1&clientKey={CLIENT_KEY}&action=exportData", CLIENT_KEY),
        (f"https://acct.blob.core.windows.net/c?sv=2021-08-06&sp=wl&se=2026-01-01&sig={SAS_SIG}", SAS_SIG),
        (f"https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4&X-Amz-Signature={AMZ_SIG}&X-Amz-Expires=60", AMZ_SIG),
        (f"Authorization: Bearer {BEARER}", BEARER),
        (f"{{'Authorization': 'Basic {BEARER}'}}", BEARER),
        (f'{{"access_token": "{BEARER}", "expires_in": 3600}}', BEARER),
        (f"failed: GET s3://bucket/k?sig={SAS_SIG} gave 403", SAS_SIG),
    ],
)
def test_secret_shapes_are_removed(text: str, secret: str) -> None:
    out = redact_text(text)
    assert secret not in out
    assert MASK in out


def test_url_keeps_what_helps_a_reader() -> None:
    out = redact_url(f"https://api.leanplum.com/api?action=getExportResults&jobId=export_1&clientKey={CLIENT_KEY}")
    assert out.startswith("https://api.leanplum.com/api?")
    assert "action=getExportResults" in out and "jobId=export_1" in out
    assert CLIENT_KEY not in out


def test_userinfo_in_url_is_removed() -> None:
    assert "hunter2secret" not in redact_url("https://user:hunter2secret@example.com/x")


def test_azure_container_is_no_secret_but_credentials_still_are() -> None:
    blob = "wasbs://landing@acct.blob.core.windows.net/pond/2026-01-01/a.csv"
    assert redact_text(f"could not commit {blob}: 409") == f"could not commit {blob}: 409"
    assert redact_url("abfss://landing@acct.dfs.core.windows.net/p") == "abfss://landing@acct.dfs.core.windows.net/p"
    key = register("wasb-account-key", "Zm9vYmFyYmF6cXV4QWNjb3VudEtleQ==")
    out = redact_url(f"wasbs://landing:{key}@acct.blob.core.windows.net/p?sv=2021&sig={SAS_SIG}")
    assert key not in out and SAS_SIG not in out
    assert out.startswith(f"wasbs://{MASK}@acct.blob.core.windows.net/p?")
    token = register("token-as-user", "ghp_TokenInTheUserNamePart0123456789")
    assert redact_url(f"https://{token}@example.com/x") == f"https://{MASK}@example.com/x"  # not a container
    assert redact_url(f"s3://{token}@bucket/k") == f"s3://{MASK}@bucket/k"


def test_registered_values_are_removed_anywhere() -> None:
    secret = register("registered", "plain-value-without-shape-123")
    register_secret(secret)
    assert secret not in redact_text(f"the vendor said {secret}!")
    assert redact_obj({"a": [f"x{secret}y", 3]}) == {"a": [f"x{MASK}y", 3]}


def test_headers() -> None:
    out = redact_headers({"Authorization": f"Bearer {BEARER}", "MD-API-KEY": "k" * 20, "Accept": "application/json"})
    assert out == {"Authorization": MASK, "MD-API-KEY": MASK, "Accept": "application/json"}


def test_exceptions_are_redacted_when_built() -> None:
    err = VendorHTTPError("leanplum", 500, "boom", url=f"https://x/api?clientKey={CLIENT_KEY}")
    assert CLIENT_KEY not in str(err)
    assert CLIENT_KEY not in str(ExportError(f"sig={SAS_SIG}"))


def test_http_library_loggers_are_filtered(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("urllib3.connectionpool").debug('%s "GET %s HTTP/1.1" 200', "https://api", f"/api?clientKey={CLIENT_KEY}")
    assert "GET /api?clientKey=" in caplog.text
    assert CLIENT_KEY not in caplog.text
