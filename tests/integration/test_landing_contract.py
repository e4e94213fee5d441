"""The landing contract of a whole export (issue 16), against moto's S3 server and Azurite alike.

- while a landing runs nothing of it is visible; a failed try publishes nothing;
- on success the prefix holds exactly this export's files (and its manifest);
- a re-run replaces the earlier export's files, even when the new one has fewer or other names;
- objects this package did not write are never deleted or overwritten;
- two landings of one prefix at once (two real OS processes): one wins whole, the other succeeds
  only when it produced the very same bytes, else fails having published nothing.

The transfers run their real ``execute`` against real servers; the Airflow context is reduced to
what a transfer reads (who runs, the task_state_store). The same flows inside Airflow's
``dag.test()`` are in test_transfers.py.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import uuid
from typing import Any

import pytest

from airflow_export_providers.core.errors import ExportError, ExportInputError, VerificationError
from airflow_export_providers.core.landing import stage_file
from airflow_export_providers.core.manifest import MANIFEST_NAME, ExportLanding, LandingConflict
from tests.support.concurrent_landing import Store, land_in_process, make_transfer, race_two_landings, task_context
from tests.support.destinations import PART, Dest
from tests.support.files_hook import FilesHook, export_file, export_job, random_bytes

pytest_plugins = ("tests.support.destination_fixtures",)


def files_of(state: Any, job_id: str, sizes: list[int], seed: int) -> dict[str, bytes]:
    """Vendor files named after their job, as Leanplum names them (``{job id}-{n}.json``)."""
    out = {f"{job_id}-{n}.json": random_bytes(size, seed=seed * 100 + n) for n, size in enumerate(sizes)}
    state.files.update(out)
    return out


def job_of(job_id: str, data: dict[str, bytes], **overrides: Any) -> dict[str, Any]:
    files = [export_file(name, body, **overrides.get(name, {})) for name, body in data.items()]
    return export_job(files, job_id=job_id).to_dict()


def land(dest: Dest, job: dict[str, Any], prefix: str, run_id: str = "run-1", **kwargs: Any) -> list[dict[str, Any]]:
    return list(make_transfer(dest.kind, dest.name, job, prefix, **kwargs).execute(task_context(run_id)))


def under(dest: Dest, prefix: str) -> dict[str, bytes]:
    return {k[len(prefix) + 1:]: dest.read(k) for k in dest.keys() if k.startswith(prefix + "/")}


def only_part(manifest: dict[str, Any] | None) -> dict[str, Any]:
    """The one part of a prefix a single landing task writes."""
    assert manifest is not None and len(manifest["parts"]) == 1, manifest
    return dict(next(iter(manifest["parts"].values())))


def assert_exactly(dest: Dest, prefix: str, data: dict[str, bytes], others: dict[str, bytes] | None = None) -> None:
    """The prefix holds exactly ``data`` (+ objects we did not write) and a complete manifest listing it."""
    got = under(dest, prefix)
    part = only_part(json.loads(got.pop(MANIFEST_NAME)))
    assert got == {**data, **(others or {})}
    assert part["state"] == "complete" and part["garbage"] == []
    listed = {f["key"]: f for f in part["files"]}
    assert set(listed) == {f"{prefix}/{name}" for name in data}
    for name, body in data.items():
        entry = listed[f"{prefix}/{name}"]
        assert entry["size"] == len(body) and entry["sha256"] == hashlib.sha256(body).hexdigest()
    assert dest.pending_uploads() == []


# ---- re-runs -------------------------------------------------------------------------------------
def test_rerun_with_fewer_and_other_names_replaces_the_earlier_export(files: Any, dest: Dest) -> None:
    """Issue 16 point 3: the file names carry the job id; the second landing of the day leaves one copy."""
    prefix = f"leanplum/{uuid.uuid4().hex[:6]}/20260301"
    theirs = {"notes.txt": b"written by a person, not by this package"}
    for name, body in theirs.items():
        dest.write(f"{prefix}/{name}", body)
    first = files_of(files, "export_1", [PART + 3, 40, 50], seed=1)
    land(dest, job_of("export_1", first), prefix)
    assert_exactly(dest, prefix, first, theirs)
    second = files_of(files, "export_2", [60, PART + 9], seed=2)
    landed = land(dest, job_of("export_2", second), prefix, run_id="run-2")
    assert [x["file"] for x in landed] == list(second)
    assert_exactly(dest, prefix, second, theirs)  # none of export_1 left over, nothing twice, notes.txt kept


def test_a_landing_of_zero_files_leaves_an_empty_export(files: Any, dest: Dest) -> None:
    prefix = f"empty/{uuid.uuid4().hex[:6]}"
    land(dest, job_of("export_1", files_of(files, "export_1", [10, 20], seed=3)), prefix)
    assert land(dest, job_of("export_2", {}), prefix) == []
    assert_exactly(dest, prefix, {})


# ---- failures --------------------------------------------------------------------------------------
def test_failed_file_two_of_two_publishes_nothing_and_the_retry_lands_whole(files: Any, dest: Dest) -> None:
    """Issue 16 point 5: file 1 verified, file 2 does not: nothing of the export appears, not even file 1."""
    prefix = f"half/{uuid.uuid4().hex[:6]}"
    data = files_of(files, "export_1", [PART + 1, 30], seed=4)
    second = list(data)[1]
    bad = job_of("export_1", data, **{second: {"size": len(data[second]) + 1}})
    store = Store()
    with pytest.raises(VerificationError, match=rf"{second}: verification failed"):
        make_transfer(dest.kind, dest.name, bad, prefix).execute(task_context("run-1", store=store))
    assert under(dest, prefix) == {} and dest.pending_uploads() == []  # no file 1, no manifest, no open upload
    assert store.values == {}  # every upload it opened was aborted: nothing left for a retry to clean up
    make_transfer(dest.kind, dest.name, job_of("export_1", data), prefix).execute(task_context("run-1", try_number=2, store=store))
    assert_exactly(dest, prefix, data)


def test_failed_rerun_keeps_the_previous_export_whole(files: Any, dest: Dest) -> None:
    prefix = f"keep/{uuid.uuid4().hex[:6]}"
    old = files_of(files, "export_1", [20, PART + 2], seed=5)
    land(dest, job_of("export_1", old), prefix)
    new = files_of(files, "export_2", [PART + 4, 30], seed=6)
    files.add_fault(path=f"/files/{list(new)[1]}$", status=500, times=-1)
    try:
        with pytest.raises(ExportError, match="HTTP 500"):
            land(dest, job_of("export_2", new), prefix, run_id="run-2")
    finally:
        files.clear_faults()
    assert_exactly(dest, prefix, old)  # the manifest still reads the old export, and its files are intact


def test_killed_try_leaves_uploads_only_its_retry_aborts(files: Any, dest: Dest) -> None:
    """A SIGKILLed try cannot abort what it staged: its retry aborts exactly the uploads it recorded."""
    if dest.kind != "s3":
        pytest.skip("Azure has no upload object to abort: uncommitted blocks vanish with the next commit")
    prefix = f"killed/{uuid.uuid4().hex[:6]}"
    data = files_of(files, "export_1", [PART + 5, 10], seed=7)
    other = dest.raw.create_multipart_upload(Bucket=dest.name, Key=f"{prefix}/{list(data)[0]}")["UploadId"]  # another run's
    store = Store()
    op = make_transfer(dest.kind, dest.name, job_of("export_1", data), prefix)
    writer = op.make_writer()
    from airflow_export_providers.transfers.base import StoreTracker

    writer.tracker = StoreTracker(store)
    for name in data:  # what the killed try did before the kill: stage both files, publish nothing
        stage_file(FilesHook(), export_file(name, data[name]), writer, key=f"{prefix}/{name}")
    assert len(store.values["export_landing_uploads"]) == 2 and len(dest.pending_uploads()) == 3
    op.execute(task_context("run-1", try_number=2, store=store))
    still_open = [u["UploadId"] for u in dest.raw.list_multipart_uploads(Bucket=dest.name).get("Uploads", [])]
    assert still_open == [other], "the retry aborted its own try's two uploads and nothing else"
    assert store.values == {}
    dest.raw.abort_multipart_upload(Bucket=dest.name, Key=f"{prefix}/{list(data)[0]}", UploadId=other)
    assert_exactly(dest, prefix, data)


def test_foreign_object_at_the_manifest_key_is_refused_before_anything_is_written(files: Any, dest: Dest) -> None:
    prefix = f"foreign/{uuid.uuid4().hex[:6]}"
    dest.write(f"{prefix}/{MANIFEST_NAME}", b"someone else's manifest")
    data = files_of(files, "export_1", [10], seed=8)
    before = len(files.requests)
    with pytest.raises(ExportError, match="an object this package did not write is where the landing manifest goes"):
        land(dest, job_of("export_1", data), prefix)
    assert len(files.requests) == before, "refused before any file was opened"
    assert under(dest, prefix) == {MANIFEST_NAME: b"someone else's manifest"} and dest.pending_uploads() == []


@pytest.mark.parametrize("name", ["../../../etc/cron.d/job", "/etc/passwd", "", "a/../../b", "a\\..\\..\\b", MANIFEST_NAME])
def test_a_vendor_file_name_cannot_leave_the_prefix(files: Any, dest: Dest, name: str) -> None:
    """Issue 16 point 7: refused before any vendor call, with the job and the rule named."""
    prefix = f"names/{uuid.uuid4().hex[:6]}"
    job = export_job([export_file("ok.json", b"{}"), export_file(name, b"x")], job_id="export_9").to_dict()
    before = len(files.requests)
    expected = "would both land at" if name == MANIFEST_NAME else r"export: job export_9: file name .*a landed name must be a relative path"
    with pytest.raises(ExportError, match=expected):
        land(dest, job, prefix)
    assert len(files.requests) == before and dest.keys() == [] and dest.pending_uploads() == []


# ---- two landings at once ------------------------------------------------------------------------
@pytest.mark.parametrize("same", [False, True], ids=["different-exports", "same-export"])
def test_two_landings_of_one_prefix_in_two_processes(files: Any, dest: Dest, same: bool) -> None:
    """Issue 16 points 1, 2 and the done-when: two real processes land one prefix (same keys) at once.

    Both have staged every file when they publish. One wins, whole; the other succeeds only with the
    very same bytes, else fails with LandingConflict having published nothing — never a mix, never a
    half-published export, no upload left open.
    """
    prefix = f"race/{uuid.uuid4().hex[:6]}"
    sources, outcomes = race_two_landings(dest, files, prefix, same, seed=20)
    assert all(o in ("ok", "conflict") for o, _ in outcomes.values()), outcomes
    winners = [run for run, (o, _) in outcomes.items() if o == "ok"]
    if same:
        assert len(winners) == 2, outcomes  # the later one found the very same bytes published: nothing to do
    else:
        assert len(winners) == 1, outcomes
        loser = next(run for run in sources if run not in winners)
        assert "published this task's export here while this landing ran" in outcomes[loser][1]
    assert_exactly(dest, prefix, sources[winners[0]])


def test_a_landing_waits_for_a_publish_in_progress_then_replaces_it(files: Any, dest: Dest) -> None:
    """A landing that starts while another task instance is publishing the prefix waits for it to finish."""
    import threading

    prefix = f"wait/{uuid.uuid4().hex[:6]}"
    first = files_of(files, "export_1", [30, 40], seed=9)
    second = files_of(files, "export_2", [50], seed=10)
    published, release = threading.Event(), threading.Event()

    class PausingWriter:
        """The first landing's writer, pausing right after the pending manifest went out."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def put(self, key: str, data: bytes, *, expect: str | None) -> str:
            version = self.inner.put(key, data, expect=expect)
            if b'"pending"' in data and not published.is_set():
                published.set()
                assert release.wait(60)
            return str(version)

    def first_landing() -> None:
        landing = ExportLanding(PausingWriter(dest.writer), prefix, by={"dag_id": "d", "task_id": "t", "run_id": "r1", "map_index": -1})
        landing.open()
        for name, body in first.items():
            landing.add(stage_file(FilesHook(), export_file(name, body), dest.writer, key=f"{prefix}/{name}"))
        landing.commit()

    thread = threading.Thread(target=first_landing)
    thread.start()
    assert published.wait(60)
    assert only_part(dest.manifest(prefix))["state"] == "pending"  # nothing reads as complete meanwhile
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        release.set()  # the first landing goes on only once the second one is waiting for it
        thread.join(60)

    second_landing = ExportLanding(dest.new_writer(), prefix, by={"dag_id": "d", "task_id": "t", "run_id": "r2", "map_index": -1},
                                   sleep=sleep)
    base = second_landing.open()
    assert waits and base is not None and base.state == "complete" and base.keys == {f"{prefix}/{n}" for n in first}
    for name, body in second.items():
        second_landing.add(stage_file(FilesHook(), export_file(name, body), second_landing.writer, key=f"{prefix}/{name}"))
    second_landing.commit()
    assert_exactly(dest, prefix, second)


