"""Variable-backed watermark: read, propose, and commit only after the data behind it has landed."""

from __future__ import annotations

import json
import logging
from typing import Any

from airflow_export_providers.core.errors import ExportError
from airflow_export_providers.core.job import Watermark

log = logging.getLogger(__name__)


def _variable() -> Any:
    from airflow.sdk import Variable

    return Variable


def read_watermark(variable: str, default: Any = None) -> Any:
    """The committed value, or ``default`` when the Variable does not exist yet."""
    raw = _variable().get(variable, default=None)
    if raw is None:
        return default
    try:
        return json.loads(raw)["value"]
    except (ValueError, TypeError, KeyError):
        return raw  # a hand-set plain value


def propose(variable: str, proposed: Any, default: Any = None) -> Watermark:
    return Watermark(variable=variable, previous=read_watermark(variable, default), proposed=proposed)


def commit_watermark(mark: Watermark) -> bool:
    """Move the Variable to ``mark.proposed`` unless it already moved to the same place or beyond.

    Returns True when it moved. A concurrent run that landed a later range first keeps its
    value: a watermark never goes backwards. A run whose ``previous`` no longer matches and is
    behind the stored value is a conflict and is refused loudly.
    """
    current = read_watermark(mark.variable, None)
    if current is not None and _ge(current, mark.proposed):
        log.info("watermark %s already at %r (>= %r): left as it is", mark.variable, current, mark.proposed)
        return False
    if current is not None and mark.previous is not None and current != mark.previous:
        raise ExportError(
            f"watermark {mark.variable}: stored value {current!r} is not the {mark.previous!r} this export "
            f"started from; another run moved it. Not committing {mark.proposed!r} to avoid a gap."
        )
    _variable().set(mark.variable, json.dumps({"value": mark.proposed}))
    log.info("watermark %s: %r -> %r", mark.variable, current, mark.proposed)
    return True


def _ge(a: Any, b: Any) -> bool:
    try:
        return bool(a >= b)
    except TypeError:
        return False
