"""Engines and transactions for the two stores we support.

SQLite (the embedded default): WAL so readers never block the writer, ``BEGIN IMMEDIATE`` so a writing
transaction takes the write lock up front (a deferred one can fail half-way with SQLITE_BUSY), a busy
timeout so concurrent writers queue instead of failing, and ``synchronous=FULL`` because an acknowledged
lead must survive a power cut. PostgreSQL via psycopg 3: the same code; row claims use SKIP LOCKED.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

from sqlalchemy import Engine, Table, bindparam, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool, QueuePool

SQLITE_BUSY_TIMEOUT_MS = 30_000
# Session execution option: a read-only transaction on SQLite starts deferred and does not take the lock.
READ_ONLY = "hub_read_only"


# A database error's text names the statement's parameters unless told not to: phones, e-mails and message
# texts would reach the logs (and an event's last_error) with every failed INSERT.
HIDE_PARAMETERS = True


def make_engine(url: str, processing: bool = False, **kwargs: Any) -> Engine:
    """``processing=True`` is the workers' engine: their commits need not wait for the disk.

    Why that loses nothing: a delivery is acknowledged only after the intake's commit, which is fully
    durable (SQLite synchronous=FULL, PostgreSQL synchronous_commit on). If a power cut drops a worker's
    last commits, the events they processed are simply back to pending — with none of the leads, touches
    or round-robin steps those commits made — and are processed again. An application crash (kill -9)
    loses no committed transaction either way. The worker saves an fsync per transaction."""
    if url.startswith("sqlite"):
        # Pooled: opening a connection and setting it up costs ~0.3 ms a transaction (intake acks +27%
        # under 16 senders, measured A/B). Up to 8 kept; more are opened when needed and closed after.
        # (An earlier session saw 30-second waits with pooling; they were the test harness's unread pipe
        # blocking the processes' logging — see tests/helpers/procs.py — not the pool.)
        pooling = ({"poolclass": NullPool} if url in ("sqlite://", "sqlite:///:memory:")
                   else {"poolclass": QueuePool, "pool_size": 8, "max_overflow": -1})
        engine = create_engine(url, **pooling, hide_parameters=HIDE_PARAMETERS,
                               connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
                                             "check_same_thread": False}, **kwargs)
        _configure_sqlite(engine, "NORMAL" if processing else "FULL")
        _hold_open(engine)
        return engine
    engine = create_engine(url, pool_pre_ping=True, hide_parameters=HIDE_PARAMETERS, **kwargs)
    if processing:
        @event.listens_for(engine, "connect")
        def _async_commit(dbapi_conn: Any, _record: Any) -> None:
            with dbapi_conn.cursor() as cur:
                cur.execute("SET synchronous_commit = off")
            dbapi_conn.commit()
    return engine


def _hold_open(engine: Engine) -> None:
    """Keep one idle connection to the SQLite file open for the engine's life. Closing the *last*
    connection to a WAL database checkpoints the WAL into the file and deletes it — with a connection per
    transaction that happened after nearly every commit (measured: 1.7 → 0.7 ms per small write
    transaction). The idle connection holds no lock and starts no transaction; checkpoints then happen as
    SQLite schedules them (every 1000 pages, passively). Opened with the engine's first connection."""
    database = engine.url.database
    if not database or database == ":memory:" or engine.url.query.get("mode") == "memory":
        return
    key = id(engine)

    @event.listens_for(engine, "connect")
    def _open_idle(_dbapi_conn: Any, _record: Any) -> None:
        # The connection being made has set WAL mode already (listeners run in order of registration).
        if key in _IDLE:
            return
        with _IDLE_LOCK:
            if key not in _IDLE:
                idle = sqlite3.connect(database, check_same_thread=False, isolation_level=None)
                # SQLite opens the file on first use: read once so that it holds the WAL open (no lock kept).
                idle.execute("PRAGMA journal_mode").fetchone()
                _IDLE[key] = idle
                weakref.finalize(engine, _close_idle, key)


def _close_idle(key: int) -> None:
    idle = _IDLE.pop(key, None)
    if idle is not None:
        idle.close()


def release(engine: Engine) -> None:
    """Dispose of the engine and close its idle connection (hub.runtime.Hub.dispose)."""
    engine.dispose()
    _close_idle(id(engine))


_IDLE: dict[int, sqlite3.Connection] = {}
_IDLE_LOCK = threading.Lock()


def _configure_sqlite(engine: Engine, synchronous: str = "FULL") -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module so we can say BEGIN IMMEDIATE ourselves.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get(READ_ONLY):
            conn.exec_driver_sql("BEGIN")
        else:
            _begin_immediate(conn.connection.dbapi_connection)


