"""Every example DAG triggered the way a new user does: the UI's Trigger button, ``airflow dags trigger``
or the REST API with ``logical_date: null``. Such a run has no logical date and no data interval
(``ds``, ``data_interval_start`` are undefined): interval exports take the last complete UTC day
before the run, and the landed prefix is that day, the same for every try of the run.

Real parts: dag.test(logical_date=None) on the migrated SQLite DB (the path such a run takes), the
sandbox over HTTP, moto's S3 server, Azurite. (The Leanplum examples are covered in test_leanplum.py.)
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from tests.support.airflow import load_dag, run_dag, task_states, xcom

EXAMPLES = (
    "indicative_dynamic_segments.py",
    "indicative_segment_daily.py",
    "mobile_engagement_daily_events.py",
    "mx_snapshot.py",
    "pond_daily_snapshot.py",
    "split_start_sensor_transfer.py",
)
FAST = {
    "pond": {"pending_seconds": 0.2, "running_seconds": 0.4},
    "indicative": {"pending_seconds": 0.2, "running_seconds": 0.2},
    "mobile_engagement": {"pending_seconds": 0.2, "running_seconds": 0.3, "token_lifetime": 3599, "parts": 2},
}


@pytest.fixture
def stack(sandbox: Any, sandbox_state: Any, vendor_conns: Any, aws_conn: str, wasb_conn: str, moto_s3: Any, azurite: Any,
          airflow_db: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Every vendor pointed at the sandbox (fast), the examples' buckets and containers, short polls."""
    from tests.support.secrets import register

    monkeypatch.setenv("AEP_EXAMPLE_POLL_INTERVAL", "0.2")
    saved = {vendor: dict(sandbox_state.vendor_config(vendor)) for vendor in FAST}
    for vendor, settings in FAST.items():
        sandbox_state.vendor_config(vendor).update(settings)
    for conn_id, conn in vendor_conns.items():
        if conn.get("password"):
            register(f"manual:{conn_id}", str(conn["password"]))
    s3 = moto_s3.client()
    for bucket in ("analytics-landing", "mx-landing"):
        try:
            s3.create_bucket(Bucket=bucket)
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass
    for name in ("indicative", "mobile-engagement-exports"):
        container = azurite.service().get_container_client(name)
        if not container.exists():
            container.create_container()
    yield sandbox_state
    for vendor, settings in saved.items():
        cfg = sandbox_state.vendor_config(vendor)
        cfg.clear()
        cfg.update(settings)


def last_complete_day(moment: datetime) -> str:
    """The UTC day that ended last before ``moment``."""
    return (moment.astimezone(timezone.utc) - timedelta(days=1)).date().isoformat()


def data_keys(keys: Any) -> list[str]:
    """The landed data objects (not the landing's manifest, where the landing writes one)."""
    return sorted(k for k in keys if not k.endswith("/_manifest.json"))


def s3_keys(moto_s3: Any, bucket: str, prefix: str) -> list[str]:
    return data_keys(o["Key"] for o in moto_s3.client().list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []))


@pytest.mark.parametrize("example", EXAMPLES)
def test_example_succeeds_when_triggered_without_a_logical_date(
    stack: Any, moto_s3: Any, azurite: Any, example: str
) -> None:
    dag = load_dag(example)
    for task in dag.tasks:
        task.retries = 0  # a failure must show as a failure, not as a 5-minute retry wait
    conf: dict[str, Any] = {}
    if example == "mx_snapshot.py":
        from tests.support.mx import make_snapshot

        conf = {"snapshot_guid": make_snapshot(stack).guid}
    run = run_dag(dag, logical_date=None, run_conf=conf)
    assert run.logical_date is None and run.data_interval_start is None, "the run a Trigger button makes"
    states = task_states(run)
    assert states and set(states.values()) == {"success"}, states
    day = last_complete_day(run.run_after)
    today = run.run_after.astimezone(timezone.utc).date().isoformat()

    if example in ("pond_daily_snapshot.py", "split_start_sensor_transfer.py"):
        job = xcom(run, "snapshot" if example == "pond_daily_snapshot.py" else "wait_for_snapshot")
        assert job["extra"]["query"]["created_at"] == [f"{day}T00:00:00.000Z", f"{today}T00:00:00.000Z"]
        prefix = f"pond/{day}/" if example == "pond_daily_snapshot.py" else f"pond/split/{day}/"
        assert s3_keys(moto_s3, "analytics-landing", prefix) == [
            f"{prefix}event_000.csv", f"{prefix}event_001.csv", f"{prefix}event_002.csv"]
    elif example == "mobile_engagement_daily_events.py":
        from airflow_export_providers.sandbox.mobile_engagement import runtime

        job = xcom(run, "export_events")
        kind, params, _url = next(s for s in reversed(runtime(stack)["submits"]) if s[0] == "events")
        assert (params["startDate"], params["endDate"]) == (day, day)
        prefix = f"mobile_engagement/events/{day}/"
        assert len(s3_keys(moto_s3, "analytics-landing", prefix)) == len(job["files"]) == 2
    elif example == "indicative_segment_daily.py":
        blobs = data_keys(b.name for b in azurite.service().get_container_client("indicative").list_blobs(name_starts_with=f"segments/{today}/"))
        assert blobs == [f"segments/{today}/recent-registrants-82200474.csv"]
    elif example == "indicative_dynamic_segments.py":
        from airflow_export_providers.sandbox import indicative as ind

        dynamic = [s for s in ind.SEGMENTS if s["type"] == "Dynamic"]
        assert len(s3_keys(moto_s3, "analytics-landing", f"indicative/segments/{today}/")) == len(dynamic)
    else:
        guid = conf["snapshot_guid"]
        assert len(s3_keys(moto_s3, "mx-landing", f"mx/{guid}/")) == len(xcom(run, "list_snapshot_files")["files"])
