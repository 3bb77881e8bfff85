"""From a stored event to a lead, top to bottom, inside the worker's one transaction.

    map        the source's mapping turns the provider's fields into a LeadDraft
    normalise  phones to E.164, e-mails to one form; invalid ones kept raw and flagged
    identify   the person and their open lead            (identity & dedup rules: their own issue)
    touch      source, channel, UTM marks, click ids, referrer, landing page → a touch on the lead
    assign     warmth and owner                          (routing: its own issue)
    notify     tell the owner                            (routing: its own issue)

Anything raised here rolls the whole transaction back; the worker then decides retry, reject or dead.
Only PayloadError means "this event can never become a lead".
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from hub.mapping import UTM_KEYS, LeadDraft, apply_mapping
from hub.models import Contact, EventStatus, InboundEvent, Lead, Person, Touch, utcnow
from hub.normalise import Normalised, normalise_email, normalise_phone
from hub.runtime import Source


@dataclass
class Outcome:
    status: str           # EventStatus.PROCESSED (a new lead) or EventStatus.MERGED (a touch on an existing one)
    lead_id: int


@dataclass
class Contacts:
    phones: list[Normalised]
    emails: list[Normalised]

    @property
    def flags(self) -> list[str]:
        return ([f"invalid_phone: {p.problem}" for p in self.phones if p.value is None]
                + [f"invalid_email: {e.problem}" for e in self.emails if e.value is None])


def process_event(session: Session, source: Source, event: InboundEvent) -> Outcome:
    draft = apply_mapping(source.mapping, source.connector.fields(event.payload or {}))
    contacts = normalise(draft, source.region)
    lead, is_new = identify(session, source, draft, contacts)
    attach_touch(session, lead, event, source, draft, contacts)
    return Outcome(EventStatus.PROCESSED if is_new else EventStatus.MERGED, lead.id)


def normalise(draft: LeadDraft, region: str) -> Contacts:
    return Contacts(phones=[normalise_phone(p, region) for p in draft.phones],
                    emails=[normalise_email(e) for e in draft.emails])


def identify(session: Session, source: Source, draft: LeadDraft, contacts: Contacts) -> tuple[Lead, bool]:
    """Every event makes a new person and lead for now; matching a returning person by phone/e-mail
    (atomically, in the database) is the identity issue's, and plugs in here."""
    person = Person(name=draft.name)
    person.contacts = (
        [Contact(kind="phone", value=p.value, raw=p.raw, valid=p.value is not None) for p in contacts.phones]
        + [Contact(kind="email", value=e.value, raw=e.raw, valid=e.value is not None) for e in contacts.emails])
    now = utcnow()
    lead = Lead(person=person, status="new", source=source.name, tags=list(source.config.tags),
                created_at=now, updated_at=now)
    session.add(lead)
    session.flush()
    return lead, True


def attach_touch(session: Session, lead: Lead, event: InboundEvent, source: Source, draft: LeadDraft,
                 contacts: Contacts) -> Touch:
    touch = Touch(lead_id=lead.id, event_id=event.id, source=source.name, channel=source.connector.name,
                  at=event.received_at, click_ids=draft.click_ids, referrer=draft.referrer,
                  landing_page=draft.page_url, message=draft.message, flags=draft.flags + contacts.flags,
                  **{key: draft.utm.get(key) for key in UTM_KEYS})
    session.add(touch)
    lead.updated_at = utcnow()
    session.flush()
    return touch
