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
from collections import namedtuple
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import datetime
from functools import cache
from operator import itemgetter
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


class Prebuilt:
    """A Core statement built once for a hot path. On SQLite it is compiled once and run on the DBAPI cursor,
    each value through its bind parameter type's bind processor and each result column through its type's
    result processor, so what is stored and read is what SQLAlchemy would store and read — without its
    ~70-100 µs of Python per execute (InsertIgnoring's measurement: ~180 → ~25 µs of CPU a row). Elsewhere
    (PostgreSQL, where a statement's cost is its round trip) it is the Core statement.

    Rows come back as named tuples (attribute access, like SQLAlchemy's Row). A statement with an expanding
    IN (a list of values) cannot be compiled once: write such a condition with OR or with literal SQL; an
    INSERT that leaves out columns with Python defaults is InsertRows' job."""

    def __init__(self, stmt: Any):
        self.stmt = stmt
        self.row_type: Any = namedtuple("Row", [c.key for c in getattr(stmt, "exported_columns", ())],  # type: ignore[misc]
                                        rename=True)
        self._compiled: tuple[str, list[tuple[str, bool, Any, Callable[[Any], Any] | None]],
                              list[Callable[[Any], Any] | None]] | None = None

    def _sqlite(self, dialect: Any):
        if self._compiled is None:
            compiled = self.stmt.compile(dialect=dialect)
            sql = str(compiled)
            if "POSTCOMPILE" in sql:
                raise ValueError(f"an expanding IN cannot be prebuilt: {sql}")
            if getattr(compiled, "insert_prefetch", None) or getattr(compiled, "update_prefetch", None):
                # Core computes these columns' Python defaults at execution: InsertRows does the same.
                raise ValueError(f"columns with Python defaults left out (use InsertRows): {sql}")
            binds = []
            for name in compiled.positiontup or ():
                bind = compiled.binds[name]
                binds.append((bind.key, bind.required, None if bind.required else bind.effective_value,
                              _bind_processor(bind.type, dialect)))
            results = [c.type.dialect_impl(dialect).result_processor(dialect, None)
                       for c in getattr(self.stmt, "exported_columns", ())]
            self._compiled = (sql, binds, results)
        return self._compiled

    @staticmethod
    def _bound(binds, params: dict[str, Any]) -> list[Any]:
        values = []
        for key, required, constant, processor in binds:
            value = params[key] if required or key in params else constant
            values.append(value if processor is None else processor(value))
        return values

    def rows(self, session: Session, params: dict[str, Any] | None = None) -> list[Any]:
        """Every row the statement returns."""
        connection = session.connection()
        if connection.dialect.name != "sqlite":
            return list(connection.execute(self.stmt, params or {}))
        sql, binds, results = self._sqlite(connection.dialect)
        with closing(connection.connection.dbapi_connection.cursor()) as cursor:  # type: ignore[union-attr]
            fetched = cursor.execute(sql, self._bound(binds, params or {})).fetchall()
        make = self.row_type._make
        if not any(results):
            return [make(row) for row in fetched]
        return [make([v if p is None else p(v) for v, p in zip(row, results, strict=True)]) for row in fetched]

    def first(self, session: Session, params: dict[str, Any] | None = None) -> Any:
        """The first row, or None."""
        rows = self.rows(session, params)
        return rows[0] if rows else None

    def one(self, session: Session, params: dict[str, Any] | None = None) -> Any:
        """Exactly one row (else ValueError, as Result.one raises)."""
        [row] = self.rows(session, params)
        return row

    def run(self, session: Session, params: dict[str, Any] | list[dict[str, Any]] | None = None) -> int:
        """A statement that returns no rows, once or for each of a list of parameter sets; the rows it matched."""
        connection = session.connection()
        if connection.dialect.name != "sqlite":
            return connection.execute(self.stmt, params or {}).rowcount
        sql, binds, _ = self._sqlite(connection.dialect)
        with closing(connection.connection.dbapi_connection.cursor()) as cursor:  # type: ignore[union-attr]
            if isinstance(params, list):
                cursor.executemany(sql, [self._bound(binds, p) for p in params])
            else:
                cursor.execute(sql, self._bound(binds, params or {}))
            return cursor.rowcount


# Rows a multi-row INSERT carries at most (SQLite also bounds it by its limit on variables per statement).
# 500 rows of ~10 columns: the statement's text is built once per page size; larger pages gained nothing.
INSERT_PAGE_ROWS = 500


