"""Intake: verify → store the raw event idempotently → commit → answer. Nothing else happens here, so
the provider gets its answer fast and an acknowledged delivery is never lost. (A ringing call is routed
before the answer, by hub/pipeline/calls.py, around the store.)

Every authentic delivery is stored, good or bad: a bad one as ``rejected`` with its reason, so nothing a
provider sent us disappears without a trace (`hub events list --status rejected`). A body the connector
cannot read — whatever it raises — is such a bad one, answered 4xx: a 503 (retry) means only that the
store itself failed, since a provider retries a 503 for ever and the same bytes fail the same way.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, tuple_
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from hub.connector import InboundRequest, RawEvent, WebhookConnector, WebhookReply, WebhookResult, check_payload
from hub.errors import PayloadError
from hub.i18n import Reason
from hub.intake.group import group_writer
from hub.mapping import apply_mapping
from hub.pipeline.calls import route_live_call
from hub.runtime import Hub, Source
from hub.store.db import InsertIgnoring, execute, transaction
from hub.store.models import EventStatus, InboundEvent, utcnow

log = logging.getLogger("hub.intake.webhook")

# Request headers worth keeping with the raw event (for debugging and signature re-checks). Never
# authorisation, cookies or our own token header.
KEPT_HEADERS = ("content-type", "user-agent", "x-forwarded-for", "x-real-ip", "x-retry-counter", "referer",
                "signature")
# Without an id of its own, a delivery is identified by its content: the same fields again within this
# window are taken for a retry. A person who really sends the same form twice reaches the same lead anyway.
CONTENT_ID_WINDOW_SECONDS = 24 * 3600


class AcceptedLog:
    """One INFO line per source and interval for the deliveries accepted, with their count and the range of
    event ids, instead of a line each: a log line cost ~20-50 µs of the request's thread (a stderr write
    under the handler's lock), a tenth of what a whole delivery may cost now. Rejected deliveries and
    duplicates are still logged one by one: they are what someone reads the log for."""

    def __init__(self, interval_seconds: float = 10.0):
        self.interval = interval_seconds
        self._lock = threading.Lock()
        self._since = time.monotonic()
        self._counts: dict[str, list[int]] = {}         # source -> [count, first id, last id]

    def accepted(self, source: str, event_id: int) -> None:
        now = time.monotonic()
        with self._lock:
            seen = self._counts.get(source)
            if seen is None:
                self._counts[source] = [1, event_id, event_id]
            else:
                seen[0] += 1
                seen[1], seen[2] = min(seen[1], event_id), max(seen[2], event_id)
            if now - self._since < self.interval:
                return
            counts, self._counts, since, self._since = self._counts, {}, self._since, now
        for name, (n, first, last) in counts.items():
            log.info("source=%s: %d deliveries accepted in the last %.0f s (events %d-%d)",
                     name, n, now - since, first, last)


accepted_log = AcceptedLog()


@dataclass
class StoredEvent:
    id: int
    duplicate: bool
    status: str


def _content_id(payload: dict[str, Any], received_at: datetime) -> str:
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str).encode()
    window = int(received_at.timestamp()) // CONTENT_ID_WINDOW_SECONDS
    return f"sha256:{hashlib.sha256(canonical).hexdigest()[:40]}:{window}"


def _json_reply(http_status: int, **body: Any) -> WebhookReply:
    return WebhookReply(status=http_status, body=json.dumps(body, ensure_ascii=False),
                        content_type="application/json; charset=utf-8")


# Prebuilt: the row a delivery's (source, external id) already has, for answering a duplicate.
_EXISTING = select(InboundEvent.id, InboundEvent.status).where(
    InboundEvent.source == bindparam("source"), InboundEvent.external_id == bindparam("external_id"))


_EVENTS = InboundEvent.__table__
_INSERT_EVENT = InsertIgnoring(_EVENTS, (
    "source", "external_id", "received_at", "method", "content_type", "headers", "body", "payload", "status",
    "reject_reason", "attempts", "next_attempt_at"), ("source", "external_id"))


# PostgreSQL: a batch's rows in one INSERT (SQLAlchemy's insertmanyvalues makes the executemany one
# multi-row statement), the ids back by key. A round trip a row had been ~70% of the group writer's time
# under 64 senders (py-spy: waiting on the socket and SQLAlchemy's per-statement work).
_INSERT_EVENTS_PG = (postgresql.insert(_EVENTS).on_conflict_do_nothing(index_elements=["source", "external_id"])
                     .returning(_EVENTS.c.id, _EVENTS.c.source, _EVENTS.c.external_id))
_EVENT_COLUMNS = ("source", "external_id", "received_at", "method", "content_type", "headers", "body", "payload",
                  "status", "reject_reason", "attempts", "next_attempt_at")


def insert_deliveries(session: Session, deliveries: list[list[dict[str, Any]]]) -> list[list[StoredEvent]]:
    """The group writer's ``write_many``: the event rows of several deliveries, each delivery's outcome."""
    if session.get_bind().dialect.name != "postgresql":
        # SQLite: a row on the DBAPI cursor costs ~25 µs (InsertIgnoring), and there is no round trip to save.
        return [_insert(session, values) for values in deliveries]
    rows = [{c: row.get(c) for c in _EVENT_COLUMNS} for values in deliveries for row in values]
    new = {(r.source, r.external_id): r.id for r in execute(session, _INSERT_EVENTS_PG, rows)} if rows else {}
    taken: dict[tuple[str, str], str] = {}    # a key twice in the batch: the first row is new, the next its duplicate
    missing = {(r["source"], r["external_id"]) for r in rows} - new.keys()
    old = {}
    if missing:
        found = execute(session, select(_EVENTS.c.id, _EVENTS.c.status, _EVENTS.c.source, _EVENTS.c.external_id)
                        .where(tuple_(_EVENTS.c.source, _EVENTS.c.external_id).in_(sorted(missing))))
        old = {(r.source, r.external_id): StoredEvent(r.id, True, r.status) for r in found}
    outcomes = []
    for values in deliveries:
        stored = []
        for row in values:
            key = (row["source"], row["external_id"])
            if key in new and key not in taken:
                taken[key] = row["status"]
                stored.append(StoredEvent(new[key], False, row["status"]))
            elif key in new:
                stored.append(StoredEvent(new[key], True, taken[key]))
            else:
                stored.append(old[key])
        outcomes.append(stored)
    return outcomes


def _insert(session: Session, values: list[dict[str, Any]]) -> list[StoredEvent]:
    stored: list[StoredEvent] = []
    for row in values:
        new_id = _INSERT_EVENT(session, row)
        if new_id is not None:
            stored.append(StoredEvent(new_id, False, row["status"]))
        else:
            old = execute(session, _EXISTING, {"source": row["source"], "external_id": row["external_id"]}).one()
            stored.append(StoredEvent(old.id, True, old.status))
    return stored


def event_values(source: Source, request: InboundRequest, received_at: datetime,
                 rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The inbound_event rows of a delivery: what ``prepare_event`` decided, plus what every row keeps."""
    headers = {k: v for k, v in request.headers.items() if k in KEPT_HEADERS}
    common = dict(source=source.name, received_at=received_at, method=request.method,
                  content_type=request.headers.get("content-type"), headers=headers, body=request.body,
                  attempts=0, next_attempt_at=received_at)
    return [{**common, **row} for row in rows]


