"""The sandbox's generated-file route (``/files/gen/{size}``) that the benchmarks land through."""

from __future__ import annotations

from typing import Any

import requests

from airflow_export_providers.sandbox.server import generated_bytes


def _get(sandbox: Any, size: int, headers: dict[str, str] | None = None, sig: str | None = None) -> requests.Response:
    sig = sandbox.state.secret("files-sig") if sig is None else sig
    return requests.get(f"{sandbox.url}/files/gen/{size}", params={"sig": sig}, headers=headers or {}, timeout=30)


def test_generated_file_is_deterministic_and_ranged(sandbox: Any) -> None:
    size = 3 * (1 << 20) + 12345  # spans several pieces and a partial 64 KiB chunk
    whole = _get(sandbox, size)
    assert whole.status_code == 200
    assert len(whole.content) == size
    assert whole.content == b"".join(generated_bytes(0, size))
    assert whole.content[:65536] != whole.content[65536:131072]  # not one repeated chunk

    tail = _get(sandbox, size, {"Range": "bytes=100000-"})
    assert tail.status_code == 206
    assert tail.headers["Content-Range"] == f"bytes 100000-{size - 1}/{size}"
    assert tail.content == whole.content[100000:]

    middle = _get(sandbox, size, {"Range": "bytes=70000-70009"})
    assert middle.status_code == 206
    assert middle.content == whole.content[70000:70010]


def test_generated_file_needs_the_signature(sandbox: Any) -> None:
    assert _get(sandbox, 10, sig="wrong").status_code == 403
