"""The sandbox options a stack in another process needs (docker-compose.yaml's ``sandbox`` service,
deploy/stack.py): a public host instead of a wildcard bind address, fixed helper ports, the CA file in a
shared folder, the connections as a file, preset credentials, and admin routes to read and change it."""

from __future__ import annotations

import json
import socket
import ssl
from pathlib import Path

import pytest
import requests

from airflow_export_providers.sandbox.__main__ import start, write_connections
from airflow_export_providers.sandbox.server import Sandbox
from deploy.stack import free_port


def test_a_wildcard_bind_is_never_handed_out() -> None:
    with Sandbox({}, host="0.0.0.0", port=0) as sb:
        assert sb.url == f"http://127.0.0.1:{sb.port}"
        assert all("0.0.0.0" not in json.dumps(conn) for conn in sb.connections().values())


def test_public_host_fixed_helper_ports_and_shared_ca(tmp_path: Path) -> None:
    gateway, aad = free_port(), free_port()
    sb = start(["--host", "127.0.0.1", "--port", "0", "--public-host", "localhost", "--gateway-port", str(gateway),
                "--aad-port", str(aad), "--tls-dir", str(tmp_path / "shared"), "--connections-file", str(tmp_path / "c.json")])
    try:
        conns = json.loads((tmp_path / "c.json").read_text())
        assert conns == json.loads(json.dumps(sb.connections()))
        assert sb.url == f"http://localhost:{sb.port}" and conns["pond_default"]["host"] == sb.url
        me = conns["azure_mobile_engagement_default"]["extra"]
        assert me["authority_host"] == f"https://localhost:{aad}"
        assert me["ca_bundle"] == str(tmp_path / "shared" / "sandbox-ca.pem")
        assert [p.name for p in (tmp_path / "shared").iterdir()] == ["sandbox-ca.pem"], "the server key stays private"
        ctx = ssl.create_default_context(cafile=me["ca_bundle"])  # the shared CA verifies the listener by its name
        with socket.create_connection(("127.0.0.1", aad)) as raw, ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.version()
        assert sb.state.vendor["pond"]["gateway_url"] == f"http://localhost:{gateway}"
        with socket.create_connection(("127.0.0.1", gateway)):
            pass
    finally:
        sb.stop()


def test_connections_file_is_written_whole_and_private(tmp_path: Path) -> None:
    path = tmp_path / "conns" / "connections.json"
    write_connections(path, {"a": {"conn_type": "http", "password": "p"}})
    assert json.loads(path.read_text()) == {"a": {"conn_type": "http", "password": "p"}}
    assert path.stat().st_mode & 0o007 == 0 and not path.with_name("connections.json.tmp").exists()


def test_preset_secret_and_admin_routes() -> None:
    with Sandbox({"secrets": {"files-sig": "preset-sig"}}) as sb:
        assert sb.state.secret("files-sig") == "preset-sig"
        base = sb.url
        assert "secrets" not in requests.get(f"{base}/_sandbox/config", timeout=10).json()
        merged = requests.patch(f"{base}/_sandbox/config", json={"pond": {"pending_seconds": 7}, "rows": 3}, timeout=10).json()
        assert merged["pond"]["pending_seconds"] == 7 and merged["rows"] == 3
        assert "gateway_host" in merged["pond"] or merged["pond"], "merged one level deep, not replaced"
        for bad in ({"secrets": {"files-sig": "x"}}, ["not", "an", "object"]):
            resp = requests.patch(f"{base}/_sandbox/config", json=bad, timeout=10)
            assert resp.status_code == 400
        assert sb.state.secret("files-sig") == "preset-sig"
        job = sb.state.new_job("pond", {})
        assert requests.get(f"{base}/_sandbox/stats", timeout=10).json()["job_ids"] == {"pond": [job.job_id]}


@pytest.mark.parametrize("faulted", [True, False])
def test_slow_fault_on_generated_files(faulted: bool) -> None:
    with Sandbox({"secrets": {"files-sig": "s"}}) as sb:
        fault = sb.state.add_fault(path=r"^/files/gen/", kind="slow", delay=0.0, times=1 if faulted else 0)
        resp = requests.get(f"{sb.url}/files/gen/200000", params={"sig": "s"}, timeout=30)
        assert resp.status_code == 200 and len(resp.content) == 200000
        assert fault.hits == (1 if faulted else 0)
