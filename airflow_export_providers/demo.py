"""`make demo`: run every example DAG for real against local stand-ins of the vendors, S3 and Azure.

Starts the vendor sandbox, moto's S3 server and Azurite on loopback, creates a throw-away
AIRFLOW_HOME with a migrated SQLite DB, points the connections at the local servers, runs each DAG in
dags_examples/ with ``dag.test()`` (deferred tasks run their trigger inline), checks that every
object the transfer tasks report exists, and prints a table. Exit status 0 only if all succeeded.
Everything started here is stopped at exit, Ctrl-C included.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DAGS = ROOT / "dags_examples"
# Parameters a DAG needs when triggered by hand (the UI form would ask for them).
RUN_CONF: dict[str, dict[str, Any]] = {
    "mx_snapshot": {"snapshot_guid": "CSS-1234"},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port}")


AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class Stack:
    """The local servers; stopped in ``close()`` whatever happened."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.procs: list[subprocess.Popen[bytes]] = []
        self.closers: list[Any] = []

    def start(self) -> dict[str, str]:
        from moto.server import ThreadedMotoServer

        from airflow_export_providers.sandbox import Sandbox

        s3_port = free_port()
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=s3_port, verbose=False)
        moto.start()
        self.closers.append(moto.stop)
        wait_port(s3_port)
        s3_url = f"http://127.0.0.1:{s3_port}"

        az_port = free_port()
        azurite = os.environ.get("AZURITE_BLOB") or shutil.which("azurite-blob") or str(ROOT / ".tools/node_modules/.bin/azurite-blob")
        (self.home / "azurite").mkdir(exist_ok=True)
        self.procs.append(subprocess.Popen(
            [azurite, "--inMemoryPersistence", "--blobHost", "127.0.0.1", "--blobPort", str(az_port), "--skipApiVersionCheck", "--silent"],
            cwd=self.home / "azurite", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        ))
        wait_port(az_port)
        az_conn = (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};"
                   f"BlobEndpoint=http://127.0.0.1:{az_port}/devstoreaccount1;")

        sandbox = Sandbox({"s3_endpoint": s3_url, "pending_seconds": 1, "running_seconds": 1}).start()
        self.closers.append(sandbox.stop)
        conns: dict[str, Any] = dict(sandbox.connections())
        conns["aws_default"] = {"conn_type": "aws", "login": "demo", "password": "demo-secret",
                                "extra": {"endpoint_url": s3_url, "region_name": "us-east-1"}}
        conns["wasb_default"] = {"conn_type": "wasb", "extra": {"connection_string": az_conn}}
        env = {f"AIRFLOW_CONN_{k.upper()}": json.dumps(v) for k, v in conns.items()}
        self.s3_url, self.az_conn = s3_url, az_conn
        return env

    def close(self) -> None:
        for proc in self.procs:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        for closer in reversed(self.closers):
            try:
                closer()
            except Exception as exc:  # keep stopping the rest
                print(f"warning: stopping a demo server failed: {exc}", file=sys.stderr)


def _prepare_destinations(dag: Any, s3_url: str, az_conn: str) -> None:
    """Create the buckets and containers the example DAGs write to (a real account has them)."""
    import boto3
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.blob import BlobServiceClient

    s3 = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1", aws_access_key_id="demo", aws_secret_access_key="demo-secret")
    blob = BlobServiceClient.from_connection_string(az_conn)
    for task in dag.tasks:
        partial = getattr(task, "partial_kwargs", {})  # a mapped task keeps its arguments here
        bucket = getattr(task, "bucket", None) or partial.get("bucket")
        if isinstance(bucket, str) and "{{" not in bucket:
            s3.create_bucket(Bucket=bucket)
        container = getattr(task, "container", None) or partial.get("container")
        if isinstance(container, str) and "{{" not in container:
            try:
                blob.create_container(container)
            except ResourceExistsError:
                pass


def _poll_fast(task: Any) -> None:
    """Set poll_interval / poke_interval to 1 s on export operators and sensors, mapped or not."""
    from airflow.sdk import BaseSensorOperator

    from airflow_export_providers.core.operator import ExportOperator

    cls = getattr(task, "operator_class", type(task))
    attr = "poll_interval" if isinstance(cls, type) and issubclass(cls, ExportOperator) else (
        "poke_interval" if isinstance(cls, type) and issubclass(cls, BaseSensorOperator) else None)
    if attr is None:
        return
    partial = getattr(task, "partial_kwargs", None)
    if cls is not type(task) and isinstance(partial, dict):
        partial[attr] = 1.0
    else:
        setattr(task, attr, 1.0)


