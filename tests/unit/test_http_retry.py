"""Retry decisions of both HTTP clients, against the sandbox over real HTTP with injected faults."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from airflow_export_providers.core.errors import SubmitOutcomeUnknown, VendorAuthError, VendorHTTPError
from airflow_export_providers.core.http import (
    AsyncHttpClient,
    Auth,
    HttpClient,
    Request,
    RetryPolicy,
    parse_retry_after,
)


class Bearer(Auth):
    """Bearer auth whose token can be made wrong, to exercise the single refresh on 401."""

    def __init__(self, good: str, first: str | None = None) -> None:
        self.good = good
        self.current = first or good
        self.refreshes = 0

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.current}"}

    def invalidate(self) -> bool:
        self.refreshes += 1
        self.current = self.good
        return True


@pytest.fixture
def job_url(sandbox: Any, sandbox_state: Any) -> str:
    job = sandbox_state.new_job("generic", {}, pending_seconds=0, running_seconds=0)
    return f"{sandbox.url}/generic/jobs/{job.job_id}"


def _hits(state: Any, path: str) -> int:
    return sum(1 for r in state.requests if r["path"] == path)


def client(state: Any, sleeps: list[float], **kwargs: Any) -> HttpClient:
    auth = kwargs.pop("auth", None) or Bearer(state.secret("generic-token"))
    return HttpClient("generic", auth=auth, policy=RetryPolicy(max_attempts=4, backoff_base=0.01), sleep=sleeps.append, **kwargs)


def test_429_honours_retry_after(sandbox_state: Any, job_url: str) -> None:
    sleeps: list[float] = []
    path = job_url.split("://", 1)[1].split("/", 1)[1]
    sandbox_state.add_fault(path=path, status=429, retry_after=7, times=2)
    assert client(sandbox_state, sleeps).json(Request("GET", job_url))["state"] == "SUCCESS"
    assert sleeps == [7.0, 7.0]


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_burst_is_retried(sandbox_state: Any, job_url: str, status: int) -> None:
    sleeps: list[float] = []
    sandbox_state.add_fault(path="/generic/jobs/", status=status, times=2)
    assert client(sandbox_state, sleeps).json(Request("GET", job_url))["state"] == "SUCCESS"
    assert len(sleeps) == 2 and all(0 < s <= 0.02 for s in sleeps)


@pytest.mark.parametrize("status", [400, 403, 404])
def test_client_errors_are_not_retried(sandbox_state: Any, job_url: str, status: int) -> None:
    sleeps: list[float] = []
    sandbox_state.add_fault(path="/generic/jobs/", status=status, body="vendor says no", times=1)
    before = len(sandbox_state.requests)
    with pytest.raises(VendorHTTPError) as err:
        client(sandbox_state, sleeps).json(Request("GET", job_url))
    assert err.value.status == status and "vendor says no" in str(err.value)
    assert sleeps == [] and len(sandbox_state.requests) - before == 1


def test_401_without_refreshable_credentials_is_not_retried(sandbox_state: Any, job_url: str) -> None:
    sleeps: list[float] = []
    before = len(sandbox_state.requests)
    with pytest.raises(VendorAuthError):
        client(sandbox_state, sleeps, auth=Auth()).json(Request("GET", job_url))
    assert len(sandbox_state.requests) - before == 1


def test_401_refreshes_credentials_exactly_once(sandbox_state: Any, job_url: str) -> None:
    sleeps: list[float] = []
    auth = Bearer(sandbox_state.secret("generic-token"), first="stale-token-value")
    assert client(sandbox_state, sleeps, auth=auth).json(Request("GET", job_url))["state"] == "SUCCESS"
    assert auth.refreshes == 1
    always_bad = Bearer("still-wrong-token", first="stale-token-value")
    with pytest.raises(VendorAuthError):
        client(sandbox_state, sleeps, auth=always_bad).json(Request("GET", job_url))
    assert always_bad.refreshes == 1


def test_submit_is_not_repeated_on_500_but_is_on_429(sandbox: Any, sandbox_state: Any) -> None:
    sleeps: list[float] = []
    url = f"{sandbox.url}/generic/jobs"
    before = sandbox_state.submissions["generic"]
    sandbox_state.add_fault(path="^/generic/jobs$", method="POST", status=500, times=1)
    with pytest.raises(VendorHTTPError):
        client(sandbox_state, sleeps).json(Request("POST", url, idempotent=False))
    sandbox_state.add_fault(path="^/generic/jobs$", method="POST", status=429, retry_after=1, times=1)
    client(sandbox_state, sleeps).json(Request("POST", url, idempotent=False))
    assert sleeps == [1.0]
    assert sandbox_state.submissions["generic"] - before == 1


def test_submit_cut_mid_answer_is_reported_not_repeated(sandbox_state: Any) -> None:
    """A POST whose connection drops after it was sent may have created a job: never sent twice."""
    sleeps: list[float] = []
    port, accepted = _closing_port()
    with pytest.raises(SubmitOutcomeUnknown):
        client(sandbox_state, sleeps).json(Request("POST", f"http://127.0.0.1:{port}/", idempotent=False, data={"a": "b"}))
    assert sleeps == [] and accepted == [1]


def _closing_port() -> tuple[int, list[int]]:
    """A loopback listener that accepts a connection and closes it without answering."""
    import socket
    import threading

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    accepted: list[int] = []

    def serve() -> None:
        srv.settimeout(5)
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                break
            accepted.append(1)
            conn.recv(65536)
            conn.close()
            if len(accepted) > 3:
                break
        srv.close()

    threading.Thread(target=serve, daemon=True).start()
    return int(srv.getsockname()[1]), accepted


def test_async_client_shares_the_policy(sandbox_state: Any, job_url: str) -> None:
    async def go() -> tuple[Any, int]:
        c = AsyncHttpClient("generic", auth=Bearer(sandbox_state.secret("generic-token")),
                            policy=RetryPolicy(max_attempts=4, backoff_base=0.01))
        try:
            sandbox_state.add_fault(path="/generic/jobs/", status=429, retry_after=0.05, times=1)
            sandbox_state.add_fault(path="/generic/jobs/", status=503, times=1)
            ok = await c.json(Request("GET", job_url))
            sandbox_state.add_fault(path="/generic/jobs/", status=404, times=1)
            before = len(sandbox_state.requests)
            with pytest.raises(VendorHTTPError):
                await c.json(Request("GET", job_url))
            return ok, len(sandbox_state.requests) - before
        finally:
            await c.close()

    ok, hits = asyncio.run(go())
    assert ok["state"] == "SUCCESS" and hits == 1


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("garbage") is None
    assert 0 <= (parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") or 0) == 0


def test_backoff_is_jittered_and_capped() -> None:
    policy = RetryPolicy(backoff_base=1, backoff_max=8)
    delays = [policy.delay(attempt) for attempt in range(1, 10)]
    assert all(d <= 8 for d in delays) and delays[0] <= 1
    assert policy.delay(1, retry_after=10_000) == policy.max_retry_after
