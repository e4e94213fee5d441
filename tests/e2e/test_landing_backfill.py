"""A backfill of a landed interval on a real Airflow (scheduler, dag-processor, triggerer, api-server).

The shipped ``leanplum_daily_export`` DAG lands one Pacific day per run under
``leanplum/sessions/{day}``; Leanplum names its files after the export job, so a second export of the
same day has other file names. Backfilling the day twice (the REST API the UI's backfill dialog
calls, ``reprocess_behavior="completed"``) must leave exactly one copy: the second export's files,
behind its manifest, nothing of the first (issue 16 point 3).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.support.stack import ROOT, AirflowStack

pytestmark = pytest.mark.e2e
pytest_plugins = ("tests.support.destination_fixtures",)  # records the landing cells of docs/reliability.md
PACIFIC = ZoneInfo("America/Los_Angeles")
DAG_ID = "leanplum_daily_export"
BUCKET = "leanplum-exports"


@pytest.fixture(scope="module")
def stack(sandbox: Any, moto_s3: Any, postgres: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    home = tmp_path_factory.mktemp("landing-backfill-home")
    dags = home / "dags"
    dags.mkdir()
    (dags / "leanplum_daily_export.py").symlink_to(ROOT / "dags_examples" / "leanplum_daily_export.py")
    conns: dict[str, Any] = dict(sandbox.connections())
    conns["aws_default"] = {"conn_type": "aws", "login": "testing", "password": "testing",
                            "extra": {"endpoint_url": moto_s3.url, "region_name": "us-east-1"}}
    env = {f"AIRFLOW_CONN_{k.upper()}": json.dumps(v) for k, v in conns.items()}
    env["AEP_EXAMPLE_POLL_INTERVAL"] = "0.5"
    s = AirflowStack(home, dags, postgres.database(), env)
    s.up()
    yield s
    s.down()


def test_backfill_of_a_landed_day_leaves_one_copy_of_the_new_export(stack: AirflowStack, sandbox: Any, moto_s3: Any) -> None:
    state = sandbox.state
    cfg = state.vendor_config("leanplum")
    cfg.update(pending_seconds=0.2, running_seconds=0.2)
    state.vendor.setdefault("leanplum", {})["quota"] = {}
    s3 = moto_s3.client()
    s3.create_bucket(Bucket=BUCKET)
    day = (datetime.now(PACIFIC) - timedelta(days=3)).date()
    ymd = f"{day:%Y%m%d}"
    prefix = f"leanplum/sessions/{ymd}/"
    start = datetime.combine(day, datetime.min.time(), tzinfo=PACIFIC)
    stack.wait_dag(DAG_ID)

    def landed() -> dict[str, bytes]:
        objects = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
        return {o["Key"][len(prefix):]: s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in objects}

    copies: list[dict[str, bytes]] = []
    for attempt in (1, 2):
        since = datetime.now(timezone.utc)
        backfill = stack.backfill(DAG_ID, start.isoformat(), start.isoformat())

        def finished(after: datetime = since) -> list[dict[str, Any]] | None:
            runs = [r for r in stack.dag_runs(DAG_ID) if r["run_type"] == "backfill"
                    and datetime.fromisoformat(r["data_interval_start"].replace("Z", "+00:00")).astimezone(PACIFIC).date() == day]
            done = [r for r in runs if r["state"] in ("success", "failed") and r["end_date"]
                    and datetime.fromisoformat(r["end_date"].replace("Z", "+00:00")) > after]
            return runs if runs and len(done) == len(runs) else None

        runs = stack.wait_for(finished, 300, f"backfill {attempt} of {ymd}")
        stack.wait_for(lambda b=backfill["id"]: stack._call("GET", f"{stack.api}/backfills/{b}").json()["completed_at"], 120,
                       "backfill marked complete")
        assert {r["state"] for r in runs} == {"success"}, runs
        copies.append(landed())
    first, second = copies
    first_manifest, second_manifest = (json.loads(c.pop("_manifest.json"))["parts"][f"{DAG_ID}/land_in_s3"] for c in (first, second))
    assert first and second and not set(first) & set(second), "the second export's files carry its own job id"
    assert second_manifest["state"] == "complete" and second_manifest["export"]["job_id"] != first_manifest["export"]["job_id"]
    assert {f["key"] for f in second_manifest["files"]} == {prefix + name for name in second}
    # exactly one copy: nothing of the first export left, no session twice
    sessions = [json.loads(line)["sessionId"] for body in second.values() for line in body.splitlines() if line.strip()]
    assert sessions and len(sessions) == len(set(sessions))
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
