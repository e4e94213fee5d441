"""Checks of the engine's parameters: one ExportInputError naming the field and what it accepts.

They run when an operator is built (a literal in DAG code fails at parse time) and again when the
task runs, before any vendor call (a value set later, or mapped in from an XCom, is caught before a
job is submitted). Engine parameters are not templated, so they must arrive as real types: a string
is refused, never read as a number or a boolean ("False" would otherwise be truthy).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from airflow_export_providers.core.errors import ExportInputError

#: The longest sleep between two status reads, whatever ``poll_interval`` says: a finished job is
#: noticed within the hour, long before any vendor deletes its files (Leanplum's live 24 hours).
MAX_POLL_INTERVAL = 3600.0
#: The longest wait an operator or sensor accepts (``job_timeout``, a sensor's ``timeout``): a deadline
#: must stay a date Airflow can store, and no vendor keeps an export anywhere near a year.
MAX_WAIT = timedelta(days=365)


def _shown(value: Any) -> str:
    text = repr(value)
    return (text if len(text) <= 60 else text[:57] + "...") + f" ({type(value).__name__})"


def positive_seconds(value: Any, field: str, *, zero_ok: bool = False) -> float:
    """A finite number of seconds (int, float or timedelta) above zero (or zero with ``zero_ok``)."""
    bound = ">= 0" if zero_ok else "> 0"
    number: float | None = None
    if isinstance(value, timedelta):
        number = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    if number is None or not math.isfinite(number) or number < 0 or (number == 0 and not zero_ok):
        raise ExportInputError(f"{field}: expected a finite number of seconds {bound} (int, float or timedelta), got {_shown(value)}")
    return number


def positive_duration(value: Any, field: str, *, maximum: timedelta = MAX_WAIT) -> timedelta:
    """A duration > 0 and at most ``maximum``, from a timedelta or a number of seconds (a job timeout, a SAS lifetime)."""
    seconds = positive_seconds(value, field)
    if seconds > maximum.total_seconds():
        raise ExportInputError(f"{field}: expected a duration > 0 and at most {maximum}, got {_shown(value)}")
    return value if isinstance(value, timedelta) else timedelta(seconds=seconds)


def optional_timedelta(value: Any, field: str) -> timedelta | None:
    """None, or a timedelta above zero (Airflow's ``execution_timeout``: zero would mean "already late")."""
    if value is None:
        return None
    if not isinstance(value, timedelta) or value <= timedelta(0):
        raise ExportInputError(f"{field}: expected None or a timedelta > 0, got {_shown(value)}")
    return value


def strict_bool(value: Any, field: str) -> bool:
    """True or False only: a string such as "False" (a rendered template) would otherwise count as True."""
    if not isinstance(value, bool):
        raise ExportInputError(
            f"{field}: expected True or False, got {_shown(value)}; this parameter is not templated, so pass a real bool"
        )
    return value


def non_negative_int(value: Any, field: str) -> int:
    """An int >= 0 (not a bool, not a float with a fraction, not a string)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ExportInputError(f"{field}: expected a whole number >= 0, got {_shown(value)}")
    return value


def positive_int(value: Any, field: str) -> int:
    """An int > 0 (not a bool: ``True`` would pass as 1)."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ExportInputError(f"{field}: expected a positive integer, got {_shown(value)}")
    return value


def one_of(value: Any, field: str, accepted: Iterable[str]) -> str:
    """One of a fixed set of strings."""
    choices = tuple(accepted)
    if not isinstance(value, str) or value not in choices:
        raise ExportInputError(f"{field}: expected one of {', '.join(map(repr, choices))}, got {_shown(value)}")
    return value


def poll_sleep(interval: float, deadline: float | None, now: float) -> float:
    """How long to sleep before the next status read: the interval, capped at MAX_POLL_INTERVAL and at the deadline."""
    sleep = min(float(interval), MAX_POLL_INTERVAL)
    if deadline is not None:
        sleep = min(sleep, float(deadline) - now)
    return max(0.0, sleep)
