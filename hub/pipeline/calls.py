"""Calls: recognise the caller, and put a known client straight through to the manager who owns them.

The decision is made while the phone rings, inside the PBX's answer time: from the store only (no
network), with reads only (no lock to wait for), and any error means "no redirect" — the PBX's own
scenario stands and the call is never dropped. Order: the client's owner, if available and reachable on
this PBX; else the least loaded available manager of the routing rule that matches the client's lead;
else nothing. The decision travels with the stored event, and the worker writes it into the lead's
history like any routing decision. The webhook door hands every delivery to ``route_live_call``, which
stores it through the door and adds what a ringing call needs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import requests
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.config import Config
from hub.connector import InboundRequest, RawEvent, WebhookConnector, WebhookReply
from hub.i18n import Msg
from hub.pipeline.history import history
from hub.pipeline.normalise import normalise_phone
from hub.pipeline.routing.assignment import queue_notifications
from hub.pipeline.routing.rules import (
    OPEN_LEADS_OF,
    TouchFacts,
    availability,
    matching_rule,
    phone_region,
    team_members,
)
from hub.runtime import Hub, Source
from hub.store.db import transaction
from hub.store.models import CallAlert, IdentityKey, KeyKind, Lead, LeadStatus, Person, Touch, WebPresence, utcnow

log = logging.getLogger("hub.pipeline.calls")
CALL_ROUTE = "_call_route"            # payload key: the decision, written to the lead's history by the worker
ROUTE_COMMAND_TIMEOUT = 3.0           # seconds: a route command later than this is too late for the call
ONLINE_SECONDS = 20                   # a page that polled within this is open: a screen-pop, not a Telegram


def e164(raw: str, region: str) -> str | None:
    return normalise_phone(raw, region).value


@dataclass
class Caller:
    phone: str
    person_id: int
    name: str | None
    lead: Lead | None


def find_caller(session: Session, phone: str) -> Caller | None:
    """The person with this E.164 phone and their open lead (else their latest): two indexed reads."""
    row = session.execute(select(IdentityKey.person_id, Person.name).join(Person, Person.id == IdentityKey.person_id)
                          .where(IdentityKey.kind == KeyKind.PHONE, IdentityKey.value == phone)).first()
    if row is None:
        return None
    lead = session.scalars(select(Lead).where(Lead.person_id == row.person_id, Lead.merged_into_id.is_(None))
                           .order_by(Lead.status.in_(LeadStatus.OPEN).desc(), Lead.id.desc()).limit(1)).first()
    return Caller(phone, row.person_id, row.name, lead)


@dataclass
class CallDecision:
    caller: Caller | None
    manager: str | None
    extension: str | None
    why: Msg

    def to_json(self) -> dict[str, Any]:
        return {"manager": self.manager, "extension": self.extension, "why": str(self.why),
                "why_msg": self.why.to_json(), "lead_id": self.caller.lead.id if self.caller and self.caller.lead
                else None}


def decide(session: Session, config: Config, source: str, phone_raw: str, region: str,
           now: datetime) -> CallDecision:
    phone = e164(phone_raw, region)
    caller = find_caller(session, phone) if phone else None
    if caller is None:
        return CallDecision(None, None, None, Msg("unknown caller: the PBX's own scenario"))
    lead = caller.lead
    owner = lead.owner if lead is not None else None
    reasons: list[Msg] = []
    if owner:
        manager = config.manager(owner)
        why_not = availability(session, config, [owner], now)[owner]
        extension = manager.extension_for(source) if manager else None
        if why_not is None and extension:
            return CallDecision(caller, owner, extension, Msg("call: to the client's manager %(name)s", name=owner))
        reasons.append(Msg("%(name)s: %(why)s", name=owner, why=why_not or Msg("no extension on this PBX")))
    rule = matching_rule(config, lead.warmth if lead else None, TouchFacts(
        source=source, tags=[], message="", fields={}, repeat=True, region=phone_region(phone)))
    if rule is None:
        return CallDecision(caller, None, None, Msg.join(*reasons, Msg("no routing rule matched")))
    members = [m for m in config.managers if m.name == rule.manager] if rule.strategy == "fixed" \
        else team_members(config, rule.team)
    members = [m for m in members if m.name != owner and m.extension_for(source)]
    free = availability(session, config, [m.name for m in members], now) if members else {}
    available = [m for m in members if free.get(m.name) is None]
    if not available:
        return CallDecision(caller, None, None, Msg.join(*reasons, Msg("nobody available")))
    load: dict[str, int] = dict(session.execute(OPEN_LEADS_OF, {"owners": [m.name for m in available]}).all())
    chosen = min(available, key=lambda m: load.get(m.name, 0))    # read-only: no round-robin step for a call
    return CallDecision(caller, chosen.name, chosen.extension_for(source),
                        Msg.join(*reasons, Msg("call: rule %(rule)r, least loaded available", rule=rule.name)))


def decide_safely(engine, config: Config, source: str, phone_raw: str, region: str) -> CallDecision | None:
    """``decide`` in a read-only transaction; None on any error (the call then goes its usual way)."""
    started = time.perf_counter()
    try:
        with transaction(engine, read_only=True) as session:
            decision = decide(session, config, source, phone_raw, region, utcnow())
    except Exception:  # a call must never be dropped for our sake
        log.exception("source=%s: call routing failed; no redirect", source)
        return None
    log.info("source=%s call routed to %s in %.1f ms", source, decision.manager or "-",
             (time.perf_counter() - started) * 1000)
    return decision


_ROUTED_LOCK = threading.Lock()


def send_route_command(source: str, command, call_id: str = "",
                       routed: dict[tuple[str, str], float] | None = None) -> threading.Thread | None:
    """Send a PBX's routing command (Mango's /commands/route) off the request thread: the provider's
    webhook is answered at once; a failure only means the call goes the PBX's own way. Once per call in
    this process (a PBX reports a ringing call as it moves from the IVR to a phone)."""
    now = time.monotonic()
    routed = routed if routed is not None else {}
    with _ROUTED_LOCK:
        for key in [k for k, at in routed.items() if now - at > 300]:
            del routed[key]
        if call_id and (source, call_id) in routed:
            return None
        routed[(source, call_id)] = now

    def send() -> None:
        try:
            resp = requests.request(command.method, command.url, data=command.form, json=command.json,
                                    timeout=ROUTE_COMMAND_TIMEOUT)
            log.info("source=%s route command answered %s", source, resp.status_code)
        except requests.RequestException as exc:
            log.warning("source=%s route command failed: %s", source, type(exc).__name__)
    thread = threading.Thread(target=send, name=f"route-{source}", daemon=True)
    thread.start()
    return thread


def alert(session: Session, config: Config, decision: CallDecision, source: str, now: datetime) -> None:
    """Tell the manager a known client is calling: on their open page, else by Telegram/e-mail. One alert
    per caller and manager within half a minute (a PBX may report a ringing call more than once)."""
    caller = decision.caller
    target = decision.manager or (caller.lead.owner if caller and caller.lead else None)
    if caller is None or target is None:
        return
    if session.scalar(select(CallAlert.id).where(CallAlert.manager == target, CallAlert.caller == caller.phone,
                                                 CallAlert.created_at > now - timedelta(seconds=30)).limit(1)):
        return
    lead_id = caller.lead.id if caller.lead else None
    session.add(CallAlert(manager=target, lead_id=lead_id, caller=caller.phone, name=caller.name, source=source,
                          created_at=now))
    seen = session.scalar(select(WebPresence.seen_at).where(WebPresence.manager == target))
    if seen is None or now - seen > timedelta(seconds=ONLINE_SECONDS):
        queue_notifications(session, config, target, lead_id, "calling", name=caller.name or caller.phone,
                            phone=caller.phone)


Stored = TypeVar("Stored")


def route_live_call(hub: Hub, source: Source, request: InboundRequest, events: list[RawEvent],
                    received_at: datetime, store: Callable[[Callable[[Session], None] | None], Stored]
                    ) -> tuple[Stored, WebhookReply | None]:
    """Store a webhook delivery through ``store`` and, when it reports a ringing call, decide who calls and
    where the call should go, now, from the store, before the answer: the manager is alerted, and a PBX
    that reads our answer (or takes a command) puts the call through.

    ``store(alert)`` stores the delivery's events (the decision already in their payloads) and runs
    ``alert(session)`` in the same transaction when one of them is new; its result comes back with the
    PBX's routing answer (None: the door answers as usual)."""
    connector = source.connector_as(WebhookConnector)
    try:
        live = connector.live_call(request)
    except Exception:  # a connector's bug on a body receive() took: no live call, the delivery is stored as usual
        log.exception("source=%s: connector %s failed reading a live call; no redirect", source.name, connector.name)
        live = None
    decision = decide_safely(hub.engine, hub.config, source.name, live.phone, source.region) if live else None
    if live is None or decision is None:
        return store(None), None
    extension = decision.extension if live.routable else None     # where we put the call through, if we do
    if extension:                     # the worker writes it on the lead
        for event in events:
            event.payload = {**event.payload, CALL_ROUTE: decision.to_json()}

    def alert_manager(session: Session) -> None:
        alert(session, hub.config, decision, source.name, received_at)

    stored = store(alert_manager)
    if not events:                    # a call-state event: nothing stored but the alert (and where the call went)
        with transaction(hub.engine) as session:
            alert_manager(session)
            if extension and decision.caller and decision.caller.lead:
                route = decision.to_json()
                history(session, decision.caller.lead.id, "call_routed", to=route["manager"],
                        extension=route["extension"], why=route["why"], why_msg=route["why_msg"])
    hub.notification_queued.set()
    if not extension:
        return stored, None
    reply = connector.route_reply(extension)
    if reply is None:
        command = connector.route_request(live, extension)
        if command is not None:
            send_route_command(source.name, command, live.call_id, hub.routed_calls)
    return stored, reply


