"""From a stored event to a lead, top to bottom, inside the worker's one transaction.

    map        the source's mapping turns the provider's fields into a LeadDraft
    normalise  phones to E.164, e-mails to one form; invalid ones kept raw on the touch and flagged
    identify   find or create the person by their keys, atomically; their open lead, reopened if need be
    touch      source, channel, UTM marks, click ids, referrer, landing page → a touch on the lead
    assign     warmth and owner                          (routing: its own issue, plugs in here)
    notify     tell the owner                            (routing: its own issue, plugs in here)

Anything raised here rolls the whole transaction back; the worker then decides retry, reject or dead.
Only PayloadError means "this event can never become a lead".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from hub.config import IdentityConfig
from hub.identity import Key, LeadFound, find_or_create_person, flag_possible_duplicates, lead_for_person
from hub.mapping import UTM_KEYS, LeadDraft, apply_mapping
from hub.models import EventStatus, InboundEvent, KeyKind, Touch, utcnow
from hub.normalise import Normalised, normalise_email, normalise_phone
from hub.runtime import Source


@dataclass
class Outcome:
    status: str           # EventStatus.PROCESSED (a new lead) or EventStatus.MERGED (a touch on an existing one)
    lead_id: int
    how: str              # "created" | "existing" | "reopened"


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


def process_event(session: Session, source: Source, event: InboundEvent, identity: IdentityConfig) -> Outcome:
    draft = apply_mapping(source.mapping, source.connector.fields(event.payload or {}))
    contacts = normalise(draft, source.region, identity)
    found = identify(session, source, event, draft, contacts, identity)
    attach_touch(session, found, event, source, draft, contacts)
    return Outcome(EventStatus.PROCESSED if found.how == "created" else EventStatus.MERGED, found.lead.id,
                   found.how)


def normalise(draft: LeadDraft, region: str, identity: IdentityConfig) -> Contacts:
    return Contacts(phones=[normalise_phone(p, region) for p in draft.phones],
                    emails=[normalise_email(e, identity.gmail_canonical) for e in draft.emails],
                    messenger_ids=dict(draft.messenger_ids))


def identify(session: Session, source: Source, event: InboundEvent, draft: LeadDraft, contacts: Contacts,
             identity: IdentityConfig, at: datetime | None = None) -> LeadFound:
    person = find_or_create_person(session, contacts.keys, draft.name, identity.key_priority)
    found = lead_for_person(session, person, source.name, source.config.tags, identity.on_return, event.id,
                            at=at or event.received_at)
    flag_possible_duplicates(session, person, found.lead, event.id)
    return found


def attach_touch(session: Session, found: LeadFound, event: InboundEvent, source: Source, draft: LeadDraft,
                 contacts: Contacts) -> Touch:
    touch = Touch(lead_id=found.lead.id, event_id=event.id, source=source.name, channel=source.connector.name,
                  at=event.received_at, click_ids=draft.click_ids, referrer=draft.referrer,
                  landing_page=draft.page_url, message=draft.message, contacts=contacts.as_records(),
                  flags=draft.flags + contacts.flags, **{key: draft.utm.get(key) for key in UTM_KEYS})
    session.add(touch)
    found.lead.updated_at = utcnow()
    session.flush()
    return touch
