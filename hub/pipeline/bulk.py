"""Set-based identification for a batch of events: the persons nobody knows yet, made in a handful of
statements instead of a handful per event.

A batch (an import's rows, a worker's claimed events) is mostly new people. For those, what
find_or_create_person and lead_for_person do one by one — a tentative person, its keys claimed, a new lead
— is done here for all of them at once: one query for the owners of every key of the batch, then one
INSERT each for the persons, their keys and their leads. Every other event (a key someone holds, a key an
earlier event of the batch has, a conflict, a reopened lead …) goes through the per-event path
(process.process_draft), unchanged, after these: none of them can depend on a later event's new person, as
they share no key with it.

Correctness under concurrency is the per-event path's: keys are claimed with ``INSERT … ON CONFLICT DO
NOTHING`` (on PostgreSQL in one global order). If the batch's claim loses any key (another transaction
inserted it between the owners query and the claim — possible on PostgreSQL; on SQLite the writer holds the
write lock), KeysTaken is raised and the caller rolls back to its savepoint and does the batch event by
event.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import bindparam, select, text
from sqlalchemy.orm import Session

from hub.config import Config
from hub.mapping import LeadDraft
from hub.pipeline.identity import Key, LeadFound
from hub.pipeline.process import (
    ANNOTATES,
    Attached,
    DeferredWrites,
    EventRef,
    Outcome,
    Prepared,
    attach,
    attach_touch,
    map_event,
    prepare,
    process_draft,
)
from hub.pipeline.routing.assignment import LeadState
from hub.runtime import Source
from hub.store.db import InsertRows, execute
from hub.store.models import EventStatus, IdentityKey, Lead, LeadStatus, Person, utcnow

_KEYS = IdentityKey.__table__
# Keys looked up per query: well under SQLite's 32,766 and PostgreSQL's 65,535 parameters. "kind IN … AND
# value IN …" is answered from the unique index (kind, value) by both (SQLite: one search per pair).
OWNERS_PER_QUERY = 5_000
OWNERS = select(_KEYS.c.kind, _KEYS.c.value, _KEYS.c.person_id).where(
    _KEYS.c.kind.in_(bindparam("kinds", expanding=True)), _KEYS.c.value.in_(bindparam("values", expanding=True)))
INSERT_PERSONS = InsertRows(Person.__table__, returning=("id",), ordered=True)
CLAIM_KEYS = InsertRows(_KEYS, returning=("id",), ignoring_conflicts_on=("kind", "value"))
NEXT_KEY_IDS = text("SELECT nextval(pg_get_serial_sequence('identity_key', 'id')) FROM generate_series(1, :count)")
INSERT_LEADS = InsertRows(Lead.__table__, returning=("id", "person_id"))


class KeysTaken(Exception):
    """Another transaction claimed a key of the batch's new persons first: roll back and go event by event."""


@dataclass
class BatchEvent:
    """One event of a batch, mapped and prepared (contacts normalised, date parsed)."""

    source: Source
    event: EventRef
    draft: LeadDraft
    prepared: Prepared
    keys: list[Key] = field(init=False)     # its identity keys, sorted: what find_or_create_person claims

    def __post_init__(self) -> None:
        self.keys = sorted(set(self.prepared.contacts.keys))


def owners_of(session: Session, keys: Iterable[Key]) -> dict[Key, int]:
    """Who holds each of ``keys`` that anybody holds: one query per OWNERS_PER_QUERY keys."""
    wanted = sorted(set(keys))
    owners: dict[Key, int] = {}
    for start in range(0, len(wanted), OWNERS_PER_QUERY):
        chunk = wanted[start:start + OWNERS_PER_QUERY]
        asked = set(chunk)
        rows = execute(session, OWNERS, {"kinds": sorted({kind for kind, _ in chunk}),
                                         "values": sorted({value for _, value in chunk})})
        # The query asks for every kind × value; a messenger id may be a number another kind also has.
        owners.update({(r.kind, r.value): r.person_id for r in rows if (r.kind, r.value) in asked})
    return owners


def new_persons(batch: list[BatchEvent], owners: dict[Key, int]) -> list[bool]:
    """For each event, in order: True when nobody holds any of its keys and no earlier event of the batch
    has one of them — a new person, whatever happens to the other events."""
    seen: set[Key] = set()
    verdicts = []
    for item in batch:
        keys = item.keys
        verdicts.append(not any(k in owners or k in seen for k in keys))
        seen.update(keys)
    return verdicts


