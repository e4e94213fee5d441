"""Variable-backed watermark: read, propose, and commit only after the data behind it has landed.

A streaming export reads the watermark, exports ``[watermark, now)`` and proposes ``now``; the
transfer commits it after every file landed. Two runs of one stream must never both land a range:

- configurations that let runs overlap are refused (``overlap_problem``: more than one active run and
  no 1-slot pool), at parse time where the DAG is known and again before any vendor call;
- the export in flight is claimed in ``<variable>.inflight`` (``write_inflight``): the latest submit
  holds the claim;
- a landing refuses to start, before writing anything (``check_unmoved``), when the watermark moved
  since its export started or another export holds the claim;
- the commit (``commit_watermark``) refuses the same way, also when the other run committed the very
  same value; only a retry of the landing that committed it (same ``job_id``) passes.

Airflow Variables have no compare-and-set, so the claim is last-writer-wins: the checks make two
overlapping runs land at most once, the configuration check keeps them from overlapping at all.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from airflow_export_providers.core.errors import ExportError
from airflow_export_providers.core.job import Watermark

log = logging.getLogger(__name__)

DEFAULT_POOL = "default_pool"


class WatermarkConflict(ExportError):
    """Another run moved the watermark or holds the stream's claim: landing now would land a range twice."""


def _variable() -> Any:
    from airflow.sdk import Variable

    return Variable


def _record(variable: str) -> tuple[bool, Any, str | None]:
    """(exists, value, job id that committed it) of the stored watermark."""
    raw = _variable().get(variable, default=None)
    if raw is None:
        return False, None, None
    try:
        data = json.loads(raw)
    except (ValueError, TypeError):
        return True, raw, None  # a hand-set plain value
    if isinstance(data, dict) and "value" in data:
        return True, data["value"], data.get("job_id")
    return True, raw, None


def read_watermark(variable: str, default: Any = None) -> Any:
    """The committed value, or ``default`` when the Variable does not exist yet."""
    exists, value, _by = _record(variable)
    return value if exists else default


def propose(variable: str, proposed: Any, default: Any = None, job_id: str | None = None) -> Watermark:
    return Watermark(variable=variable, previous=read_watermark(variable, default), proposed=proposed, job_id=job_id)


# ---- the claim of the export in flight ------------------------------------------------------------
def inflight_variable(variable: str) -> str:
    return f"{variable}.inflight"


def read_inflight(variable: str) -> dict[str, Any] | None:
    """The stream's export in flight (``job_id``, ``previous``, range, owner), or None."""
    raw = _variable().get(inflight_variable(variable), default=None)
    if not raw:
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        log.warning("Variable %s is not JSON; ignoring it", inflight_variable(variable))
        return None
    return record if isinstance(record, dict) and record.get("job_id") else None


def write_inflight(variable: str, record: dict[str, Any]) -> None:
    """Claim the stream for ``record["job_id"]`` (the latest submit wins; see ``check_unmoved``)."""
    _variable().set(inflight_variable(variable), json.dumps(record))


def drop_inflight(variable: str) -> None:
    """Forget the claim (an empty value reads as none where the Task SDK cannot delete a Variable)."""
    store = _variable()
    delete = getattr(store, "delete", None)
    if callable(delete):
        delete(inflight_variable(variable))
    else:
        store.set(inflight_variable(variable), "")


