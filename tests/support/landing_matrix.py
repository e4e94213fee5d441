"""The landing cells of docs/reliability.md: concurrency, re-runs and failures of a whole export.

Each cell names the tests that prove it, for S3 and for Azure. The plugin hook below (loaded through
``pytest_plugins = ("tests.support.destination_fixtures",)``) records the outcome of every such test
in ``build/landing-matrix.json``; a cell passes when each of its tests passed in the last run.
``python -m tests.support.landing_matrix --write-doc`` rewrites the section of docs/reliability.md
(``python -m tests.support.fault_matrix --write-doc`` writes it too, with the fault matrix).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "build" / "landing-matrix.json"
DOC = ROOT / "docs" / "reliability.md"
START, END = "<!-- landing-matrix:start -->", "<!-- landing-matrix:end -->"
CONTRACT = "tests/integration/test_landing_contract.py::"
ENGINE = "tests/integration/test_landing.py::"
DAGTEST = "tests/integration/test_transfers.py::"

# cell id -> (title, {destination: [test node ids]}, note); no test for a destination = n/a with the note
CELLS: list[tuple[str, str, dict[str, list[str]], str]] = [
    ("race-prefix", "two landings of one prefix at once, in two OS processes (different exports)", {
        d: [f"{CONTRACT}test_two_landings_of_one_prefix_in_two_processes[{d}-different-exports]"] for d in ("s3", "azure")},
     "one wins whole, the other fails with LandingConflict having published nothing"),
    ("race-same", "two landings of one prefix at once, in two OS processes (the same export)", {
        d: [f"{CONTRACT}test_two_landings_of_one_prefix_in_two_processes[{d}-same-export]",
            f"{CONTRACT}test_loser_of_a_race_to_an_identical_export_succeeds_without_writing[{d}]"] for d in ("s3", "azure")},
     "both succeed; the later finds the same bytes published and writes nothing"),
    ("race-key", "a second upload of one key while the first is open", {
        d: [f"{ENGINE}test_a_second_landing_of_one_key_neither_kills_nor_mixes_with_the_first[{d}]"] for d in ("s3", "azure")},
     "S3: the first is not aborted and its later commit wins whole; Azure: the later commit fails (InvalidBlockList), "
     "the blob stays the other upload, never a mix"),
    ("mapped", "mapped tasks land one prefix at the same moment (three OS processes)", {
        d: [f"{CONTRACT}test_mapped_tasks_landing_one_prefix_at_once_keep_each_others_files[{d}]"] for d in ("s3", "azure")},
     "all succeed, each keeps its own part; a re-run of one map index replaces only its file"),
    ("shrink", "a re-run of a mapped transfer expanded to fewer instances", {
        d: [f"{CONTRACT}test_a_rerun_expanded_to_fewer_instances_retires_the_indexes_it_no_longer_has[{d}]",
            f"{CONTRACT}test_a_task_no_longer_mapped_retires_its_mapped_parts_and_unknown_counts_retire_nothing[{d}]",
            f"{CONTRACT}test_a_part_being_published_is_not_retired[{d}]"]
        + ([f"{DAGTEST}test_a_rerun_with_fewer_mapped_instances_leaves_only_its_own_exports"] if d == "s3" else [])
        for d in ("s3", "azure")},
     "the parts of the map indexes the run no longer has are retired, their files removed; a part being published is left to finish"),
    ("shared-key", "two DAGs land one key in one prefix", {
        d: [f"{CONTRACT}test_a_key_moves_to_the_task_that_landed_it_last[{d}]"] for d in ("s3", "azure")},
     "the key belongs to the later; the earlier DAG's re-run does not delete it"),
    ("wait", "a landing starts while another task instance is publishing", {
        d: [f"{CONTRACT}test_a_landing_waits_for_a_publish_in_progress_then_replaces_it[{d}]"] for d in ("s3", "azure")}, ""),
    ("rerun", "re-run of a landed interval with fewer, differently named files", {
        d: [f"{CONTRACT}test_rerun_with_fewer_and_other_names_replaces_the_earlier_export[{d}]",
            f"{DAGTEST}test_rerun_of_a_landed_day_leaves_one_copy_of_the_new_export"] for d in ("s3", "azure")},
     "exactly one copy of the new export; an object this package did not write stays"),
    ("backfill", "backfill of a landed interval (real scheduler, REST API backfill)", {
        d: ["tests/e2e/test_landing_backfill.py::test_backfill_of_a_landed_day_leaves_one_copy_of_the_new_export"] for d in ("s3",)},
     "Azure: the same manifest protocol; the re-run cell covers it"),
    ("half", "file 2 of 2 fails: nothing published; the retry lands it whole", {
        d: [f"{CONTRACT}test_failed_file_two_of_two_publishes_nothing_and_the_retry_lands_whole[{d}]",
            f"{DAGTEST}test_a_failed_export_publishes_nothing_and_a_retry_lands_it_whole[{d}]"] for d in ("s3", "azure")}, ""),
    ("failed-rerun", "a failed re-run keeps the previous export whole", {
        d: [f"{CONTRACT}test_failed_rerun_keeps_the_previous_export_whole[{d}]"] for d in ("s3", "azure")}, ""),
    ("killed", "a killed try's staged uploads: its retry aborts exactly those", {
        "s3": [f"{CONTRACT}test_killed_try_leaves_uploads_only_its_retry_aborts[s3]",
               f"{ENGINE}test_retry_aborts_only_the_uploads_its_killed_try_recorded[s3]"]},
     "Azure has no upload object: uncommitted blocks are discarded by the next commit of the blob"),
    ("takeover", "a publish that died half-way is taken over and cleaned", {
        d: [f"{CONTRACT}test_an_unfinished_publish_is_taken_over_and_cleaned[{d}-same-task-retry]",
            f"{CONTRACT}test_an_unfinished_publish_is_taken_over_and_cleaned[{d}-other-task-after-lease]"] for d in ("s3", "azure")},
     "a retry of the same task at once, another task after the lease"),
    ("names", "a vendor file name that would leave the prefix", {
        d: [f"{CONTRACT}test_a_vendor_file_name_cannot_leave_the_prefix[{d}-../../../etc/cron.d/job]",
            f"{CONTRACT}test_a_vendor_file_name_cannot_leave_the_prefix[{d}-/etc/passwd]"] for d in ("s3", "azure")},
     "refused before any vendor call, naming the job"),
    ("foreign", "an object this package did not write at the manifest key", {
        d: [f"{CONTRACT}test_foreign_object_at_the_manifest_key_is_refused_before_anything_is_written[{d}]"] for d in ("s3", "azure")},
     "refused before anything is written"),
]
TESTS = {test for _, _, by_dest, _ in CELLS for tests in by_dest.values() for test in tests}


def record(nodeid: str, outcome: str) -> None:
    if nodeid not in TESTS:
        return
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(RESULTS.with_suffix(".lock"), "w") as lock:  # xdist workers write at once
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        results.setdefault("tests", {})[nodeid] = {"outcome": outcome, "at": time.time()}
        RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True))


def render_section(results: dict[str, Any] | None = None) -> list[str]:
    if results is None:
        results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    tests = results.get("tests", {})
    when = max((t["at"] for t in tests.values()), default=time.time())
    lines = [
        START,
        "## Concurrency, re-runs and failures of a whole export",
        "",
        "Generated by `python -m tests.support.landing_matrix --write-doc` from the last run of the tests each cell",
        f"names (last recorded {datetime.fromtimestamp(when, timezone.utc):%Y-%m-%d %H:%M UTC}). The contract they check is in",
        "docs/transfers.md (*The landing contract*): real moto and Azurite, the transfers' own `execute`, `dag.test()`",
        "for the Airflow flows, two spawned OS processes for the races.",
        "",
        "| case | S3 | Azure | proven by | note |",
        "| --- | --- | --- | --- | --- |",
    ]
    for _cell, title, by_dest, note in CELLS:
        row = [title]
        for d in ("s3", "azure"):
            names = by_dest.get(d)
            if not names:
                row.append("n/a")
                continue
            outcomes = [tests.get(n, {}).get("outcome") for n in names]
            row.append("pass" if all(o == "passed" for o in outcomes) else
                       "fail" if any(o == "failed" for o in outcomes) else "not run")
        shown = sorted({n.split("::")[1].split("[")[0] for names in by_dest.values() for n in names})
        row.append("<br>".join(f"`{n}`" for n in shown))
        row.append(note)
        lines.append("| " + " | ".join(row) + " |")
    return [*lines, "", END]


def write_doc(path: Path = DOC) -> Path:
    text = path.read_text() if path.exists() else ""
    section = "\n".join(render_section())
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--write-doc", action="store_true", help="rewrite the landing section of docs/reliability.md")
    args = parser.parse_args(argv)
    if args.write_doc:
        print(write_doc())
    else:
        print("\n".join(render_section()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
