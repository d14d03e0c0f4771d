"""Engines for the state store: one for writes, one for reads, and in-place upgrades.

On SQLite (WAL mode) a write transaction starts ``BEGIN IMMEDIATE``, so a read-then-write never
fails half-way with "database is locked"; reads use a second engine whose transactions are
deferred, so they never wait behind a writer, not even one frozen inside its transaction.
A write that cannot get the lock within ``WRITE_BUSY_S`` raises :class:`StoreUnavailable`,
which callers retry with backoff.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.schema import Column, Table

from .tables import Base

__all__ = ["WRITE_BUSY_S", "StoreUnavailable", "add_missing_columns", "sqlite_engines"]

WRITE_BUSY_S = 10.0
"""How long a write waits for SQLite's lock before :class:`StoreUnavailable`."""
READ_BUSY_S = 30.0


class StoreUnavailable(RuntimeError):
    """The state database is locked by another process or cannot be reached; try again."""


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
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_s * 1000)}")
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
    tables = set(existing.get_table_names())
    for table in Base.metadata.sorted_tables:
        if table.name not in tables:
            continue
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
