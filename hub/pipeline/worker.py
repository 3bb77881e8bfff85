"""Workers: claim a stored event, run the pipeline on it in one transaction, record the outcome.

Claiming is two short steps so that a worker killed at any point loses nothing and doubles nothing:
1. claim (its own committed transaction): pick claimable events — PostgreSQL ``FOR UPDATE SKIP LOCKED``,
   SQLite ``BEGIN IMMEDIATE`` — mark them ``processing`` with a fresh claim token and a lease, count the
   attempt, and read what processing needs (source, received_at, payload);
2. process (one transaction): run the pipeline, then mark the outcome with an UPDATE that only matches
   while the claim token is still ours; if it matches nothing (the lease ran out and another worker claimed
   the event) the whole transaction rolls back. Pipeline writes and the outcome commit together or not at all.
A worker that dies between or during these leaves a ``processing`` row whose lease runs out; the next
worker reclaims it. Its attempt was already counted, so an event that kills workers ends ``dead``.
The claim, the lease, the attempts and the backoff are the leased queue's (hub.outbox.queue).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import String, bindparam, cast, update

from hub.errors import PayloadError
from hub.outbox.queue import LeasedQueue, Retries, run_loop
from hub.pipeline.bulk import attach_batch
from hub.pipeline.history import defer_history, flush_history
from hub.pipeline.process import DeferredWrites, EventRef, Outcome, process_event, settle
from hub.pipeline.routing.assignment import LeadState
from hub.pipeline.vk_profiles import add_vk_profiles
from hub.runtime import Hub, Source
from hub.store.db import execute, queued, transaction
from hub.store.models import EventStatus, InboundEvent, utcnow

log = logging.getLogger("hub.pipeline.worker")


@dataclass(frozen=True)
class Claim:
    event_id: int
    token: str
    attempt: int
    source: str
    received_at: datetime
    payload: Any


class ClaimLost(Exception):
    """The event was claimed again by another worker (this one's lease ran out): roll this work back."""


_EVENTS = InboundEvent.__table__

# Due events, then (when fewer than a batch are due) events whose worker died (lease expired): two
# conditions, each answered from the (status, next_attempt_at) index; one query with OR would scan the
# whole table. The claim reads what processing needs (no second SELECT); the outcome is written under
# the claim token, so a worker whose lease ran out cannot overwrite the next one's. No read-only peek
# before the claim (the outboxes' ``peek``): a busy worker finds events at nearly every claim, and the peek
# would add a transaction to each batch.
EVENTS = LeasedQueue(
    _EVENTS, waiting=EventStatus.PENDING, dead=EventStatus.DEAD,
    due=(_EVENTS.c.status == EventStatus.PENDING, _EVENTS.c.next_attempt_at <= bindparam("now")),
    order_by=(_EVENTS.c.next_attempt_at,),
    lease=_EVENTS.c.claimed_until,
    claimed={"status": EventStatus.PROCESSING, "claim_token": bindparam("token"), "claimed_by": bindparam("by")},
    returning=(_EVENTS.c.id, _EVENTS.c.attempts, _EVENTS.c.source, _EVENTS.c.received_at, _EVENTS.c.payload),
    expired=(_EVENTS.c.status == EventStatus.PROCESSING, _EVENTS.c.claimed_until < bindparam("now")),
    # Its worker died on it again and again: stop feeding it to workers.
    buried={"processed_at": bindparam("now"), "last_error": "worker stopped while processing it, "
            + cast(_EVENTS.c.attempts, String) + " times (lease expired)"},
    release={"claim_token": None, "claimed_until": None})
FINISH = (update(_EVENTS)
          .where(_EVENTS.c.id == bindparam("event_id"), _EVENTS.c.claim_token == bindparam("token"),
                 _EVENTS.c.status == EventStatus.PROCESSING)
          .values(status=bindparam("status"), lead_id=bindparam("lead_id"), processed_at=bindparam("now"),
                  claim_token=None, claimed_until=None, next_attempt_at=None))


# Events claimed at once (and processed in one transaction). Measured on SQLite: 1 → 10 took one worker
# from ~170 to ~370-410 leads/s; 50 gave ~455 but held the write lock long enough (then ~2.3 ms an event) to
# push the acknowledgement of deliveries in the same process (`hub run`) from ~8 to ~190 ms at the median.
# With the batch's new persons set-based and the hot statements on the DBAPI cursor (~0.6 ms an event), one
# worker draining 3,000 events (same machine, alternating runs): 10 → 1,030-1,450 leads/s, holding the lock
# 5-8 ms a batch (p50); 30 → 1,650-1,770/s, 14-15 ms (p90 19-20 ms); 50 → 1,240-1,610/s, 24-37 ms.
# The `hub run` trade-off, measured in one process: the worker (yielding to intake) drains 3,000 events
# beside a door write (one small write transaction) every 10 ms. 10: 240-263 leads/s, door write p50
# 1.4-1.6 ms, p90 5-5.6, p99 9-10 ms; 30: 337-395 leads/s, p50 1.3-1.5 ms, p90 10-12, p99 17-23 ms.
CLAIM_BATCH_SQLITE = 30
# PostgreSQL: concurrent workers' batches lock persons and keys; with 30 events a batch, 3 workers under
# 16 senders (tests/test_identity.py, 1,000 deliveries for 100 people) met a deadlock and retried an
# event in 2 of 9 runs, with 10 in none of 6.
CLAIM_BATCH = 10
# A worker that shares its process with the web server (`hub run`) yields to intake: while deliveries are
# being stored (one stored in the last INTAKE_BUSY_SECONDS), it rests after each batch so that it takes at
# most this share of the time, and a burst is acknowledged at the door's pace while its leads wait a little.
# Measured in `hub run` under 16 senders: without it the worker took the GIL and the write lock from the
# door and acks ran at 180-240 req/s (3.3-3.5 ms of CPU each, the worker's included); see bench/README.md.
# It never stops: a steady stream still gets its leads made, at a quarter of the worker's full pace.
WORKER_SHARE_WHILE_INTAKE_BUSY = 0.25
INTAKE_BUSY_SECONDS = 0.05


class Worker:
    def __init__(self, hub: Hub, name: str | None = None, yield_to_intake: bool = False):
        self.hub = hub
        self.settings = hub.config.worker
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{threading.current_thread().name}"
        self.yield_to_intake = yield_to_intake
        self._stop: threading.Event | None = None

    # -- step 1 -------------------------------------------------------------------------------------
    def claim(self) -> Claim | None:
        claims = self.claim_many(1)
        return claims[0] if claims else None

    def claim_many(self, limit: int) -> list[Claim]:
        """Claim up to ``limit`` due events (or events whose worker died) in one short transaction, with what
        processing needs of them."""
        # One token for the batch: it still tells this claim from any later one of the same events.
        token = str(uuid.uuid4())
        taken = EVENTS.claim(self.hub.processing_engine, utcnow(), limit, self.settings.lease_seconds,
                             token=token, by=self.name[:128], max_attempts=self.settings.max_attempts)
        for row in taken.buried:
            log.error("event=%s dead: its workers died %s times", row.id, row.attempts)
        claims = [Claim(r.id, token, r.attempts, r.source, r.received_at, r.payload) for r in taken.rows]
        # VK senders' names from users.get: a network call, so here, between the claim's transaction and the
        # processing one (never inside a write transaction: on SQLite it would hold the writer lock).
        add_vk_profiles(self.hub, [(claim.source, claim.payload) for claim in claims])
        return claims

    # -- step 2 -------------------------------------------------------------------------------------
    def process(self, claim: Claim) -> str | None:
        """Run the pipeline for a claimed event. Returns the final status, or None if the claim was lost."""
        try:
            with transaction(self.hub.processing_engine) as session:
                outcome = self._process_in(session, claim)
        except ClaimLost:
            return self._claim_lost(claim)
        except Exception as exc:    # noqa: BLE001 — PayloadError rejects; anything else may pass: retry it
            return self._record_failure(claim, self._failure(claim, exc))
        self._log_done([(claim, outcome)])
        self._wake_senders(session)
        return outcome.status

    def process_many(self, claims: list[Claim]) -> list[str | None]:
        """Several claimed events in one transaction: one commit for the lot (on SQLite, one hold of the
        write lock). If any of them fails, that transaction is rolled back and the lot is done again so
        that only the failing event fails: on SQLite in one transaction with a savepoint each, on
        PostgreSQL each in its own transaction (a deadlock, which PostgreSQL may pick this batch for, is
        one such failure)."""
        if len(claims) == 1:
            return [self.process(claims[0])]
        try:
            with transaction(self.hub.processing_engine) as session:
                outcomes = self._process_batch_in(session, claims)
        except Exception as exc:  # noqa: BLE001 — a rejected payload, a lost claim, anything: sort it out
            # A rejected payload is logged as such below; anything else (a deadlock) is worth a line.
            log.log(logging.DEBUG if isinstance(exc, (PayloadError, ClaimLost)) else logging.INFO,
                    "worker %s: batch of %s redone event by event: %s", self.name, len(claims),
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            if self.hub.processing_engine.dialect.name == "sqlite":
                return self._process_in_savepoints(claims)
            return [self.process(claim) for claim in claims]
        self._log_done(list(zip(claims, outcomes, strict=True)))
        self._wake_senders(session)
        return [outcome.status for outcome in outcomes]

    def _process_batch_in(self, session, claims: list[Claim]) -> list[Outcome]:
        """The pipeline for a batch in two halves: first every event's person, lead and touch, then every
        event's owner. Routing steps the rule's round-robin row, which stays locked until commit and which
        every worker needs: taken after all the person locks, it is held for the shorter half, and a
        worker holding it never waits for a person another worker holds (no deadlock across workers on
        PostgreSQL). A later event of the same lead sees what the earlier one's routing did."""
        touches = DeferredWrites()          # nothing in the batch reads them back: one INSERT for all
        defer_history(session)              # nor its history entries
        events = [self._event(claim) for claim in claims]
        # New persons set-based (hub.pipeline.bulk): a person, keys and lead for all of them in four statements.
        halves = [(source, event, attached) for (source, event), attached
                  in zip(events, attach_batch(session, self.hub.config, events, touches), strict=True)]
        leads: dict[int, LeadState] = {}
        outcomes = []
        for source, event, attached in halves:
            outcome = attached.outcome
            if outcome.lead is not None:
                outcome.lead = leads.setdefault(outcome.lead_id, outcome.lead)
            settle(session, self.hub.config, source, event, attached)
            outcomes.append(outcome)
        touches.flush(session)
        flush_history(session)
        self._finish(session, list(zip(claims, outcomes, strict=True)))
        return outcomes

    def _process_in_savepoints(self, claims: list[Claim]) -> list[str | None]:
        """The lot again in one transaction, each event in its own savepoint: one that fails rolls back
        alone. Its failure is recorded in the same transaction — a second transaction here would wait for
        this one's write lock for the whole busy timeout."""
        results: list[tuple[Claim, str | None, Outcome | None]] = []
        try:
            with transaction(self.hub.processing_engine) as session:
                for claim in claims:
                    try:
                        with session.begin_nested():
                            outcome = self._process_in(session, claim)
                        results.append((claim, outcome.status, outcome))
                    except ClaimLost:
                        results.append((claim, None, None))
                    except Exception as exc:  # noqa: BLE001 — PayloadError or anything else: this event only
                        results.append((claim, self._mark_failed(session, claim, self._failure(claim, exc)), None))
        except Exception:  # the batch's commit itself failed: each event on its own
            log.exception("worker %s: a batch of %s failed to commit; processing them one by one", self.name,
                          len(claims))
            return [self.process(claim) for claim in claims]
        self._log_done([(claim, outcome) for claim, _, outcome in results if outcome is not None])
        for claim, status, done in results:
            if done is None and status is None:
                self._claim_lost(claim)
        self._wake_senders(session)
        return [status for _, status, _ in results]

    def _wake_senders(self, session) -> None:
        """Wake this process's notifier and forwarder if the committed work gave them something."""
        outboxes = queued(session)
        if "notification" in outboxes:
            self.hub.notification_queued.set()
        if "forward" in outboxes:
            self.hub.forward_queued.set()

    def _process_in(self, session, claim: Claim) -> Outcome:
        """The pipeline for one claimed event, and its outcome marked — inside the caller's transaction.
        Raises ClaimLost when the event is no longer ours (the caller's transaction must roll back)."""
        source, event = self._event(claim)
        outcome = process_event(session, source, event, self.hub.config)
        self._finish(session, [(claim, outcome)])
        return outcome

    def _event(self, claim: Claim) -> tuple[Source, EventRef]:
        source = self.hub.sources.get(claim.source)
        if source is None:
            raise PayloadError(f"source {claim.source!r} is no longer configured")
        return source, EventRef(claim.event_id, claim.received_at, claim.payload)

    @staticmethod
    def _finish(session, done: list[tuple[Claim, Outcome]]) -> None:
        """Mark the events' outcomes (one statement for a batch); ClaimLost if any is no longer ours."""
        now = utcnow()
        marked = execute(session, FINISH, [{"event_id": claim.event_id, "token": claim.token, "now": now,
                                            "status": outcome.status, "lead_id": outcome.lead_id}
                                           for claim, outcome in done])
        if marked.rowcount != len(done):
            raise ClaimLost([claim.event_id for claim, _ in done])

    @staticmethod
    def _log_done(done: list[tuple[Claim, Outcome]]) -> None:
        """One line for a batch: a log line is a write to stderr, and on a busy worker one per event cost
        ~0.2 ms of ~2 (measured on SQLite)."""
        if done:
            log.info("; ".join(f"event={claim.event_id} {outcome.status} lead={outcome.lead_id} ({outcome.how})"
                               for claim, outcome in done))

    @staticmethod
    def _claim_lost(claim: Claim) -> None:
        log.warning("event=%s: claim lost (lease expired and another worker took it)", claim.event_id)

    def _failure(self, claim: Claim, exc: Exception) -> dict[str, Any]:
        """What an event whose processing raised ``exc`` becomes: rejected for good (a PayloadError), else
        retried after the backoff or, after its last attempt, dead. Call it while handling ``exc``: the
        stored error has its traceback."""
        now = utcnow()
        if isinstance(exc, PayloadError):
            log.info("event=%s rejected: %s", claim.event_id, exc)
            return {**EVENTS.release, "status": EventStatus.REJECTED, "reject_reason": str(exc),
                    "processed_at": now, "next_attempt_at": None}
        error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}"
        retries = Retries(self.settings.max_attempts, self.settings.backoff_base_seconds,
                          self.settings.backoff_max_seconds)
        values, delay = EVENTS.failed(claim.attempt, error, retries, now)
        if delay is None:
            values.update(processed_at=now, next_attempt_at=None)
            log.error("event=%s dead after %s attempts: %s", claim.event_id, claim.attempt, error.splitlines()[0])
        else:
            log.warning("event=%s attempt %s failed, retry in %.1fs: %s", claim.event_id, claim.attempt, delay,
                        error.splitlines()[0])
        return values

    def _record_failure(self, claim: Claim, values: dict[str, Any]) -> str | None:
        with transaction(self.hub.processing_engine) as session:
            return self._mark_failed(session, claim, values)

    @staticmethod
    def _mark_failed(session, claim: Claim, values: dict[str, Any]) -> str | None:
        """Write a failed attempt's outcome in the caller's transaction; None if the claim was lost."""
        ours = EVENTS.write(session, claim.event_id, values, _EVENTS.c.claim_token == claim.token)
        return values["status"] if ours else None

    # -- loops --------------------------------------------------------------------------------------
    def run_once(self) -> str | None | bool:
        """Claim and process one event. Returns False when there was nothing to claim."""
        claim = self.claim()
        if claim is None:
            return False
        return self.process(claim)

    def run_batch(self, limit: int | None = None) -> int:
        """Claim up to ``limit`` events (default: the store's claim batch) and process them; returns how many."""
        if limit is None:
            limit = CLAIM_BATCH_SQLITE if self.hub.processing_engine.dialect.name == "sqlite" else CLAIM_BATCH
        claims = self.claim_many(limit)
        if claims:
            self.process_many(claims)
        return len(claims)

    def run_batch_yielding(self) -> int:
        """run_batch, then, while the door in this process is storing deliveries, a rest long enough to keep
        this worker to WORKER_SHARE_WHILE_INTAKE_BUSY of the time."""
        started = time.monotonic()
        handled = self.run_batch()
        now = time.monotonic()
        if handled and now - self.hub.intake_stored_at < INTAKE_BUSY_SECONDS and self._stop is not None:
            self._stop.wait((now - started) * (1 - WORKER_SHARE_WHILE_INTAKE_BUSY) / WORKER_SHARE_WHILE_INTAKE_BUSY)
        return handled

    def drain(self) -> int:
        """Process everything claimable now; returns how many events were handled."""
        handled = 0
        while batch := self.run_batch():
            handled += batch
        return handled

    def run_forever(self, stop: threading.Event) -> None:
        log.info("worker %s started", self.name)
        poll = self.settings.poll_interval_seconds
        self._stop = stop
        step = self.run_batch_yielding if self.yield_to_intake else self.run_batch
        run_loop(step, stop, self.hub.event_stored, poll, pause_after_error=min(5.0, poll * 4),
                 what=f"worker {self.name}: claim")
        log.info("worker %s stopped", self.name)