class Clock:
    def __init__(self) -> None:
        import time

        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _die_while_publishing(dest: Dest, prefix: str, data: dict[str, bytes], by: dict[str, Any], lease: float) -> None:
    """A landing that claimed the prefix and published its first file, then died (no clean-up ran)."""
    landing = ExportLanding(dest.writer, prefix, by=by, lease=lease)
    landing.open()
    for name, body in data.items():
        landing.add(stage_file(FilesHook(), export_file(name, body), dest.writer, key=f"{prefix}/{name}"))
    landing.staged[1].upload.commit = lambda: (_ for _ in ()).throw(SystemExit("worker gone"))  # type: ignore[method-assign]
    with pytest.raises(SystemExit):
        landing.commit()


@pytest.mark.parametrize("who", ["same-task-retry", "other-task-after-lease"])
def test_an_unfinished_publish_is_taken_over_and_cleaned(files: Any, dest: Dest, who: str) -> None:
    prefix = f"dead/{uuid.uuid4().hex[:6]}"
    dead = files_of(files, "export_1", [10, 20, 30], seed=11)
    by = {"dag_id": "d", "task_id": "t", "run_id": "r1", "map_index": -1, "try_number": 1}
    _die_while_publishing(dest, prefix, dead, by, lease=600)
    left = only_part(dest.manifest(prefix))
    assert left["state"] == "pending"
    assert f"{prefix}/{list(dead)[0]}" in dest.keys()  # its first file was published before it died
    new = files_of(files, "export_2", [40], seed=12)
    clock = Clock()
    if who == "same-task-retry":
        def no_wait(_: float) -> None:
            raise AssertionError("a retry of the same task instance must not wait for its own dead try")
        landing = ExportLanding(dest.new_writer(), prefix, by={**by, "try_number": 2}, sleep=no_wait, clock=clock)
    else:
        landing = ExportLanding(dest.new_writer(), prefix, by={**by, "run_id": "r2"}, clock=clock, sleep=clock.sleep)
    base = landing.open()
    assert base is not None and base.state == "pending"
    if who == "other-task-after-lease":
        from datetime import datetime

        assert clock.now >= datetime.fromisoformat(left["lease_until"]).timestamp(), "it waited for the dead landing's lease"
    for name, body in new.items():
        landing.add(stage_file(FilesHook(), export_file(name, body), landing.writer, key=f"{prefix}/{name}"))
    landing.commit()
    assert_exactly(dest, prefix, new)


