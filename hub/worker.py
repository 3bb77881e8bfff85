"""Workers: claim a stored event, run the pipeline on it in one transaction, record the outcome.

Claiming is two short steps so that a worker killed at any point loses nothing and doubles nothing:
1. claim (its own committed transaction): pick one claimable event — PostgreSQL ``FOR UPDATE SKIP LOCKED``,
   SQLite ``BEGIN IMMEDIATE`` — mark it ``processing`` with a fresh claim token and a lease, count the attempt;
2. process (one transaction): lock the row again, check the claim token is still ours, run the pipeline,
   mark the outcome, commit. Pipeline writes and the outcome commit together or not at all.
A worker that dies between or during these leaves a ``processing`` row whose lease runs out; the next
worker reclaims it. Its attempt was already counted, so an event that kills workers ends ``dead``.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import traceback
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update

from hub.db import transaction
from hub.errors import PayloadError
from hub.models import EventStatus, InboundEvent, utcnow
from hub.pipeline import process_event
from hub.runtime import Hub

log = logging.getLogger("hub.worker")


@dataclass(frozen=True)
class Claim:
    event_id: int
    token: str
    attempt: int


def backoff_seconds(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter: about base·2^(attempt-1), never above cap, spread over ±50%
    so events that failed together do not all retry in the same instant."""
    delay = min(cap, base * (2 ** max(0, attempt - 1)))
    return delay * random.uniform(0.5, 1.5) if delay else 0.0


# Events claimed at once (and, on SQLite, processed in one transaction). Measured on SQLite: 1 → 10 took
# one worker from ~170 to ~370-410 leads/s; 50 gave ~455 but held the write lock long enough to push the
# acknowledgement of deliveries in the same process (`hub run`) from ~8 to ~190 ms at the median.
CLAIM_BATCH = 10


