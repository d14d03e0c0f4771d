"""Engines and sessions for the state store: one engine for writes, one for reads, and
in-place upgrades of an older database.

On SQLite (WAL mode) a write transaction starts ``BEGIN IMMEDIATE``, so a read-then-write never
fails half-way with "database is locked"; reads use a second engine whose transactions are
deferred, so they never wait behind a writer, not even one frozen inside its transaction.
A write that cannot get the lock within ``WRITE_BUSY_S`` raises :class:`StoreUnavailable`,
which callers retry with backoff; a file that is not a sound SQLite database raises
:class:`StoreCorrupt`, which no retry mends. Neither message shows the URL's password.

Guarantees of opening a store (:class:`Sessions`):

- a SQLite file this process creates is mode 0600 (less where the umask is stricter), and so
  are its ``-wal`` and ``-shm`` files, which SQLite gives the database file's mode;
- opening a new store from several processes at once never fails for "database is locked":
  the schema step (create tables, add columns and indexes) takes turns: on SQLite it is
  retried with backoff for up to ``SCHEMA_BUSY_S``; on PostgreSQL it runs under an advisory
  lock, so only one process creates the tables and the others find them made.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Connection, Engine, Inspector
from sqlalchemy.exc import DatabaseError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.schema import Column, Table

from gridbridge.units import redact_url, redact_urls

from ._observed import store_timed
from .tables import Base, LeaseRow

__all__ = [
    "WRITE_BUSY_S",
    "Sessions",
    "StoreCorrupt",
    "StoreUnavailable",
    "add_missing_columns",
    "add_missing_indexes",
    "sqlite_engines",
]

WRITE_BUSY_S = 10.0
"""How long a write waits for SQLite's lock before :class:`StoreUnavailable`."""
READ_BUSY_S = 30.0
SCHEMA_BUSY_S = 60.0
"""How long opening a SQLite store keeps retrying its schema step while another process holds
the lock (each try already waits up to ``WRITE_BUSY_S`` where SQLite's busy handler applies)."""
_SCHEMA_LOCK = 0x67726964_62726467
"""PostgreSQL advisory lock key ("gridbrdg") held while one process checks and makes the schema."""


class StoreUnavailable(RuntimeError):
    """The state database is locked by another process or cannot be reached; try again."""


class StoreCorrupt(ValueError):
    """The state database's file is not a sound SQLite database: trying again cannot help.
    A ``ValueError``, so the command line prints its one line (the file, what to do)."""


_CORRUPT = ("is not a database", "database disk image is malformed")
"""SQLite's words for ``SQLITE_NOTADB`` (older versions: "file is encrypted or is not a
database") and ``SQLITE_CORRUPT``."""


def sqlite_engines(write: Engine, read: Engine) -> None:
    """Set the pragmas and transaction modes of a pair of SQLite engines on one file."""
    event.listen(write, "connect", _pragmas(WRITE_BUSY_S))
    event.listen(write, "begin", _begin_immediate)
    event.listen(read, "connect", _pragmas(READ_BUSY_S))
    event.listen(read, "begin", _begin_deferred)


