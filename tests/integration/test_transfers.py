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
from tests.support.files_hook import export_file, export_job, set_files_connection

WM_VARIABLE = "landing_e2e_watermark"


@pytest.fixture
def stack(airflow_db: Any, sandbox: Any, sandbox_state: Any, aws_conn: str, wasb_conn: str,
          moto_s3: Any, azurite: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    set_files_connection(monkeypatch, sandbox)
    return sandbox_state


def asset_event_uris(dag_run: Any) -> set[str]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(AssetModel.uri)
            .join(AssetEvent, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetEvent.source_run_id == dag_run.run_id, AssetEvent.source_dag_id == dag_run.dag_id)
            .all()
        )
    return {r[0] for r in rows}


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

    uris = asset_event_uris(run)
    assert "s3://e2e-landing/files/2026-03-01/e2e-users.avro.gz" in uris
    assert any(u.startswith("wasbs://e2e-landing@") and u.endswith("/files/2026-03-01/e2e-users.parquet") for u in uris)


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
    assert keys == ["wm/2026-03-02/wm-a.csv.gz"]  # the verified file landed, the bad one did not

    ok_job = export_job([
        export_file("wm-a.csv.gz", good, rows=2, row_format="csv", compression="gzip"),
        export_file("wm-b.csv.gz", good, rows=2, row_format="csv", compression="gzip"),
    ], watermark=mark)
    run = run_dag(dag, logical_date=datetime(2026, 3, 3, tzinfo=timezone.utc),
                  run_conf={"export": ok_job.to_dict(), "bucket": bucket})
    assert task_states(run) == {"to_s3": "success"}
    assert _stored_watermark() == 200
    assert len(xcom(run, "to_s3")) == 2