def attach_new_persons(session: Session, batch: list[BatchEvent], writes: DeferredWrites) -> list[Outcome]:
    """A person, their keys and a new lead for each event (all of them new persons: see new_persons), in
    three statements; their touches go into ``writes``. Raises KeysTaken when any key's claim lost."""
    if not batch:
        return []
    now = utcnow()
    person_ids = [pid for (pid,) in INSERT_PERSONS(session, [{"name": item.draft.name, "created_at": now}
                                                             for item in batch])]
    # The keys' ids in the order of their events, as the per-event path gives them (a person's keys are
    # listed by id, a merged person's too).
    keys = [{"kind": kind, "value": value, "person_id": person_id, "created_at": now}
            for item, person_id in zip(batch, person_ids, strict=True) for kind, value in item.keys]
    if session.get_bind().dialect.name == "postgresql":
        # Claimed in one global order, so that two workers' batches claiming some of the same keys queue on
        # the unique index instead of deadlocking (the per-event path sorts each event's keys): the ids are
        # taken from the sequence first, in the events' order. (SQLite: one writer at a time.)
        ids = execute(session, NEXT_KEY_IDS, {"count": len(keys)}).scalars().all()
        keys = sorted(({"id": key_id, **key} for key_id, key in zip(sorted(ids), keys, strict=True)),
                      key=lambda key: (key["kind"], key["value"]))
    claimed = CLAIM_KEYS(session, keys)
    if len(claimed) != len(keys):
        raise KeysTaken(f"{len(keys) - len(claimed)} of the batch's {len(keys)} new keys were claimed meanwhile")
    lead_of = dict((person_id, lead_id) for lead_id, person_id in INSERT_LEADS(session, [dict(
        person_id=person_id, status=LeadStatus.NEW, source=item.source.name, tags=list(item.source.config.tags),
        owner=None, reopened_count=0, created_at=item.prepared.at or item.event.received_at, updated_at=now,
        utm_campaign=item.draft.utm.get("utm_campaign")) for item, person_id in zip(batch, person_ids, strict=True)]))
    outcomes = []
    for item, person_id in zip(batch, person_ids, strict=True):
        found = LeadFound(lead_of[person_id], "created")
        attach_touch(writes, found, item.event, item.source, item.draft, item.prepared.contacts,
                     item.prepared.at or item.event.received_at)
        outcomes.append(Outcome(EventStatus.PROCESSED, found.lead_id, found.how,
                                LeadState(found.lead_id, found.status, found.owner, found.warmth)))
    return outcomes


def attach_batch(session: Session, config: Config, events: list[tuple[Source, EventRef]],
                 writes: DeferredWrites) -> list[Attached]:
    """process.attach for a worker's batch of events, in order, with the batch's new persons made together
    (attach_new_persons) and every other event through the per-event path after them. Raises what attach
    would (PayloadError for an event that can never be a lead) and KeysTaken: the worker then redoes the
    batch event by event."""
    items: list[BatchEvent | None] = []
    for source, event in events:
        if isinstance(event.payload, dict) and event.payload.get(ANNOTATES):
            items.append(None)          # a recording for another event's touch: attach() annotates it
            continue
        draft = map_event(source, event.payload)
        items.append(BatchEvent(source, event, draft, prepare(draft, source, config.identity)))
    mapped = [item for item in items if item is not None]
    verdicts = iter(new_persons(mapped, owners_of(session, (key for item in mapped for key in item.keys))))
    is_new = [item is not None and next(verdicts) for item in items]
    new = [item for item, new_one in zip(items, is_new, strict=True) if new_one and item is not None]
    made = iter(attach_new_persons(session, new, writes))
    attached: list[Attached] = []
    for (source, event), item, new_one in zip(events, items, is_new, strict=True):
        if item is None:
            attached.append(attach(session, source, event, config, writes))
        elif new_one:
            attached.append(Attached(next(made), (item.draft, item.prepared.contacts)))
        else:
            outcome, contacts = process_draft(session, source, event, item.draft, config.identity, writes,
                                              item.prepared)
            attached.append(Attached(outcome, (item.draft, contacts)))
    return attached
