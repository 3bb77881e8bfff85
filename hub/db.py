"""Engines and transactions for the two stores we support.

SQLite (the embedded default): WAL so readers never block the writer, ``BEGIN IMMEDIATE`` so a writing
transaction takes the write lock up front (a deferred one can fail half-way with SQLITE_BUSY), a busy
timeout so concurrent writers queue instead of failing, and ``synchronous=FULL`` because an acknowledged
lead must survive a power cut. PostgreSQL via psycopg 3: the same code; row claims use SKIP LOCKED.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

from sqlalchemy import Engine, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

SQLITE_BUSY_TIMEOUT_MS = 30_000
# Session execution option: a read-only transaction on SQLite starts deferred and does not take the lock.
READ_ONLY = "hub_read_only"


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        # One connection per checkout keeps SQLite's file locking simple and fork-safe across processes.
        engine = create_engine(url, poolclass=NullPool,
                               connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
                                             "check_same_thread": False}, **kwargs)
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module so we can say BEGIN IMMEDIATE ourselves.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(engine: Engine, *, read_only: bool = False) -> Iterator[Session]:
    """One unit of work: commits on success, rolls back on any exception."""
    bind = engine.execution_options(**{READ_ONLY: True}) if read_only else engine
    with Session(bind, expire_on_commit=False) as session, session.begin():
        yield session


@cache
def _insert_ignoring_stmt(dialect: str, table: Table, index_elements: tuple[str, ...]):
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect]
    return insert(table).on_conflict_do_nothing(index_elements=list(index_elements)).returning(table.c.id)


def insert_ignoring_conflicts(session: Session, table: Table, index_elements: list[str], values: dict[str, Any]):
    """``INSERT … ON CONFLICT DO NOTHING RETURNING id``: the database, not Python, decides who was first.
    Returns the new id, or None when a row with the same key already existed."""
    stmt = _insert_ignoring_stmt(session.get_bind().dialect.name, table, tuple(index_elements))
    return session.connection().execute(stmt, values).scalar_one_or_none()


def execute(session: Session, stmt: Any, params: dict[str, Any] | None = None):
    """Run a prebuilt Core statement on the session's connection. Hot paths (every delivery, every imported
    row) use statements built once at import time: building one per call costs more than running it."""
    return session.connection().execute(stmt, params or {})
