"""The production shape for real: docker-compose.yaml's services run by deploy/stack.py (what `make stack`
runs) — Postgres, Redis, api-server, scheduler, dag-processor, triggerer, two Celery workers, the sandbox,
moto and Azurite as separate processes — and driven through the REST API as a user logged into the UI.

* every example DAG, triggered without a logical date and scheduled, lands what its transfer reports;
* a Celery worker SIGKILLed while a transfer is half-way through its multipart upload: the try is
  failed after the heartbeat timeout, the retry runs on the other worker, the file lands once, and
  no multipart upload is left open;
* the triggerer SIGKILLed and restarted while a POND snapshot is deferred: the same vendor job
  completes (one submission in the sandbox's /_sandbox/stats) and lands once; while deferred the task
  holds no Celery worker slot and no pool slot;
* a downstream DAG scheduled on an example's landing Asset (``s3://analytics-landing/pond``) runs
  after each landing, triggered by its Asset event, whose extra names the files that landed; the
  Assets page holds one Asset per landing destination, none per file;
* every service passes its compose health check, run as written (curl, pg_isready, redis-cli, nc,
  ``airflow jobs check``, ``celery inspect ping``), the restarted worker and triggerer included.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from deploy.stack import ROOT, UI_USER, ApiClient, LocalStack, free_port, make_stack, wait_for
from tests.dags import celery_e2e
from tests.support.secrets import SECRETS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

EXAMPLES = sorted(p.stem for p in (ROOT / "dags_examples").glob("*.py"))
RUN_CONF = {"mx_snapshot": {"snapshot_guid": "CSS-1234"}}  # what the UI's trigger form asks for
TRANSFERS = ("ExportToS3Operator", "ExportToAzureBlobOperator")
MANIFEST = "{prefix}/_manifest.json"  # the landing manifest each prefix gets (docs/transfers.md)
CONSUMER = "celery_e2e_asset_consumer"  # scheduled on pond_daily_snapshot's landing Asset (tests/dags/celery_e2e.py)


class Celery:
    """The running stack plus what the tests look at: REST API, sandbox admin, moto, Azurite, Celery."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.api = ApiClient(stack.ui_url(), UI_USER, stack.ui_password())
        self.sandbox = stack.plan.url("sandbox", 8999)
        self.s3_url = stack.plan.url("s3", 5000)
        self.env = stack.instances["airflow-scheduler"].env

    def s3(self) -> Any:
        import boto3

        aws = json.loads(self.env["AIRFLOW_CONN_AWS_DEFAULT"])
        return boto3.client("s3", endpoint_url=self.s3_url, region_name="us-east-1",
                            aws_access_key_id=aws["login"], aws_secret_access_key=aws["password"])

    def blob(self) -> Any:
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(json.loads(self.env["AIRFLOW_CONN_WASB_DEFAULT"])["extra"]["connection_string"])

    def active(self) -> dict[str, list[str]]:
        """Celery's own view: each worker node -> the workloads it is executing right now."""
        from celery import Celery as CeleryApp

        app = CeleryApp(broker=self.env["AIRFLOW__CELERY__BROKER_URL"])
        try:
            answer = app.control.inspect(timeout=3).active() or {}
        finally:
            app.close()
        return {node: [json.dumps(task.get("args")) for task in tasks] for node, tasks in answer.items()}

    def stats(self) -> dict[str, Any]:
        return dict(requests.get(f"{self.sandbox}/_sandbox/stats", timeout=10).json())

    def tis(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return list(self.api.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100})["task_instances"])

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return list(self.api.call("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100})["dag_runs"])

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None, logical_date: str | None = None) -> str:
        body = {"conf": conf or {}, "logical_date": logical_date}  # logical_date None: the UI's default
        return str(self.api.call("POST", f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"])

    def finished(self, dag_id: str, run_id: str) -> str | None:
        state = self.api.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"]
        return str(state) if state in ("success", "failed") else None

    def xcom(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Any:
        value = self.api.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value",
                              params={"map_index": map_index})["value"]
        return json.loads(value) if isinstance(value, str) else value

    def landed(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """What the run's transfer tasks report (their XCom: a list of {uri, size, ...})."""
        kinds = {t["task_id"]: t["operator_name"] for t in self.api.call("GET", f"/dags/{dag_id}/tasks")["tasks"]}
        out: list[dict[str, Any]] = []
        for ti in self.tis(dag_id, run_id):
            if kinds.get(ti["task_id"]) not in TRANSFERS or ti["state"] != "success":
                continue
            out.extend(self.xcom(dag_id, run_id, ti["task_id"], ti["map_index"]))
        return out

    @staticmethod
    def split(uri: str) -> tuple[str, str, str]:
        """``(root, bucket or container, key)`` of a landed object's URI (S3, or the blob's URL at Azurite)."""
        from azure.storage.blob import BlobClient

        if uri.startswith("s3://"):
            bucket, _, key = uri[len("s3://"):].partition("/")
            return f"s3://{bucket}/", bucket, key
        blob = BlobClient.from_blob_url(uri)  # as the Azure transfer names it
        return uri[: len(uri) - len(blob.blob_name)], blob.container_name, blob.blob_name

    def manifest_keys(self, prefix_uri: str) -> set[str] | None:
        """The keys the landing manifest under ``prefix_uri`` lists as committed (None: no manifest)."""
        body = self.read(MANIFEST.format(prefix=prefix_uri))
        if body is None:
            return None
        parts = json.loads(body)["parts"].values()
        return {f["key"] for part in parts if part["state"] == "complete" for f in part["files"]}

    def exists(self, uri: str) -> int | None:
        """The size of the object behind ``uri`` in moto / Azurite, None when it is not there."""
        _, bucket, key = self.split(uri)
        try:
            if uri.startswith("s3://"):
                return int(self.s3().head_object(Bucket=bucket, Key=key)["ContentLength"])
            return int(self.blob().get_blob_client(bucket, key).get_blob_properties().size)
        except Exception:
            return None

    def read(self, uri: str) -> bytes | None:
        _, bucket, key = self.split(uri)
        try:
            if uri.startswith("s3://"):
                return bytes(self.s3().get_object(Bucket=bucket, Key=key)["Body"].read())
            return bytes(self.blob().get_blob_client(bucket, key).download_blob().readall())
        except Exception:
            return None


def wait(predicate: Callable[[], Any], timeout: float, what: str, every: float = 2.0) -> Any:
    return wait_for(predicate, timeout, what, every)


@pytest.fixture(scope="module")
def celery(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Celery]:
    base = tmp_path_factory.mktemp("celery-stack")
    dags = base / "dags"
    dags.mkdir()
    for path in [*(ROOT / "dags_examples").glob("*.py"), ROOT / "tests" / "dags" / "celery_e2e.py"]:
        (dags / path.name).symlink_to(path)
    sig = secrets.token_urlsafe(24)
    SECRETS["celery-e2e:files-sig"] = sig
    sandbox_port = free_port()
    files_conn = {"conn_type": "http", "host": f"http://127.0.0.1:{sandbox_port}", "password": sig}
    stack = make_stack(
        base / "home", dotenv=base / ".env", ui_port=0, log=lambda line: None,
        ports={"sandbox:8999": sandbox_port},
        binds={"/opt/airflow/dags": dags},
        # test additions only (no deployment setting is changed): the test hook's module and its connection
        extra_env={"PYTHONPATH": str(ROOT), "AIRFLOW_CONN_FILES_DEFAULT": json.dumps(files_conn)},
        extra_args={"sandbox": ["--config", json.dumps({"secrets": {"files-sig": sig}})]},
    )
    try:
        stack.up()  # what others wait for (depends_on: service_healthy) passed its compose health check
        c = Celery(stack)
        for key in ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY"):
            SECRETS[f"celery-e2e:{key}"] = c.env[key]
        yield c
    finally:
        _register_sandbox_secrets(stack)
        stack.down()


def _register_sandbox_secrets(stack: LocalStack) -> None:
    """The secret scan looks for the sandbox's credentials too (they sit in the connections file)."""
    path = Path(stack.instances["airflow-scheduler"].env["AIRFLOW__SECRETS__BACKEND_KWARGS"].split('"')[3])
    if path.exists():
        for conn_id, conn in json.loads(path.read_text()).items():
            if conn.get("password"):
                SECRETS[f"celery-e2e:{conn_id}"] = conn["password"]


def _error(stack: LocalStack, ti: dict[str, Any]) -> str:
    """The exception a failed try logged (the shared log folder holds every worker's task logs)."""
    folder = Path(stack.instances["airflow-scheduler"].env["AIRFLOW__LOGGING__BASE_LOG_FOLDER"])
    pattern = f"dag_id={ti['dag_id']}/run_id={ti['dag_run_id']}/task_id={ti['task_id']}/"
    pattern += f"map_index={ti['map_index']}/attempt=1.log" if ti["map_index"] >= 0 else "attempt=1.log"
    errors = [line for path in folder.glob(pattern) for line in path.read_text("utf-8", "replace").splitlines() if '"exc_value"' in line]
    found = [json.loads(line).get("error_detail", [{}])[0].get("exc_value", "") for line in errors[-1:]]
    return found[0][:300] if found else "(no exception logged)"


def _task_logs(stack: LocalStack) -> list[Path]:
    return [p for p in Path(stack.instances["airflow-scheduler"].env["AIRFLOW__LOGGING__BASE_LOG_FOLDER"]).rglob("*") if p.is_file()]


def test_every_example_dag_lands_triggered_without_a_logical_date_and_scheduled(celery: Celery) -> None:
    api = celery.api
    wait(lambda: api.call("GET", "/dags", params={"dag_id_pattern": CONSUMER})["total_entries"], 120, "the consumer DAG parsed")
    api.call("PATCH", f"/dags/{CONSUMER}", json={"is_paused": False})  # before any landing: it gets every event
    for dag_id in EXAMPLES:  # unpausing schedules each DAG's latest interval (catchup=False)
        api.call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
    manual = {dag_id: celery.trigger(dag_id, RUN_CONF.get(dag_id)) for dag_id in EXAMPLES}

    def all_runs() -> dict[tuple[str, str], dict[str, Any]] | None:
        """Every run finished, or held by a failed try (against the stand-ins a first try must succeed:
        a retry would wait the examples' retry_delay of 5 minutes)."""
        runs = {(d, r["dag_run_id"]): r for d in EXAMPLES for r in celery.runs(d)}
        if not all((d, rid) in runs for d, rid in manual.items()):
            return None
        for key, run in runs.items():
            if run["state"] not in ("success", "failed"):
                tis = celery.tis(*key)
                if not any(t["state"] in ("up_for_retry", "failed") for t in tis):
                    return None
                run["state"] = "retrying"
        return runs

    runs = wait(all_runs, 420, "every example run to finish", every=5)
    scheduled = {d for (d, _), r in runs.items() if r["run_type"] == "scheduled"}
    assert scheduled == {d for d in EXAMPLES if d != "mx_snapshot"}, "each scheduled example got a scheduled run"
    assert all(r["logical_date"] is None for r in runs.values() if r["run_type"] == "manual"), "no logical date"
    problems = []
    reported: dict[str, set[int]] = {}  # uri -> the sizes the runs that landed it reported
    landings: dict[str, set[str]] = {}  # uri -> the runs that landed it
    yielded: list[str] = []  # runs whose landing lost the race to another run of the same interval
    for (dag_id, run_id), run in sorted(runs.items()):
        if run["state"] != "success":
            tries = [(t, _error(celery.stack, t)) for t in celery.tis(dag_id, run_id) if t["state"] in ("up_for_retry", "failed")]
            # Two runs of one interval landing at once (the manual run exports the interval the scheduled one
            # does): the first to publish wins and the other landing fails cleanly, to retry and replace it.
            # Accepted only for a transfer waiting for its retry, when the run it names landed successfully.
            winners = [re.search(r"run_id=([^,]+), map_index", error) for t, error in tries
                       if t["state"] == "up_for_retry" and "the first to publish wins" in error]
            if tries and len(winners) == len(tries) and all(
                    m and runs.get((dag_id, m.group(1)), {}).get("state") == "success" for m in winners):
                yielded.append(f"{dag_id} {run['run_type']}")
                continue
            failed = [f"{t['task_id']}[{t['map_index']}]={t['state']}: {error}" for t, error in tries]
            problems.append(f"{dag_id} {run['run_type']}: {run['state']} ({'; '.join(failed)})")
            continue
        landed = celery.landed(dag_id, run_id)
        if not landed:
            problems.append(f"{dag_id} {run['run_type']}: succeeded but landed nothing")
        for obj in landed:
            reported.setdefault(obj["uri"], set()).add(int(obj["size"]))
            landings.setdefault(obj["uri"], set()).add(f"{dag_id}/{run_id}")
    # A manual run exports the same last complete interval as the scheduled one, under the same prefix: the
    # later landing replaces the earlier (docs/transfers.md). So an object the prefix's manifest lists is the
    # whole of one of the landings that reported it, and one it does not list is gone, replaced by another run's.
    def manifest_of(uri: str) -> tuple[str, set[str] | None]:
        """The landing's prefix (the nearest folder above ``uri`` with a manifest: MX adds a resource folder)."""
        root, _, key = celery.split(uri)
        folders = key.split("/")[:-1]
        for depth in range(len(folders), 0, -1):
            folder = root + "/".join(folders[:depth])
            committed = celery.manifest_keys(folder)
            if committed is not None:
                return folder, committed
        return uri.rsplit("/", 1)[0], None

    for uri, sizes in sorted(reported.items()):
        prefix_uri, committed = manifest_of(uri)
        found = celery.exists(uri)
        if committed is None:
            problems.append(f"{prefix_uri}: landed without a manifest")
        elif celery.split(uri)[2] in committed:
            if found is None or found not in sizes:
                problems.append(f"{uri}: reported with size(s) {sorted(sizes)} but found {found}")
        elif found is not None or len(set().union(*(r for u, r in landings.items() if u.startswith(prefix_uri + "/")))) < 2:
            problems.append(f"{uri}: not in its prefix's manifest, yet {'still there' if found is not None else 'no other run replaced it'}")
    print("landings that yielded to another run of their interval (retried later):", yielded or "none")
    _register_sandbox_secrets(celery.stack)
    problems += [f"secret {name} in the task log {path}" for path in _task_logs(celery.stack) for name, value in SECRETS.items()
                 if name.startswith("celery-e2e:") and value in path.read_text("utf-8", "replace")]
    assert not problems, "\n".join(problems)
    check_asset_consumer(celery, [rid for (d, rid), r in runs.items() if d == "pond_daily_snapshot" and r["state"] == "success"])


def check_asset_consumer(celery: Celery, landings: list[str]) -> None:
    """Each pond_daily_snapshot landing's Asset event triggered a consumer run, which succeeded and saw
    the files that landing reported; the Assets page lists one Asset per destination."""
    asset = celery_e2e.POND_LANDING.uri
    assert landings, "the example landed (a scheduled and a manual run)"

    def consumed() -> dict[str, dict[str, Any]] | None:
        """The landing run each triggering event came from -> that event (once every landing was consumed)."""
        runs = [r for r in celery.runs(CONSUMER) if r["run_type"] == "asset_triggered"]
        if not runs or any(r["state"] not in ("success", "failed") for r in runs):
            return None
        assert all(r["state"] == "success" for r in runs), [(r["dag_run_id"], r["state"]) for r in runs]
        events: dict[str, dict[str, Any]] = {}
        for run in runs:
            answer = celery.api.call("GET", f"/dags/{CONSUMER}/dagRuns/{run['dag_run_id']}/upstreamAssetEvents")
            assert answer["asset_events"], f"{run['dag_run_id']}: an asset-triggered run without its event"
            for event in answer["asset_events"]:
                event["consumer_run"] = run["dag_run_id"]
                events[event["source_run_id"]] = event
        return events if set(landings) <= set(events) else None

    events = wait(consumed, 180, "a consumer run for each landing", every=3)
    assert set(events) == set(landings), "an event per landing, from that example only"
    for landing_run, event in events.items():
        assert (event["uri"], event["source_dag_id"], event["source_task_id"]) == (asset, "pond_daily_snapshot", "land_in_s3")
        extra = event["extra"]
        reported = celery.landed("pond_daily_snapshot", landing_run)
        assert [(f["uri"], f["size"], f["rows"]) for f in extra["files"]] == [(o["uri"], o["size"], o["rows"]) for o in reported]
        assert extra["file_count"] == len(reported) > 0 and extra["prefix"] == reported[0]["uri"].rsplit("/", 1)[0][len("s3://analytics-landing/"):]
        assert extra["manifest"] == f"s3://analytics-landing/{MANIFEST.format(prefix=extra['prefix'])}"
    for consumer_run in {e["consumer_run"] for e in events.values()}:  # what each downstream run read: its latest event
        seen = celery.xcom(CONSUMER, consumer_run, "read_landing")
        mine = [e["extra"] for e in events.values() if e["consumer_run"] == consumer_run]
        assert any(seen["files"] == sorted(f["uri"] for f in x["files"]) and (seen["landing_id"], seen["job_id"]) ==
                   (x["landing_id"], x["job_id"]) for x in mine), (seen, mine)
        if seen["manifest_landing_id"] == seen["landing_id"]:  # the prefix still holds that landing: the manifest lists the same
            read = next(x for x in mine if x["landing_id"] == seen["landing_id"])
            assert seen["manifest_keys"] == sorted(f["key"] for f in read["files"])
    assets = celery.api.call("GET", "/assets", params={"limit": 100})["assets"]
    producers = [(t["dag_id"], t["task_id"]) for a in assets for t in a["producing_tasks"]]
    assert asset in {a["uri"] for a in assets} and all(a["producing_tasks"] for a in assets), \
        "every Asset is a destination a transfer declares"
    assert len(producers) == len(set(producers)), "one Asset per transfer task, not one per landed file"


def test_a_worker_killed_mid_upload_retries_on_the_other_worker_and_lands_once(celery: Celery) -> None:
    s3 = celery.s3()
    s3.create_bucket(Bucket=celery_e2e.BUCKET)
    # a slow vendor: the download (and so the multipart upload) takes long enough to kill its worker half-way
    requests.post(f"{celery.sandbox}/_sandbox/faults", json={"path": r"^/files/gen/", "kind": "slow", "delay": 0.03, "times": -1},
                  timeout=10).raise_for_status()
    dag_id = "celery_e2e_worker_kill"
    celery.api.call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
    run_id = celery.trigger(dag_id)

    def upload_in_progress() -> str | None:
        for upload in s3.list_multipart_uploads(Bucket=celery_e2e.BUCKET).get("Uploads", []):
            if upload["Key"] == celery_e2e.KEY and s3.list_parts(Bucket=celery_e2e.BUCKET, Key=celery_e2e.KEY,
                                                                UploadId=upload["UploadId"]).get("Parts"):
                return str(upload["UploadId"])
        return None

    first_upload = wait(upload_in_progress, 240, "a part of the multipart upload", every=0.5)
    running_on = [node for node, tasks in celery.active().items() if any(dag_id in t for t in tasks)]
    assert len(running_on) == 1, running_on
    victim = running_on[0].split("@", 1)[1]
    assert s3.list_objects_v2(Bucket=celery_e2e.BUCKET).get("KeyCount", 0) == 0, "nothing visible before the commit"
    celery.stack.stop(victim, signal.SIGKILL)  # the whole worker and its task process, as a host dies
    # while the scheduler waits out the heartbeat timeout: every other service's compose health check
    others = [n for n, i in celery.stack.instances.items() if n != victim and not i.service.one_shot]
    health = ThreadPoolExecutor(1).submit(celery.stack.wait_healthy, 240, others)

    survivor = next(n for n in celery.stack.instances if n.startswith("airflow-worker-") and n != victim)
    retried_on = wait(lambda: [n for n, tasks in celery.active().items() if any(dag_id in t for t in tasks)], 240,
                      "the retry on the surviving worker", every=1)
    assert retried_on == [f"celery@{survivor}"]
    requests.delete(f"{celery.sandbox}/_sandbox/faults", timeout=10).raise_for_status()
    assert wait(lambda: celery.finished(dag_id, run_id), 180, "the run to finish") == "success"

    (ti,) = celery.tis(dag_id, run_id)
    assert ti["try_number"] == 2, "the killed try failed by heartbeat timeout, the second try landed"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=celery_e2e.BUCKET).get("Contents", [])]
    assert keys == sorted([celery_e2e.KEY, MANIFEST.format(prefix="worker-kill")]), "landed once, under its key"
    body = s3.get_object(Bucket=celery_e2e.BUCKET, Key=celery_e2e.KEY)["Body"].read()
    from airflow_export_providers.sandbox.server import generated_bytes

    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(b"".join(generated_bytes(0, celery_e2e.SIZE))).hexdigest()
    assert not s3.list_multipart_uploads(Bucket=celery_e2e.BUCKET).get("Uploads"), \
        f"the killed try's upload {first_upload} was aborted by the retry, nothing left open"
    health.result()  # raises if one of them failed its compose health check
    celery.stack.start(victim)  # back to two workers for what follows


def test_triggerer_killed_while_deferred_resumes_the_same_vendor_job(celery: Celery) -> None:
    s3 = celery.s3()
    requests.patch(f"{celery.sandbox}/_sandbox/config", json={"pond": {"pending_seconds": 30, "running_seconds": 5}},
                   timeout=10).raise_for_status()
    before = set(celery.stats()["job_ids"].get("pond", []))
    dag_id = "pond_daily_snapshot"  # a logical date: this test must not depend on the no-logical-date fix
    run_id = celery.trigger(dag_id, logical_date="2026-11-20T00:00:00Z")

    def deferred() -> dict[str, Any] | None:
        return next((t for t in celery.tis(dag_id, run_id) if t["task_id"] == "snapshot" and t["state"] == "deferred"), None)

    def on_workers() -> list[str]:
        return [n for n, tasks in celery.active().items() if any(run_id in t for t in tasks)]

    wait(deferred, 180, "the snapshot task deferred")
    # while it waits it holds no worker: once its try has handed over to the triggerer (a moment after the
    # state changed), Celery runs nothing of it and the pool counts it as deferred only
    wait(lambda: not on_workers(), 60, "the worker to let go of the deferred task", every=1)
    pool = celery.api.call("GET", "/pools/default_pool")
    assert pool["deferred_slots"] >= 1 and pool["running_slots"] == 0, pool
    new_jobs = set(celery.stats()["job_ids"].get("pond", [])) - before
    assert len(new_jobs) == 1, new_jobs

    celery.stack.stop("airflow-triggerer", signal.SIGKILL)
    time.sleep(2)
    assert deferred() and not on_workers(), "no triggerer: the task stays deferred, on no worker"
    celery.stack.start("airflow-triggerer")
    # the restarted triggerer and worker pass their compose health checks as well (run while the snapshot waits)
    health = ThreadPoolExecutor(1).submit(celery.stack.wait_healthy, 240, ["airflow-triggerer", "airflow-worker-1", "airflow-worker-2"])
    assert wait(lambda: celery.finished(dag_id, run_id), 300, "the run to finish after the restart") == "success"

    assert set(celery.stats()["job_ids"].get("pond", [])) - before == new_jobs, "the same POND snapshot, no second one"
    href = celery.xcom(dag_id, run_id, "snapshot")["job_id"]  # POND's job id is the snapshot's href
    assert {href.rsplit("/", 1)[-1]} == new_jobs, "the job that landed is that snapshot"
    interval_day = celery.api.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["data_interval_start"][:10]
    landed = sorted(o["uri"] for o in celery.landed(dag_id, run_id))
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="analytics-landing", Prefix=f"pond/{interval_day}/").get("Contents", [])
            if o["Key"] != MANIFEST.format(prefix=f"pond/{interval_day}")]
    assert keys and landed == [f"s3://analytics-landing/{k}" for k in sorted(keys)], "each file landed once, nothing else"
    health.result()
