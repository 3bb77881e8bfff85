"""The leased queue under the worker (inbound events), the notifier (notifications) and the forwarder
(sink deliveries): claim due rows with a lease, count the attempts, retry a failed one after a backoff or
give it up (``dead``), and the loop that runs a claimer until it is told to stop.

A claim is one short committed transaction around one UPDATE … RETURNING: it takes up to N due rows
(PostgreSQL skips the rows another claimer is taking, ``FOR UPDATE SKIP LOCKED``; on SQLite the claimer
holds the write lock, ``BEGIN IMMEDIATE``), counts the attempt, sets the lease and reads back what the work
needs. The work is done after that commit. A claimer that dies leaves its lease to run out and the row is
claimed again — its attempt already counted, so a row that keeps killing its claimers runs out of attempts
too.

Where the lease lives differs. An outbox row's lease is its ``next_attempt_at``: a claimed row whose
claimer died is simply due again. An inbound event has a lease of its own (``claimed_until``, with the
claim token its outcome is written under): its expired claims are a second condition, looked at when fewer
than N events are due, and those out of attempts are buried (``dead``) instead of taken.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Column, ColumnElement, Engine, Row, Select, Table, Update, bindparam, select, update
from sqlalchemy.orm import Session

from hub.store.db import execute, transaction

log = logging.getLogger("hub.outbox.queue")


def backoff_seconds(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter: about base·2^(attempt-1), never above cap, spread over ±50%
    so rows that failed together do not all retry in the same instant."""
    delay = min(cap, base * (2 ** max(0, attempt - 1)))
    return delay * random.uniform(0.5, 1.5) if delay else 0.0


class SendFailed(Exception):
    """An outbox row could not be sent: ``retriable`` (try again after the backoff, or after ``retry_after``
    seconds when the far side said so) or final (``dead`` at once). Here, under every sender (the notifier,
    the client answers), so that none of them imports another for it."""

    def __init__(self, message: str, retriable: bool = True, retry_after: float | None = None):
        super().__init__(message)
        self.retriable, self.retry_after = retriable, retry_after


@dataclass(frozen=True)
class Retries:
    """How a queue retries a failed attempt: ``max_attempts`` in all, each after ``backoff_seconds``."""

    max_attempts: int
    backoff_base_seconds: float
    backoff_max_seconds: float

    def delay(self, attempt: int, retry_after: float | None = None) -> float | None:
        """Seconds until the try after failed attempt ``attempt`` (``retry_after`` when the other side said
        when), or None: it was the last one."""
        if attempt >= self.max_attempts:
            return None
        if retry_after is not None:
            return retry_after
        return backoff_seconds(attempt, self.backoff_base_seconds, self.backoff_max_seconds)


@dataclass(frozen=True)
class Taken:
    rows: list[Row[Any]]       # the claimed rows (the queue's ``returning``), in the order they were due
    buried: list[Row[Any]]     # expired claims out of attempts, made dead by this claim: (id, attempts)


