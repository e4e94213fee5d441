"""Start the sandbox and print the AIRFLOW_CONN_* values that point connections at it.

On loopback by default. In a container network (docker-compose.yaml's ``sandbox`` service) bind
``--host 0.0.0.0`` and name the host clients use with ``--public-host``; ``--gateway-port`` (POND's
presigned-link gateway) and ``--aad-port`` (the TLS Azure AD stand-in) fix the helper listeners'
ports, ``--tls-dir`` puts the CA file where the clients can read it, and ``--connections-file``
writes the connections as a JSON file Airflow's LocalFilesystemBackend reads.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
from pathlib import Path
from typing import Any

from airflow_export_providers.sandbox.server import Sandbox


def build_config(args: argparse.Namespace) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(args.config) if args.config else {}
    if args.s3_endpoint:
        config["s3_endpoint"] = args.s3_endpoint
    if args.public_host:
        config["public_host"] = args.public_host
    if args.tls_dir:
        config["tls_dir"] = args.tls_dir
    for vendor, prefix, port in (("pond", "gateway", args.gateway_port), ("mobile_engagement", "aad", args.aad_port)):
        settings = config.setdefault(vendor, {})
        settings.setdefault(f"{prefix}_host", args.host)
        if port:
            settings[f"{prefix}_port"] = port
    return config


def write_connections(path: Path, conns: dict[str, Any]) -> None:
    """Atomically, readable by the owner and its group only (the credentials are the sandbox's)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "w") as out:
        json.dump(conns, out, indent=2)
    tmp.replace(path)


def start(argv: list[str] | None = None) -> Sandbox:
    """Parse the arguments, start the sandbox, write and print its connections."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="bind address of every listener (loopback by default)")
    parser.add_argument("--port", type=int, default=8999, help="the vendor APIs")
    parser.add_argument("--public-host", default=None, help="host name clients use (e.g. the compose service name)")
    parser.add_argument("--gateway-port", type=int, default=0, help="POND's S3 link gateway (0: any free port)")
    parser.add_argument("--aad-port", type=int, default=0, help="the Azure AD stand-in, TLS (0: any free port)")
    parser.add_argument("--tls-dir", default=None, help="folder that receives the Azure AD stand-in's CA file")
    parser.add_argument("--connections-file", default=None, help="write the connections here as JSON as well")
    parser.add_argument("--s3-endpoint", default=None, help="S3-compatible endpoint for vendors that write to S3")
    parser.add_argument("--config", default=None, help="JSON object of sandbox settings")
    args = parser.parse_args(argv)
    sandbox = Sandbox(build_config(args), host=args.host, port=args.port).start()
    conns = sandbox.connections()
    if args.connections_file:
        write_connections(Path(args.connections_file), conns)
    print(f"# sandbox listening on {args.host}:{sandbox.port}, reached as {sandbox.url}")
    for conn_id, conn in conns.items():
        print(f"export AIRFLOW_CONN_{conn_id.upper()}='{json.dumps(conn)}'")
    print("", flush=True)
    return sandbox


def main(argv: list[str] | None = None) -> None:
    sandbox = start(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    sandbox.stop()


if __name__ == "__main__":
    main()
