"""Split-flow test DAGs, generated for every vendor from tests/support/split_flow.py.

Per vendor:
- ``split_flow_<vendor>``: two split flows (start with wait_for_completion=False -> sensor ->
  land), one whose sensor defers and takes the reference as an XComArg, one whose sensor pokes and
  takes it as ``"{{ ti.xcom_pull(...) }}"``; beside them the one-task flow (export -> land).
- ``split_sensor_<vendor>_<mode>`` (deferred | poke | reschedule): a lone sensor on ``params.ref``,
  a job some other run (or a person) started.
- ``split_sensor_<vendor>_failed``: a deferred and a poking sensor on a job that FAILED.
- ``split_sensor_<vendor>_timeout``: sensors that time out after 0.5 s, with and without soft_fail.

The DAGs exist only while ``SPLIT_FLOW_DAGS=1`` (set by tests/integration/test_split_flow.py):
every ``dag.test()`` re-parses and re-serialises the whole DAG bundle, and these 30 DAGs would add
about 0.4 s to each run of every other test module.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

from airflow.sdk import DAG

from airflow_export_providers.transfers.export_to_s3 import ExportToS3Operator
from tests.support.split_flow import BUCKET, CASES

START = datetime(2026, 1, 1, tzinfo=timezone.utc)
PARAMS = {"ref": None, "pond_from": None, "pond_to": None, "day": None, "end_time": None, "segment": None, "guid": None}

for _vendor, _case in CASES.items() if os.environ.get("SPLIT_FLOW_DAGS") == "1" else ():
    with DAG(f"split_flow_{_vendor}", schedule=None, start_date=START, catchup=False, params=PARAMS, tags=["split-flow"]) as _dag:
        _prefix = f"{_vendor}/{{{{ run_id }}}}"
        _start = _case.operator("start_deferred", wait_for_completion=False)
        _wait = _case.sensor("wait_deferred", _start.output, deferrable=True, timeout=60)
        ExportToS3Operator(task_id="land_deferred", export=_wait.output, bucket=BUCKET, prefix=f"{_prefix}/deferred")
        _waited = _wait
        _start = _case.operator("start_poke", wait_for_completion=False)
        _wait = _case.sensor("wait_poke", "{{ ti.xcom_pull('start_poke') }}", deferrable=False, timeout=60)
        _waited >> _start >> _wait  # one flow after the other, so each sensor meets its job unfinished
        ExportToS3Operator(task_id="land_poke", export=_wait.output, bucket=BUCKET, prefix=f"{_prefix}/poke")
        _one = _case.operator("export", deferrable=False)
        _wait >> _one
        ExportToS3Operator(task_id="land_one", export=_one.output, bucket=BUCKET, prefix=f"{_prefix}/one")
    globals()[_dag.dag_id] = _dag

    for _mode in ("deferred", "poke", "reschedule"):
        with DAG(f"split_sensor_{_vendor}_{_mode}", schedule=None, start_date=START, catchup=False, params=PARAMS) as _dag:
            _case.sensor("wait", "{{ params.ref }}", deferrable=_mode == "deferred", timeout=60,
                         mode="reschedule" if _mode == "reschedule" else "poke")
        globals()[_dag.dag_id] = _dag

    with DAG(f"split_sensor_{_vendor}_failed", schedule=None, start_date=START, catchup=False, params=PARAMS) as _dag:
        _case.sensor("deferred", "{{ params.ref }}", deferrable=True, timeout=60)
        _case.sensor("poke", "{{ params.ref }}", deferrable=False, timeout=60)
    globals()[_dag.dag_id] = _dag

    with DAG(f"split_sensor_{_vendor}_timeout", schedule=None, start_date=START, catchup=False, params=PARAMS) as _dag:
        for _mode in ("deferred", "poke", "reschedule"):
            for _soft in (True, False):
                _case.sensor(f"{_mode}_{'soft' if _soft else 'hard'}", "{{ params.ref }}", deferrable=_mode == "deferred",
                             timeout=0.5, soft_fail=_soft, mode="reschedule" if _mode == "reschedule" else "poke")
    globals()[_dag.dag_id] = _dag

globals().pop("_dag", None)  # only the DAGs under their ids, so a loader finds each once
