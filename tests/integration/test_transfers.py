"""The transfer operators inside real dag.test() runs: XCom, order, Assets, watermark rules."""

from __future__ import annotations

import gzip
import io
import json
import uuid
from datetime import datetime, timezone
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.support.airflow import load_dag, run_dag, task_states, xcom
from tests.support.avro_samples import avro_gz
from tests.support.files_hook import export_file, export_job, random_bytes, set_files_connection

WM_VARIABLE = "landing_e2e_watermark"
pytest_plugins = ("tests.support.destination_fixtures",)  # records the landing cells of docs/reliability.md


@pytest.fixture
def stack(airflow_db: Any, sandbox: Any, sandbox_state: Any, aws_conn: str, wasb_conn: str,
          moto_s3: Any, azurite: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    set_files_connection(monkeypatch, sandbox)
    return sandbox_state


def asset_events(dag_run: Any) -> dict[str, list[dict[str, Any]]]:
    """The Asset events a DAG run emitted: the extra of each, by Asset URI."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(AssetModel.uri, AssetEvent.extra)
            .join(AssetEvent, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetEvent.source_run_id == dag_run.run_id, AssetEvent.source_dag_id == dag_run.dag_id)
            .all()
        )
    out: dict[str, list[dict[str, Any]]] = {}
    for uri, extra in rows:
        out.setdefault(uri, []).append(extra)
    return out


def test_literal_export_lands_in_s3_and_azure(stack: Any, moto_s3: Any, azurite: Any) -> None:
    users, transactions = avro_gz(20), avro_gz(40, v2=True)
    stack.files["e2e-users.avro.gz"] = users
    stack.files["e2e-transactions.avro.gz"] = transactions
    s3 = moto_s3.client()
    s3.create_bucket(Bucket="e2e-landing")
    container = azurite.service().get_container_client("e2e-landing")
    if not container.exists():
        container.create_container()

    run = run_dag(load_dag("landing_e2e.py", "landing_e2e_literal", folder="tests/dags"),
                  logical_date=datetime(2026, 3, 1, tzinfo=timezone.utc))
    assert task_states(run) == {"to_s3": "success", "to_blob": "success"}

    landed = xcom(run, "to_s3")
    assert [x["file"] for x in landed] == ["e2e-users.avro.gz", "e2e-transactions.avro.gz"]  # `order` applied
    assert landed[0] == {"uri": "s3://e2e-landing/files/2026-03-01/e2e-users.avro.gz", "size": len(users), "rows": 20,
                         "file": "e2e-users.avro.gz"}
    body = s3.get_object(Bucket="e2e-landing", Key="files/2026-03-01/e2e-transactions.avro.gz")["Body"].read()
    assert body == transactions  # gzip bytes kept as they are

    blobs = xcom(run, "to_blob")
    assert {x["file"]: x["rows"] for x in blobs} == {"e2e-transactions.avro.gz": 40, "e2e-users.avro.gz": 20}
    table = pq.read_table(io.BytesIO(container.download_blob("files/2026-03-01/e2e-transactions.parquet").readall()))
    assert table.num_rows == 40 and table.column_names[-1] == "currency_code"
    assert all(set(x) == {"uri", "size", "rows", "file"} for x in landed + blobs)  # references, never data

    # one Asset per destination (the static part of the prefix), one event each, listing this run's files
    blob_root = f"{azurite.blob_url}/e2e-landing"
    events = asset_events(run)
    assert sorted(events) == sorted(["s3://e2e-landing/files", f"{blob_root}/files"])
    (s3_event,), (blob_event,) = events["s3://e2e-landing/files"], events[f"{blob_root}/files"]
    assert s3_event["manifest"] == "s3://e2e-landing/files/2026-03-01/_manifest.json"
    assert s3_event["prefix"] == "files/2026-03-01" and s3_event["job_id"] == "e2e-1" and s3_event["vendor"] == "files"
    assert [(f["uri"], f["size"], f["rows"]) for f in s3_event["files"]] == [(x["uri"], x["size"], x["rows"]) for x in landed]
    assert (s3_event["file_count"], s3_event["rows"], s3_event["bytes"]) == (2, 60, len(users) + len(transactions))
    assert all(len(f["sha256"]) == 64 for f in s3_event["files"])
    assert blob_event["manifest"] == f"{blob_root}/files/2026-03-01/_manifest.json"
    assert {f["uri"] for f in blob_event["files"]} == {f"{blob_root}/files/2026-03-01/e2e-users.parquet",
                                                       f"{blob_root}/files/2026-03-01/e2e-transactions.parquet"}


def _stored_watermark() -> Any:
    from airflow.models.variable import Variable

    raw = Variable.get(WM_VARIABLE, default_var=None)
    return None if raw is None else json.loads(raw)["value"]


def test_watermark_moves_only_after_every_file_landed(stack: Any, moto_s3: Any) -> None:
    from airflow.models.variable import Variable

    from airflow_export_providers.core.job import Watermark

    bucket = f"wm-{uuid.uuid4().hex[:10]}"
    s3 = moto_s3.client()
    s3.create_bucket(Bucket=bucket)
    Variable.set(WM_VARIABLE, json.dumps({"value": 100}))
    good = gzip.compress(b"id\n1\n2\n")
    stack.files["wm-a.csv.gz"] = good
    stack.files["wm-b.csv.gz"] = good
    mark = Watermark(variable=WM_VARIABLE, previous=100, proposed=200)
    dag = load_dag("landing_e2e.py", "landing_e2e_conf", folder="tests/dags")

    # the second file does not match what the vendor announced: the task fails, the watermark stays
    bad_job = export_job([
        export_file("wm-a.csv.gz", good, rows=2, row_format="csv", compression="gzip"),
        export_file("wm-b.csv.gz", good, rows=3, row_format="csv", compression="gzip"),
    ], watermark=mark)
    run = run_dag(dag, logical_date=datetime(2026, 3, 2, tzinfo=timezone.utc),
                  run_conf={"export": bad_job.to_dict(), "bucket": bucket})
    assert task_states(run) == {"to_s3": "failed"}
    assert _stored_watermark() == 100
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == []  # the first file verified, but nothing of a failed export is published

    ok_job = export_job([
        export_file("wm-a.csv.gz", good, rows=2, row_format="csv", compression="gzip"),
        export_file("wm-b.csv.gz", good, rows=2, row_format="csv", compression="gzip"),
    ], watermark=mark)
    run = run_dag(dag, logical_date=datetime(2026, 3, 3, tzinfo=timezone.utc),
                  run_conf={"export": ok_job.to_dict(), "bucket": bucket})
    assert task_states(run) == {"to_s3": "success"}
    assert _stored_watermark() == 200
    assert len(xcom(run, "to_s3")) == 2


def _landed(moto_s3: Any, azurite: Any, name: str, prefix: str) -> dict[str, dict[str, bytes]]:
    """What is under ``prefix`` in the bucket and in the container called ``name``."""
    s3 = moto_s3.client()
    out: dict[str, dict[str, bytes]] = {"s3": {}, "azure": {}}
    for o in s3.list_objects_v2(Bucket=name, Prefix=prefix + "/").get("Contents", []):
        out["s3"][o["Key"][len(prefix) + 1:]] = s3.get_object(Bucket=name, Key=o["Key"])["Body"].read()
    container = azurite.service().get_container_client(name)
    for blob in container.list_blobs(name_starts_with=prefix + "/"):
        out["azure"][blob.name[len(prefix) + 1:]] = container.download_blob(blob.name).readall()
    return out


def _destination(moto_s3: Any, azurite: Any) -> str:
    name = f"rerun-{uuid.uuid4().hex[:10]}"
    moto_s3.client().create_bucket(Bucket=name)
    azurite.service().create_container(name)
    return name


def _named_after_the_job(state: Any, job_id: str, sizes: list[int], seed: int) -> dict[str, bytes]:
    data = {f"{job_id}-{n}.json": random_bytes(size, seed=seed + n) for n, size in enumerate(sizes)}
    state.files.update(data)
    return data


def _manifest_of(objects: dict[str, bytes]) -> dict[str, Any]:
    """The one part of the manifest (one landing task writes the prefix), taken out of ``objects``."""
    parts = json.loads(objects.pop("_manifest.json"))["parts"]
    assert len(parts) == 1, parts
    return dict(next(iter(parts.values())))


def test_rerun_of_a_landed_day_leaves_one_copy_of_the_new_export(stack: Any, moto_s3: Any, azurite: Any) -> None:
    """Issue 16 point 3 in Airflow: the same day run twice, file names carrying the job id (as Leanplum's do)."""
    name = _destination(moto_s3, azurite)
    dag = load_dag("landing_e2e.py", "landing_e2e_both", folder="tests/dags")
    day = datetime(2026, 3, 4, tzinfo=timezone.utc)
    first = _named_after_the_job(stack, "export_1", [6 * 1024 * 1024, 300, 400], seed=1)
    job = export_job([export_file(n, b) for n, b in first.items()], job_id="export_1")
    run = run_dag(dag, logical_date=day, run_conf={"export": job.to_dict(), "bucket": name})
    assert task_states(run) == {"to_s3": "success", "to_blob": "success"}
    second = _named_after_the_job(stack, "export_2", [500, 9 * 1024 * 1024], seed=10)
    job = export_job([export_file(n, b) for n, b in second.items()], job_id="export_2")
    again = run_dag(dag, logical_date=day, run_conf={"export": job.to_dict(), "bucket": name})
    assert task_states(again) == {"to_s3": "success", "to_blob": "success"}
    for where, objects in _landed(moto_s3, azurite, name, "rerun/2026-03-04").items():
        manifest = _manifest_of(objects)
        assert objects == second, f"{where}: exactly the second export, nothing of the first"
        assert manifest["state"] == "complete" and manifest["by"]["run_id"] == again.run_id
        assert manifest["export"] == {"vendor": "files", "job_id": "export_2"}
    assert moto_s3.client().list_multipart_uploads(Bucket=name).get("Uploads", []) == []


def test_a_rerun_with_fewer_mapped_instances_leaves_only_its_own_exports(stack: Any, moto_s3: Any, azurite: Any) -> None:
    """Dynamic task mapping in Airflow: three exports of a day landed by three mapped instances, then the day
    run again with two. The prefix holds the two new exports only: the third instance's part and files of
    the first run are retired (Airflow counts the task's mapped instances in the run). S3 here; the
    manifest does the same on Azure (test_landing_contract.py's retirement tests run on both)."""
    name = _destination(moto_s3, azurite)
    dag = load_dag("landing_e2e.py", "landing_e2e_mapped", folder="tests/dags")
    day = datetime(2026, 3, 6, tzinfo=timezone.utc)

    def exports(version: str, count: int) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
        jobs, landed = [], {}
        for i in range(count):
            data = _named_after_the_job(stack, f"segment{i}_{version}", [300 + i], seed=40 + i + 10 * count)
            jobs.append(export_job([export_file(n, b) for n, b in data.items()], job_id=f"segment{i}_{version}").to_dict())
            landed.update(data)
        return jobs, landed

    jobs, _ = exports("v1", 3)
    run = run_dag(dag, logical_date=day, run_conf={"exports": jobs, "bucket": name})
    assert task_states(run) == {"exports": "success", "to_s3": "success"}
    jobs, second = exports("v2", 2)
    again = run_dag(dag, logical_date=day, run_conf={"exports": jobs, "bucket": name})
    assert task_states(again) == {"exports": "success", "to_s3": "success"}
    objects = _landed(moto_s3, azurite, name, "mapped/2026-03-06")["s3"]
    parts = json.loads(objects.pop("_manifest.json"))["parts"]
    assert sorted(parts) == ["landing_e2e_mapped/to_s3[0]", "landing_e2e_mapped/to_s3[1]"]
    assert objects == second, "exactly the re-run's two exports, nothing of the first run's third"
    assert {p["by"]["run_id"] for p in parts.values()} == {again.run_id}


def _tries(run: Any, task_id: str) -> int:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = session.query(TaskInstance).filter_by(dag_id=run.dag_id, run_id=run.run_id, task_id=task_id).one()
        return int(ti.try_number)


@pytest.mark.parametrize("where", ["s3", "azure"])
def test_a_failed_export_publishes_nothing_and_a_retry_lands_it_whole(stack: Any, moto_s3: Any, azurite: Any, where: str) -> None:
    """Issue 16 point 5 in Airflow: file 2 of 2 fails (HTTP 500 past the hook's 3 attempts)."""
    name = _destination(moto_s3, azurite)
    dag = load_dag("landing_e2e.py", "landing_e2e_retry_s3" if where == "s3" else "landing_e2e_retry_blob", folder="tests/dags")
    day = datetime(2026, 3, 5, tzinfo=timezone.utc)
    data = _named_after_the_job(stack, f"export_{where}", [9 * 1024 * 1024, 700], seed=20)
    conf = {"export": export_job([export_file(n, b) for n, b in data.items()], job_id="export_r").to_dict(), "bucket": name}
    second = f"/files/{list(data)[1]}$"
    stack.add_fault(path=second, status=500, times=6)  # both tries fail on file 2
    run = run_dag(dag, logical_date=day, run_conf=conf)
    assert task_states(run) == {"land": "failed"} and _tries(run, "land") == 2
    assert _landed(moto_s3, azurite, name, "retry/2026-03-05")[where] == {}, "no file 1, no manifest: nothing reads as complete"
    assert moto_s3.client().list_multipart_uploads(Bucket=name).get("Uploads", []) == []
    stack.clear_faults()
    stack.add_fault(path=second, status=500, times=3)  # the first try fails on file 2, its retry does not
    run = run_dag(dag, logical_date=day, run_conf=conf)
    assert task_states(run) == {"land": "success"} and _tries(run, "land") == 2
    objects = _landed(moto_s3, azurite, name, "retry/2026-03-05")[where]
    assert _manifest_of(objects)["state"] == "complete" and objects == data
    assert moto_s3.client().list_multipart_uploads(Bucket=name).get("Uploads", []) == []
