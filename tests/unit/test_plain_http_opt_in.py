"""Plain http:// to a named host only through the explicit ``[export_providers] allow_plain_http_hosts`` opt-in.

The hooks refuse credential-bearing plain-http URLs except on loopback; docker-compose.yaml's sandbox is
reached as ``http://sandbox:8999`` in the compose network, so deploy/local.env names that one host. The
opt-in is exact (no suffix, no prefix match), empty by default, and a refusal says how to opt in.
"""

from __future__ import annotations

import importlib
import json
from typing import Any

import pytest

from airflow_export_providers import get_provider_info
from airflow_export_providers.core.errors import ExportInputError
from airflow_export_providers.core.hook import require_secure_url
from airflow_export_providers.sandbox import Sandbox
from deploy.stack import ROOT, read_env_file

SETTING = "AIRFLOW__EXPORT_PROVIDERS__ALLOW_PLAIN_HTTP_HOSTS"


def test_refused_by_default_with_the_setting_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SETTING, raising=False)
    with pytest.raises(ExportInputError, match=r"^f: 'http://sandbox:8999' must be an https:// URL .*allow_plain_http_hosts"):
        require_secure_url("http://sandbox:8999", "f")


def test_only_the_named_hosts_are_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SETTING, " Sandbox , other-stand-in ")
    assert require_secure_url("http://sandbox:8999/", "f") == "http://sandbox:8999"
    assert require_secure_url("http://SANDBOX:1/x", "f") == "http://SANDBOX:1/x"
    assert require_secure_url("http://other-stand-in/x", "f") == "http://other-stand-in/x"
    for url in ("http://sandboxx:8999", "http://evil.sandbox:1", "http://sandbox.evil.com", "http://10.0.0.1", "ftp://sandbox/x"):
        with pytest.raises(ExportInputError, match="must be an https:// URL"):
            require_secure_url(url, "f")
    assert require_secure_url("https://api.example.com/", "f") == "https://api.example.com"


def _hooks() -> dict[str, Any]:
    out = {}
    for entry in get_provider_info()["connection-types"]:
        module, _, cls = entry["hook-class-name"].rpartition(".")
        out[entry["connection-type"]] = getattr(importlib.import_module(module), cls)
    return out


@pytest.mark.parametrize("opted_in", [True, False])
def test_the_compose_sandbox_connections_pass_only_with_the_stand_ins_opt_in(monkeypatch: pytest.MonkeyPatch, opted_in: bool) -> None:
    """What the compose sandbox writes (``--public-host sandbox``): every vendor connection names
    ``http://sandbox:8999`` — accepted with deploy/local.env's opt-in, refused without it; no vendor
    call is made either way (nothing listens on ``sandbox`` here)."""
    local = read_env_file(ROOT / "deploy" / "local.env")
    if opted_in:
        monkeypatch.setenv(SETTING, local[SETTING])
    else:
        monkeypatch.delenv(SETTING, raising=False)
    sandbox = Sandbox({"public_host": "sandbox"}, host="127.0.0.1", port=0).start()
    try:
        conns = sandbox.connections()
        assert sandbox.url == f"http://sandbox:{sandbox.port}"
        requests_before = len(sandbox.state.requests)
    finally:
        sandbox.stop()
    hooks = _hooks()
    for conn_id, conn in conns.items():
        assert conn["host"].startswith("http://sandbox:"), conn_id
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        hook = hooks[conn["conn_type"]](conn_id)
        if opted_in:
            assert hook.base_url == conn["host"]
        else:
            with pytest.raises(ExportInputError, match=f"{conn_id}.host: .*allow_plain_http_hosts"):
                _ = hook.base_url
    assert requests_before == 0
