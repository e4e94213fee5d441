"""ExportHook reads its read timeout and retry policy from connection extras when not given.

Why extras: the triggerer and the landing operators rebuild hooks from primitives, so a constructor
argument set in the DAG never reaches them; a connection extra does.
"""

from __future__ import annotations

import pytest

from airflow_export_providers.core.errors import ExportInputError
from airflow_export_providers.core.http import RetryPolicy
from tests.conftest import set_connection
from tests.support.generic_hook import GenericHook


def _conn(monkeypatch: pytest.MonkeyPatch, **extra: object) -> None:
    set_connection(monkeypatch, "generic_default", {"conn_type": "generic", "host": "http://127.0.0.1:9", "password": "p", "extra": extra})


def test_defaults_without_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    _conn(monkeypatch)
    hook = GenericHook()
    assert hook.timeout == 60.0
    assert hook.retry_policy == RetryPolicy()


def test_extras_set_timeout_and_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    _conn(monkeypatch, timeout="0.5", retry_max_attempts=7, retry_backoff_base=0.01, retry_backoff_max=0.05)
    hook = GenericHook()
    assert hook.timeout == 0.5
    assert (hook.retry_policy.max_attempts, hook.retry_policy.backoff_base, hook.retry_policy.backoff_max) == (7, 0.01, 0.05)
    assert hook.client.timeout == 0.5 and hook.client.policy is hook.retry_policy


def test_arguments_win_over_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    _conn(monkeypatch, timeout=0.5, retry_backoff_base=0.01)
    policy = RetryPolicy(max_attempts=2)
    hook = GenericHook(timeout=3.0, retry_policy=policy)
    assert hook.timeout == 3.0 and hook.retry_policy is policy


@pytest.mark.parametrize("name,value", [("timeout", "soon"), ("retry_max_attempts", 0), ("retry_backoff_base", -1), ("timeout", True)])
def test_bad_extra_is_named(monkeypatch: pytest.MonkeyPatch, name: str, value: object) -> None:
    _conn(monkeypatch, **{name: value})
    hook = GenericHook()
    with pytest.raises(ExportInputError, match=f"extra '{name}' must be a positive number"):
        _ = hook.timeout if name == "timeout" else hook.retry_policy