def _pragmas(busy_s: float) -> Any:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" hook issue BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # The busy timeout first: switching a new file to WAL needs its write lock, and without
        # a timeout a second process opening the same new store failed at once.
        cursor.execute(f"PRAGMA busy_timeout={int(busy_s * 1000)}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return on_connect


def _begin_immediate(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _begin_deferred(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN")


def add_missing_columns(engine: Engine, read: Engine | None = None) -> list[str]:
    """Add to existing tables the columns a newer gridbridge defines (each has a server
    default or is nullable); returns ``table.column`` for each one added. The tables are looked
    at through ``read`` (no write lock: a store held by a frozen writer still opens), and the
    write lock is taken only when a column is actually missing."""
    existing = inspect(read or engine)
    added: list[str] = []
    for table in _existing_tables(existing):
        have = {c["name"] for c in existing.get_columns(table.name)}
        for column in table.columns:
            if column.name not in have:
                _add_column(engine, table, column)
                added.append(f"{table.name}.{column.name}")
    return added


def _add_column(engine: Engine, table: Table, column: Column[Any]) -> None:
    kind = column.type.compile(engine.dialect)
    ddl = f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {kind}'
    default = column.server_default
    if default is not None:
        ddl += f" DEFAULT {default.arg.text}"  # type: ignore[attr-defined]
    with engine.begin() as conn:
        conn.exec_driver_sql(ddl)


def add_missing_indexes(engine: Engine, read: Engine) -> None:
    """Create the indexes a newer gridbridge defines on tables an older one made (looked at
    through ``read``: the write lock is taken only when one is missing)."""
    existing = inspect(read)
    for table in _existing_tables(existing):
        have = {i["name"] for i in existing.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in have:
                index.create(engine, checkfirst=True)


def _existing_tables(existing: Inspector) -> Iterator[Table]:
    """The tables gridbridge defines that the database already has."""
    tables = set(existing.get_table_names())
    return (t for t in Base.metadata.sorted_tables if t.name in tables)


def create_missing_tables(engine: Engine, read: Engine) -> None:
    """Create the tables, if any is missing, through the write engine: on SQLite its
    transactions begin IMMEDIATE, so two processes opening a new store at once take turns
    (through the read engine, the second's deferred transaction failed at once with "database
    is locked" when it tried to write). A store with every table is only read."""
    if set(Base.metadata.tables) <= set(inspect(read).get_table_names()):
        return
    Base.metadata.create_all(engine)


@contextmanager
def unavailable_as_error(url: str) -> Iterator[None]:
    """A locked, busy or unreachable database raises :class:`StoreUnavailable`, a corrupt one
    :class:`StoreCorrupt`; both name the store without its password."""
    try:
        yield
    except DatabaseError as exc:  # OperationalError is one
        text = str(exc.orig)
        if any(words in text for words in _CORRUPT):
            raise StoreCorrupt(_corrupt_message(url, text)) from None
        if isinstance(exc, OperationalError) and any(w in text for w in _UNAVAILABLE):
            raise StoreUnavailable(f"state store {redact_url(url)}: {redact_urls(text)}") from exc
        raise


_UNAVAILABLE = ("locked", "unable to open", "busy", "connection failed", "could not connect",
                "server closed the connection", "terminating connection")
"""SQLite's and PostgreSQL's words for a store that may answer if asked again."""


def _corrupt_message(url: str, text: str) -> str:
    """One line: which file is damaged, and what the operator can do about it."""
    path = _sqlite_path(url)
    where, files = (path, "it (with its -wal and -shm files)") if path else (redact_url(url), "it")
    return (f"state store {where} is corrupt ({text}): stop every gridbridge using it, then "
            f"restore it from a backup, or move {files} aside to start an empty store (its "
            f"jobs and ledger stay in the moved file)")


class Sessions:
    """The store's connections: write transactions, ORM reads and Core point reads, each
    turning a locked database into :class:`StoreUnavailable`. Opening upgrades the schema."""

    def __init__(self, url: str, *, clock: Callable[[], float] = time.time) -> None:
        self.url = url
        self._clock = clock
        path = _sqlite_path(url) if _is_file(url) else None
        if path is not None:
            _create_private(path)
        self.engine: Engine = create_engine(url, future=True)
        self._read_engine = self.engine
        if self.engine.dialect.name == "sqlite" and _is_file(url):
            self._read_engine = create_engine(url, future=True)
            sqlite_engines(self.engine, self._read_engine)
        if self.engine.dialect.name == "postgresql":
            self._upgrade_under_advisory_lock()
        else:
            self._upgrade_with_retries()
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._reads = sessionmaker(self._read_engine, expire_on_commit=False)

    def _upgrade(self) -> None:
        with unavailable_as_error(self.url):
            create_missing_tables(self.engine, self._read_engine)
            add_missing_columns(self.engine, self._read_engine)
            add_missing_indexes(self.engine, self._read_engine)

    def _upgrade_with_retries(self) -> None:
        """The schema step, tried again with jittered backoff while another process holds
        SQLite's lock (it is making the same tables), for up to ``SCHEMA_BUSY_S``."""
        deadline = time.monotonic() + SCHEMA_BUSY_S
        delay = 0.01
        while True:
            try:
                return self._upgrade()
            except StoreUnavailable as exc:
                busy = "locked" in str(exc) or "busy" in str(exc)
                if not busy or time.monotonic() + delay > deadline:
                    raise
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 1.0)

    def _upgrade_under_advisory_lock(self) -> None:
        """The schema step while holding a PostgreSQL advisory lock (on a connection of its
        own): two processes creating one new database's tables at once collide on the
        catalog's unique keys, not on a lock that waits."""
        with unavailable_as_error(self.url), self.engine.connect() as lock:
            lock.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _SCHEMA_LOCK})
            lock.commit()
            try:
                self._upgrade()
            finally:
                lock.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _SCHEMA_LOCK})
                lock.commit()

    def close(self) -> None:
        self.engine.dispose()
        self._read_engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        with (store_timed("write"), unavailable_as_error(self.url), self._sessions() as session,
              session.begin()):
            yield session

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with store_timed("read"), unavailable_as_error(self.url), self._reads() as session:
            yield session

    @contextmanager
    def _core_read(self) -> Iterator[Connection]:
        """A read without the ORM, for the point reads every tick makes (half the cost)."""
        with (store_timed("read"), unavailable_as_error(self.url),
              self._read_engine.connect() as connection):
            yield connection

    def probe_write(self) -> None:
        """Write a row and delete it in one transaction (raises if the store is read-only or
        locked for longer than the write timeout)."""
        with self._tx() as s:
            row = LeaseRow(name=f".probe-{time.time_ns()}", holder="config check",
                           expires_at=0.0, generation=0)
            s.add(row)
            s.flush()
            s.delete(row)


def _sqlite_path(url: str) -> str | None:
    """The file of a SQLite URL (``sqlite:///path``), else None."""
    if not url.startswith("sqlite:///"):
        return None
    return url.removeprefix("sqlite:///").split("?", 1)[0] or None


def _create_private(path: str) -> None:
    """Create the SQLite file mode 0600 (the umask may make it stricter) if it is missing;
    SQLite then creates its -wal and -shm files with the same mode. An existing file is left
    as it is; another process creating it first is not an error."""
    # OSError: made by another process first, or a missing folder SQLite will name itself
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))


def _is_file(url: str) -> bool:
    rest = url.split("://", 1)[-1]
    return rest not in {"", "/", "/:memory:"} and "mode=memory" not in url