def test_loser_of_a_race_to_an_identical_export_succeeds_without_writing(files: Any, dest: Dest) -> None:
    prefix = f"same/{uuid.uuid4().hex[:6]}"
    data = files_of(files, "export_1", [PART + 1, 10], seed=13)
    loser = ExportLanding(dest.new_writer(), prefix, by={"dag_id": "contract", "task_id": "land", "run_id": "r2", "map_index": -1})
    loser.open()
    for name, body in data.items():
        loser.add(stage_file(FilesHook(), export_file(name, body), loser.writer, key=f"{prefix}/{name}"))
    land(dest, job_of("export_1", data), prefix)  # the winner publishes first
    version = dest.raw.get_blob_client(f"{prefix}/{MANIFEST_NAME}").get_blob_properties().etag if dest.kind == "azure" else \
        dest.raw.head_object(Bucket=dest.name, Key=f"{prefix}/{MANIFEST_NAME}")["ETag"]
    assert [o.key for o in loser.commit()] == [f"{prefix}/{n}" for n in data]
    after = dest.raw.get_blob_client(f"{prefix}/{MANIFEST_NAME}").get_blob_properties().etag if dest.kind == "azure" else \
        dest.raw.head_object(Bucket=dest.name, Key=f"{prefix}/{MANIFEST_NAME}")["ETag"]
    assert after == version, "the loser wrote nothing"
    assert_exactly(dest, prefix, data)


