"""Which map indexes a landing task has in its run (what the manifest keeps; the rest is retired).

The count itself is Airflow's (``RuntimeTaskInstance.get_ti_count``, exercised for real by
test_transfers.py's mapped re-run in dag.test()); here only what is made of its answers.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from airflow_export_providers.transfers.base import live_map_indexes


def ti(map_index: int, states: list[str] | None = None, fails: bool = False) -> SimpleNamespace:
    calls: list[dict[str, Any]] = []

    def get_ti_count(dag_id: str, task_ids: list[str], run_ids: list[str], states: list[str] | None = None) -> int:
        calls.append({"dag_id": dag_id, "task_ids": task_ids, "run_ids": run_ids, "states": states})
        if fails:
            raise RuntimeError("execution API answered 500 for https://api/execution/?token=s3cr3t")
        return sum(1 for s in all_states if states is None or s in states)

    all_states = states or []
    return SimpleNamespace(dag_id="d", task_id="land", run_id="r", map_index=map_index, get_ti_count=get_ti_count, calls=calls)


def test_an_unmapped_task_has_the_one_index() -> None:
    assert live_map_indexes({"ti": ti(-1)}) == range(-1, 0)


def test_mapped_instances_a_rerun_removed_are_not_live() -> None:
    t = ti(0, ["success", "running", "removed", "removed"])
    assert live_map_indexes({"ti": t}) == range(2)
    assert t.calls == [{"dag_id": "d", "task_ids": ["land"], "run_ids": ["r"], "states": None},
                       {"dag_id": "d", "task_ids": ["land"], "run_ids": ["r"], "states": ["removed"]}]


def test_the_landing_own_index_is_always_live() -> None:
    assert live_map_indexes({"ti": ti(4, ["success", "success"])}) == range(5)


@pytest.mark.parametrize("context", [None, {}, {"ti": None}, {"ti": SimpleNamespace(dag_id="d", task_id="t", map_index=3)}])
def test_without_airflow_to_ask_nothing_is_retired(context: Any) -> None:
    assert live_map_indexes(context) is None


def test_a_failed_count_retires_nothing_and_logs_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    assert live_map_indexes({"ti": ti(1, fails=True)}) is None
    assert "could not count the mapped instances of land" in caplog.text
    assert "s3cr3t" not in caplog.text