def _store(hub: Hub, values: list[dict[str, Any]],
           also: Callable[[Session], None] | None = None) -> list[StoredEvent]:
    """Insert each row unless (source, external_id) exists, all in one transaction, committed before this
    returns; returns what is stored. ``also(session)`` runs in the same transaction (a call alert for a new,
    ringing call). Without ``also``, the transaction is the group writer's, shared with the deliveries
    that came in meanwhile (hub/intake/group.py)."""
    writer = group_writer(hub.engine) if also is None else None
    if writer is not None:
        stored: list[StoredEvent] = writer.submit(insert_deliveries, values).result()
    else:
        with transaction(hub.engine) as session:
            stored = _insert(session, values)
            if also is not None and any(not s.duplicate for s in stored):
                also(session)
    after_store(hub, stored)
    return stored


def store_later(hub: Hub, values: list[dict[str, Any]]) -> Future[list[StoredEvent]]:
    """The same store for the asynchronous door (hub/web/rsgi.py): the group writer's future, done once the
    transaction holding the rows has committed, awaited without a thread. Call ``after_store`` when done."""
    writer = group_writer(hub.engine)
    if writer is not None:
        return writer.submit(insert_deliveries, values)
    done: Future[list[StoredEvent]] = Future()      # an in-memory store (tests): no writer thread can share it
    with transaction(hub.engine) as session:
        done.set_result(_insert(session, values))
    return done