def test_loser_of_a_race_to_another_export_fails_cleanly(files: Any, dest: Dest) -> None:
    prefix = f"lose/{uuid.uuid4().hex[:6]}"
    mine = files_of(files, "export_1", [PART + 1, 10], seed=14)
    theirs = files_of(files, "export_2", [PART + 2], seed=15)
    loser = ExportLanding(dest.new_writer(), prefix, by={"dag_id": "contract", "task_id": "land", "run_id": "r1", "map_index": -1})
    loser.open()
    for name, body in mine.items():
        loser.add(stage_file(FilesHook(), export_file(name, body), loser.writer, key=f"{prefix}/{name}"))
    land(dest, job_of("export_2", theirs), prefix, run_id="r2")
    with pytest.raises(LandingConflict, match="run_id=r2.*published this task's export here while this landing ran.*nothing of this landing"):
        loser.commit()
    assert_exactly(dest, prefix, theirs)


def test_bad_count_rows_is_refused_before_any_call(files: Any, dest: Dest) -> None:
    before = len(files.requests)
    with pytest.raises(ExportInputError, match=r"^count_rows: expected True or False, got 'no'"):
        land(dest, job_of("export_1", files_of(files, "export_1", [10], seed=16)), "x", count_rows="no")
    assert len(files.requests) == before and dest.keys() == []


