"""Forwarding routed leads to sinks (Bitrix24, amoCRM, signed webhooks) without ever slowing intake.

1. Queue, in the transaction that changed the lead: one ``sink_delivery`` row per sink and lead, at most
   one pending (a later change rides along: the lead is read when it is sent, as it is then).
2. Send, after commit, from a dispatcher thread (``hub run``, ``hub worker``): claim with a lease (never
   two deliveries of one lead to one sink at a time, so an update never races its create), take a token
   from the sink's bucket — kept in the database, so every process shares the provider's limit — make
   the request with no transaction open, and let the sink read the answer.
3. Delivered: keep the lead's id in the sink (``sink_link``): every later delivery updates it. What a
   sink must post only once (a CRM's notes) it remembers in the same row as each answer comes
   (``Step.remember``), so a retried delivery resumes after the last note the sink took. A
   transient refusal (429, 5xx, QUERY_LIMIT_EXCEEDED, a timeout): retried with backoff, honouring
   Retry-After. A final refusal, or ``max_attempts``: dead, listed by ``hub sinks status``, replayed by
   ``hub sinks replay``. A retried create first asks the sink whether the lead is already there (the
   answer to the first try may have been lost), so a lead is created once per sink.
The claim, the lease and the backoff are the leased queue's (hub.outbox.queue).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

import requests
from sqlalchemy import and_, bindparam, exists, func, select, text, update
from sqlalchemy.orm import Session, selectinload

from hub.config import Config, SinkConfig
from hub.outbox.queue import LeasedQueue, Retries, run_loop
from hub.runtime import Hub
from hub.sink import Delivered, Refused, SendAgain, Sink, SinkRequest, SinkResponse, Step, available_sinks
from hub.store.db import dialect_insert_for, insert_ignoring_conflicts, mark_queued, transaction
from hub.store.models import DeliveryStatus, Lead, Person, SinkDelivery, SinkLink, SinkState, utcnow
from hub.store.serialize import lead_for_sinks

log = logging.getLogger("hub.outbox.forwarding")
LEASE_SECONDS = 120
# lookup, create, refresh a token, create again; or a look for a post whose answer was lost, then the update;
# then the notes (Bitrix24 one request each, at most 20 a delivery, asking for another delivery for the rest),
# the refusal's comment, and a token refresh on the way.
MAX_STEPS = 32
MAX_WAIT_FOR_TOKEN = 5.0          # longer than this: put the delivery back, let others run
# A failed delivery is tried again after about 5 s, then twice as long each time, at most 10 minutes apart
# (with [[sinks]] max_attempts = 50, about 7 hours of outage).
BACKOFF_BASE_SECONDS, BACKOFF_MAX_SECONDS = 5, 600


# -- queueing (inside the lead's transaction) -------------------------------------------------------------

def queue_forwarding(session: Session, config: Config, lead_id: int, source: str | None = None) -> int:
    """Queue the lead for every enabled sink that takes its source. Returns how many rows were added."""
    sinks = [s for s in config.sinks if s.enabled]
    if not sinks:
        return 0
    if any(s.sources for s in sinks) and source is None:
        source = session.scalar(select(Lead.source).where(Lead.id == lead_id))
    insert = _queue_stmt(session.get_bind().dialect.name)
    now = utcnow()
    added = 0
    for sc in sinks:
        if sc.sources and source not in sc.sources:
            continue
        new_id = session.connection().execute(insert, dict(
            sink=sc.name, lead_id=lead_id, status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=now,
            created_at=now)).scalar_one_or_none()
        added += new_id is not None
    if added:
        mark_queued(session, "forward")
    return added


@cache
def _queue_stmt(dialect: str):
    # At most one pending delivery per sink and lead: a lead that changes again before it is sent is sent once.
    return dialect_insert_for(dialect)(SinkDelivery.__table__).on_conflict_do_nothing(
        index_elements=["sink", "lead_id"], index_where=text("status = 'pending'")).returning(SinkDelivery.id)


# -- the shared rate limit --------------------------------------------------------------------------------

def take_token(session: Session, sink: str, rate: float, burst: int, now: float) -> float:
    """A token bucket in the sink's state row, locked for the check: 0 when a request may go now, else
    the seconds until one may. Every process on the database draws from the same bucket."""
    insert_ignoring_conflicts(session, SinkState.__table__, ["sink"],
                              {"sink": sink, "tokens": float(burst), "counted_at": now, "data": {}})
    state = session.execute(select(SinkState).where(SinkState.sink == sink).with_for_update()).scalar_one()
    available = min(float(burst), state.tokens + max(0.0, now - state.counted_at) * rate)
    if available >= 1:
        state.tokens, state.counted_at = available - 1, now
        return 0.0
    return (1 - available) / rate


# -- sending ----------------------------------------------------------------------------------------------

_DELIVERIES = SinkDelivery.__table__
_OTHER = _DELIVERIES.alias("other")
_SAME_SINK_AND_LEAD = and_(_OTHER.c.sink == _DELIVERIES.c.sink, _OTHER.c.lead_id == _DELIVERIES.c.lead_id)
# A claimed delivery is ``sending`` until its lease (its next_attempt_at) runs out: then it is due again.
DELIVERIES = LeasedQueue(
    _DELIVERIES, waiting=DeliveryStatus.PENDING, dead=DeliveryStatus.DEAD,
    due=(_DELIVERIES.c.status.in_([DeliveryStatus.PENDING, DeliveryStatus.SENDING]),
         _DELIVERIES.c.next_attempt_at <= bindparam("now")),
    # To a configured sink, and one delivery of a lead to a sink at a time, so that an update never races
    # its create: none while another is in flight, and of two due, the older first.
    ready=(_DELIVERIES.c.sink.in_(bindparam("sinks", expanding=True)),
           ~exists().where(_SAME_SINK_AND_LEAD, _OTHER.c.id != _DELIVERIES.c.id,
                           _OTHER.c.status == DeliveryStatus.SENDING, _OTHER.c.next_attempt_at > bindparam("now")),
           ~exists().where(_SAME_SINK_AND_LEAD, _OTHER.c.id < _DELIVERIES.c.id,
                           _OTHER.c.status.in_([DeliveryStatus.PENDING, DeliveryStatus.SENDING]),
                           _OTHER.c.next_attempt_at <= bindparam("now"))),
    order_by=(_DELIVERIES.c.id,), lease=_DELIVERIES.c.next_attempt_at, claimed={"status": DeliveryStatus.SENDING},
    returning=(_DELIVERIES.c.id, _DELIVERIES.c.sink, _DELIVERIES.c.lead_id, _DELIVERIES.c.attempts),
    peek=True)


@dataclass
class Claimed:
    id: int
    sink: str
    lead_id: int
    attempts: int


@dataclass
class ConfiguredSink:
    config: SinkConfig
    sink: Sink
    rate: float
    burst: int


def configured_sinks(config: Config) -> dict[str, ConfiguredSink]:
    out = {}
    classes = available_sinks()
    for sc in config.sinks:
        cls = classes[sc.type]                         # parse_config has checked the type
        sink = cls(sc.name, cls.config_schema.model_validate(sc.sink_settings()))
        out[sc.name] = ConfiguredSink(sc, sink, sc.rate_per_second or cls.rate_per_second, sc.burst or cls.burst)
    return out


class Forwarder:
    def __init__(self, hub: Hub, clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                 now: Callable[[], datetime] = utcnow):
        """``clock`` (epoch seconds) meters the rate limit, ``now`` schedules retries: tests pass their own."""
        self.hub = hub
        self.sinks = configured_sinks(hub.config)
        self.http = requests.Session()
        self.clock, self.sleep, self.now = clock, sleep, now

    def _scrub(self, text: str, sink: ConfiguredSink) -> str:
        for secret in sink.sink.secrets():
            if secret:
                text = text.replace(secret, "***")
        return text[:2000]

    def _claim(self, now: datetime, limit: int) -> list[Claimed]:
        taken = DELIVERIES.claim(self.hub.engine, now, limit, LEASE_SECONDS, sinks=list(self.sinks))
        return [Claimed(d.id, d.sink, d.lead_id, d.attempts) for d in taken.rows]

    def _lead(self, lead_id: int, sink: str) -> tuple[dict[str, Any] | None, SinkLink, dict[str, Any]]:
        """The lead as sinks see it, its link to the sink (a blank one before the first delivery), and the
        sink's shared state."""
        with transaction(self.hub.engine, read_only=True) as s:
            lead = s.scalars(select(Lead).where(Lead.id == lead_id).options(
                selectinload(Lead.person).selectinload(Person.keys), selectinload(Lead.touches),
                selectinload(Lead.history), selectinload(Lead.tasks))).one_or_none()
            link = s.get(SinkLink, (sink, lead_id))
            state = s.get(SinkState, sink)
            return (lead_for_sinks(lead, self.hub.config) if lead is not None else None,
                    SinkLink(sink=sink, lead_id=lead_id, remote_id=link.remote_id if link else None,
                             remembered=dict(link.remembered or {}) if link else {}),
                    dict(state.data) if state else {})

    def _keep(self, link: SinkLink, remote_id: str | None, remember: dict[str, Any] | None) -> None:
        """Store what an answer established (the lead's id in the sink, what it must not post again) at
        once: a failure later in the conversation, or a crash, loses none of it."""
        link.remote_id = remote_id or link.remote_id
        link.remembered = {**(link.remembered or {}), **(remember or {})}
        with transaction(self.hub.engine) as s:
            insert_ignoring_conflicts(s, SinkLink.__table__, ["sink", "lead_id"], dict(
                sink=link.sink, lead_id=link.lead_id, remote_id=link.remote_id, created_at=utcnow()))
            s.execute(update(SinkLink).where(SinkLink.sink == link.sink, SinkLink.lead_id == link.lead_id)
                      .values(remote_id=link.remote_id, remembered=link.remembered))

    def _request(self, cs: ConfiguredSink, request: SinkRequest) -> SinkResponse:
        while True:
            with transaction(self.hub.engine) as s:
                wait = take_token(s, cs.config.name, cs.rate, cs.burst, self.clock())
            if not wait:
                break
            if wait > MAX_WAIT_FOR_TOKEN:
                raise SendAgain("rate limit: waiting for the sink's quota", retry_after=wait)
            self.sleep(wait)
        try:
            resp = self.http.request(request.method, request.url, json=request.json, data=request.data,
                                     headers=request.headers, timeout=cs.config.timeout_seconds)
        except requests.RequestException as exc:
            raise SendAgain(f"{type(exc).__name__}: the sink did not answer") from None
        return SinkResponse(resp.status_code, dict(resp.headers), resp.content)

    def send(self, d: Claimed) -> str:
        """Deliver one claimed row; returns sent / retried / dead."""
        cs = self.sinks[d.sink]
        lead, link, state = self._lead(d.lead_id, d.sink)
        before = dict(state)
        outcome = "sent"
        values: dict[str, Any] = {}
        try:
            if lead is None:
                raise Refused(f"no lead {d.lead_id}")
            step: Step = cs.sink.start_with_memory(lead, link.remote_id, dict(link.remembered or {}), d.id,
                                                   d.attempts > 1, state)
            for _ in range(MAX_STEPS):
                response = self._request(cs, step.request)
                step = step.then(response, state)
                if step.remote_id or step.remember:
                    self._keep(link, step.remote_id, step.remember)
            raise SendAgain("the sink's conversation did not end")
        except Delivered as done:
            self._keep(link, done.remote_id, done.remember)
            with transaction(self.hub.engine) as s:
                DELIVERIES.write(s, d.id, {"status": DeliveryStatus.SENT, "sent_at": utcnow(), "last_error": None})
                if done.again:                 # more than one delivery takes: the rest in the next one
                    s.connection().execute(_queue_stmt(s.get_bind().dialect.name), dict(
                        sink=d.sink, lead_id=d.lead_id, status=DeliveryStatus.PENDING, attempts=0,
                        next_attempt_at=utcnow(), created_at=utcnow()))
                    mark_queued(s, "forward")
            log.info("sink=%s lead=%s delivered (remote id %s)", d.sink, d.lead_id, done.remote_id)
        except SendAgain as exc:
            error = self._scrub(str(exc), cs)
            values, delay = DELIVERIES.failed(d.attempts, error, self._retries(cs), self.now(),
                                              retry_after=exc.retry_after)
            if delay is None:
                outcome = "dead"
                log.error("sink=%s lead=%s dead after %s attempts: %s", d.sink, d.lead_id, d.attempts, error)
            else:
                outcome = "retried"
                log.warning("sink=%s lead=%s attempt %s failed, retry in %.0fs: %s", d.sink, d.lead_id,
                            d.attempts, delay, error)
        except Refused as exc:
            error = self._scrub(str(exc), cs)
            values, _ = DELIVERIES.failed(d.attempts, error, self._retries(cs), self.now(), final=True)
            outcome = "dead"
            log.error("sink=%s lead=%s refused: %s", d.sink, d.lead_id, error)
        if values and self._settle(d, values) == DeliveryStatus.SENT:
            outcome = "sent"                                # superseded: a newer delivery carries it
        if state != before:                            # e.g. a refreshed OAuth token
            with transaction(self.hub.engine) as s:
                s.execute(update(SinkState).where(SinkState.sink == d.sink).values(data=state))
        return outcome

    @staticmethod
    def _retries(cs: ConfiguredSink) -> Retries:
        return Retries(cs.config.max_attempts, BACKOFF_BASE_SECONDS, BACKOFF_MAX_SECONDS)

    def _settle(self, d: Claimed, values: dict[str, Any]) -> str:
        """Write a failed attempt's outcome; returns the status it ends in."""
        with transaction(self.hub.engine) as s:
            if values.get("status") == DeliveryStatus.PENDING:
                # A newer change may have queued a pending row meanwhile: it carries this one's work too.
                newer = s.scalar(select(SinkDelivery.id).where(
                    SinkDelivery.sink == d.sink, SinkDelivery.lead_id == d.lead_id, SinkDelivery.id != d.id,
                    SinkDelivery.status == DeliveryStatus.PENDING))
                if newer is not None:
                    values = {"status": DeliveryStatus.SENT, "last_error": f"superseded by delivery {newer}",
                              "sent_at": utcnow()}
                    # It inherits the attempts too: this one may have reached the sink unheard, so the newer
                    # one must look the lead up before creating it (``retrying``), not create it again.
                    s.execute(update(SinkDelivery).where(SinkDelivery.id == newer).values(
                        next_attempt_at=self.now(), attempts=func.max(SinkDelivery.attempts, d.attempts)
                        if s.get_bind().dialect.name == "sqlite" else func.greatest(SinkDelivery.attempts, d.attempts)))
            DELIVERIES.write(s, d.id, values)
        return values["status"]

    def send_due(self, now: datetime | None = None, limit: int = 50) -> dict[str, int]:
        counts = {"sent": 0, "retried": 0, "dead": 0}
        if not self.sinks:
            return counts
        for d in self._claim(now or self.now(), limit):
            counts[self.send(d)] += 1
        return counts

    def run_forever(self, stop: threading.Event, poll_seconds: float = 1.0) -> None:
        run_loop(lambda: sum(self.send_due().values()), stop, self.hub.forward_queued, poll_seconds,
                 pause_after_error=poll_seconds, what="forwarder: sending")


