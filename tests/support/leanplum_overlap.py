"""Two really overlapping Leanplum streaming runs: two processes, each ``dag.test()`` of leanplum_stream_test.

Used by tests/integration/test_leanplum.py and by the fault matrix's "overlapping streaming runs" cell.
The sandbox holds both exportData calls until both arrived (``export_barrier``), so both runs read the
same watermark and export the same range; the caller asserts that exactly one of them lands.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

# dag.test() replaces an existing run of the same logical date: each process gets its own.
_RUN_ONE = """
import json, sys
from datetime import datetime
from tests.support.airflow import load_dag, run_dag, task_states, xcom
run = run_dag(load_dag("leanplum_flows.py", "leanplum_stream_test", folder="tests/dags"),
              logical_date=datetime.fromisoformat(sys.argv[2]), run_conf=json.loads(sys.argv[1]))
print("RESULT " + json.dumps({"run_id": run.run_id, "states": task_states(run), "export": xcom(run, "export")}))
"""


def run_two_overlapping(state: Any, variable: str, bucket: str, initial: int) -> list[dict[str, Any]]:
    """Run the streaming DAG in two processes at once; return each run's id, task states and export XCom.

    ``state`` is the sandbox state (its Leanplum config is changed here; the caller restores it).
    """
    from airflow.configuration import conf as airflow_conf

    cfg = state.vendor_config("leanplum")
    cfg.update(export_barrier=2, export_barrier_timeout=240, pending_seconds=1.5, running_seconds=1.5)
    state.vendor.setdefault("leanplum", {})["barrier_arrived"] = 0
    conf = json.dumps({"variable": variable, "bucket": bucket, "initial": initial})
    # the same Fernet key as this process, which reads the Variables the runs write
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AIRFLOW__CORE__FERNET_KEY": airflow_conf.get("core", "fernet_key", fallback="")}
    # the first submit waits in the barrier while the second process starts (slow on a busy machine)
    leanplum_conn = json.loads(os.environ["AIRFLOW_CONN_LEANPLUM_DEFAULT"])
    leanplum_conn["extra"] = {**(leanplum_conn.get("extra") or {}), "timeout": 300}
    env["AIRFLOW_CONN_LEANPLUM_DEFAULT"] = json.dumps(leanplum_conn)

    def start(n: int) -> subprocess.Popen[str]:
        logical = datetime(2026, 6, 1 + n, tzinfo=timezone.utc).isoformat()  # after the DAG start_date
        return subprocess.Popen([sys.executable, "-c", _RUN_ONE, conf, logical], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    # The second process starts once the first one is inside its submit (held by the barrier), so the
    # two dag.test() set-ups do not write SQLite at the same time; the runs themselves overlap fully.
    procs = [start(0)]
    deadline = time.time() + 120
    while state.vendor["leanplum"]["barrier_arrived"] < 1 and procs[0].poll() is None and time.time() < deadline:
        time.sleep(0.1)
    procs.append(start(1))
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
        assert proc.returncode == 0 and lines, f"run process failed (exit {proc.returncode}): {out[-3000:]}"
        results.append(json.loads(lines[-1][len("RESULT "):]))
    return results
