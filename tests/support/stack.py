"""A real Airflow 3.3 deployment for e2e tests: api-server, scheduler, dag-processor and triggerer as
separate processes (LocalExecutor, a Postgres metadata DB: tests/support/postgres.py), each in its own
process group so a kill stops its children."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from tests.support.servers import free_port, wait_port

ROOT = Path(__file__).resolve().parents[2]
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")


class AirflowStack:
    def __init__(self, home: Path, dags_folder: Path, db_url: str, extra_env: dict[str, str] | None = None) -> None:
        self.home = home
        self.db_url = db_url
        self.port = free_port()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.env = {
            **os.environ,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.port}",
            "AIRFLOW__API_AUTH__JWT_SECRET": "e2e-jwt-secret-not-a-real-one",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "300",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
            "PYTHONPATH": str(ROOT),
            **(extra_env or {}),
        }
        self.api = f"http://127.0.0.1:{self.port}/api/v2"

    def migrate(self) -> None:
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=self.env, check=True, capture_output=True)

    def start(self, component: str) -> None:
        log = open(self.home / f"{component}.log", "ab")
        args = [sys.executable, "-m", "airflow", component]
        if component == "api-server":
            args += ["--port", str(self.port), "--host", "127.0.0.1"]
        self.procs[component] = subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self, component: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.pop(component, None)
        if proc is None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def up(self) -> AirflowStack:
        self.migrate()
        for component in COMPONENTS:
            self.start(component)
        wait_port(self.port, timeout=90)
        self.wait_for(lambda: requests.get(f"{self.api}/monitor/health", timeout=5).status_code == 200, 90, "api-server health")
        return self

    def down(self) -> None:
        for component in list(self.procs):
            self.kill(component, signal.SIGTERM)

    def logs(self, component: str) -> str:
        path = self.home / f"{component}.log"
        return path.read_text("utf-8", "replace") if path.exists() else ""

    @staticmethod
    def wait_for(predicate: Any, timeout: float, what: str) -> Any:
        deadline = time.time() + timeout
        last: Any = None
        while time.time() < deadline:
            try:
                last = predicate()
                if last:
                    return last
            except requests.RequestException:
                pass
            time.sleep(1)
        raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")

    # ---- REST API (what the UI calls) --------------------------------------------------------
    @staticmethod
    def _call(method: str, url: str, **kwargs: Any) -> requests.Response:
        """Under load on two cores the api-server can answer 5xx for a moment (a worker restarting, a
        statement timing out): a call the test makes again safely is retried a few times."""
        for attempt in range(5):
            resp = requests.request(method, url, timeout=30, **kwargs)
            if resp.status_code < 500:
                break
            time.sleep(2 * (attempt + 1))
        resp.raise_for_status()
        return resp

    def wait_dag(self, dag_id: str, timeout: float = 120, unpause: bool = True) -> None:
        """Wait until the dag-processor parsed ``dag_id``; unpause it (DAGs start paused here)."""
        self.wait_for(lambda: requests.get(f"{self.api}/dags/{dag_id}", timeout=5).status_code == 200, timeout, f"DAG {dag_id} parsed")
        if unpause:
            self._call("PATCH", f"{self.api}/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None, logical_date: str | None = None) -> str:
        resp = self._call("POST", f"{self.api}/dags/{dag_id}/dagRuns", json={"conf": conf or {}, "logical_date": logical_date})
        return str(resp.json()["dag_run_id"])

    def run_state(self, dag_id: str, run_id: str) -> str:
        resp = self._call("GET", f"{self.api}/dags/{dag_id}/dagRuns/{run_id}")
        return str(resp.json()["state"])

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 180) -> str:
        return str(self.wait_for(
            lambda: (s := self.run_state(dag_id, run_id)) in ("success", "failed") and s, timeout, f"{dag_id}/{run_id} to finish"
        ))

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        resp = self._call("GET", f"{self.api}/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        return list(resp.json()["task_instances"])

    def backfill(self, dag_id: str, from_date: str, to_date: str, reprocess: str = "completed") -> dict[str, Any]:
        """Create a backfill, once: a second POST of the same range is refused while the first is active (409),
        so a failed create is the test's failure, with Airflow's answer in it."""
        body = {"dag_id": dag_id, "from_date": from_date, "to_date": to_date, "reprocess_behavior": reprocess,
                "max_active_runs": 3, "run_backwards": False, "dag_run_conf": {}}
        resp = requests.post(f"{self.api}/backfills", json=body, timeout=60)
        if resp.status_code != 200:
            raise AssertionError(f"POST /backfills answered {resp.status_code}: {resp.text[:500]}")
        return dict(resp.json())

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        resp = self._call("GET", f"{self.api}/dags/{dag_id}/dagRuns", params={"limit": 100})
        return list(resp.json()["dag_runs"])