def test_count_rows_off_lands_a_file_whose_vendor_count_means_something_else(files: Any, dest: Dest) -> None:
    """Issue 15: the vendor counts sessions, the file holds events — size and checksum still checked."""
    prefix = f"rows/{uuid.uuid4().hex[:6]}"
    body = b'{"e":1}\n{"e":2}\n{"e":3}\n'
    files.files["events.jsonl"] = body
    announced = {"events.jsonl": {"rows": 2, "row_format": "jsonl", "checksum": hashlib.md5(body).hexdigest()}}
    with pytest.raises(VerificationError, match="rows: expected 2, counted 3"):
        land(dest, job_of("export_1", {"events.jsonl": body}, **announced), prefix)
    landed = land(dest, job_of("export_1", {"events.jsonl": body}, **announced), prefix, count_rows=False)
    assert landed[0]["rows"] is None
    assert_exactly(dest, prefix, {"events.jsonl": body})
    wrong = {"events.jsonl": {**announced["events.jsonl"], "checksum": hashlib.md5(b"other").hexdigest()}}
    with pytest.raises(VerificationError, match="checksum: md5 expected"):
        land(dest, job_of("export_1", {"events.jsonl": body}, **wrong), prefix, count_rows=False)


# ---- several landing tasks, one prefix -----------------------------------------------------------
def test_mapped_tasks_landing_one_prefix_at_once_keep_each_others_files(files: Any, dest: Dest) -> None:
    """Dynamic task mapping (one transfer per segment into the day's prefix), three OS processes at once.

    Each map index owns a part of the manifest: none replaces another's files, all three succeed even
    though they publish at the same moment; a re-run of one of them replaces only its own file.
    """
    prefix = f"segments/{uuid.uuid4().hex[:6]}/2026-03-03"
    data = {i: {f"segment-{i}.csv": random_bytes(PART + i if i == 1 else 100 + i, seed=30 + i)} for i in range(3)}
    for d in data.values():
        files.files.update(d)
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=land_in_process, args=(dest.kind, dest.name, job_of(f"export_{i}", data[i]), prefix, "run-1",
                                                       barrier, results), kwargs={"task_id": "land_segment", "map_index": i})
             for i in data]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=240) for _ in procs]
    for p in procs:
        p.join(60)
    assert sorted(o[1] for o in outcomes) == ["ok", "ok", "ok"], outcomes
    everything = {name: body for d in data.values() for name, body in d.items()}
    got = under(dest, prefix)
    manifest = json.loads(got.pop(MANIFEST_NAME))
    assert got == everything
    parts = manifest["parts"]
    assert sorted(parts) == [f"contract/land_segment[{i}]" for i in range(3)]
    assert all(p["state"] == "complete" and len(p["files"]) == 1 for p in parts.values())
    # a re-run of map index 1 with another file name replaces segment 1's file only
    redo = {"segment-1-v2.csv": b"id\n1\n"}
    files.files.update(redo)
    ctx1 = task_context("run-2", task_id="land_segment")
    ctx1["ti"].map_index = 1
    make_transfer(dest.kind, dest.name, job_of("export_1b", redo), prefix).execute(ctx1)
    got = under(dest, prefix)
    got.pop(MANIFEST_NAME)
    assert got == {**data[0], **redo, **data[2]}
    assert dest.pending_uploads() == []


