"""A real Airflow: scheduler, dag-processor, triggerer and api-server as separate processes.

Proves that a deferrable export really leaves the worker (the trigger runs in the triggerer process,
rebuilt from the kwargs stored in the metadata DB) and that killing the triggerer mid-poll and
starting it again completes the same vendor job with one submission.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

from tests.support.stack import ROOT, AirflowStack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(sandbox: Any, postgres: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    home = tmp_path_factory.mktemp("stack-home")
    dags = home / "dags"
    dags.mkdir()
    # only the DAGs these tests drive: every parsed DAG costs the dag-processor CPU
    (dags / "engine_e2e.py").symlink_to(ROOT / "tests" / "dags" / "engine_e2e.py")
    conns: dict[str, Any] = dict(sandbox.connections())
    conns["aws_default"] = {"conn_type": "aws", "login": "testing", "password": "testing",
                            "extra": {"endpoint_url": sandbox.state.config["s3_endpoint"], "region_name": "us-east-1"}}
    s = AirflowStack(home, dags, postgres.database(), {f"AIRFLOW_CONN_{k.upper()}": json.dumps(v) for k, v in conns.items()})
    s.up()
    yield s
    s.down()


def _trigger_rows(stack: AirflowStack) -> list[tuple[Any, ...]]:
    import sqlalchemy

    engine = sqlalchemy.create_engine(stack.db_url)
    try:
        with engine.connect() as con:
            return [tuple(row) for row in con.execute(sqlalchemy.text("select classpath, kwargs from trigger"))]
    finally:
        engine.dispose()


def test_trigger_runs_in_the_triggerer_and_survives_its_restart(stack: AirflowStack, sandbox: Any, moto_s3: Any) -> None:
    """A POND snapshot waits in the triggerer; the triggerer is killed mid-poll and restarted; the same
    snapshot completes and its files land once."""
    state = sandbox.state
    s3 = moto_s3.client()
    s3.create_bucket(Bucket="e2e-landing")
    state.config.setdefault("pond", {}).update({"pending_seconds": 25, "running_seconds": 5})
    def snapshots_of_the_day() -> int:  # unpausing also schedules the latest interval: count ours only
        return sum(1 for job in list(state.jobs.values())
                   if job.vendor == "pond" and str(job.params.get("created_at", [""])[0]).startswith("2026-11-09"))

    stack.wait_dag("pond_e2e_deferred")
    run_id = stack.trigger("pond_e2e_deferred", logical_date="2026-11-10T00:00:00Z")

    # the task defers: a trigger row appears in the metadata DB with our classpath and primitives only
    rows = stack.wait_for(lambda: [r for r in _trigger_rows(stack) if "ExportJobTrigger" in r[0]], 90, "trigger row")
    assert rows[0][0] == "airflow_export_providers.triggers.export_job.ExportJobTrigger"
    ti = stack.wait_for(
        lambda: next((t for t in stack.task_instances("pond_e2e_deferred", run_id) if t["state"] == "deferred"), None),
        60, "task deferred",
    )
    assert ti["task_id"] == "snapshot"
    # the triggerer polls with aiohttp (the worker would use requests): the wait left the worker
    stack.wait_for(lambda: _polled_by_trigger(state), 60, "the triggerer polling the snapshot")

    # kill the triggerer mid-poll, start a new one: the same snapshot must complete and land once
    stack.kill("triggerer")
    time.sleep(2)
    stack.start("triggerer")
    assert stack.wait_run("pond_e2e_deferred", run_id, timeout=180) == "success"
    assert snapshots_of_the_day() == 1, "exactly one vendor job for the whole run"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="e2e-landing", Prefix="pond/2026-11-09/").get("Contents", [])]
    keys.remove("pond/2026-11-09/_manifest.json")  # the landing manifest (docs/transfers.md)
    assert keys and len(keys) == len(set(keys)) and all(k.startswith("pond/2026-11-09/event_") for k in keys), keys
    assert not s3.list_multipart_uploads(Bucket="e2e-landing").get("Uploads")


def _polled_by_trigger(state: Any) -> bool:
    return any(r["method"] == "GET" and "/insights/snapshots/" in r["path"] and "aiohttp" in r["headers"].get("User-Agent", "")
               for r in list(state.requests))


CONN_TYPES = {
    "mx_snapshots": ("Client ID", "API key"),
    "pond": ("Client ID", "Client secret"),
    "indicative": ("API key", "Access token"),
    "leanplum": ("App ID", "Data export key (clientKey)"),
    "azure_mobile_engagement": ("Client ID", "Client secret"),
}


def test_connection_forms_reach_the_ui(stack: AirflowStack) -> None:
    """What the UI's Add Connection form is built from: our five types, relabelled, with extra fields."""
    import requests

    base = stack.api.rsplit("/api/v2", 1)[0]
    meta = {m["connection_type"]: m for m in requests.get(f"{base}/ui/connections/hook_meta", timeout=30).json()}
    for conn_type, (login_label, password_label) in CONN_TYPES.items():
        assert conn_type in meta, f"{conn_type} missing from the connection form"
        behaviour = meta[conn_type]["standard_fields"]
        assert behaviour["login"]["title"] == login_label
        assert behaviour["password"]["title"] == password_label
        assert meta[conn_type]["extra_fields"], f"{conn_type} has no extra fields"


