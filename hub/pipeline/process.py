"""From a stored event to a lead, top to bottom, inside the worker's one transaction.

    map        the source's mapping turns the provider's fields into a LeadDraft
    normalise  phones to E.164, e-mails to one form; invalid ones kept raw on the touch and flagged
    identify   find or create the person by their keys, atomically; their open lead, reopened if need be
    touch      source, channel, UTM marks, click ids, referrer, landing page → a touch on the lead
    assign     warmth rules, then the owner: sticky, or the first matching routing rule's strategy
    notify     the owner's Telegram/e-mail message goes into the outbox, sent after commit
    answer     the client's one answer (a source with [sources.answer]) goes into the outbox too

Anything raised here rolls the whole transaction back; the worker then decides retry, reject or dead.
Only PayloadError means "this event can never become a lead".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from hub.config import Config, IdentityConfig
from hub.errors import PayloadError, RetriableError
from hub.mapping import UTM_KEYS, LeadDraft, apply_mapping, mark_tracked_call
from hub.outbox.client_answer import ClientContacts, queue_client_answer
from hub.outbox.forwarding import queue_forwarding
from hub.pipeline.calls import CALL_ROUTE
from hub.pipeline.history import history
from hub.pipeline.identity import Key, LeadFound, find_or_create_person, flag_possible_duplicates, lead_for_person
from hub.pipeline.normalise import Normalised, normalise_email, normalise_phone, parse_when
from hub.pipeline.routing.assignment import LeadState, route_lead
from hub.pipeline.routing.rules import TouchFacts, phone_region
from hub.runtime import Source
from hub.store.db import InsertRows, Prebuilt, execute
from hub.store.models import EventStatus, InboundEvent, KeyKind, Lead, LeadStatus, Touch, utcnow

T = TypeVar("T")
INSERT_TOUCHES = InsertRows(Touch.__table__)
TOUCH_LEAD = Prebuilt(update(Lead.__table__).where(Lead.__table__.c.id == bindparam("lead_id"))
                      .values(updated_at=bindparam("now")))


class EventRef(NamedTuple):
    """What processing needs of a stored event, for callers that never load the whole row (the worker reads
    these three when it claims the event; an import has no payload of its own)."""

    id: int
    received_at: datetime
    payload: Any = None


@dataclass
class Outcome:
    status: str           # EventStatus.PROCESSED (a new lead) or EventStatus.MERGED (a touch on an existing one)
    lead_id: int
    how: str              # "created" | "existing" | "reopened"
    lead: LeadState | None = None     # the lead's status, owner and warmth as identification left them


@dataclass
class Contacts:
    phones: list[Normalised]
    emails: list[Normalised]
    messenger_ids: dict[str, str]

    @property
    def keys(self) -> list[Key]:
        return ([(KeyKind.PHONE, p.value) for p in self.phones if p.value]
                + [(KeyKind.EMAIL, e.value) for e in self.emails if e.value]
                + list(self.messenger_ids.items()))

    def as_records(self) -> list[dict[str, str | None]]:
        """What the touch keeps: every contact as it was spelled, valid or not."""
        records = []
        for kind, items in ((KeyKind.PHONE, self.phones), (KeyKind.EMAIL, self.emails)):
            for n in items:
                record = {"kind": kind, "raw": n.raw, "value": n.value}
                if n.problem:
                    record["problem"] = n.problem
                if n.extension:
                    record["extension"] = n.extension
                records.append(record)
        records += [{"kind": kind, "raw": uid, "value": uid} for kind, uid in self.messenger_ids.items()]
        return records

    @property
    def flags(self) -> list[str]:
        return [f"invalid_{kind}" for kind, items in (("phone", self.phones), ("email", self.emails))
                if any(n.value is None for n in items)]


ANNOTATES = "_annotates"     # payload key of an event that adds to another event's touch (a call's recording)


def process_event(session: Session, source: Source, event: InboundEvent | EventRef, config: Config) -> Outcome:
    attached = attach(session, source, event, config)
    settle(session, config, source, event, attached)
    return attached.outcome


@dataclass
class Attached:
    """What the first half found and made; the second half routes from it."""

    outcome: Outcome
    made: tuple[LeadDraft, Contacts] | None = None      # None: the event annotated another one (nothing to route)


def attach(session: Session, source: Source, event: InboundEvent | EventRef, config: Config,
           deferred: DeferredWrites | None = None) -> Attached:
    """First half: map, normalise, the person and their lead, the touch (written at once, or collected in
    ``deferred`` by a caller that writes a batch's touches in one statement)."""
    if isinstance(event.payload, dict) and event.payload.get(ANNOTATES):
        return Attached(annotate(session, source, event.payload))
    draft = map_event(source, event.payload)
    outcome, contacts = process_draft(session, source, event, draft, config.identity, deferred)
    return Attached(outcome, (draft, contacts))


def settle(session: Session, config: Config, source: Source, event: InboundEvent | EventRef,
           attached: Attached) -> None:
    """Second half: warmth and owner (with the notification), the call's route, the sinks' outbox."""
    outcome = attached.outcome
    if attached.made is None or outcome.lead is None:       # only an annotation has neither
        return
    draft, contacts = attached.made
    assign_owner(session, config, source, event, draft, contacts, outcome, outcome.lead)
    if source.config.answer is not None:
        answer_client(session, config, source, draft, contacts, outcome.lead)
    if isinstance(event.payload, dict) and event.payload.get(CALL_ROUTE):
        record_call_route(session, event.id, event.payload[CALL_ROUTE], outcome)
    forward(session, config, outcome)


def answer_client(session: Session, config: Config, source: Source, draft: LeadDraft, contacts: Contacts,
                  lead: LeadState) -> None:
    """The routed lead's one answer to the client, by their owner's name (hub/outbox/client_answer.py)."""
    if lead.status in LeadStatus.OPEN:
        queue_client_answer(session, config, source.config, lead.id, lead.owner, ClientContacts(
            name=draft.name, phones=[p.value for p in contacts.phones if p.value],
            emails=[e.value for e in contacts.emails if e.value], messenger_ids=contacts.messenger_ids))


def record_call_route(session: Session, event_id: int, route: dict[str, Any], outcome: Outcome) -> None:
    """Where a live call was put through, and why: on the lead's timeline, like any routing decision."""
    history(session, outcome.lead_id, "call_routed", event_id=event_id, to=route.get("manager"),
            extension=route.get("extension"), why=route.get("why"), why_msg=route.get("why_msg"))


def forward(session: Session, config: Config, outcome: Outcome) -> None:
    """Queue the lead, as it now is, for every sink (sent after commit: hub/forwarding.py)."""
    queue_forwarding(session, config, outcome.lead_id)


def annotate(session: Session, source: Source, payload: dict[str, Any]) -> Outcome:
    """A recording arrives apart from its call (before or after it): put it on the call's touch."""
    target_id = str(payload[ANNOTATES])
    target = session.execute(select(InboundEvent.id, InboundEvent.status).where(
        InboundEvent.source == source.name, InboundEvent.external_id == target_id)).first()
    if target is None or target.status in (EventStatus.PENDING, EventStatus.PROCESSING):
        raise RetriableError(f"the call {target_id} it belongs to is not processed yet")
    touch = session.execute(select(Touch.id, Touch.lead_id).where(Touch.event_id == target.id)).first()
    if touch is None:
        raise PayloadError(f"the call {target_id} it belongs to was {target.status}, not a lead")
    recording = source.connector.fields(payload).get("recording")
    execute(session, update(Touch.__table__).where(Touch.__table__.c.id == touch.id), {"recording": recording})
    return Outcome(EventStatus.MERGED, touch.lead_id, "annotated")


def map_event(source: Source, payload: dict | None) -> LeadDraft:
    """Pure: the mapping applied to the provider's fields, and a call-tracking number's marks ([sources.numbers]).
    Raises only PayloadError."""
    if not isinstance(payload, dict):
        raise PayloadError(f"stored payload is not an object of fields but {type(payload).__name__}")
    draft = apply_mapping(source.mapping, source.connector.fields(payload))
    mark_tracked_call(draft, source.config.numbers, source.region)
    return draft


class DeferredWrites:
    """Rows that nothing later in the same transaction reads back (touches, a lead's updated_at). A caller
    processing many events in one transaction (an import) collects them and writes them in one go."""

    def __init__(self) -> None:
        self.touches: list[dict] = []
        self.touched_leads: dict[int, datetime] = {}

    def flush(self, session: Session) -> None:
        if self.touches:
            INSERT_TOUCHES(session, self.touches)
        if self.touched_leads:
            TOUCH_LEAD.run(session, [{"lead_id": k, "now": v} for k, v in self.touched_leads.items()])
        self.touches, self.touched_leads = [], {}


class Prepared(NamedTuple):
    """What a draft gives before the store is read: its contacts normalised and when it happened (None: not
    said; the event's received_at is used)."""

    contacts: Contacts
    at: datetime | None


class Seen:
    """What a caller that prepares many drafts (an import) normalised and parsed already, by spelling: an old
    CRM's rows repeat people and dates, and phonenumbers, email-validator and strptime are most of a row's
    pure cost. Kept as long as the caller likes (``clear`` it when it grows)."""

    def __init__(self) -> None:
        self.contacts: dict[tuple[str, str], Normalised] = {}     # (region or e-mail rule, raw) → result
        # (time zone, text) → the UTC datetime (never None: only a draft that says when is looked up)
        self.dates: dict[tuple[str, str], datetime | None] = {}

    def __len__(self) -> int:
        return len(self.contacts) + len(self.dates)

    def clear(self) -> None:
        self.contacts.clear()
        self.dates.clear()


def prepare(draft: LeadDraft, source: Source, identity: IdentityConfig, seen: Seen | None = None) -> Prepared:
    """Pure: normalise the contacts and parse occurred_at (PayloadError for a bad date)."""
    if seen is None or not draft.occurred_at:
        return Prepared(normalise(draft, source.region, identity, seen), occurred_at(draft, source))
    at = remembered(seen.dates, (source.config.timezone, draft.occurred_at), lambda: occurred_at(draft, source))
    return Prepared(normalise(draft, source.region, identity, seen), at)


def process_draft(session: Session, source: Source, event: InboundEvent | EventRef, draft: LeadDraft,
                  identity: IdentityConfig, deferred: DeferredWrites | None = None,
                  prepared: Prepared | None = None) -> tuple[Outcome, Contacts]:
    """Normalise, identify, touch: everything but routing (an import must not hand year-old leads out).
    ``prepared``: the draft's contacts and date, when the caller has them already (an import checks the date
    before it stores the row)."""
    if prepared is None:
        prepared = prepare(draft, source, identity)
    contacts = prepared.contacts
    at = prepared.at or event.received_at
    found = identify(session, source, event, draft, contacts, identity, at)
    writes = deferred or DeferredWrites()
    attach_touch(writes, found, event, source, draft, contacts, at)
    if deferred is None:
        writes.flush(session)
    return Outcome(EventStatus.PROCESSED if found.how == "created" else EventStatus.MERGED, found.lead_id,
                   found.how, LeadState(found.lead_id, found.status, found.owner, found.warmth)), contacts


def normalise(draft: LeadDraft, region: str, identity: IdentityConfig, seen: Seen | None = None) -> Contacts:
    """``seen``: results for spellings normalised already, and where to keep this draft's."""
    if seen is None:
        return Contacts(phones=[normalise_phone(p, region) for p in draft.phones],
                        emails=[normalise_email(e, identity.gmail_canonical) for e in draft.emails],
                        messenger_ids=dict(draft.messenger_ids))
    memo = seen.contacts
    email_rule = "gmail_canonical" if identity.gmail_canonical else "email"
    # A phone's meaning depends on the region, an e-mail's on the Gmail rule: each is part of the key.
    return Contacts(
        phones=[remembered(memo, (region, raw), partial(normalise_phone, raw, region)) for raw in draft.phones],
        emails=[remembered(memo, (email_rule, raw), partial(normalise_email, raw, identity.gmail_canonical))
                for raw in draft.emails],
        messenger_ids=dict(draft.messenger_ids))


def remembered(memo: dict[Any, T], key: Any, make: Callable[[], T]) -> T:
    """``memo[key]``, made by ``make()`` the first time."""
    if key in memo:
        return memo[key]
    made = memo[key] = make()
    return made


def occurred_at(draft: LeadDraft, source: Source) -> datetime | None:
    """When the contact happened, if the provider (or an imported CRM row) says so."""
    if not draft.occurred_at:
        return None
    try:
        return parse_when(draft.occurred_at, source.config.timezone)
    except ValueError as exc:
        raise PayloadError(f"occurred_at: {exc}") from None


def identify(session: Session, source: Source, event: InboundEvent | EventRef, draft: LeadDraft, contacts: Contacts,
             identity: IdentityConfig, at: datetime) -> LeadFound:
    person = find_or_create_person(session, contacts.keys, draft.name, identity.key_priority)
    found = lead_for_person(session, person, source.name, source.config.tags, identity.on_return, event.id, at=at,
                            utm_campaign=draft.utm.get("utm_campaign"))
    flag_possible_duplicates(session, person, found.lead_id, event.id)
    return found


def attach_touch(writes: DeferredWrites, found: LeadFound, event: InboundEvent | EventRef, source: Source,
                 draft: LeadDraft, contacts: Contacts, at: datetime) -> None:
    writes.touches.append(dict(
        lead_id=found.lead_id, event_id=event.id, source=source.name, channel=source.connector.name, at=at,
        click_ids=draft.click_ids, referrer=draft.referrer, landing_page=draft.page_url, message=draft.message,
        recording=draft.recording, contacts=contacts.as_records(), flags=draft.flags + contacts.flags,
        **{key: draft.utm.get(key) for key in UTM_KEYS}))
    if found.how == "existing":
        writes.touched_leads[found.lead_id] = utcnow()


def assign_owner(session: Session, config: Config, source: Source, event: InboundEvent | EventRef, draft: LeadDraft,
                 contacts: Contacts, outcome: Outcome, lead: LeadState) -> None:
    """Warmth and owner (hub/routing.py); the owner's notification goes into the outbox."""
    phones = [p.value for p in contacts.phones if p.value]
    facts = TouchFacts(source=source.name, tags=list(source.config.tags), message=draft.message or "",
                       fields=source.connector.fields(event.payload or {}), repeat=outcome.how != "created",
                       region=phone_region(phones[0] if phones else None))
    # Data only (name · contact · source · message): the words around it come from the recipient's template.
    summary = " · ".join(filter(None, [draft.name, ", ".join(phones) or ", ".join(
        e.value for e in contacts.emails if e.value), source.name, (draft.message or "")[:200]]))
    route_lead(session, config, lead, outcome.how, facts, event.id, utcnow(), summary)