def test_a_key_moves_to_the_task_that_landed_it_last(files: Any, dest: Dest) -> None:
    """Two DAGs write one prefix and one key: the later owns it, and the earlier's re-run does not delete it."""
    prefix = f"shared/{uuid.uuid4().hex[:6]}"
    a = {"a-only.json": b"a1", "both.json": b"from a"}
    b = {"both.json": b"from b"}
    files.files.update({"a-only.json": a["a-only.json"]})
    files.files["both.json"] = a["both.json"]
    make_transfer(dest.kind, dest.name, job_of("export_a", a), prefix).execute(task_context("r1", dag_id="dag_a"))
    files.files["both.json"] = b["both.json"]
    make_transfer(dest.kind, dest.name, job_of("export_b", b), prefix).execute(task_context("r1", dag_id="dag_b"))
    manifest = dest.manifest(prefix)
    assert manifest is not None
    owners = {pid: sorted(f["key"].rsplit("/", 1)[1] for f in p["files"]) for pid, p in manifest["parts"].items()}
    assert owners == {"dag_a/land": ["a-only.json"], "dag_b/land": ["both.json"]}
    redo = {"a-new.json": b"a2"}
    files.files.update(redo)
    make_transfer(dest.kind, dest.name, job_of("export_a2", redo), prefix).execute(task_context("r2", dag_id="dag_a"))
    got = under(dest, prefix)
    got.pop(MANIFEST_NAME)
    assert got == {"a-new.json": b"a2", "both.json": b"from b"}, "dag_a's re-run removed its own old file, not dag_b's"


# ---- a mapped task that shrinks --------------------------------------------------------------------
def _land_directly(dest: Dest, files: Any, prefix: str, by: dict[str, Any], data: dict[str, bytes], **kwargs: Any) -> None:
    files.files.update(data)
    landing = ExportLanding(dest.new_writer(), prefix, by=by, **kwargs)
    landing.open()
    for name, body in data.items():
        landing.add(stage_file(FilesHook(), export_file(name, body), landing.writer, key=f"{prefix}/{name}"))
    landing.commit()


def _mapped(run_id: str, index: int, task_id: str = "land_segment") -> dict[str, Any]:
    return {"dag_id": "contract", "task_id": task_id, "run_id": run_id, "map_index": index, "try_number": 1}