def alerts_for(session: Session, manager: str, after: int, now: datetime) -> list[dict[str, Any]]:
    """This manager's call alerts newer than ``after`` (and than a minute: a late page shows no stale call)."""
    rows = session.scalars(select(CallAlert).where(
        CallAlert.manager == manager, CallAlert.id > after, CallAlert.created_at > now - timedelta(minutes=1))
        .order_by(CallAlert.id).limit(20))
    return [{"id": a.id, "lead_id": a.lead_id, "caller": a.caller, "name": a.name, "source": a.source}
            for a in rows]


def latest_alert_id(session: Session, manager: str) -> int:
    return session.scalar(select(CallAlert.id).where(CallAlert.manager == manager)
                          .order_by(CallAlert.id.desc()).limit(1)) or 0


def seen_online(session: Session, manager: str, now: datetime) -> None:
    """Record that the manager's page is open; written at most every few seconds."""
    row = session.get(WebPresence, manager)
    if row is None:
        session.add(WebPresence(manager=manager, seen_at=now))
    elif now - row.seen_at > timedelta(seconds=5):
        row.seen_at = now


def lookup(session: Session, config: Config, phone_raw: str, region: str) -> dict[str, Any] | None:
    """Who is calling: the person, their open (else latest) lead, its owner and their extensions, and the
    last touches. None for an unknown or unreadable number."""
    phone = e164(phone_raw, region)
    caller = find_caller(session, phone) if phone else None
    if caller is None:
        return None
    keys = session.scalars(select(IdentityKey).where(IdentityKey.person_id == caller.person_id)).all()
    lead = caller.lead
    out: dict[str, Any] = {
        "phone": caller.phone,
        "person": {"id": caller.person_id, "name": caller.name,
                   "phones": [k.value for k in keys if k.kind == KeyKind.PHONE],
                   "emails": [k.value for k in keys if k.kind == KeyKind.EMAIL]},
        "lead": None, "last_touches": [],
    }
    if lead is not None:
        manager = config.manager(lead.owner) if lead.owner else None
        out["lead"] = {"id": lead.id, "status": lead.status, "warmth": lead.warmth, "source": lead.source,
                       "owner": lead.owner, "owner_extension": manager.extension if manager else None,
                       "owner_extensions": dict(manager.extensions) if manager else {},
                       "link": f"{config.notify.base_url.rstrip('/')}/leads/{lead.id}"}
        touches = session.scalars(select(Touch).where(Touch.lead_id == lead.id).order_by(Touch.id.desc()).limit(3))
        out["last_touches"] = [{"at": t.at.isoformat().replace("+00:00", "Z"), "source": t.source,
                                "channel": t.channel, "utm_campaign": t.utm_campaign, "message": t.message}
                               for t in touches]
    return out
