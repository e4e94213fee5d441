"""OpenLineage through Airflow's own machinery: the openlineage provider's listener, configured with a
file transport, sees a real dag.test() run of an export and its two landings.

The run happens in a child process so that the provider reads this test's transport settings (it
caches its configuration per process); the child uses the same metadata DB, sandbox, moto and Azurite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support.airflow import ROOT

PREFIX = "pond/2026-04-02"  # lineage_landing's prefix for the logical date RUN gives
RUN = """
import sys
from datetime import datetime, timezone
from tests.support.airflow import load_dag, run_dag
run = run_dag(load_dag("lineage_flow.py", "lineage_landing", folder="tests/dags"), logical_date=datetime(2026, 4, 2, tzinfo=timezone.utc))
print("STATE", run.state)
"""


def ol_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def complete_event(events: list[dict[str, Any]], task_id: str) -> dict[str, Any]:
    found = [e for e in events if e["eventType"] == "COMPLETE" and e["job"]["name"] == f"lineage_landing.{task_id}"]
    assert len(found) == 1, f"{task_id}: {[(e['eventType'], e['job']['name']) for e in events]}"
    return found[0]


@pytest.fixture
def lineage_stack(airflow_db: Any, sandbox: Any, sandbox_state: Any, vendor_conns: Any, aws_conn: str, wasb_conn: str,
                  moto_s3: Any, azurite: Any) -> Any:
    cfg = sandbox_state.config.setdefault("pond", {})
    saved = dict(cfg)
    cfg.update({"pending_seconds": 0.2, "running_seconds": 0.4})
    s3 = moto_s3.client()
    if "lineage-landing" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket="lineage-landing")
    container = azurite.service().get_container_client("lineage-landing")
    if not container.exists():
        container.create_container()
    yield sandbox_state
    cfg.clear()
    cfg.update(saved)


def test_export_and_landings_report_the_vendor_export_in_and_the_destinations_out(
    lineage_stack: Any, sandbox: Any, moto_s3: Any, azurite: Any, tmp_path: Path
) -> None:
    log = tmp_path / "openlineage.jsonl"
    env = {
        **os.environ,
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "file", "log_file_path": str(log), "append": True}),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "aep-tests",
        "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "true",  # the export resumes after its trigger: job id from the event
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run([sys.executable, "-c", RUN], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert "STATE success" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]
    events = ol_events(log)

    pond_host = urlsplit(sandbox.url).netloc
    snapshot = complete_event(events, "snapshot")
    (source,) = snapshot["inputs"]
    assert source["namespace"] == f"pond://{pond_host}"
    job_id = source["name"]
    assert job_id and snapshot["run"]["facets"]["externalQuery"]["externalQueryId"] == job_id
    assert snapshot["outputs"] == []

    manifests = {  # what each landing committed (the manifest's one part)
        "to_s3": moto_s3.client().get_object(Bucket="lineage-landing", Key=f"{PREFIX}/_manifest.json")["Body"].read(),
        "to_blob": azurite.service().get_blob_client("lineage-landing", f"{PREFIX}/_manifest.json").download_blob().readall(),
    }
    for task_id, namespace in (("to_s3", "s3://lineage-landing"), ("to_blob", f"{azurite.blob_url}/lineage-landing")):
        (part,) = json.loads(manifests[task_id])["parts"].values()
        landed = part["files"]
        assert len(landed) == 3 and all(f["rows"] for f in landed)
        event = complete_event(events, task_id)
        assert [(d["namespace"], d["name"]) for d in event["inputs"]] == [(f"pond://{pond_host}", job_id)]
        assert event["inputs"][0]["inputFacets"]["inputStatistics"]["fileCount"] == len(landed)
        assert event["run"]["facets"]["externalQuery"]["externalQueryId"] == job_id
        (out,) = event["outputs"]
        assert (out["namespace"], out["name"]) == (namespace, "pond"), "one dataset per destination, not per file"
        stats = out["outputFacets"]["outputStatistics"]
        assert (stats["fileCount"], stats["size"], stats["rowCount"]) == \
            (len(landed), sum(f["size"] for f in landed), sum(f["rows"] for f in landed))
