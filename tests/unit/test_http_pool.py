"""Async clients on one event loop share one connection pool (a triggerer runs thousands of triggers).

Against the sandbox over real HTTP: polls of many clients reuse pooled connections, each client's
auth stays its own, and the pool closes with its last client.
"""

from __future__ import annotations

import asyncio
from typing import Any

from airflow_export_providers.core import http
from airflow_export_providers.core.http import AsyncHttpClient, Auth, Request, RetryPolicy


class Token(Auth):
    def __init__(self, token: str) -> None:
        self.token = token

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def test_clients_share_the_loop_pool_and_close_it_last(sandbox: Any, sandbox_state: Any) -> None:
    token = sandbox_state.secret("generic-token")
    job = sandbox_state.new_job("generic", {}, pending_seconds=0, running_seconds=0)
    url = f"{sandbox.url}/generic/jobs/{job.job_id}"

    async def go() -> tuple[int, int, bool, bool]:
        clients = [AsyncHttpClient("generic", auth=Token(token), policy=RetryPolicy(max_attempts=2)) for _ in range(20)]
        for _ in range(3):  # three rounds of polls, as triggers poll every interval
            answers = await asyncio.gather(*(c.json(Request("GET", url)) for c in clients))
            assert all(a["state"] == "SUCCESS" for a in answers)
        sessions = {id(c._session.connector) for c in clients if c._session is not None}
        pool = http._POOLS[asyncio.get_running_loop()]
        connector = pool.connector
        assert connector is not None
        for c in clients[:-1]:
            await c.close()
        still_open = not connector.closed
        await clients[-1].close()
        return len(sessions), pool.users, still_open, connector.closed

    shared, users, open_until_last, closed = asyncio.run(go())
    assert shared == 1  # one connector for all twenty clients
    assert open_until_last and closed and users == 0


def _connections_to(port: int) -> set[int]:
    """Local ports of this process's open connections to ``port`` (other tests may have left some)."""
    import psutil

    return {c.laddr.port for c in psutil.Process().net_connections(kind="tcp")
            if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED}


def test_pool_reuses_connections_across_clients(sandbox: Any, sandbox_state: Any) -> None:
    """Sequential polls of ten clients go over one kept-alive connection, not one connection each."""
    token = sandbox_state.secret("generic-token")
    job = sandbox_state.new_job("generic", {}, pending_seconds=0, running_seconds=0)
    url = f"{sandbox.url}/generic/jobs/{job.job_id}"
    port = int(sandbox.url.rsplit(":", 1)[1].split("/")[0])

    async def go() -> set[int]:
        before = _connections_to(port)
        clients = [AsyncHttpClient("generic", auth=Token(token)) for _ in range(10)]
        try:
            for c in clients:
                assert (await c.json(Request("GET", url)))["state"] == "SUCCESS"
            return _connections_to(port) - before
        finally:
            for c in clients:
                await c.close()

    assert len(asyncio.run(go())) == 1  # one new connection for the ten clients


def test_a_wrong_token_stays_with_its_client(sandbox: Any, sandbox_state: Any) -> None:
    """Sharing connections shares no credentials: each request carries its own client's auth."""
    token = sandbox_state.secret("generic-token")
    job = sandbox_state.new_job("generic", {}, pending_seconds=0, running_seconds=0)
    url = f"{sandbox.url}/generic/jobs/{job.job_id}"

    async def go() -> tuple[Any, BaseException | None]:
        good = AsyncHttpClient("generic", auth=Token(token), policy=RetryPolicy(max_attempts=1))
        bad = AsyncHttpClient("generic", auth=Token("wrong"), policy=RetryPolicy(max_attempts=1))
        try:
            ok = await good.json(Request("GET", url))
            try:
                await bad.json(Request("GET", url))
                err = None
            except Exception as exc:  # the 401 of the wrong token
                err = exc
            return ok, err
        finally:
            await good.close()
            await bad.close()

    ok, err = asyncio.run(go())
    assert ok["state"] == "SUCCESS" and err is not None and "401" in str(err)
