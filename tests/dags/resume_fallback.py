"""DAGs for the resume store below Airflow 3.3: the job id of a failed try kept in a Variable per task instance."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.sdk import DAG, Variable

from airflow_export_providers.core.compat import VariableTaskState, variable_key
from airflow_export_providers.core.operator import JOB_ID_KEY
from tests.support.generic_hook import GenericExportOperator


class CrashAfterSubmitOperator(GenericExportOperator):
    """Try 1 dies after the vendor job was submitted; try 2 reports where the job id was kept."""

    def __init__(self, *, force_variable: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.force_variable = force_variable

    def _store(self, context: Any) -> Any:  # type: ignore[override]
        if self.force_variable:  # the fallback on any Airflow version, for the main suite on 3.3 too
            ti = context["ti"]
            return VariableTaskState(ti.dag_id, ti.task_id, ti.run_id, ti.map_index)
        return super()._store(context)

    def complete(self, hook: Any, job: Any, context: Any) -> Any:
        ti = context["ti"]
        if ti.try_number == 1:
            raise RuntimeError("simulated crash after the submit")
        raw = Variable.get(variable_key(ti.dag_id, ti.task_id, ti.run_id, ti.map_index), default=None)
        job.extra["kept_in_variable"] = json.loads(raw).get(JOB_ID_KEY) if raw else None
        return job


START = datetime(2026, 1, 1, tzinfo=timezone.utc)
RETRY = {"retries": 1, "retry_delay": timedelta(seconds=0)}

with DAG("resume_fallback_mapped", schedule=None, start_date=START) as mapped:
    # two task instances of one task, both crashing once: each resumes its own job, never the other's
    CrashAfterSubmitOperator.partial(task_id="export", deferrable=True, force_variable=True, **RETRY).expand(
        poll_interval=[0.2, 0.3]
    )

with DAG("resume_fallback_auto", schedule=None, start_date=START) as auto:
    # the store the operator picks by itself: task_state_store on 3.3+, the Variable below
    CrashAfterSubmitOperator(task_id="export", deferrable=False, poll_interval=0.2, **RETRY)
