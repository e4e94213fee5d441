"""Token-based credentials shared by vendors with OAuth2-style tokens (sync and async, one cache)."""

from __future__ import annotations

import asyncio
import math
import reprlib
import threading
import time
from typing import Any

from airflow_export_providers.core.errors import VendorHTTPError
from airflow_export_providers.core.http import AsyncHttpClient, Auth, HttpClient, Request
from airflow_export_providers.core.redact import register_secret

REFRESH_MARGIN_SECONDS = 120.0


class TokenAuth(Auth):
    """Fetch a bearer token, reuse it until shortly before it expires, refresh once on 401.

    A vendor subclass says only how to ask for a token (``token_request``) and, if the answer is not
    the usual ``{"access_token", "expires_in"}``, how to read it (``parse_token``).
    """

    def __init__(self, vendor: str, verify: bool | str = True, margin: float = REFRESH_MARGIN_SECONDS) -> None:
        self.vendor = vendor
        self.verify = verify
        self.margin = margin
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()
        self._alock: asyncio.Lock | None = None
        self.fetch_count = 0  # observable by tests and logs: how many tokens were requested

    def token_request(self) -> Request:
        raise NotImplementedError

    def describe_error(self, status: int, body: bytes) -> str:
        """The token endpoint's refusal in clear words; vendors override to name their error codes."""
        return " ".join(body.decode("utf-8", "replace").split())[:300]

    def parse_token(self, payload: Any) -> tuple[str, float]:
        if not isinstance(payload, dict) or not isinstance(payload.get("access_token"), str):
            raise VendorHTTPError(self.vendor, 200, "token answer has no access_token field")
        expires_in = payload.get("expires_in", 3600)
        try:
            lifetime = float(expires_in)
        except (TypeError, ValueError, OverflowError):
            raise VendorHTTPError(self.vendor, 200, f"token answer has a non-numeric expires_in: {reprlib.repr(expires_in)}") from None
        if not math.isfinite(lifetime) or lifetime <= 0:
            raise VendorHTTPError(self.vendor, 200, f"token answer has expires_in {reprlib.repr(expires_in)}, expected a positive number of seconds")
        return payload["access_token"], lifetime

    def _valid(self) -> bool:
        return self._token is not None and time.time() < self._expires_at - min(self.margin, (self._lifetime or 0) / 4)

    _lifetime: float | None = None

    def _store(self, token: str, lifetime: float) -> None:
        register_secret(token)
        self._token = token
        self._lifetime = lifetime
        self._expires_at = time.time() + lifetime
        self.fetch_count += 1

    def token(self) -> str:
        with self._lock:
            if not self._valid():
                client = HttpClient(self.vendor, verify=self.verify, describe_error=self.describe_error)
                try:
                    self._store(*self.parse_token(client.json(self.token_request())))
                finally:
                    client.close()
            assert self._token is not None
            return self._token

    async def atoken(self) -> str:
        if self._alock is None:
            self._alock = asyncio.Lock()
        async with self._alock:
            if not self._valid():
                client = AsyncHttpClient(self.vendor, verify=self.verify, describe_error=self.describe_error)
                try:
                    self._store(*self.parse_token(await client.json(self.token_request())))
                finally:
                    await client.close()
            assert self._token is not None
            return self._token

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}

    async def aheaders(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.atoken()}"}

    def invalidate(self) -> bool:
        self._token = None
        self._expires_at = 0.0
        return True