# ---- landing and commit ----------------------------------------------------------------------------
def check_unmoved(mark: Watermark | None) -> None:
    """Refuse (``WatermarkConflict``) to land an export whose range another run landed or took over.

    Call before anything is written. Passes when the stored value is still the ``previous`` the export
    started from and no other export holds the claim; passes too when this very export (same
    ``job_id``) already committed it (a retry of a landing that got that far).
    """
    if mark is None:
        return
    _exists, current, committed_by = _record(mark.variable)
    if current != mark.previous:
        if mark.job_id is not None and committed_by == mark.job_id and current == mark.proposed:
            log.info("watermark %s already committed by this export (%s)", mark.variable, mark.job_id)
            return
        raise WatermarkConflict(
            f"watermark {mark.variable}: it is now {current!r}"
            + (f" (committed by export {committed_by})" if committed_by else "")
            + f", but export {mark.job_id or '?'} started from {mark.previous!r}: another run landed this range "
            "since; refusing to land it a second time"
        )
    claim = read_inflight(mark.variable)
    if mark.job_id is not None and claim is not None and claim.get("job_id") not in (None, mark.job_id):
        owner = claim.get("owner") or {}
        raise WatermarkConflict(
            f"watermark {mark.variable}: export {claim['job_id']}"
            + (f" of run {owner.get('run_id')}" if owner.get("run_id") else "")
            + f" was started for this stream after export {mark.job_id}; it will land the range, "
            "so this one refuses to land it twice (runs overlapped: see max_active_runs / a 1-slot pool)"
        )


def commit_watermark(mark: Watermark) -> bool:
    """Move the Variable to ``mark.proposed``, recording the export that committed it.

    Returns True when it moved, False when this export had already committed it. Anything else
    raises ``WatermarkConflict``: a value another run committed — later, earlier or the same — means
    two runs landed one range, which is not accepted silently.
    """
    check_unmoved(mark)
    _exists, current, committed_by = _record(mark.variable)
    if mark.job_id is not None and committed_by == mark.job_id and current == mark.proposed:
        return False
    _variable().set(mark.variable, json.dumps({"value": mark.proposed, "job_id": mark.job_id}))
    log.info("watermark %s: %r -> %r (export %s)", mark.variable, current, mark.proposed, mark.job_id)
    return True


# ---- configurations that let runs overlap ----------------------------------------------------------
def pool_size(pool: str) -> int | None:
    """Slots of ``pool`` where the metadata DB is reachable (``dag.test()``); None where it is not
    (Airflow 3 workers cannot read it) or the pool does not exist (0)."""
    try:
        from airflow.models.pool import Pool

        found = Pool.get_pool(pool)
    except Exception:  # no DB access from task code: cannot verify here
        return None
    return 0 if found is None else int(found.slots)


def overlap_problem(task: Any, dag: Any, slots: int | None = None) -> str | None:
    """Why runs of ``task`` (a streaming export) could overlap, or None when they cannot.

    Exclusive: the DAG allows one active run (``max_active_runs=1``), or the task runs at most once at
    a time (``max_active_tis_per_dag=1``), or it sits in a pool it fills alone (``slots``: the pool's
    size where known; a pool whose size cannot be read is trusted).
    """
    if dag is None:
        return None
    runs = getattr(dag, "max_active_runs", None)
    if runs == 1 or getattr(task, "max_active_tis_per_dag", None) == 1:
        return None
    pool = getattr(task, "pool", None) or DEFAULT_POOL
    need = max(1, int(getattr(task, "pool_slots", 1) or 1))
    fix = (
        f"set max_active_runs=1 on DAG {dag.dag_id!r}, or put task {task.task_id!r} in a 1-slot pool "
        "(airflow pools set <name> 1 '<description>' --include-deferred, then pool='<name>')"
    )
    if pool != DEFAULT_POOL:
        if slots is None or 0 < slots < 2 * need:
            return None
        if slots == 0:
            return f"{task.task_id}: pool {pool!r} does not exist; {fix}"
        return (
            f"{task.task_id}: pool {pool!r} has {slots} slots, so {slots // need} runs of this streaming export "
            f"could overlap and export the same range twice; {fix}"
        )
    return (
        f"{task.task_id}: DAG {dag.dag_id!r} allows {runs} active runs (max_active_runs) and the task is in no "
        f"1-slot pool, so two runs of this streaming export could overlap and export the same range twice; {fix}"
    )