class InsertRows:
    """One INSERT for many rows (an import's batch: 500 persons, keys, leads), optionally ``ON CONFLICT DO
    NOTHING`` on ``ignoring_conflicts_on`` and ``RETURNING`` some columns.

    On SQLite a multi-row ``VALUES`` run on the DBAPI cursor, each value through its column type's bind
    processor and each column left out given its Python default, as Core would (SQLAlchemy runs an INSERT
    … RETURNING of SQLite one row at a time when the order of the returned rows matters: ~40 µs a row, this
    ~10). On PostgreSQL Core's "insertmanyvalues", which also sends a page of rows per statement.

    ``ordered=True``: the returned rows are in the order of ``rows`` (``returning`` must start with the
    integer primary key and conflicts must not be ignored). On SQLite a statement's rows get increasing ids in
    the order of its VALUES and pages run in order, so sorting by the id restores it; on PostgreSQL
    SQLAlchemy's ``sort_by_parameter_order``. Without it, correlate by a returned unique column."""

    def __init__(self, table: Table, returning: tuple[str, ...] = (), ignoring_conflicts_on: tuple[str, ...] = (),
                 ordered: bool = False):
        key = next(iter(table.primary_key.columns))
        if ordered and (ignoring_conflicts_on or not returning or returning[0] != key.key):
            raise ValueError("ordered rows need RETURNING the primary key first and no ignored conflicts")
        self.table, self.returning, self.ignoring, self.ordered = table, returning, ignoring_conflicts_on, ordered
        core: Any = _INSERTS["postgresql"](table)
        if ignoring_conflicts_on:
            core = core.on_conflict_do_nothing(index_elements=list(ignoring_conflicts_on))
        if returning:
            core = core.returning(*(table.c[c] for c in returning), sort_by_parameter_order=ordered)
        self._core = core
        self._sqlite_parts: dict[tuple[str, ...], tuple[str, str, Callable[[dict[str, Any]], list[Any]], int,
                                                        list[Any]]] = {}

    def __call__(self, session: Session, rows: list[dict[str, Any]]) -> list[tuple]:
        """``rows``: dicts with the same keys, a column each."""
        if not rows:
            return []
        connection = session.connection()
        if connection.dialect.name != "sqlite":
            result = connection.execute(self._core, rows)
            return [tuple(r) for r in result] if self.returning else []
        head, tail, bind_row, width, results = self._sqlite(connection.dialect, tuple(rows[0]))
        dbapi = connection.connection.dbapi_connection
        limit = dbapi.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)  # type: ignore[union-attr]
        per_page = max(1, min(INSERT_PAGE_ROWS, limit // width))
        placeholders = "(" + ", ".join("?" * width) + ")"
        returned: list[tuple] = []
        with closing(dbapi.cursor()) as cursor:  # type: ignore[union-attr]
            for start in range(0, len(rows), per_page):
                page = rows[start:start + per_page]
                values: list[Any] = []
                for row in page:
                    values += bind_row(row)
                cursor.execute(head + ", ".join([placeholders] * len(page)) + tail, values)
                if self.returning:
                    returned += [tuple(v if p is None else p(v) for v, p in zip(row, results, strict=True))
                                 for row in cursor.fetchall()]
        if self.ordered:
            returned.sort(key=lambda row: row[0])
        return returned

    def _sqlite(self, dialect: Any, columns: tuple[str, ...]):
        parts = self._sqlite_parts.get(columns)
        if parts is None:
            table, preparer = self.table, dialect.identifier_preparer
            unknown = set(columns) - set(table.c.keys())
            if unknown:
                raise ValueError(f"no such columns in {table.name}: {sorted(unknown)}")
            given = [c for c in table.columns if c.key in columns]
            # Left out: the column's Python default, a scalar (bound once) or a callable (called for each row).
            defaulted = [c for c in table.columns if c.key not in columns and c.default is not None
                         and (c.default.is_scalar or c.default.is_callable)]
            bind_row = _row_binder(dialect, given, defaulted)
            names = ", ".join(preparer.format_column(c) for c in given + defaulted)
            # Identifiers from the table's own metadata, quoted by the dialect; every value is a bound parameter.
            head = f"INSERT INTO {preparer.format_table(table)} ({names}) VALUES "  # nosec B608
            tail = ""
            if self.ignoring:
                target = ", ".join(preparer.format_column(table.c[c]) for c in self.ignoring)
                tail += f" ON CONFLICT ({target}) DO NOTHING"
            if self.returning:
                tail += f" RETURNING {', '.join(preparer.format_column(table.c[c]) for c in self.returning)}"
            results = [table.c[c].type.dialect_impl(dialect).result_processor(dialect, None) for c in self.returning]
            parts = self._sqlite_parts[columns] = (head, tail, bind_row, len(given) + len(defaulted), results)
        return parts


def _bind_processor(column_type: Any, dialect: Any) -> Callable[[Any], Any] | None:
    """The type's bind processor, remembering its last datetime: a batch's rows share one ``now``, and a
    datetime's processing (to UTC, then to SQLite's text) is ~3 µs, several times a row."""
    processor = column_type.dialect_impl(dialect).bind_processor(dialect)
    if processor is None:
        return None
    # One slot holding the (value, result) pair, replaced whole: a statement is shared by the threads of a
    # process, and a pair is never seen half-written.
    last: list[tuple[Any, Any]] = [(None, None)]

    def process(value: Any) -> Any:
        seen, seen_result = last[0]
        if value is seen and type(value) is datetime:
            return seen_result
        result = processor(value)
        if type(value) is datetime:
            last[0] = (value, result)
        return result
    return process


def _row_binder(dialect: Any, given: list[Any], defaulted: list[Any]) -> Callable[[dict[str, Any]], list[Any]]:
    """A row's values, in the order of ``given`` + ``defaulted``, each through its type's bind processor."""
    keys = [c.key for c in given]
    get = itemgetter(*keys) if len(keys) > 1 else (lambda row: (row[keys[0]],))
    processed = [(i, p) for i, c in enumerate(given) if (p := _bind_processor(c.type, dialect)) is not None]
    constants: list[Any] = []
    per_row: list[tuple[Callable[[Any], Any], Callable[[Any], Any] | None]] = []
    for column in defaulted:
        processor = _bind_processor(column.type, dialect)
        if column.default.is_scalar:
            constants.append(column.default.arg if processor is None else processor(column.default.arg))
        else:
            per_row.append((column.default.arg, processor))

    def bind_row(row: dict[str, Any]) -> list[Any]:
        values = list(get(row))
        for i, process in processed:
            values[i] = process(values[i])
        values += constants
        for make, maybe_process in per_row:
            value = make(None)
            values.append(value if maybe_process is None else maybe_process(value))
        return values
    return bind_row