class LeasedQueue:
    """One table's queue. Its statements are built once: building a statement per claim costs more than
    running it (measured on the worker's hot path, bench/README.md).

    ``due``: what makes a row due, answered from the table's (status, next_attempt_at) index, ``:now``
    bound; ``ready``: what else a due row needs to be claimed (the forwarder's). ``order_by``: which due
    rows go first (the id breaks ties). ``lease``: the column holding the lease's end (``:until``);
    ``claimed``: what a claim sets besides the lease and the attempt count; ``returning``: what the claimer
    reads of the rows it took. ``expired`` and ``buried``: for a lease in a column of its own, the claims
    that ran out, and what one becomes when it has no attempts left (``:max_attempts``). ``release``: what
    ends a claim, written with every failure. ``peek``: look read-only before taking the write lock —
    a claimer that polls mostly finds nothing, and on SQLite a write transaction for nothing still queues
    behind every worker's."""

    def __init__(self, table: Table, *, waiting: str, dead: str, due: Sequence[ColumnElement[bool]],
                 order_by: Sequence[Column[Any]], lease: Column[Any], claimed: Mapping[str, Any],
                 returning: Sequence[Column[Any]], ready: Sequence[ColumnElement[bool]] = (),
                 expired: Sequence[ColumnElement[bool]] = (), buried: Mapping[str, Any] | None = None,
                 release: Mapping[str, Any] | None = None, peek: bool = False):
        self.table, self.waiting, self.dead = table, waiting, dead
        self.release: Mapping[str, Any] = release or {}
        # RETURNING comes back in no particular order: the rows are put in their due order again.
        self._order = [c.key for c in dict.fromkeys([*order_by, table.c.id])]
        self._returning = list(dict.fromkeys([*returning, *order_by, table.c.id]))
        taking = {lease.key: bindparam("until"), "attempts": table.c.attempts + 1, **claimed}
        self._take_due = self._take([*due, *ready], order_by, taking)
        self._peek: Select[Any] | None = select(table.c.id).where(*due).limit(1) if peek else None
        self._take_expired: Update | None = None
        self._bury: Update | None = None
        if expired:
            self._take_expired = self._take([*expired, table.c.attempts < bindparam("max_attempts")], [lease],
                                            taking)
            self._bury = (update(table).where(*expired, table.c.attempts >= bindparam("max_attempts"))
                          .values({"status": dead, **self.release, **(buried or {})})
                          .returning(table.c.id, table.c.attempts))

    def _take(self, where: Sequence[ColumnElement[bool]], order_by: Sequence[Column[Any]],
              values: Mapping[str, Any]) -> Update:
        # The rows are chosen in a CTE that PostgreSQL runs exactly once (MATERIALIZED); a LIMIT … SKIP
        # LOCKED subquery in the UPDATE's WHERE has no such promise: a plan that ran it again could lock
        # and take other rows.
        chosen = (select(self.table.c.id).where(*where).order_by(*order_by, self.table.c.id)
                  .limit(bindparam("limit")).with_for_update(skip_locked=True)
                  .cte("claimable").prefix_with("MATERIALIZED", dialect="postgresql"))
        return (update(self.table).where(self.table.c.id.in_(select(chosen.c.id))).values(values)
                .returning(*self._returning))

    def claim(self, engine: Engine, now: datetime, limit: int, lease_seconds: float, **params: Any) -> Taken:
        """Claim up to ``limit`` due rows in one short transaction (then, for a lease of its own, expired
        claims). ``params`` binds what the queue's conditions and ``claimed`` values name."""
        if self._peek is not None:
            with transaction(engine, read_only=True) as session:
                if execute(session, self._peek, {"now": now}).first() is None:
                    return Taken([], [])
        params = {**params, "now": now, "until": now + timedelta(seconds=lease_seconds)}
        buried: list[Row[Any]] = []
        with transaction(engine) as session:
            rows = self._rows(session, self._take_due, limit, params)
            if len(rows) < limit and self._take_expired is not None and self._bury is not None:
                buried = list(execute(session, self._bury, params))
                rows += self._rows(session, self._take_expired, limit - len(rows), params)
        return Taken(rows, buried)

    def _rows(self, session: Session, take: Update, limit: int, params: dict[str, Any]) -> list[Row[Any]]:
        rows = list(execute(session, take, {**params, "limit": limit}))
        rows.sort(key=lambda row: tuple(getattr(row, key) for key in self._order))
        return rows

    def failed(self, attempt: int, error: str, retries: Retries, now: datetime, *,
               retry_after: float | None = None, final: bool = False) -> tuple[dict[str, Any], float | None]:
        """What a claimed row whose attempt ``attempt`` failed with ``error`` becomes, and in how many seconds
        it is tried again: None when it is dead — that was its last attempt, or ``final`` (an answer that
        retrying will not change)."""
        delay = None if final else retries.delay(attempt, retry_after)
        values: dict[str, Any] = {**self.release, "last_error": error}
        if delay is None:
            values["status"] = self.dead
        else:
            values.update(status=self.waiting, next_attempt_at=now + timedelta(seconds=delay))
        return values, delay

    def write(self, session: Session, row_id: int, values: Mapping[str, Any], *still: ColumnElement[bool]) -> bool:
        """Write a claimed row's outcome in the caller's transaction; False when ``still`` (e.g. "the claim
        token is ours") no longer holds and nothing was written."""
        done = execute(session, update(self.table).where(self.table.c.id == row_id, *still).values(values))
        return bool(done.rowcount)


def run_loop(step: Callable[[], int], stop: threading.Event, wake: threading.Event, poll_seconds: float,
             pause_after_error: float, what: str) -> None:
    """Run ``step`` (it returns how many rows it handled) until ``stop`` is set: again at once while it
    finds work, else when ``wake`` is set (the work was queued in this process) or after ``poll_seconds``
    (another process queued it). A step that fails — the store away for a moment — is logged and tried
    again after ``pause_after_error``."""
    while not stop.is_set():
        try:
            if step():
                continue
        except Exception:  # the store may be away for a moment; keep going
            log.exception("%s failed; retrying", what)
            stop.wait(pause_after_error)
            continue
        wake.wait(poll_seconds)
        wake.clear()
