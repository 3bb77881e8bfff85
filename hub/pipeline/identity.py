"""Who is this? Find or create the person behind a delivery, and their lead — atomically.

The database decides, never a check-then-insert in Python:
* every normalised phone, e-mail and messenger id is a row of ``identity_key``, unique on (kind, value);
* keys nobody holds yet are claimed with ``INSERT … ON CONFLICT DO NOTHING``, always in one global order, so
  two transactions claiming the same keys queue on the unique index (PostgreSQL) or on the write lock
  (SQLite) instead of racing or deadlocking. A delivery none of whose keys is known claims them for a
  tentative new person; one known by some keys claims the new ones for the strongest known owner;
* a claim that loses (another delivery inserted the key first) means: read the owners again. A tentative
  person that lost any key hands the keys it got to the winner and disappears inside the same
  transaction: one person, whatever the interleaving;
* the chosen person's row is locked for the rest of the transaction, so its lead is found, reopened or
  created by one delivery at a time; a partial unique index (one open lead per person) backs that up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache

from sqlalchemy import and_, bindparam, delete, or_, select, update
from sqlalchemy.orm import Session

from hub.errors import RetriableError
from hub.pipeline.history import history
from hub.store.db import InsertIgnoring, InsertRows, Prebuilt, execute, insert_ignoring_conflicts
from hub.store.models import IdentityKey, Lead, LeadStatus, Person, PossibleDuplicate, utcnow

Key = tuple[str, str]                  # (kind, value)

# Built once: these run for every delivery and every imported row (Prebuilt: on SQLite, on the DBAPI cursor).
_KEYS, _PERSONS, _LEADS = IdentityKey.__table__, Person.__table__, Lead.__table__
INSERT_PERSON = InsertRows(_PERSONS, returning=("id",))
CLAIM_KEY = InsertIgnoring(_KEYS, ("kind", "value", "person_id", "created_at"), ("kind", "value"))
LOCK_PERSON = Prebuilt(select(_PERSONS.c.id, _PERSONS.c.name, _PERSONS.c.merged_into_id).where(
    _PERSONS.c.id == bindparam("person_id")).with_for_update())
SET_PERSON_NAME = Prebuilt(update(_PERSONS).where(_PERSONS.c.id == bindparam("person_id"))
                           .values(name=bindparam("name")))
HAND_OVER_KEYS = update(_KEYS).where(_KEYS.c.person_id == bindparam("tentative")).values(person_id=bindparam("winner"))
DELETE_PERSON = delete(_PERSONS).where(_PERSONS.c.id == bindparam("person_id"))
# Open leads first: "status = 'new' OR status = 'in_work'" is LeadStatus.OPEN spelled so that the statement
# compiles once (an IN of a list is expanded at each execution).
LATEST_LEAD = Prebuilt(
    select(_LEADS.c.id, _LEADS.c.status, _LEADS.c.refuse_reason, _LEADS.c.owner, _LEADS.c.warmth)
    .where(_LEADS.c.person_id == bindparam("person_id"), _LEADS.c.merged_into_id.is_(None))
    .order_by(or_(*(_LEADS.c.status == status for status in LeadStatus.OPEN)).desc(), _LEADS.c.id.desc())
    .limit(1))
REOPEN_LEAD = Prebuilt(update(_LEADS).where(_LEADS.c.id == bindparam("lead_id")).values(
    status=LeadStatus.NEW, refuse_reason=None, reopened_count=_LEADS.c.reopened_count + 1,
    updated_at=bindparam("now")))
INSERT_LEAD = InsertRows(_LEADS, returning=("id",))


@dataclass
class Identified:
    person_id: int
    new_person: bool
    # Other persons some of the delivery's keys belong to: {person_id: ["email:anna@x.ru", ...]}
    conflicts: dict[int, list[str]] = field(default_factory=dict)


def key_label(key: Key) -> str:
    return f"{key[0]}:{key[1]}"


@cache
def _owners_stmt(count: int) -> Prebuilt:
    # One (kind = ? AND value = ?) per key: SQLite answers "(kind, value) IN (…)" with a full table scan,
    # but each of these terms with a search of the unique index.
    return Prebuilt(select(_KEYS.c.kind, _KEYS.c.value, _KEYS.c.person_id).where(or_(*(
        and_(_KEYS.c.kind == bindparam(f"k{i}"), _KEYS.c.value == bindparam(f"v{i}")) for i in range(count)))))


def _owners(session: Session, keys: list[Key]) -> dict[Key, int]:
    params = {name: v for i, (kind, value) in enumerate(keys) for name, v in ((f"k{i}", kind), (f"v{i}", value))}
    return {(r.kind, r.value): r.person_id for r in _owners_stmt(len(keys)).rows(session, params)}


def _strongest_owner(owners: dict[Key, int], priority: Sequence[str], exclude: int | None = None) -> int:
    """The person holding the strongest key: by kind priority (phone first by default), then key order."""
    rank = {kind: i for i, kind in enumerate(priority)}
    ranked = sorted((k for k, pid in owners.items() if pid != exclude), key=lambda k: (rank.get(k[0], 99), k))
    return owners[ranked[0]]


def _lock_live_person(session: Session, person_id: int):
    person = LOCK_PERSON.one(session, {"person_id": person_id})
    if person.merged_into_id is not None:
        # A merge moved this person's keys between our read and our lock: read again from the start.
        raise RetriableError(f"person {person_id} was merged while a delivery was being attached")
    return person


def _claim_keys(session: Session, keys: list[Key], person_id: int) -> bool:
    """Claim every key nobody holds for ``person_id``; True when all were free. Keys go in sorted order:
    one lock order for every transaction, so two claiming overlapping keys queue instead of deadlocking."""
    claimed = True
    for kind, value in keys:
        new_id = CLAIM_KEY(session, dict(kind=kind, value=value, person_id=person_id, created_at=utcnow()))
        claimed = claimed and new_id is not None
    return claimed


def find_or_create_person(session: Session, keys: list[Key], name: str | None,
                          priority: Sequence[str]) -> Identified:
    keys = sorted(set(keys))
    if not keys:
        # Nothing to recognise the person by (only invalid contacts): a person of their own.
        return Identified(_insert_person(session, name), True)

    owners = _owners(session, keys)
    if not owners:
        # Nobody known: a tentative new person claims the keys. If another delivery claimed one of them
        # first, the keys we got join that person and the tentative one disappears.
        new_person_id = _insert_person(session, name)
        if _claim_keys(session, keys, new_person_id):
            return Identified(new_person_id, True)          # nobody else can see it yet: no lock needed
        owners = _owners(session, keys)
        winner = _strongest_owner(owners, priority, exclude=new_person_id)
        execute(session, HAND_OVER_KEYS, {"tentative": new_person_id, "winner": winner})
        execute(session, DELETE_PERSON, {"person_id": new_person_id})
        owners = {k: (winner if pid == new_person_id else pid) for k, pid in owners.items()}
    elif len(owners) < len(keys):
        # Known by some keys: the new ones join the strongest known owner, unless someone claims them first.
        candidate = _strongest_owner(owners, priority)
        missing = [k for k in keys if k not in owners]
        if not _claim_keys(session, missing, candidate):
            owners = _owners(session, keys)
        else:
            owners.update({k: candidate for k in missing})

    winner = _strongest_owner(owners, priority)
    person = _lock_live_person(session, winner)
    if name and not person.name:
        SET_PERSON_NAME.run(session, {"person_id": winner, "name": name})
    conflicts: dict[int, list[str]] = {}
    for key, pid in owners.items():
        if pid != winner:
            conflicts.setdefault(pid, []).append(key_label(key))
    return Identified(winner, False, conflicts)


def _insert_person(session: Session, name: str | None) -> int:
    [(person_id,)] = INSERT_PERSON(session, [{"name": name, "created_at": utcnow()}])
    return person_id


@dataclass
class LeadFound:
    lead_id: int
    how: str          # "created" | "existing" | "reopened"
    # The lead as this transaction left it (the person's row is locked): routing reads these instead of
    # reading the row back.
    status: str = LeadStatus.NEW
    owner: str | None = None
    warmth: str | None = None


def lead_for_person(session: Session, identified: Identified, source: str, tags: list[str], on_return: str,
                    event_id: int | None, at=None, utm_campaign: str | None = None) -> LeadFound:
    """The person's open lead; a refused or converted one is reopened (or followed by a new lead,
    per ``[identity] on_return``), its owner kept. The person's row is locked by find_or_create_person."""
    now = utcnow()
    latest = None
    if not identified.new_person:
        latest = LATEST_LEAD.first(session, {"person_id": identified.person_id})
    if latest is not None and latest.status in LeadStatus.OPEN:
        return LeadFound(latest.id, "existing", latest.status, latest.owner, latest.warmth)
    if latest is not None and on_return == "reopen":
        REOPEN_LEAD.run(session, {"lead_id": latest.id, "now": now})
        history(session, latest.id, "reopened", event_id=event_id, from_status=latest.status,
                 refuse_reason=latest.refuse_reason, owner=latest.owner)
        return LeadFound(latest.id, "reopened", LeadStatus.NEW, latest.owner, latest.warmth)

    [(lead_id,)] = INSERT_LEAD(session, [dict(
        person_id=identified.person_id, status=LeadStatus.NEW, source=source, tags=list(tags),
        owner=latest.owner if latest is not None else None, reopened_count=0, created_at=at or now,
        updated_at=now, utm_campaign=utm_campaign)])
    if latest is not None:
        # A first lead's creation is its created_at and first touch; a follow-up lead says what it follows.
        history(session, lead_id, "created", event_id=event_id, previous_lead_id=latest.id)
    return LeadFound(lead_id, "created", LeadStatus.NEW, latest.owner if latest is not None else None)


def flag_possible_duplicates(session: Session, identified: Identified, lead_id: int, event_id: int | None) -> None:
    """Keys of one delivery pointed to several persons: attach to the strongest, tell a human about the rest."""
    for other_id, keys in sorted(identified.conflicts.items()):
        new_id = insert_ignoring_conflicts(
            session, PossibleDuplicate.__table__, ["person_id", "other_person_id"],
            dict(person_id=identified.person_id, other_person_id=other_id, event_id=event_id, keys=keys,
                 created_at=utcnow()))
        if new_id is not None:
            history(session, lead_id, "possible_duplicate", event_id=event_id, other_person_id=other_id, keys=keys)
