"""Who is this? Find or create the person behind a delivery, and their lead — atomically.

The database decides, never a check-then-insert in Python:
* every normalised phone, e-mail and messenger id is a row of ``identity_key``, unique on (kind, value);
* a delivery with a key nobody holds yet claims it for a tentative new person with
  ``INSERT … ON CONFLICT DO NOTHING``, keys always in one global order, so two transactions claiming the same
  keys queue on the unique index (PostgreSQL) or on the write lock (SQLite) instead of racing or deadlocking;
* then it reads who owns each key. If someone else already did, the tentative person hands its keys over
  and disappears inside the same transaction: one person, whatever the interleaving;
* the chosen person's row is locked for the rest of the transaction, so its lead is found, reopened or
  created by one delivery at a time; a partial unique index (one open lead per person) backs that up.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import delete, select, tuple_, update
from sqlalchemy.orm import Session

from hub.db import insert_ignoring_conflicts
from hub.errors import RetriableError
from hub.models import IdentityKey, Lead, LeadHistory, LeadStatus, Person, PossibleDuplicate, utcnow

Key = tuple[str, str]                  # (kind, value)


@dataclass
class Identified:
    person_id: int
    new_person: bool
    # Other persons some of the delivery's keys belong to: {person_id: ["email:anna@x.ru", ...]}
    conflicts: dict[int, list[str]] = field(default_factory=dict)


def key_label(key: Key) -> str:
    return f"{key[0]}:{key[1]}"


def _owners(session: Session, keys: list[Key]) -> dict[Key, int]:
    rows = session.execute(select(IdentityKey.kind, IdentityKey.value, IdentityKey.person_id)
                           .where(tuple_(IdentityKey.kind, IdentityKey.value).in_(keys)))
    return {(r.kind, r.value): r.person_id for r in rows}


def _strongest_owner(owners: dict[Key, int], priority: list[str], exclude: int | None = None) -> int:
    """The person holding the strongest key: by kind priority (phone first by default), then key order."""
    rank = {kind: i for i, kind in enumerate(priority)}
    ranked = sorted((k for k, pid in owners.items() if pid != exclude), key=lambda k: (rank.get(k[0], 99), k))
    return owners[ranked[0]]


def _lock_live_person(session: Session, person_id: int) -> Person:
    person = session.execute(select(Person).where(Person.id == person_id).with_for_update()).scalar_one()
    if person.merged_into_id is not None:
        # A merge moved this person's keys between our read and our lock: read again from the start.
        raise RetriableError(f"person {person_id} was merged while a delivery was being attached")
    return person


def find_or_create_person(session: Session, keys: list[Key], name: str | None, priority: list[str]) -> Identified:
    keys = sorted(set(keys))
    if not keys:
        # Nothing to recognise the person by (only invalid contacts): a person of their own.
        person = Person(name=name)
        session.add(person)
        session.flush()
        return Identified(person.id, True)

    owners = _owners(session, keys)
    new_person_id = None
    if len(owners) < len(keys):
        new_person_id = session.execute(Person.__table__.insert().values(name=name, created_at=utcnow())
                                        .returning(Person.id)).scalar_one()
        for kind, value in keys:                                    # sorted: one lock order for everyone
            insert_ignoring_conflicts(session, IdentityKey.__table__, ["kind", "value"],
                                      dict(kind=kind, value=value, person_id=new_person_id, created_at=utcnow()))
        owners = _owners(session, keys)
        if all(pid == new_person_id for pid in owners.values()):
            _lock_live_person(session, new_person_id)
            return Identified(new_person_id, True)

    winner = _strongest_owner(owners, priority, exclude=new_person_id)
    if new_person_id is not None:
        # Someone holds some of these keys already: the keys we claimed join them, the tentative person goes.
        session.execute(update(IdentityKey).where(IdentityKey.person_id == new_person_id).values(person_id=winner))
        session.execute(delete(Person).where(Person.id == new_person_id))
        owners = {k: (winner if pid == new_person_id else pid) for k, pid in owners.items()}
    person = _lock_live_person(session, winner)
    if name and not person.name:
        person.name = name
    conflicts: dict[int, list[str]] = {}
    for key, pid in owners.items():
        if pid != winner:
            conflicts.setdefault(pid, []).append(key_label(key))
    return Identified(winner, False, conflicts)


@dataclass
class LeadFound:
    lead: Lead
    how: str          # "created" | "existing" | "reopened"


def lead_for_person(session: Session, identified: Identified, source: str, tags: list[str], on_return: str,
                    event_id: int | None, at=None) -> LeadFound:
    """The person's open lead; a refused or converted one is reopened (or followed by a new lead,
    per ``[identity] on_return``), its owner kept. The person's row is locked by find_or_create_person."""
    now = utcnow()
    at = at or now
    latest = None
    if not identified.new_person:
        latest = session.scalars(
            select(Lead).where(Lead.person_id == identified.person_id, Lead.merged_into_id.is_(None))
            .order_by(Lead.status.in_(LeadStatus.OPEN).desc(), Lead.id.desc()).limit(1)).first()
    if latest is not None and latest.status in LeadStatus.OPEN:
        return LeadFound(latest, "existing")
    if latest is not None and on_return == "reopen":
        history = dict(from_status=latest.status, refuse_reason=latest.refuse_reason, owner=latest.owner)
        latest.status, latest.refuse_reason = LeadStatus.NEW, None
        latest.reopened_count += 1
        latest.updated_at = now
        session.add(LeadHistory(lead_id=latest.id, at=now, kind="reopened", event_id=event_id, data=history))
        return LeadFound(latest, "reopened")

    lead = Lead(person_id=identified.person_id, status=LeadStatus.NEW, source=source, tags=list(tags),
                owner=latest.owner if latest is not None else None, created_at=at, updated_at=now)
    session.add(lead)
    session.flush()
    data = {"previous_lead_id": latest.id} if latest is not None else {}
    session.add(LeadHistory(lead_id=lead.id, at=now, kind="created", event_id=event_id, data=data))
    return LeadFound(lead, "created")


def flag_possible_duplicates(session: Session, identified: Identified, lead: Lead, event_id: int | None) -> None:
    """Keys of one delivery pointed to several persons: attach to the strongest, tell a human about the rest."""
    for other_id, keys in sorted(identified.conflicts.items()):
        new_id = insert_ignoring_conflicts(
            session, PossibleDuplicate.__table__, ["person_id", "other_person_id"],
            dict(person_id=identified.person_id, other_person_id=other_id, event_id=event_id, keys=keys,
                 created_at=utcnow()))
        if new_id is not None:
            session.add(LeadHistory(lead_id=lead.id, kind="possible_duplicate", event_id=event_id,
                                    data={"other_person_id": other_id, "keys": keys}))