VENDOR_LABELS = {
    "MX Snapshots": ["Client ID", "API key", "API base URL"],
    "SGI POND": ["Client ID", "Client secret", "API base URL"],
    "Indicative (mParticle Analytics)": ["API key", "Access token", "API base URL"],
    "Leanplum": ["App ID", "Data export key (clientKey)", "API base URL"],
    "Azure Mobile Engagement": ["Client ID", "Client secret", "ARM base URL"],
}


@pytest.mark.timeout(600)  # five full page loads of the UI; on two loaded cores one can take a minute
def test_add_connection_form_in_a_real_browser(stack: AirflowStack) -> None:
    """Headless Chromium on the real UI: each connection type is offered, shows its labelled standard
    fields, and its Extra Fields section shows every extra (its own and the common ones) with its
    label, description and example (Airflow 3.3 offers a field's examples as suggestions of the input)."""
    from playwright.sync_api import sync_playwright

    import airflow_export_providers as pkg

    forms = {c["hook-name"]: c for c in pkg.CONNECTION_TYPES}
    artefacts = ROOT / "test-artifacts"
    artefacts.mkdir(exist_ok=True)
    base = stack.api.rsplit("/api/v2", 1)[0]
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"],
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(90_000)  # the UI's first render under load; a missing element still fails
            for hook_name, labels in VENDOR_LABELS.items():
                page.goto(f"{base}/connections", wait_until="networkidle")
                page.get_by_role("button", name="Add Connection").click()
                page.get_by_role("combobox").first.click()
                page.keyboard.type(hook_name.split(" ")[0])
                options = page.get_by_role("option").all_inner_texts()
                assert hook_name in options, f"{hook_name} not offered: {options}"
                page.get_by_role("option", name=hook_name, exact=True).click()
                page.get_by_text(labels[0], exact=True).first.wait_for(timeout=10_000)
                shown = [text.strip() for text in page.locator("label").all_inner_texts()]
                for label in labels:
                    assert label in shown, f"{hook_name}: label {label!r} missing from {shown}"
                # the standard fields' placeholders (ui-field-behaviour.placeholders)
                host = forms[hook_name]["ui-field-behaviour"]["placeholders"]["host"]
                assert page.locator(f"input[placeholder='{host}']").count() == 1, f"{hook_name}: host placeholder {host!r} missing"

                extra = forms[hook_name]["conn-fields"]
                first = next(iter(extra))
                if not page.locator(f"#element_{first}").is_visible():
                    page.get_by_role("button", name="Extra Fields", exact=True).click()
                page.locator(f"#element_{first}").wait_for(state="visible", timeout=10_000)
                shown = [text.strip() for text in page.locator("label").all_inner_texts()]
                body = page.locator("body").inner_text()
                for name, field in extra.items():
                    assert field["label"] in shown, f"{hook_name}: extra field label {field['label']!r} missing from {shown}"
                    assert field["description"] in body, f"{hook_name}: description of {name} missing"
                    box = page.locator(f"#element_{name}")
                    assert box.get_attribute("placeholder") == "Start typing to see options", f"{hook_name}: {name} has no hint"
                    suggested = page.locator(f"#list_{name} option").evaluate_all("els => els.map(e => e.value)")
                    assert suggested == field["schema"]["examples"], f"{hook_name}: {name} suggests {suggested}"
                page.screenshot(path=str(artefacts / f"connection-form-{hook_name.split(' ')[0].lower()}.png"), full_page=True)
        except BaseException:
            if browser.contexts and browser.contexts[0].pages:  # what the UI showed when it failed
                browser.contexts[0].pages[0].screenshot(path=str(artefacts / "connection-form-failure.png"), full_page=True)
            raise
        finally:
            browser.close()


