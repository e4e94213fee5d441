"""Session-wide test harness: a throw-away AIRFLOW_HOME, real servers on loopback, a secret scan.

AIRFLOW_HOME must be set before anything imports airflow, hence the top of this module.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

_HOME = Path(tempfile.mkdtemp(prefix="aep-airflow-home-"))
ROOT = Path(__file__).resolve().parents[1]
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
# The DAG bundle holds the shipped example DAGs and the tests' own DAGs (dag.test() needs them parsed).
(_HOME / "dags").mkdir()
(_HOME / "dags" / "examples").symlink_to(ROOT / "dags_examples")
(_HOME / "dags" / "testdags").symlink_to(ROOT / "tests" / "dags")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_HOME / "dags")
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ["AIRFLOW__CORE__PARALLELISM"] = "4"
os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "INFO"
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

import pytest  # noqa: E402

from tests.support.secrets import SECRETS, scan_for_secrets  # noqa: E402
from tests.support.servers import Azurite, MotoS3  # noqa: E402

_captured: list[str] = []
# Under pytest-xdist every worker scans what it captured (it alone knows the secrets its tests used)
# and leaves its verdict here; the controller, which imported this module first, reads them all.
_SCAN_DIR = Path(os.environ.setdefault("AEP_SECRET_SCAN_DIR", tempfile.mkdtemp(prefix="aep-secret-scan-")))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Keep every captured log/stdout/stderr section and failure text for the final secret scan."""
    for _name, content in report.sections:
        _captured.append(content)
    if report.longrepr is not None:
        _captured.append(report.longreprtext)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """Keep each phase's report on the item (``item.aep_reports[phase]``): a fixture's teardown can
    then tell a passed test from a failed one (after ``yield`` it runs the same either way)."""
    report = yield
    item.__dict__.setdefault("aep_reports", {})[report.when] = report
    return report


def _scan() -> dict[str, object]:
    texts = list(_captured)
    logs = _HOME / "logs"
    if logs.exists():
        for path in logs.rglob("*"):
            if path.is_file():
                texts.append(path.read_text("utf-8", "replace"))
    return {"secrets": len(SECRETS), "texts": len(texts), "hits": scan_for_secrets(texts)}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    worker = getattr(session.config, "workerinput", None)
    if worker is not None:
        (_SCAN_DIR / f"{worker['workerid']}.json").write_text(json.dumps(_scan()))
        return
    if session.config.pluginmanager.hasplugin("dsession"):  # the xdist controller
        results = [json.loads(p.read_text()) for p in sorted(_SCAN_DIR.glob("*.json"))]
        if not results:
            session.exitstatus = 1
            sys.stderr.write("\nSECRET SCAN FAILED: no worker reported its scan\n")
            return
    else:
        results = [_scan()]
    hits = [hit for r in results for hit in r["hits"]]  # type: ignore[attr-defined]
    secrets = sum(int(r["secrets"]) for r in results)  # type: ignore[call-overload]
    texts = sum(int(r["texts"]) for r in results)  # type: ignore[call-overload]
    if hits:
        session.exitstatus = 1
        sys.stderr.write("\nSECRET SCAN FAILED: a secret used by the tests reached captured output:\n")
        for name, excerpt in hits[:20]:
            sys.stderr.write(f"  {name}: ...{excerpt}...\n")
    else:
        sys.stderr.write(f"\nsecret scan: {secrets} secret values, {texts} captured texts, no hit\n")


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated SQLite metadata DB in the throw-away AIRFLOW_HOME (for dag.test())."""
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True, env=os.environ.copy())
    return _HOME


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    server = MotoS3().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    server = Azurite(_HOME / "azurite").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[object]:
    """The e2e stacks' metadata DB server (tests/support/postgres.py: why not SQLite); a database per stack."""
    from tests.support.postgres import Postgres

    server = Postgres().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sandbox(moto_s3: MotoS3) -> Iterator[object]:
    from airflow_export_providers.sandbox import Sandbox

    sb = Sandbox({"s3_endpoint": moto_s3.url}).start()
    yield sb
    for name, value in sb.state.secrets.items():
        SECRETS[f"sandbox:{name}"] = value
    for i, value in enumerate(sorted(sb.state.issued)):  # tokens, signatures the sandbox handed out
        SECRETS[f"issued:{value.split('-', 1)[0]}#{i}"] = value
    sb.stop()


@pytest.fixture
def sandbox_state(sandbox: object) -> Iterator[object]:
    """The sandbox's state with faults cleared before and after each test."""
    state = sandbox.state  # type: ignore[attr-defined]
    state.clear_faults()
    yield state
    state.clear_faults()


def set_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, conn: dict[str, object]) -> None:
    """Point an Airflow connection at a local server through its AIRFLOW_CONN_ variable."""
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


@pytest.fixture
def aws_conn(moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch) -> str:
    set_connection(monkeypatch, "aws_default", {
        "conn_type": "aws", "login": "testing", "password": "testing",
        "extra": {"endpoint_url": moto_s3.url, "region_name": "us-east-1"},
    })
    return "aws_default"


@pytest.fixture
def wasb_conn(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> str:
    set_connection(monkeypatch, "wasb_default", {
        "conn_type": "wasb", "extra": {"connection_string": azurite.connection_string},
    })
    return "wasb_default"


@pytest.fixture
def vendor_conns(sandbox: object, monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, object]]:
    """Every vendor connection the sandbox offers, exported as AIRFLOW_CONN_ variables."""
    conns = sandbox.connections()  # type: ignore[attr-defined]
    for conn_id, conn in conns.items():
        set_connection(monkeypatch, conn_id, conn)
    return conns  # type: ignore[no-any-return]