def after_store(hub: Hub, stored: list[StoredEvent]) -> None:
    """Tell this process's workers: the intake is busy (`hub run` yields to it), and there is work."""
    hub.intake_stored_at = time.monotonic()
    if any(s.status == EventStatus.PENDING and not s.duplicate for s in stored):
        hub.event_stored.set()


def _storable(reason: str) -> str:
    # A reason may quote the delivery: a NUL or an unpaired surrogate, which no text column (nor a UTF-8
    # answer) takes, is written as its escape.
    return reason.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode()


def _rejected_row(body: bytes, reason: str) -> dict[str, Any]:
    # Keyed by the body's hash, so a provider re-sending the same bad body stores it once.
    return dict(external_id=f"rejected:{hashlib.sha256(body).hexdigest()[:40]}", payload=None,
                status=EventStatus.REJECTED, reject_reason=reason)


@contextmanager
def _unforeseen_failures_rejected(source: Source) -> Iterator[None]:
    """Whatever the connector raises inside is a PayloadError: its own, or, for a failure it did not foresee
    (a bug on input nobody imagined), one naming the exception, its traceback logged for whoever fixes it."""
    try:
        yield
    except PayloadError:
        raise
    except Exception as exc:
        log.exception("source=%s: connector %s failed on a delivery", source.name, source.connector.name)
        raise PayloadError(str(Reason("unreadable", error=f"{type(exc).__name__}: {exc}"))[:500],
                           status=400) from exc


def read_delivery(source: Source, request: InboundRequest, received_at: datetime) -> WebhookResult:
    """The connector's ``receive``, raising only PayloadError: its own, a payload the store could not keep
    (``check_payload``), or any other failure said as a 400."""
    with _unforeseen_failures_rejected(source):
        result = source.connector_as(WebhookConnector).receive(request, received_at)
        for event in result.events:
            check_payload(event.payload)
    return result


def prepare_event(source: Source, event: RawEvent, received_at: datetime) -> dict[str, Any]:
    """Check the event can become a lead (the mapping is pure and cheap) and give it its external id."""
    if event.payload.get("_annotates"):            # adds to another event's touch: nothing to map
        external_id = event.external_id or _content_id(event.payload, received_at)
        return dict(external_id=external_id[:255], payload=event.payload, status=EventStatus.PENDING)
    try:
        with _unforeseen_failures_rejected(source):
            draft = apply_mapping(source.mapping, source.connector.fields(event.payload), contacts_only=True)
    except PayloadError as exc:
        return dict(external_id=event.external_id or _content_id(event.payload, received_at),
                    payload=event.payload, status=EventStatus.REJECTED, reject_reason=_storable(str(exc)))
    external_id = event.external_id or (f"id:{draft.external_id}" if draft.external_id
                                        else _content_id(event.payload, received_at))
    return dict(external_id=external_id[:255], payload=event.payload, status=EventStatus.PENDING)


# A delivery's intake as steps: it yields the event rows to store and is sent back what was stored, then
# returns the answer. The caller stores: a web thread through the group writer, waiting (``handle_webhook``),
# the asynchronous door awaiting the writer's future on its event loop (hub/web/rsgi.py), with no thread
# held per request.
IntakeSteps = Generator[list[dict[str, Any]], list[StoredEvent], WebhookReply]


