"""Group commit: the deliveries that arrive while one commit is on its way to the disk are written by one
writer thread in the next transaction, and each is answered only after the commit that holds it.

Durability is what it was: a delivery's thread waits until the transaction holding its row has committed
(SQLite synchronous=FULL, PostgreSQL synchronous_commit on), and only then is the provider answered. What
changes is who pays: the write lock, BEGIN, the ORM session and the disk flush are paid once per batch,
not once per request, and the web threads no longer queue on SQLite's one writer lock one by one.

A batch that fails is not answered as a whole: its deliveries are written again one transaction each, so a
single row the database refuses fails only its own request (a 503, retried by the provider) and never its
neighbours. Idempotency is the database's unique key, as before: a second delivery with the same
(source, external id) in the same batch meets the first one's row and is answered as its duplicate.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from hub.store.db import transaction

log = logging.getLogger("hub.intake.group")

# At most this many deliveries in one transaction. The batch is whatever is waiting when the writer is
# free, so it is bounded in practice by the web threads (8 for `hub serve`): measured under 64 senders the
# batches held 5-8 deliveries; this cap only keeps one transaction (and so the write lock, which the
# workers of `hub run` need too) short if a server is run with hundreds of threads.
MAX_BATCH = 64
# The writer waits for nothing: the deliveries that came in while the last commit was being flushed make
# the next batch. A deliberate wait (1 ms) added that much to every lone delivery's answer and, under
# 16 or 64 senders, did not make the batches bigger (they are bounded by the web threads).
# A writer with nothing to do for this long ends its thread; the next delivery starts another. Keeps idle
# hubs (and the hundreds a test run makes) from holding a thread and an engine each.
IDLE_EXIT_SECONDS = 5.0


WriteMany = Callable[[Session, list[Any]], list[Any]]


class _Job:
    __slots__ = ("future", "item", "write_many")

    def __init__(self, write_many: WriteMany, item: Any):
        self.write_many, self.item = write_many, item
        # A future, not an event: a web thread waits on it (``run``), the event loop of the asynchronous door
        # awaits it (``submit``, hub/web/rsgi.py) without a thread of its own.
        self.future: Future[Any] = Future()


class GroupWriter:
    """One writer thread for one engine in this process. ``run(write)`` hands ``write(session)`` to it,
    waits until the transaction it ran in has committed, and returns what ``write`` returned (or raises
    what it, or the commit, raised). ``write`` must only write through the session: it may run twice (once
    in a batch that failed, once alone), and only the second, committed run counts."""

    def __init__(self, engine: Engine):
        self._engine = weakref.ref(engine)     # the engine's life is its owner's (hub.dispose), not ours
        self._lock = threading.Lock()
        self._waiting: deque[_Job] = deque()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        # Counters for the benchmark and the tests: how many batches, how many deliveries, how many batches
        # were redone one by one.
        self.batches = 0
        self.jobs = 0
        self.fallbacks = 0

    def run(self, write: Callable[[Session], Any]) -> Any:
        return self.submit(lambda session, _items: [write(session)], None).result()

    def submit(self, write_many: WriteMany, item: Any) -> Future[Any]:
        """Hand ``item`` to the writer; the future is done once the transaction it was written in has committed
        (its result is ``write_many``'s for it) or failed (its exception). The waiting jobs that share one
        ``write_many`` are written by one call, ``write_many(session, items)`` returning a result per item
        in order: on PostgreSQL one INSERT for a batch's deliveries instead of a round trip each."""
        job = _Job(write_many, item)
        with self._lock:
            self._waiting.append(job)
            if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
                self._pid = os.getpid()          # a forked child gets a writer of its own
                self._thread = threading.Thread(target=self._loop, name="intake-writer", daemon=True)
                self._thread.start()
            else:
                self._wake.notify()
        return job.future

    def _next_batch(self) -> list[_Job]:
        with self._lock:
            while not self._waiting:
                if not self._wake.wait(IDLE_EXIT_SECONDS) and not self._waiting:
                    self._thread = None          # under the lock: run() starts a new one from now on
                    return []
            batch = [self._waiting.popleft() for _ in range(min(MAX_BATCH, len(self._waiting)))]
        return batch

    def _loop(self) -> None:
        while batch := self._next_batch():
            self._write(batch)

    def _write(self, batch: list[_Job]) -> None:
        engine = self._engine()
        if engine is None:                       # its hub is gone, and with it whoever waited
            for job in batch:
                job.future.set_exception(RuntimeError("the store's engine was disposed of"))
            return
        self.batches += 1
        self.jobs += len(batch)
        if len(batch) > 1:
            try:
                with transaction(engine) as session:
                    results = _write_grouped(session, batch)
            except Exception:  # noqa: BLE001 — which row failed is found below, one transaction each
                self.fallbacks += 1
            else:
                for job, result in zip(batch, results, strict=True):
                    job.future.set_result(result)
                return
        for job in batch:
            try:
                with transaction(engine) as session:
                    [result] = job.write_many(session, [job.item])
            except BaseException as exc:  # noqa: BLE001 — handed to the delivery's own thread, which answers 503
                job.future.set_exception(exc)
            else:
                job.future.set_result(result)


def _write_grouped(session: Session, batch: list[_Job]) -> list[Any]:
    """Each run of consecutive jobs with the same ``write_many`` in one call; the results in batch order."""
    results: list[Any] = []
    start = 0
    while start < len(batch):
        end = start + 1
        while end < len(batch) and batch[end].write_many is batch[start].write_many:
            end += 1
        written = batch[start].write_many(session, [job.item for job in batch[start:end]])
        if len(written) != end - start:
            raise RuntimeError(f"write_many gave {len(written)} results for {end - start} items")
        results += written
        start = end
    return results


_WRITERS: weakref.WeakKeyDictionary[Engine, GroupWriter] = weakref.WeakKeyDictionary()
_WRITERS_LOCK = threading.Lock()


def group_writer(engine: Engine) -> GroupWriter | None:
    """The engine's writer, or None where a writer thread cannot share the store: an in-memory SQLite
    database is one per connection."""
    if engine.dialect.name == "sqlite" and engine.url.database in (None, "", ":memory:"):
        return None
    writer = _WRITERS.get(engine)
    if writer is None:
        with _WRITERS_LOCK:
            writer = _WRITERS.get(engine)
            if writer is None:
                writer = _WRITERS[engine] = GroupWriter(engine)
    return writer