def _begin_immediate(dbapi_conn: Any) -> None:
    """BEGIN IMMEDIATE, waiting for the write lock in short steps. SQLite's own busy handler sleeps 1, 2, 5,
    10 … then 100 ms at a time: a writer that arrives just after another took the lock for a few ms may
    sleep a tenth of a second — what made acks in `hub run` (a worker in the same process) take ~0.5 s at
    the 99th percentile. Here the wait is polled every millisecond or two, up to the same 30 s."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA busy_timeout=0")
        while True:
            try:
                cur.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(0.001 + random.random() * 0.001)     # jitter: waiters do not wake in lockstep
    finally:
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.close()


@contextmanager
def transaction(engine: Engine, *, read_only: bool = False) -> Iterator[Session]:
    """One unit of work: commits on success, rolls back on any exception."""
    bind = engine.execution_options(**{READ_ONLY: True}) if read_only else engine
    writers = None if read_only else _writers_of(engine)
    if writers is not None and not writers.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
        raise sqlite3.OperationalError("database is locked (another thread of this process kept writing for "
                                       f"{SQLITE_BUSY_TIMEOUT_MS // 1000} s)")
    try:
        with Session(bind, expire_on_commit=False) as session, session.begin():
            yield session
    finally:
        if writers is not None:
            writers.release()


# One writer at a time per SQLite file and process, queued on a Python lock. SQLite lets one connection
# write at a time anyway; without this, a process's other writers (8 web threads, worker threads) each
# poll BEGIN IMMEDIATE every 1-2 ms, taking the GIL from the thread that holds the write lock and has work
# to finish. Re-entrant: a thread may open a transaction inside its own. Other processes still meet the
# polling in _begin_immediate.
_WRITERS: dict[str, threading.RLock] = {}
_WRITERS_LOCK = threading.Lock()


def _writers_of(engine: Engine) -> threading.RLock | None:
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return None
    lock = _WRITERS.get(engine.url.database)
    if lock is None:
        path = os.path.realpath(engine.url.database)
        with _WRITERS_LOCK:
            lock = _WRITERS.setdefault(path, threading.RLock())
            _WRITERS[engine.url.database] = lock         # found by the name as given next time
    return lock


# Both dialects' INSERT knows ON CONFLICT, with the same on_conflict_do_nothing / on_conflict_do_update.
_INSERTS: dict[str, Callable[[Table], postgresql.Insert | sqlite.Insert]] = {
    "postgresql": postgresql.insert, "sqlite": sqlite.insert}


def dialect_insert(session: Session):
    """The INSERT construct of the session's database, the one that knows ON CONFLICT."""
    return _INSERTS[session.get_bind().dialect.name]


def dialect_insert_for(dialect: str):
    """The same, by the dialect's name (for statements built once and cached)."""
    return _INSERTS[dialect]


@cache
def _insert_ignoring_stmt(dialect: str, table: Table, index_elements: tuple[str, ...]):
    insert = _INSERTS[dialect]
    key = next(iter(table.primary_key.columns))
    return insert(table).on_conflict_do_nothing(index_elements=list(index_elements)).returning(key)


def insert_ignoring_conflicts(session: Session, table: Table, index_elements: list[str], values: dict[str, Any]):
    """``INSERT … ON CONFLICT DO NOTHING RETURNING <primary key>``: the database, not Python, decides who was
    first. Returns the new row's key, or None when a row with the same key already existed."""
    stmt = _insert_ignoring_stmt(session.get_bind().dialect.name, table, tuple(index_elements))
    return session.connection().execute(stmt, values).scalar_one_or_none()


_QUEUED = "hub.queued"


def mark_queued(session: Session, outbox: str) -> None:
    """Note that this transaction put something in an outbox ("notification" or "forward"), so that whoever
    commits it wakes that outbox's sender — and only then: a sender woken for nothing opens a write
    transaction of its own, which on SQLite queues behind the workers' for the one write lock."""
    session.info.setdefault(_QUEUED, set()).add(outbox)


def queued(session: Session) -> set[str]:
    """The outboxes this session's transactions put something in (see mark_queued)."""
    return session.info.get(_QUEUED, set())


def execute(session: Session, stmt: Any, params: dict[str, Any] | list[dict[str, Any]] | None = None):
    """Run a prebuilt Core statement on the session's connection. Hot paths (every delivery, every imported
    row) use statements built once at import time: building one per call costs more than running it."""
    return session.connection().execute(stmt, params or {})


class InsertIgnoring:
    """``INSERT … ON CONFLICT DO NOTHING RETURNING <primary key>`` over fixed columns, for the one statement
    run per delivery. On SQLite it is compiled once and run on the DBAPI cursor, each value passed through
    the column type's own bind processor (so what is stored is what SQLAlchemy would store): executing a
    Core statement cost ~180 µs of CPU a row here, the cursor ~25 µs (a batch of 32 deliveries, measured).
    Elsewhere (PostgreSQL, where a row's cost is the round trip) it is the Core statement."""

    def __init__(self, table: Table, columns: tuple[str, ...], index_elements: tuple[str, ...]):
        self.table, self.columns, self.index_elements = table, columns, index_elements
        self._compiled: dict[str, tuple[str, list[tuple[str, Callable[[Any], Any] | None]]]] = {}

    def _sqlite(self, dialect: Any) -> tuple[str, list[tuple[str, Callable[[Any], Any] | None]]]:
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            key = next(iter(self.table.primary_key.columns))
            stmt = (sqlite.insert(self.table).values({c: bindparam(c) for c in self.columns})
                    .on_conflict_do_nothing(index_elements=list(self.index_elements)).returning(key))
            sql = stmt.compile(dialect=dialect)
            order = sql.positiontup or []               # the table's column order, not ours
            if sorted(order) != sorted(self.columns):
                raise RuntimeError(f"unexpected parameters {order} for {self.columns}")
            processors: list[tuple[str, Callable[[Any], Any] | None]] = [
                (c, self.table.c[c].type.dialect_impl(dialect).bind_processor(dialect)) for c in order]
            compiled = self._compiled[dialect.name] = (str(sql), processors)
        return compiled

    def __call__(self, session: Session, values: dict[str, Any]) -> Any:
        """The new row's key, or None when a row with the same key already existed."""
        connection = session.connection()
        dialect = connection.dialect
        if dialect.name != "sqlite":
            return insert_ignoring_conflicts(session, self.table, list(self.index_elements),
                                             {c: values.get(c) for c in self.columns})
        sql, processors = self._sqlite(dialect)
        params = [values.get(c) if p is None else p(values.get(c)) for c, p in processors]
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            row = cursor.execute(sql, params).fetchone()
        finally:
            cursor.close()
        return None if row is None else row[0]
