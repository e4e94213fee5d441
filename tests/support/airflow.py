"""Run example DAGs for real with ``dag.test()`` against the migrated SQLite metadata DB."""

from __future__ import annotations

import importlib.util
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW_3_0 = metadata.version("apache-airflow-core").startswith("3.0.")


def load_dag(file_name: str, dag_id: str | None = None, folder: str = "dags_examples") -> Any:
    """Import a DAG file from dags_examples/ and return its DAG (the only one, or ``dag_id``)."""
    from airflow.sdk import DAG

    path = ROOT / folder / file_name
    spec = importlib.util.spec_from_file_location(f"dags_examples_{path.stem}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dags = [v for v in vars(module).values() if isinstance(v, DAG)]
    if dag_id:
        dags = [d for d in dags if d.dag_id == dag_id]
    assert len(dags) == 1, f"{file_name}: expected one DAG, found {[d.dag_id for d in dags]}"
    return dags[0]


def register_dag(dag: Any) -> None:
    """Write ``dag`` to the metadata DB as the dag-processor does (its Assets become active).

    ``dag.test()`` does this itself from Airflow 3.1; on 3.0 it does not, and a task with an Asset
    outlet that no dag-processor registered fails (AirflowInactiveAssetInInletOrOutletException).
    """
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.collection import update_dag_parsing_results_in_db
    from airflow.serialization.serialized_objects import LazyDeserializedDAG, SerializedDAG
    from airflow.utils.session import create_session

    if dag.relative_fileloc is None:  # DagBag sets it; load_dag() imports the file itself
        dag.relative_fileloc = dag.fileloc
    with create_session() as session:
        DagBundlesManager().sync_bundles_to_db(session=session)
    with create_session() as session:
        update_dag_parsing_results_in_db("dags-folder", None, [LazyDeserializedDAG(data=SerializedDAG.to_dict(dag))],
                                         {}, set(), session=session)


def run_dag(dag: Any, logical_date: datetime | None = None, run_conf: dict[str, Any] | None = None) -> Any:
    """``dag.test()``: deferrable tasks run their trigger inline and resume, as in ``airflow dags test``."""
    if AIRFLOW_3_0:
        register_dag(dag)
    return dag.test(logical_date=logical_date, run_conf=run_conf)


def task_states(dag_run: Any) -> dict[str, str]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter(
            TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id
        ).all()
        return {ti.task_id: str(ti.state) for ti in tis}


def xcom(dag_run: Any, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
    """The value a task pushed, read back from the metadata DB (deserialised)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.query(XComModel).filter_by(
            dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id=task_id, key=key, map_index=map_index
        ).one_or_none()
        if row is None:
            return None
        return XComModel.deserialize_value(row)