# -- operators ----------------------------------------------------------------------------------------------

def sink_status(session: Session) -> list[dict[str, Any]]:
    rows = session.execute(select(SinkDelivery.sink, SinkDelivery.status, func.count())
                           .group_by(SinkDelivery.sink, SinkDelivery.status)).all()
    out: dict[str, dict[str, Any]] = {}
    for sink, status, n in rows:
        out.setdefault(sink, {"sink": sink, **{s: 0 for s in DeliveryStatus.ALL}})[status] = n
    return [out[k] for k in sorted(out)]


def replay_dead(session: Session, sink: str | None = None, ids: list[int] | None = None) -> int:
    """Queue dead deliveries again (all of a sink, or the ids named). A lead that already has a pending
    delivery to that sink needs no second one: the dead row is closed as superseded."""
    query = select(SinkDelivery).where(SinkDelivery.status == DeliveryStatus.DEAD)
    if sink:
        query = query.where(SinkDelivery.sink == sink)
    if ids:
        query = query.where(SinkDelivery.id.in_(ids))
    replayed = 0
    for d in session.scalars(query.order_by(SinkDelivery.id).with_for_update()):
        pending = session.scalar(select(SinkDelivery.id).where(
            SinkDelivery.sink == d.sink, SinkDelivery.lead_id == d.lead_id,
            SinkDelivery.status == DeliveryStatus.PENDING))
        if pending is not None:
            d.status, d.last_error = DeliveryStatus.SENT, f"superseded by delivery {pending}"
            continue
        d.status, d.attempts, d.next_attempt_at = DeliveryStatus.PENDING, 0, utcnow()
        session.flush()
        replayed += 1
    return replayed