def test_a_rerun_expanded_to_fewer_instances_retires_the_indexes_it_no_longer_has(files: Any, dest: Dest) -> None:
    """Three segments landed by three mapped instances; the re-run has two segments: the prefix then holds
    exactly the re-run's two files, not the first run's third segment beside them (a duplicate for readers)."""
    prefix = f"shrink/{uuid.uuid4().hex[:6]}/2026-03-03"
    first = {i: {f"segment-{i}-v1.csv": random_bytes(100 + i, seed=60 + i)} for i in range(3)}
    for i, data in first.items():
        _land_directly(dest, files, prefix, _mapped("run-1", i), data, live_indexes=range(3))
    # another task of the same DAG lands into the prefix too: its part is not this task's to retire
    other = {"summary.csv": b"segments,3\n"}
    _land_directly(dest, files, prefix, _mapped("run-1", -1, task_id="land_summary"), other, live_indexes=range(-1, 0))
    assert sorted(dest.manifest(prefix)["parts"]) == [  # type: ignore[index]
        "contract/land_segment[0]", "contract/land_segment[1]", "contract/land_segment[2]", "contract/land_summary"]

    second = {i: {f"segment-{i}-v2.csv": random_bytes(200 + i, seed=70 + i)} for i in range(2)}
    _land_directly(dest, files, prefix, _mapped("run-2", 0), second[0], live_indexes=range(2))
    after_first = dest.manifest(prefix)
    assert after_first is not None and "contract/land_segment[2]" not in after_first["parts"], "index 2 retired at once"
    assert f"{prefix}/segment-2-v1.csv" not in dest.keys()
    _land_directly(dest, files, prefix, _mapped("run-2", 1), second[1], live_indexes=range(2))

    got = under(dest, prefix)
    manifest = json.loads(got.pop(MANIFEST_NAME))
    assert got == {**second[0], **second[1], **other}
    assert sorted(manifest["parts"]) == ["contract/land_segment[0]", "contract/land_segment[1]", "contract/land_summary"]
    assert all(p["state"] == "complete" and p["garbage"] == [] for p in manifest["parts"].values())
    assert dest.pending_uploads() == []


def test_a_task_no_longer_mapped_retires_its_mapped_parts_and_unknown_counts_retire_nothing(files: Any, dest: Dest) -> None:
    prefix = f"unmapped/{uuid.uuid4().hex[:6]}"
    mapped = {i: {f"m-{i}.json": random_bytes(50 + i, seed=80 + i)} for i in range(2)}
    for i, data in mapped.items():
        _land_directly(dest, files, prefix, _mapped("run-1", i, task_id="land"), data, live_indexes=range(2))
    # the count is not known (a landing outside Airflow, an API that cannot count): every part stays
    _land_directly(dest, files, prefix, _mapped("run-2", 0, task_id="land"), {"m-0b.json": b"x"}, live_indexes=None)
    assert sorted(dest.manifest(prefix)["parts"]) == ["contract/land[0]", "contract/land[1]"]  # type: ignore[index]
    # the DAG's next version lands the task unmapped: the mapped parts go, their files with them
    whole = {"all.json": random_bytes(70, seed=90)}
    _land_directly(dest, files, prefix, _mapped("run-3", -1, task_id="land"), whole, live_indexes=range(-1, 0))
    got = under(dest, prefix)
    manifest = json.loads(got.pop(MANIFEST_NAME))
    assert got == whole and sorted(manifest["parts"]) == ["contract/land"]


def test_a_part_being_published_is_not_retired(files: Any, dest: Dest) -> None:
    """An older run's index 2 still publishing (pending, lease alive) when the re-run's index 0 lands: it is
    left to finish, and the next landing of the task retires it."""
    prefix = f"busy/{uuid.uuid4().hex[:6]}"
    for i in range(3):
        _land_directly(dest, files, prefix, _mapped("run-1", i), {f"s-{i}.csv": random_bytes(30 + i, seed=95 + i)},
                       live_indexes=range(3))
    manifest_key = f"{prefix}/{MANIFEST_NAME}"
    doc = json.loads(dest.read(manifest_key))
    from datetime import datetime, timedelta, timezone

    doc["parts"]["contract/land_segment[2]"].update(
        state="pending", lease_until=(datetime.now(timezone.utc) + timedelta(minutes=10)).isoformat(timespec="seconds"),
        by={**doc["parts"]["contract/land_segment[2]"]["by"], "run_id": "run-0"})
    dest.write(manifest_key, json.dumps(doc).encode())
    _land_directly(dest, files, prefix, _mapped("run-2", 0), {"s-0b.csv": b"new"}, live_indexes=range(2))
    parts = dest.manifest(prefix)["parts"]  # type: ignore[index]
    assert parts["contract/land_segment[2]"]["state"] == "pending", "a live publish is never pulled from under it"
    assert f"{prefix}/s-2.csv" in dest.keys()