def _landed(dag_run: Any) -> list[dict[str, Any]]:
    """Objects reported by the transfer tasks (their XCom is a list of {uri, size, ...})."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    out: list[dict[str, Any]] = []
    with create_session() as session:
        rows = session.query(XComModel).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id, key="return_value").all()
        for row in rows:
            value = XComModel.deserialize_value(row)
            if isinstance(value, list):
                out.extend(v for v in value if isinstance(v, dict) and "uri" in v)
    return out


def _exists(uri: str, s3_url: str, az_conn: str) -> bool:
    import boto3
    from azure.storage.blob import BlobClient, BlobServiceClient

    scheme, _, rest = uri.partition("://")
    if scheme == "s3":
        bucket, _, key = rest.partition("/")
        s3 = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1", aws_access_key_id="demo", aws_secret_access_key="demo-secret")
        try:
            s3.head_object(Bucket=bucket, Key=key)
            return True
        except Exception:
            return False
    service = BlobServiceClient.from_connection_string(az_conn)
    if uri.startswith(service.url.rstrip("/") + "/"):  # a blob's URL at the service (how the Azure transfer names it)
        blob = BlobClient.from_blob_url(uri)
        return bool(service.get_blob_client(blob.container_name, blob.blob_name).exists())
    return False


def _assets(bag: Any) -> tuple[set[str], set[str]]:
    """The Asset URIs in Airflow's table (what the Assets page lists), and those the transfers declare."""
    from airflow.models.asset import AssetModel
    from airflow.utils.session import create_session

    from airflow_export_providers.transfers.base import ExportTransferOperator

    declared = set()
    for dag in bag.dags.values():
        for task in dag.tasks:
            if isinstance(task, ExportTransferOperator) and task.asset is not None:
                declared.add(task.asset.uri)
            elif isinstance(cls := getattr(task, "operator_class", None), type) and issubclass(cls, ExportTransferOperator):
                declared.update(o.uri for o in task.partial_kwargs.get("outlets") or [])  # a mapped transfer
    with create_session() as session:
        stored = {uri for (uri,) in session.query(AssetModel.uri).all()}
    return stored, declared


def main() -> int:
    started = time.time()
    home = Path(tempfile.mkdtemp(prefix="aep-demo-"))
    os.environ.update({
        "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__PARALLELISM": "4", "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
    })
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's request log is noise here
    stack = Stack(home)
    rows: list[tuple[str, str, int, int, str, float, str]] = []
    try:
        os.environ.update(stack.start())
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(dag_folder=str(DAGS))
        if bag.import_errors:
            for path, err in bag.import_errors.items():
                print(f"import error in {path}: {err}", file=sys.stderr)
            return 1
        for dag_id in sorted(bag.dags):
            dag = bag.dags[dag_id]
            _prepare_destinations(dag, stack.s3_url, stack.az_conn)
            for task in dag.tasks:  # the sandbox finishes in seconds: poll it every second, not every minute
                _poll_fast(task)
                task.retries = 0  # a demo failure should show at once, not after the DAG's retry delays
            t0 = time.time()
            vendor = next((t for t in dag.tags if t in ("mx", "pond", "indicative", "leanplum", "mobile_engagement")), "-")
            try:
                run = dag.test(run_conf=RUN_CONF.get(dag_id))
                state = str(run.state)
                landed = _landed(run)
            except Exception as exc:
                state, landed = f"error: {exc}", []
            missing = [o["uri"] for o in landed if not _exists(o["uri"], stack.s3_url, stack.az_conn)]
            ok = state == "success" and bool(landed) and not missing
            rows.append((dag_id, vendor, len(landed), sum(int(o.get("size") or 0) for o in landed),
                         ", ".join(sorted({o["uri"].rsplit("/", 1)[0] + "/" for o in landed})) or "-",
                         time.time() - t0, "ok" if ok else f"FAILED ({state}; missing={len(missing)})"))
        assets = _assets(bag)
    finally:
        stack.close()
        shutil.rmtree(home, ignore_errors=True)
    _print_table(rows)
    stored, declared = assets
    same = stored == declared
    print(f"\nAssets: {len(stored)} in Airflow's asset table, one per landing destination the transfers declare"
          + ("" if same else f" — MISMATCH: declared {sorted(declared)}, stored {sorted(stored)}"))
    for uri in sorted(stored):
        print(f"  {uri}")
    if not same:
        rows.append(("(assets)", "-", 0, 0, "-", 0.0, "FAILED (the asset table is not one Asset per destination)"))
    seconds = time.time() - started
    total = time.time() - float(os.environ.get("AEP_DEMO_STARTED") or started)
    print(f"\nmake demo finished in {total:.0f}s: {total - seconds:.0f}s set-up (venv, pip, npm) and {seconds:.0f}s "
          f"running the servers, the DB migration and every example DAG")
    out = ROOT / "bench" / "out"  # the benchmarks report the last demo time (P5)
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo.json").write_text(json.dumps({
        "seconds": round(total, 1), "dags_seconds": round(seconds, 1), "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "ok": bool(rows) and all(r[6] == "ok" for r in rows),
    }))
    return 0 if rows and all(r[6] == "ok" for r in rows) else 1


def _print_table(rows: list[tuple[str, str, int, int, str, float, str]]) -> None:
    header = ("DAG", "vendor", "files", "bytes", "destination", "seconds", "result")
    table = [header] + [(r[0], r[1], str(r[2]), str(r[3]), r[4], f"{r[5]:.1f}", r[6]) for r in rows]
    widths = [min(max(len(row[i]) for row in table), 70) for i in range(len(header))]
    for i, row in enumerate(table):
        print("  ".join(cell[:70].ljust(widths[j]) for j, cell in enumerate(row)))
        if i == 0:
            print("  ".join("-" * w for w in widths))


if __name__ == "__main__":
    sys.exit(main())
