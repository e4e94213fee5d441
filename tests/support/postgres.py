"""A throw-away Postgres server on loopback: the metadata DB of the e2e tests' Airflow (tests/support/stack.py).

Why not SQLite there: Airflow refuses to create a backfill on SQLite while its scheduler writes
("Database is locked. Backfill creation is not supported on SQLite under concurrent access. Please
use PostgreSQL or MySQL.", 503), and on 3.3 its clean-up after that error deletes the earlier runs the
backfill had taken over. Production runs Postgres; so do these tests. The cluster recipe is
deploy/stack.py's (the one ``make stack`` runs), from the OS packages ``make stack-os`` installs.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from deploy.stack import _which, create_database, init_postgres, postgres_argv, wait_for
from tests.support.servers import free_port

USER = "airflow"
PASSWORD = "e2e-postgres-not-a-real-one"


class Postgres:
    def __init__(self) -> None:
        self.port = free_port()
        self.venv_bin = Path(sys.executable).parent
        self.data: Path | None = None
        self.run_as: str | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.databases = 0

    def start(self) -> Postgres:
        given = Path(tempfile.mkdtemp(prefix="aep-e2e-pg-"))
        self.data, self.run_as = init_postgres(USER, PASSWORD, given, self.venv_bin)
        if self.data != given:  # as root the cluster lives in a folder the postgres user owns
            given.rmdir()
        log = open(self.data / "postgres.log", "ab")
        self.proc = subprocess.Popen(postgres_argv(self.data, self.port, self.venv_bin), stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True, user=self.run_as, cwd="/tmp")
        log.close()
        pg_isready = _which("pg_isready", self.venv_bin)
        wait_for(lambda: subprocess.run([pg_isready, "-h", "127.0.0.1", "-p", str(self.port)], capture_output=True).returncode == 0,
                 60, "postgres to accept connections")
        return self

    def database(self) -> str:
        """A new, empty database; its SQLAlchemy URL (psycopg2, as Airflow's Postgres extra)."""
        assert self.data is not None, "start() first"
        self.databases += 1
        name = f"airflow_{self.databases}"
        create_database(self.data, self.port, USER, name, self.run_as, self.venv_bin)
        return f"postgresql+psycopg2://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGINT)  # fast shutdown
                self.proc.wait(30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self.data is not None:
            shutil.rmtree(self.data, ignore_errors=True)
