"""Real servers on loopback for the tests: moto's S3 server and Azurite (plus helpers)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from airflow_export_providers.demo import AZURITE_KEY, free_port, wait_port

__all__ = ["AZURITE_ACCOUNT", "AZURITE_KEY", "Azurite", "MotoS3", "azurite_binary", "free_port", "wait_port"]

AZURITE_ACCOUNT = "devstoreaccount1"


class MotoS3:
    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoS3:
        self.server.start()
        wait_port(self.port)
        return self

    def stop(self) -> None:
        self.server.stop()

    def client(self):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.url, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )


def azurite_binary() -> str:
    explicit = os.environ.get("AZURITE_BLOB")
    if explicit and Path(explicit).exists():
        return explicit
    local = Path(__file__).resolve().parents[2] / ".tools" / "node_modules" / ".bin" / "azurite-blob"
    if local.exists():
        return str(local)
    found = shutil.which("azurite-blob")
    if found:
        return found
    raise RuntimeError("azurite-blob not found: run the tests through `make test`, which installs it with npm")


class Azurite:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def blob_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={self.blob_url};"
        )

    def start(self) -> Azurite:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [azurite_binary(), "--inMemoryPersistence", "--blobHost", "127.0.0.1", "--blobPort", str(self.port),
             "--skipApiVersionCheck", "--silent"],
            cwd=self.workdir,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        wait_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def service(self):  # type: ignore[no-untyped-def]
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string)
