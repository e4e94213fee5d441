"""Start the sandbox on loopback and print the AIRFLOW_CONN_* values that point connections at it."""

from __future__ import annotations

import argparse
import json
import signal
import threading

from airflow_export_providers.sandbox.server import Sandbox


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="bind address (loopback by default)")
    parser.add_argument("--port", type=int, default=8999)
    parser.add_argument("--s3-endpoint", default=None, help="S3-compatible endpoint for vendors that write to S3")
    parser.add_argument("--config", default=None, help="JSON object of sandbox settings")
    args = parser.parse_args(argv)
    config = json.loads(args.config) if args.config else {}
    if args.s3_endpoint:
        config["s3_endpoint"] = args.s3_endpoint
    sandbox = Sandbox(config, host=args.host, port=args.port).start()
    print(f"# sandbox listening on {sandbox.url}")
    for conn_id, conn in sandbox.connections().items():
        print(f"export AIRFLOW_CONN_{conn_id.upper()}='{json.dumps(conn)}'")
    print("", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    sandbox.stop()


if __name__ == "__main__":
    main()