def test_backfill_from_the_rest_api_lands_each_interval_once(stack: AirflowStack, sandbox: Any, moto_s3: Any) -> None:
    """What the UI's backfill dialog does: three daily intervals -> three prefixes; again -> overwritten."""
    s3 = moto_s3.client()
    s3.create_bucket(Bucket="e2e-landing-backfill")
    state = sandbox.state
    state.config.setdefault("pond", {}).update({"pending_seconds": 0, "running_seconds": 0})
    days = ["2026-11-20", "2026-11-21", "2026-11-22"]
    # the scheduler starts runs of unpaused DAGs only (backfills included); unpausing also schedules the
    # latest interval, so everything below looks at the backfilled days alone
    stack.wait_dag("pond_e2e_backfill")

    def keys() -> list[str]:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket="e2e-landing-backfill", Prefix="pond/")
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []) if o["Key"].split("/")[1] in days)

    def snapshots_of_backfilled_days() -> int:
        return sum(1 for job in list(state.jobs.values())
                   if job.vendor == "pond" and str(job.params.get("created_at", [""])[0])[:10] in days)

    landed: list[str] = []
    for attempt in (1, 2):
        started = datetime.now(timezone.utc)
        backfill = stack.backfill("pond_e2e_backfill", f"{days[0]}T00:00:00Z", f"{days[-1]}T00:00:00Z")

        def finished(since: datetime = started) -> list[dict[str, Any]] | None:
            runs = [r for r in stack.dag_runs("pond_e2e_backfill")
                    if r["run_type"] == "backfill" and r["data_interval_start"][:10] in days]
            done = [r for r in runs if r["state"] in ("success", "failed") and r["end_date"]
                    and datetime.fromisoformat(r["end_date"].replace("Z", "+00:00")) > since]
            return runs if len(runs) == 3 and len(done) == 3 else None

        runs = stack.wait_for(finished, 300, f"backfill {attempt} to finish")
        # the scheduler marks the backfill complete a moment later; a new one over the same range waits for it
        stack.wait_for(lambda b=backfill["id"]: stack._call("GET", f"{stack.api}/backfills/{b}").json()["completed_at"], 120,
                       "backfill marked complete")
        assert {r["state"] for r in runs} == {"success"}, runs
        current = keys()
        assert {k.split("/")[1] for k in current} == set(days)
        assert snapshots_of_backfilled_days() == 3 * attempt, "one POND snapshot per interval and backfill"
        if attempt == 2:
            assert current == landed, "the second backfill overwrote the same keys, nothing duplicated"
        landed = current