def _verify_and_read(source: Source, request: InboundRequest, received_at: datetime
                     ) -> Generator[list[dict[str, Any]], list[StoredEvent], WebhookReply | WebhookResult]:
    """The connector's verify and receive: the events read, or the answer to a delivery they refused (a body
    too malformed to check is not stored; an authentic one the connector cannot read is stored as rejected).
    Raises SignatureError (not stored)."""
    try:
        source.connector_as(WebhookConnector).verify(request)
    except PayloadError as exc:
        # Too malformed to check its signature: refused, and not stored, since nothing vouches for it.
        return _json_reply(exc.status, status="rejected", error="bad_payload", message=str(exc))
    try:
        return read_delivery(source, request, received_at)
    except PayloadError as exc:         # stored as rejected: only the store failing answers 503
        reason = _storable(str(exc))
        [event] = yield event_values(source, request, received_at, [_rejected_row(request.body, reason)])
        log.info("source=%s event=%s rejected at intake: %s", source.name, event.id, reason)
        return _json_reply(exc.status, status="rejected", error="bad_payload", message=reason, event_id=event.id)


def _log_stored(source: Source, rows: list[dict[str, Any]], stored: list[StoredEvent]) -> None:
    for row, event in zip(rows, stored, strict=True):
        if not event.duplicate and row["status"] == EventStatus.PENDING:
            accepted_log.accepted(source.name, event.id)
        else:
            log.info("source=%s event=%s %s%s", source.name, event.id, "duplicate of stored event"
                     if event.duplicate else row["status"],
                     f": {row.get('reject_reason')}" if row.get("reject_reason") else "")


def _answer(result: WebhookResult, rows: list[dict[str, Any]], stored: list[StoredEvent]) -> WebhookReply:
    if result.reply is not None:
        return result.reply
    if stored and all(s.status == EventStatus.REJECTED for s in stored):
        reasons = "; ".join(r["reject_reason"] for r in rows if r.get("reject_reason")) or "rejected earlier"
        return _json_reply(422, status="rejected", error="bad_payload", message=reasons,
                           event_ids=[s.id for s in stored])
    return _json_reply(200, status="duplicate" if stored and all(s.duplicate for s in stored) else "accepted",
                       event_ids=[s.id for s in stored])


def intake_steps(source: Source, request: InboundRequest) -> IntakeSteps:
    """verify → read → prepare → (store) → the answer, for a source that takes no live calls."""
    received_at = utcnow()
    read = yield from _verify_and_read(source, request, received_at)
    if isinstance(read, WebhookReply):
        return read
    rows = [prepare_event(source, e, received_at) for e in read.events]
    stored = (yield event_values(source, request, received_at, rows)) if rows else []
    _log_stored(source, rows, stored)
    return _answer(read, rows, stored)


def takes_live_calls(source: Source) -> bool:
    """A PBX connector that reports ringing calls: its deliveries are routed before the answer, with the
    store and a decision read from it in one synchronous step (hub/pipeline/calls.py)."""
    connector = source.connector
    return isinstance(connector, WebhookConnector) and type(connector).live_call is not WebhookConnector.live_call


def run_steps(steps: Generator[list[dict[str, Any]], list[StoredEvent], Any],
              store: Callable[[list[dict[str, Any]]], list[StoredEvent]]) -> Any:
    """Drive intake steps to their answer, storing what they ask to with ``store``."""
    try:
        values = next(steps)
        while True:
            values = steps.send(store(values))
    except StopIteration as finished:
        return finished.value


def handle_webhook(hub: Hub, source: Source, request: InboundRequest) -> WebhookReply:
    """Everything between a provider's HTTP request and our answer. Raises SignatureError (not stored)."""
    def store(values: list[dict[str, Any]]) -> list[StoredEvent]:
        return _store(hub, values)

    if not takes_live_calls(source):
        return run_steps(intake_steps(source, request), store)
    received_at = utcnow()
    read = run_steps(_verify_and_read(source, request, received_at), store)
    if isinstance(read, WebhookReply):
        return read

    def store_routed(alert: Callable[[Session], None] | None) -> tuple[list[dict[str, Any]], list[StoredEvent]]:
        rows = [prepare_event(source, e, received_at) for e in read.events]
        stored = _store(hub, event_values(source, request, received_at, rows), alert) if rows else []
        _log_stored(source, rows, stored)
        return rows, stored

    (rows, stored), put_through = route_live_call(hub, source, request, read.events, received_at, store_routed)
    return put_through if put_through is not None else _answer(read, rows, stored)