class Worker:
    def __init__(self, hub: Hub, name: str | None = None):
        self.hub = hub
        self.settings = hub.config.worker
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{threading.current_thread().name}"

    # -- step 1 -------------------------------------------------------------------------------------
    def claim(self) -> Claim | None:
        claims = self.claim_many(1)
        return claims[0] if claims else None

    def claim_many(self, limit: int) -> list[Claim]:
        """Claim up to ``limit`` due events in one short transaction (each is then processed in its own):
        one claim transaction for several events instead of one each."""
        now = utcnow()
        # Two queries, each answered from the (status, next_attempt_at) index: due events first, then
        # events whose worker died (lease expired). One query with OR would scan the whole table.
        due = (InboundEvent.status == EventStatus.PENDING, InboundEvent.next_attempt_at <= now)
        orphaned = (InboundEvent.status == EventStatus.PROCESSING, InboundEvent.claimed_until < now)
        claims: list[Claim] = []
        with transaction(self.hub.processing_engine) as session:
            while len(claims) < limit:
                rows = []
                for condition, order in ((due, InboundEvent.next_attempt_at), (orphaned, InboundEvent.claimed_until)):
                    rows = session.execute(
                        select(InboundEvent.id, InboundEvent.status, InboundEvent.attempts)
                        .where(*condition).order_by(order, InboundEvent.id).limit(limit - len(claims))
                        .with_for_update(skip_locked=True)).all()
                    if rows:
                        break
                if not rows:
                    break
                taken = []
                for row in rows:
                    if row.status == EventStatus.PROCESSING and row.attempts >= self.settings.max_attempts:
                        # Its worker died on it again and again: stop feeding it to workers.
                        session.execute(update(InboundEvent).where(InboundEvent.id == row.id).values(
                            status=EventStatus.DEAD, claim_token=None, claimed_until=None, processed_at=now,
                            last_error=f"worker stopped while processing it, {row.attempts} times (lease expired)"))
                        log.error("event=%s dead: its workers died %s times", row.id, row.attempts)
                        continue
                    taken.append(row)
                if taken:
                    # One token for the batch: it still tells this claim from any later one of the same events.
                    token = str(uuid.uuid4())
                    session.execute(update(InboundEvent).where(InboundEvent.id.in_([r.id for r in taken])).values(
                        status=EventStatus.PROCESSING, claim_token=token, claimed_by=self.name[:128],
                        claimed_until=now + timedelta(seconds=self.settings.lease_seconds),
                        attempts=InboundEvent.attempts + 1))
                    claims.extend(Claim(r.id, token, r.attempts + 1) for r in taken)
        return claims

    # -- step 2 -------------------------------------------------------------------------------------
    def process(self, claim: Claim) -> str | None:
        """Run the pipeline for a claimed event. Returns the final status, or None if the claim was lost."""
        try:
            with transaction(self.hub.processing_engine) as session:
                status = self._process_in(session, claim)
            self._wake_senders()
            return status
        except PayloadError as exc:
            return self._record_failure(claim, *self._failure(claim, exc))
        except Exception as exc:    # noqa: BLE001 — anything else may pass; retry it, never crash the worker
            return self._record_failure(claim, *self._failure(claim, exc))

    def process_many(self, claims: list[Claim]) -> list[str | None]:
        """On SQLite, process several claimed events in one transaction, each in its own savepoint: one
        commit (one write-lock hold) for the lot, and an event that fails rolls back only itself. Its
        failure is recorded in the same transaction — a second transaction here would wait for this
        one's lock for the whole busy timeout (likely the 30-second waits an earlier attempt showed)."""
        if len(claims) == 1 or self.hub.processing_engine.dialect.name != "sqlite":
            # On PostgreSQL workers run side by side on row locks: events of one batch locking persons and
            # leads in a different order than another worker's batch deadlock (seen in
            # test_1000_concurrent_deliveries_for_100_people). SQLite has one writer at a time: no deadlock,
            # and one commit for the lot saves the most there.
            return [self.process(claim) for claim in claims]
        statuses: list[str | None] = []
        try:
            with transaction(self.hub.processing_engine) as session:
                for claim in claims:
                    try:
                        with session.begin_nested():
                            statuses.append(self._process_in(session, claim))
                    except Exception as exc:  # noqa: BLE001 — PayloadError or anything else: this event only
                        status, values = self._failure_values(claim, *self._failure(claim, exc))
                        done = session.execute(update(InboundEvent).where(
                            InboundEvent.id == claim.event_id, InboundEvent.claim_token == claim.token).values(**values))
                        statuses.append(status if done.rowcount else None)
        except Exception:  # noqa: BLE001 — the batch's commit itself failed: each event on its own
            log.exception("worker %s: a batch of %s failed to commit; processing them one by one", self.name,
                          len(claims))
            return [self.process(claim) for claim in claims]
        self._wake_senders()
        return statuses

    def _wake_senders(self) -> None:
        self.hub.notification_queued.set()
        self.hub.forward_queued.set()

    def _process_in(self, session, claim: Claim) -> str | None:
        event = session.execute(
            select(InboundEvent).where(InboundEvent.id == claim.event_id,
                                       InboundEvent.claim_token == claim.token,
                                       InboundEvent.status == EventStatus.PROCESSING)
            .with_for_update()).scalar_one_or_none()
        if event is None:
            log.warning("event=%s: claim lost (lease expired and another worker took it)", claim.event_id)
            return None
        source = self.hub.sources.get(event.source)
        if source is None:
            raise PayloadError(f"source {event.source!r} is no longer configured")
        outcome = process_event(session, source, event, self.hub.config)
        event.status, event.lead_id = outcome.status, outcome.lead_id
        event.processed_at = utcnow()
        event.claim_token = event.claimed_until = event.next_attempt_at = None
        log.info("event=%s %s lead=%s (%s)", event.id, outcome.status, outcome.lead_id, outcome.how)
        return outcome.status

    def _failure(self, claim: Claim, exc: Exception) -> tuple[str, str | None, str | None]:
        """(status, reject reason, error) for an event whose processing raised ``exc``."""
        if isinstance(exc, PayloadError):
            return EventStatus.REJECTED, str(exc), None
        error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}"
        if claim.attempt >= self.settings.max_attempts:
            return EventStatus.DEAD, None, error
        return EventStatus.PENDING, None, error

    def _failure_values(self, claim: Claim, status: str, reason: str | None = None,
                        error: str | None = None) -> tuple[str, dict[str, object]]:
        now = utcnow()
        values: dict[str, object] = dict(status=status, claim_token=None, claimed_until=None)
        if status == EventStatus.REJECTED:
            values.update(reject_reason=reason, processed_at=now, next_attempt_at=None)
            log.info("event=%s rejected: %s", claim.event_id, reason)
        elif status == EventStatus.DEAD:
            values.update(last_error=error, processed_at=now, next_attempt_at=None)
            log.error("event=%s dead after %s attempts: %s", claim.event_id, claim.attempt, error.splitlines()[0])
        else:
            delay = backoff_seconds(claim.attempt, self.settings.backoff_base_seconds,
                                    self.settings.backoff_max_seconds)
            values.update(last_error=error, next_attempt_at=now + timedelta(seconds=delay))
            log.warning("event=%s attempt %s failed, retry in %.1fs: %s", claim.event_id, claim.attempt, delay,
                        error.splitlines()[0])
        return status, values

    def _record_failure(self, claim: Claim, status: str, reason: str | None = None,
                        error: str | None = None) -> str | None:
        status, values = self._failure_values(claim, status, reason, error)
        with transaction(self.hub.processing_engine) as session:
            done = session.execute(update(InboundEvent).where(
                InboundEvent.id == claim.event_id, InboundEvent.claim_token == claim.token).values(**values))
            return status if done.rowcount else None

    # -- loops --------------------------------------------------------------------------------------
    def run_once(self) -> str | None | bool:
        """Claim and process one event. Returns False when there was nothing to claim."""
        claim = self.claim()
        if claim is None:
            return False
        return self.process(claim)

    def run_batch(self, limit: int = CLAIM_BATCH) -> int:
        """Claim up to ``limit`` events at once and process them one by one; returns how many."""
        claims = self.claim_many(limit)
        if claims:
            self.process_many(claims)
        return len(claims)

    def drain(self) -> int:
        """Process everything claimable now; returns how many events were handled."""
        handled = 0
        while batch := self.run_batch():
            handled += batch
        return handled

    def run_forever(self, stop: threading.Event) -> None:
        log.info("worker %s started", self.name)
        while not stop.is_set():
            try:
                if self.run_batch():
                    continue
            except Exception:    # noqa: BLE001 — the database may be away for a moment; keep going
                log.exception("worker %s: claim failed; retrying", self.name)
                stop.wait(min(5.0, self.settings.poll_interval_seconds * 4))
                continue
            self.hub.event_stored.wait(self.settings.poll_interval_seconds)
            self.hub.event_stored.clear()
        log.info("worker %s stopped", self.name)
