"""A real PostgreSQL for the ``postgres`` tests: one server per session
(``deploy/dev/postgres-start.sh``, stopped at the end only if this session started it), and a
fresh database per test, dropped afterwards, so no test sees another's rows or leases.

    postgres_server (session)  ->  fresh_database()  ->  postgresql+psycopg://.../gb_<random>
"""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.paths import REPO

STATE = REPO / ".peers" / "postgres"
SCRIPTS = REPO / "deploy" / "dev"


@dataclass(frozen=True)
class PostgresServer:
    """Where the session's server listens, and its superuser's password (from its 0600 file)."""

    host: str
    port: int
    user: str
    password: str

    def url(self, database: str) -> str:
        """SQLAlchemy's URL for ``database`` through psycopg 3."""
        return (f"postgresql+psycopg://{self.user}:{self.password}@{self.host}:{self.port}/"
                f"{database}")

    @contextlib.contextmanager
    def fresh_database(self) -> Iterator[str]:
        """A new, empty database (a unique name), dropped with its connections afterwards."""
        import psycopg

        name = f"gb_{uuid.uuid4().hex[:16]}"
        admin = self.url("postgres").replace("+psycopg", "")
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        try:
            yield self.url(name)
        finally:
            with psycopg.connect(admin, autocommit=True) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _server_alive() -> bool:
    try:
        pid = int((STATE / "postgres.pid").read_text().strip())
        return Path(f"/proc/{pid}/exe").resolve().name == "postgres"
    except (OSError, ValueError):
        return False


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's PostgreSQL on 127.0.0.1; fails (never skips) when it cannot start."""
    pytest.importorskip("psycopg", reason="psycopg is in the postgres extra (make setup)")
    was_running = _server_alive()
    proc = subprocess.run(["bash", str(SCRIPTS / "postgres-start.sh"), str(STATE)],
                          capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        pytest.fail(f"PostgreSQL did not start: {proc.stderr[-3000:]}")
    port = int(proc.stdout.split()[-1].rstrip("/").rsplit(":", 1)[1])
    password = (STATE / "password").read_text().strip()
    yield PostgresServer("127.0.0.1", port, "gridbridge", password)
    if not was_running:
        subprocess.run(["bash", str(SCRIPTS / "postgres-stop.sh"), str(STATE)],
                       capture_output=True, timeout=120, check=False)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty state store's URL: a SQLite file in the test's folder, or a new database
    on the session's PostgreSQL (those cases are marked ``postgres``)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    with server.fresh_database() as url:
        yield url
