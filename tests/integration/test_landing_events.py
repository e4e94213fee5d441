"""The landing's Asset event describes the export the manifest committed, against moto and Azurite.

The event's extra (what a DAG scheduled on the destination's Asset receives) lists the same files as
the manifest's part — key, size, rows, sha256 — with that part's landing id, so a consumer can tell
whether the prefix still holds the export its event announced. Checked for one landing, a re-run
that replaces it, and two landings in two processes racing for one prefix (the same export: both
events name the one that was published; different exports: only the winner emits, matching the
manifest). The transfers run their real ``execute``; the event accessor is the Task SDK's own.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest

from airflow_export_providers.core.manifest import MANIFEST_NAME
from tests.support.concurrent_landing import Store, make_transfer, race_two_landings, task_context
from tests.support.destinations import PART, Dest
from tests.support.files_hook import export_file, export_job, random_bytes

pytest_plugins = ("tests.support.destination_fixtures",)


def land(dest: Dest, data: dict[str, bytes], job_id: str, prefix: str, run_id: str) -> tuple[Any, dict[str, Any]]:
    """Land ``data`` as the export ``job_id`` with the Asset on; the transfer and its event's extra."""
    from airflow.sdk.execution_time.context import OutletEventAccessors

    job = export_job([export_file(name, body) for name, body in data.items()], job_id=job_id).to_dict()
    context = task_context(run_id, store=Store())  # a store of its own: no Variable fallback below Airflow 3.3
    context["outlet_events"] = OutletEventAccessors()
    op = make_transfer(dest.kind, dest.name, job, prefix, asset=None)
    op.execute(context)
    return op, dict(context["outlet_events"][op.asset].extra)


def assert_describes(event: dict[str, Any], dest: Dest, prefix: str) -> dict[str, Any]:
    """``event`` is the manifest's part as committed (same files, same landing id); that part."""
    manifest = dest.manifest(prefix)
    assert manifest is not None
    part = manifest["parts"][event["part"]]
    assert part["state"] == "complete"
    assert [(f["key"], f["size"], f["rows"], f["sha256"]) for f in event["files"]] == \
        [(f["key"], f["size"], f["rows"], f["sha256"]) for f in part["files"]]
    assert (event["landing_id"], event["committed_at"]) == (part["landing_id"], part["committed_at"])
    assert event["manifest"] == dest.writer.uri(f"{prefix}/{MANIFEST_NAME}") and event["prefix"] == prefix
    assert [f["uri"] for f in event["files"]] == [dest.writer.uri(f["key"]) for f in part["files"]]
    assert (event["file_count"], event["bytes"]) == (len(part["files"]), sum(f["size"] for f in part["files"]))
    return dict(part)


def test_the_event_is_the_committed_export_and_a_rerun_replaces_what_it_describes(files: Any, dest: Dest) -> None:
    prefix = f"events/{uuid.uuid4().hex[:6]}"
    first = {"export_1-0.csv": b"a,b\n1,2\n3,4\n", "export_1-1.csv": random_bytes(PART + 5, seed=31)}
    files.files.update(first)
    op, event = land(dest, first, "export_1", prefix, "run-1")
    assert op.asset.uri == dest.writer.uri(prefix), "the Asset: the destination and the prefix's static part"
    assert (event["vendor"], event["job_id"], event["part"]) == ("files", "export_1", "contract/land")
    assert [f["file"] for f in event["files"]] == list(first) and event["files_complete"] is True
    assert_describes(event, dest, prefix)

    second = {"export_2-0.csv": b"a,b\n5,6\n"}
    files.files.update(second)
    _, again = land(dest, second, "export_2", prefix, "run-2")
    part = assert_describes(again, dest, prefix)
    assert part["landing_id"] != event["landing_id"], "a consumer holding the first event sees it was replaced"


@pytest.mark.parametrize("same", [False, True], ids=["different-exports", "same-export"])
def test_two_landings_racing_for_one_prefix_emit_what_was_published(files: Any, dest: Dest, same: bool) -> None:
    """Two processes stage everything, then publish at once: every event emitted is the manifest's part."""
    prefix = f"race-events/{uuid.uuid4().hex[:6]}"
    _, outcomes = race_two_landings(dest, files, prefix, same, seed=40, with_event=True)
    assert all(o in ("ok", "conflict") for o, _ in outcomes.values()), outcomes
    events = {run: detail["event"] for run, (o, detail) in outcomes.items() if o == "ok"}
    assert len(events) == (2 if same else 1), outcomes  # a loser with other bytes fails and emits nothing
    parts = [assert_describes(event, dest, prefix) for event in events.values()]
    assert len({p["landing_id"] for p in parts}) == 1, "both events name the one landing that was published"
    if same:
        assert {e["job_id"] for e in events.values()} == {"run-a", "run-b"}, "each names its own vendor job"


def test_openlineage_of_a_landing_that_failed_names_the_export_and_no_output(files: Any, sandbox: Any, dest: Dest) -> None:
    """The listener asks a failed task for its lineage too: the vendor export is the input, nothing was published."""
    pytest.importorskip("airflow.providers.openlineage")
    from airflow_export_providers.core.errors import VerificationError

    prefix = f"ol-failed/{uuid.uuid4().hex[:6]}"
    files.files["bad-0.csv"] = b"a,b\n1,2\n"
    job = export_job([export_file("bad-0.csv", b"a,b\n1,2\n", size=999)], job_id="bad").to_dict()  # the vendor's size is wrong
    op = make_transfer(dest.kind, dest.name, job, prefix, asset=None)
    with pytest.raises(VerificationError):
        op.execute(task_context("run-1", store=Store()))
    lineage = op.get_openlineage_facets_on_complete(None)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [(f"files://{urlsplit(sandbox.url).netloc}", "bad")]
    assert lineage.outputs == [] and dest.manifest(prefix) is None

    files.files["good-0.csv"] = b"a,b\n1,2\n3,4\n"
    good = make_transfer(dest.kind, dest.name, export_job([export_file("good-0.csv", b"a,b\n1,2\n3,4\n", row_format="csv")], job_id="good").to_dict(),
                         prefix, asset=None)
    good.execute(task_context("run-2", store=Store()))
    (out,) = good.get_openlineage_facets_on_complete(None).outputs
    namespace = "s3://" + dest.name if dest.kind == "s3" else dest.writer.uri("")[:-1]  # Azurite: the container's URL
    assert (out.namespace, out.name) == (namespace, prefix)
    stats = out.outputFacets["outputStatistics"]
    assert (stats.rowCount, stats.size, stats.fileCount) == (2, 12, 1)

