"""Which range an interval export covers: the run's data interval, or else the last complete UTC day.

A run made by the UI's Trigger button, ``airflow dags trigger`` or the REST API with
``logical_date: null`` has no logical date and no data interval (``ds`` is undefined); a cron
*trigger* timetable (Airflow 3's plain ``"@daily"``) gives zero-length intervals. Neither says what
to export, so both export the last complete UTC day before the run: the interval end (or start),
else the run's ``run_after``, which Airflow stores with the run. Every try of the run, and the
transfer that names its prefix after the day (``{{ interval_day(dag_run) }}``), agree on it.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any

DAY = timedelta(days=1)


def _utc(moment: datetime) -> datetime:
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def run_interval(start: datetime | None, end: datetime | None, run_after: datetime | None = None,
                 tz: tzinfo = timezone.utc) -> tuple[datetime, datetime]:
    """``[start, end)`` when it is a real interval, else the day (in ``tz``: UTC, or Leanplum's Pacific
    time) that ended last before the run."""
    if start is not None and end is not None and _utc(end) > _utc(start):
        return start, end
    reference = end or start or run_after or datetime.now(timezone.utc)
    day_end = _utc(reference).astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)
    return day_end - DAY, day_end  # wall-clock arithmetic: a 23- or 25-hour day in a DST zone


def context_interval(context: Any) -> tuple[datetime, datetime]:
    """``run_interval`` of a task's context (the data interval, else the dag run's ``run_after``)."""
    dag_run = context.get("dag_run")
    return run_interval(
        context.get("data_interval_start"), context.get("data_interval_end"), getattr(dag_run, "run_after", None),
    )


def interval_day(dag_run: Any) -> str:
    """Template macro: the first day (YYYY-MM-DD, UTC) of what the run exports, e.g. for a prefix.

    ``prefix="pond/{{ interval_day(dag_run) }}"`` is ``data_interval_start | ds`` for a scheduled
    run and the last complete day for a run without a data interval; deterministic per run, so a
    re-run replaces its objects.
    """
    start, _ = run_interval(
        getattr(dag_run, "data_interval_start", None), getattr(dag_run, "data_interval_end", None),
        getattr(dag_run, "run_after", None),
    )
    return _utc(start).date().isoformat()


#: ``user_defined_macros`` for DAGs whose keys follow the exported day.
INTERVAL_MACROS = {"interval_day": interval_day}
