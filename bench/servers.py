"""The servers a benchmark run needs, each in its own process so their CPU and memory never count.

- the sandbox (``python bench/servers.py sandbox '<config json>'``): prints one JSON line with its URL
  and the two secrets the benchmarks need (the generated-file signature, the generic job API token);
- moto's S3 server (``python -m moto.server``), which keeps every object in its own memory;
- Azurite (tests/support/servers.py), in-memory.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.servers import Azurite, free_port, wait_port  # noqa: E402


class Child:
    """A server process started by the benchmark run (stopped by its own pid only)."""

    def __init__(self, proc: subprocess.Popen[str], url: str, info: dict[str, Any] | None = None) -> None:
        self.proc = proc
        self.url = url
        self.info = info or {}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_sandbox(config: dict[str, Any]) -> Child:
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "sandbox", json.dumps(config)],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError("the sandbox process exited before it printed its address")
    info = json.loads(line)
    return Child(proc, info["url"], info)


def start_moto() -> Child:
    port = free_port()
    log = (ROOT / "bench" / "out" / "moto.log").open("w")  # its errors, should a request fail
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log, stderr=subprocess.STDOUT, text=True,
    )
    log.close()
    wait_port(port)
    return Child(proc, f"http://127.0.0.1:{port}")


def start_azurite(workdir: Path) -> Azurite:
    return Azurite(workdir).start()


def _serve_sandbox(config: dict[str, Any]) -> None:
    """Child side: run the sandbox, print where it is and its secrets, wait for SIGTERM."""
    import resource

    from airflow_export_providers.sandbox.server import Sandbox

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # a thousand triggers keep a thousand connections
    sandbox = Sandbox(config).start()
    state = sandbox.state
    print(json.dumps({
        "url": sandbox.url, "pid": os.getpid(),
        "files_sig": state.secret("files-sig"), "generic_token": state.secret("generic-token"),
    }), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.wait(1.0):
        # the request log is for tests; a long run must not grow it forever. P4 reads its length as the count
        # of polls served (about 30,000 in a full run), so it is trimmed only far above that
        if len(state.requests) > 1_000_000:
            del state.requests[:-1000]
    sandbox.stop()


if __name__ == "__main__":
    if sys.argv[1] == "sandbox":
        _serve_sandbox(json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})
