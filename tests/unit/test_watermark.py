"""core/watermark rules without a server: which commits and landings are refused, which configs overlap.

The Variable store is a dict here (the rules are pure); tests/integration/test_leanplum.py proves the
same rules with real Airflow Variables and really overlapping runs.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pytest

from airflow_export_providers.core import watermark as wm
from airflow_export_providers.core.errors import ExportInputError
from airflow_export_providers.core.job import Watermark
from airflow_export_providers.operators.leanplum import LeanplumStreamingExportOperator


class FakeVariables:
    store: dict[str, str] = {}

    @classmethod
    def get(cls, key: str, default: Any = None) -> Any:
        return cls.store.get(key, default)

    @classmethod
    def set(cls, key: str, value: str) -> None:
        cls.store[key] = value

    @classmethod
    def delete(cls, key: str) -> None:
        cls.store.pop(key, None)


@pytest.fixture
def variables(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    FakeVariables.store = {}
    monkeypatch.setattr(wm, "_variable", lambda: FakeVariables)
    return FakeVariables.store


def test_a_second_run_committing_the_same_value_is_refused(variables: dict[str, str]) -> None:
    """Two runs exported [100, 200) from the same watermark: the second commit must not pass silently."""
    variables["s"] = json.dumps({"value": 100})
    first = Watermark("s", previous=100, proposed=200, job_id="A")
    second = Watermark("s", previous=100, proposed=200, job_id="B")
    assert wm.commit_watermark(first) is True
    with pytest.raises(wm.WatermarkConflict, match=r"now 200 \(committed by export A\).*export B started from 100"):
        wm.commit_watermark(second)
    with pytest.raises(wm.WatermarkConflict):  # a smaller or larger value from the same start likewise
        wm.commit_watermark(Watermark("s", previous=100, proposed=150, job_id="C"))
    assert json.loads(variables["s"]) == {"value": 200, "job_id": "A"}


def test_a_retry_of_the_landing_that_committed_passes(variables: dict[str, str]) -> None:
    variables["s"] = json.dumps({"value": 100})
    mark = Watermark("s", previous=100, proposed=200, job_id="A")
    assert wm.commit_watermark(mark) is True
    wm.check_unmoved(mark)  # the retry may land again
    assert wm.commit_watermark(mark) is False


def test_landing_is_refused_when_another_export_holds_the_claim(variables: dict[str, str]) -> None:
    variables["s"] = json.dumps({"value": 100})
    wm.write_inflight("s", {"job_id": "B", "previous": 100, "owner": {"run_id": "manual__b"}})
    with pytest.raises(wm.WatermarkConflict, match=r"export B of run manual__b was started .* after export A"):
        wm.check_unmoved(Watermark("s", previous=100, proposed=200, job_id="A"))
    wm.check_unmoved(Watermark("s", previous=100, proposed=210, job_id="B"))


def test_a_fresh_stream_and_a_hand_set_value(variables: dict[str, str]) -> None:
    wm.check_unmoved(Watermark("new", previous=None, proposed=5, job_id="A"))
    assert wm.commit_watermark(Watermark("new", previous=None, proposed=5, job_id="A"))
    variables["typed"] = "1700000000"
    assert wm.read_watermark("typed") == "1700000000"
    assert wm.commit_watermark(Watermark("typed", previous="1700000000", proposed=1700000100, job_id="A"))
    assert wm.read_watermark("typed") == 1700000100


START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _stream_in_dag(**dag_kwargs: Any) -> Any:
    from airflow.sdk import DAG

    task_kwargs = {k: dag_kwargs.pop(k) for k in ("pool", "max_active_tis_per_dag") if k in dag_kwargs}
    with DAG("overlap_probe", schedule=None, start_date=START, **dag_kwargs):
        return LeanplumStreamingExportOperator(task_id="export", watermark_variable="v", **task_kwargs)


def test_a_dag_that_lets_streaming_runs_overlap_is_refused_at_parse() -> None:
    with pytest.raises(ExportInputError) as err:
        _stream_in_dag(max_active_runs=3)
    message = str(err.value)
    assert "max_active_runs" in message and "1-slot pool" in message and "overlap_probe" in message
    with pytest.raises(ExportInputError):
        _stream_in_dag()  # Airflow's default allows 16 active runs
    assert _stream_in_dag(max_active_runs=1)
    assert _stream_in_dag(max_active_runs=3, max_active_tis_per_dag=1)
    assert _stream_in_dag(max_active_runs=3, pool="stream_pool")  # its size is checked at run time


def test_a_pool_is_exclusive_only_with_one_slot() -> None:
    task = _stream_in_dag(max_active_runs=3, pool="stream_pool")
    assert wm.overlap_problem(task, task.dag, 1) is None
    assert wm.overlap_problem(task, task.dag, None) is None  # unreadable from a worker: trusted
    three = wm.overlap_problem(task, task.dag, 3)
    assert three and "pool 'stream_pool' has 3 slots" in three
    missing = wm.overlap_problem(task, task.dag, 0)
    assert missing and "does not exist" in missing
