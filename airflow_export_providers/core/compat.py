"""What differs between Airflow 3.0 and 3.3, in one place.

The generic names that moved between Airflow versions (``BaseHook``, ``conf``, the exceptions) come
from ``airflow.providers.common.compat.sdk``, as in the apache providers. This module adds only what
that package does not cover at the floor we declare (common-compat 1.12, the version Airflow 3.1
deployments carry, so installing this package upgrades none of their providers):

- ``CronDataIntervalTimetable`` and ``mask_secret``, which reached ``airflow.sdk`` after 3.0;
- :func:`get_async_connection` for the triggerer;
- the store that keeps a submitted vendor job across the tries of a task instance:
  ``context["task_state_store"]`` on Airflow 3.3 and later, and below 3.3 one Airflow Variable per
  task instance (:class:`VariableTaskState`). XCom cannot stand in for it: Airflow deletes a task
  instance's XComs when its next try starts;
- :func:`require_extra`: one clear error naming the extra to install when an optional provider
  (a destination, OpenLineage) or pyarrow is missing.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
from datetime import timedelta
from importlib import metadata
from typing import Any, Protocol

from airflow.providers.common.compat.sdk import AirflowOptionalProviderFeatureException

try:
    from airflow.sdk import CronDataIntervalTimetable
except ImportError:  # Airflow 3.0: only the core class exists
    from airflow.timetables.interval import CronDataIntervalTimetable  # type: ignore[assignment,no-redef]

try:
    from airflow.sdk.log import mask_secret
except ImportError:  # Airflow 3.0
    from airflow.sdk.execution_time.secrets_masker import mask_secret  # type: ignore[no-redef]

try:
    from airflow.sdk.execution_time.context import NEVER_EXPIRE

    HAS_TASK_STATE_STORE = True
except ImportError:  # below Airflow 3.3: no task_state_store
    NEVER_EXPIRE = timedelta.max
    HAS_TASK_STATE_STORE = False

__all__ = [
    "HAS_TASK_STATE_STORE",
    "NEVER_EXPIRE",
    "CronDataIntervalTimetable",
    "MissingExtraError",
    "TaskState",
    "VariableTaskState",
    "get_async_connection",
    "mask_secret",
    "require_extra",
    "task_state",
]

log = logging.getLogger(__name__)

DISTRIBUTION = "airflow-export-providers"

#: extra -> (distribution it installs, module whose presence proves it, what it is)
EXTRAS: dict[str, tuple[str, str, str]] = {
    "amazon": ("apache-airflow-providers-amazon", "airflow.providers.amazon", "the Amazon provider"),
    "microsoft.azure": ("apache-airflow-providers-microsoft-azure", "airflow.providers.microsoft.azure", "the Microsoft Azure provider"),
    "openlineage": ("apache-airflow-providers-openlineage", "airflow.providers.openlineage", "the OpenLineage provider"),
    "parquet": ("pyarrow", "pyarrow", "pyarrow"),
}


class MissingExtraError(AirflowOptionalProviderFeatureException):
    """An optional dependency is missing or older than tested; the message names the extra to install."""

    def __init__(self, extra: str, user: str, found: str | None = None) -> None:
        self.extra = extra
        dist, _, what = EXTRAS[extra]
        state = "is not installed" if found is None else f"is installed at {found}, older than this package supports ({_floor(extra, dist)})"
        super().__init__(
            f"{user} needs {what} ({dist}), which {state}: pip install '{DISTRIBUTION}[{extra}]'"
        )


def _normal(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


@functools.cache
def _floor(extra: str, dist: str) -> str:
    """The version range our metadata declares for ``dist`` under ``extra`` ('' when not installed as a dist)."""
    from packaging.requirements import Requirement

    try:
        requires = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        return ""
    for line in requires:
        req = Requirement(line)
        if _normal(req.name) == _normal(dist) and req.marker is not None and req.marker.evaluate({"extra": _normal(extra)}):
            return str(req.specifier)
    return ""


def require_extra(extra: str, user: str) -> None:
    """Raise :class:`MissingExtraError` unless ``extra``'s provider is installed at a version we declare.

    Called before importing the optional module, so a DAG using a transfer whose provider is missing
    fails once, at parse time, with the pip line that fixes it (instead of a bare ModuleNotFoundError).
    """
    dist, module, _ = EXTRAS[extra]
    try:
        found_module = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing too (airflow.providers.microsoft)
        found_module = False
    if not found_module:
        raise MissingExtraError(extra, user)
    floor = _floor(extra, dist)
    if floor:
        from packaging.specifiers import SpecifierSet

        try:
            found = metadata.version(dist)
        except metadata.PackageNotFoundError:  # importable without metadata (a source checkout): trust it
            return
        if not SpecifierSet(floor).contains(found, prereleases=True):
            raise MissingExtraError(extra, user, found)


async def get_async_connection(hook: Any, conn_id: str) -> Any:
    """A connection read from inside the triggerer's event loop, on every Airflow version.

    ``BaseHook.aget_connection`` is missing on 3.0, and before 3.3.2 it masks the connection's
    secrets with a synchronous call to the supervisor, which can deadlock the triggerer's loop
    (``Connection.aextra_dejson`` came with the asynchronous masking). There the synchronous
    lookup runs in a worker thread instead.
    """
    from airflow.providers.common.compat.sdk import Connection

    if hasattr(hook, "aget_connection") and hasattr(Connection, "aextra_dejson"):
        return await hook.aget_connection(conn_id)
    from asgiref.sync import sync_to_async

    return await sync_to_async(hook.get_connection)(conn_id)


# ---- the store that survives a retry ----------------------------------------------------------------
class TaskState(Protocol):
    """What the operators use of ``task_state_store`` (and what the Variable fallback provides)."""

    def get(self, key: str, default: Any = None) -> Any: ...

    def set(self, key: str, value: Any, *, retention: timedelta | None = None) -> None: ...

    def delete(self, key: str) -> None: ...


VARIABLE_PREFIX = "airflow_export_providers.resume"
_MAX_KEY = 250  # the variable table's key column


def variable_key(dag_id: str, task_id: str, run_id: str, map_index: int) -> str:
    """The Variable of one task instance: readable by DAG and task, the run hashed (run ids may hold any character)."""
    run = hashlib.sha256(run_id.encode()).hexdigest()[:16]
    key = f"{VARIABLE_PREFIX}.{dag_id}.{task_id}.{map_index}.{run}"
    if len(key) > _MAX_KEY:
        whole = hashlib.sha256(json.dumps([dag_id, task_id, map_index, run_id]).encode()).hexdigest()
        key = f"{VARIABLE_PREFIX}.{whole}"
    return key


class VariableTaskState:
    """``task_state_store`` below Airflow 3.3: one Variable per task instance, a JSON object of keys.

    Keyed like Airflow 3.3's store (dag, run, task, map index), so it behaves the same way: a retry
    and a clear of the same run find what the earlier try kept; another run or another mapped index
    never does. The operators delete their keys once an export succeeded (and the Variable with the
    last key), so only a task instance that failed for good leaves its Variable behind — delete it
    to make the next clear of that run export anew. ``retention`` is accepted and ignored: a Variable
    does not expire.
    """

    def __init__(self, dag_id: str, task_id: str, run_id: str, map_index: int = -1) -> None:
        self.key = variable_key(dag_id, task_id, run_id, map_index)
        self.description = f"airflow-export-providers resume state of {dag_id}.{task_id}[{map_index}] in run {run_id}"

    def _read(self) -> dict[str, Any]:
        from airflow.providers.common.compat.sdk import Variable

        raw = Variable.get(self.key, default=None)
        if not raw:
            return {}
        try:
            data = json.loads(raw)
        except ValueError:
            log.warning("Variable %s does not hold JSON; ignoring it", self.key)
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, data: dict[str, Any]) -> None:
        from airflow.providers.common.compat.sdk import Variable

        if data:
            Variable.set(self.key, json.dumps(data, sort_keys=True), description=self.description)
        else:
            Variable.delete(self.key)

    def get(self, key: str, default: Any = None) -> Any:
        return self._read().get(key, default)

    def set(self, key: str, value: Any, *, retention: timedelta | None = None) -> None:
        if value is None:
            raise ValueError("Cannot set value as None")  # as task_state_store does
        data = self._read()
        data[key] = value
        self._write(data)
        if self._read().get(key) != value:  # Airflow 3.0's Variable.set logs a failed write and returns
            log.warning("Could not keep %r in Variable %s: a retry of this task cannot resume from it", key, self.key)

    def delete(self, key: str) -> None:
        data = self._read()
        if key in data:
            del data[key]
            self._write(data)


def task_state(context: Any) -> TaskState | None:
    """The task instance's store: Airflow's ``task_state_store`` or, below 3.3, :class:`VariableTaskState`.

    None for a context that is no task instance's (a bare dict in a unit test).
    """
    store = context.get("task_state_store")
    if store is not None or HAS_TASK_STATE_STORE:
        return store  # type: ignore[no-any-return]
    ti = context.get("ti")
    if ti is None or not getattr(ti, "run_id", None):
        return None
    map_index = getattr(ti, "map_index", -1)
    return VariableTaskState(ti.dag_id, ti.task_id, ti.run_id, -1 if map_index is None else int(map_index))
