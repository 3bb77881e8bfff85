"""Merging two persons, and undoing it. Never silent, always audited: a ``person_merge`` row records who,
when, why, and every row the merge changed with its previous value, so that unmerge restores the state
exactly (touches and keys that arrived *after* the merge stay with the kept person)."""

from __future__ import annotations

from sqlalchemy import case, or_, select, update
from sqlalchemy.orm import Session

from hub.errors import HubError
from hub.pipeline.normalise import normalise_email, normalise_phone
from hub.pipeline.vk_profiles import forget_vk_profiles
from hub.store.models import (
    IdentityKey,
    KeyKind,
    Lead,
    LeadHistory,
    LeadStatus,
    Person,
    PersonMerge,
    PossibleDuplicate,
    Touch,
    utcnow,
)


class MergeError(HubError):
    """A merge or unmerge that cannot be done as asked; the message says why."""


def find_person(session: Session, ref: str, region: str) -> Person | None:
    """A person by id, phone (any spelling) or e-mail."""
    if ref.isdigit() and len(ref) < 10:
        return session.get(Person, int(ref))
    if "@" in ref:
        kind, value = KeyKind.EMAIL, normalise_email(ref).value
    else:
        kind, value = KeyKind.PHONE, normalise_phone(ref, region).value
    if value is None:
        return None
    return session.scalars(select(Person).join(IdentityKey).where(IdentityKey.kind == kind,
                                                                  IdentityKey.value == value)).first()


def _lock_persons(session: Session, *ids: int) -> dict[int, Person]:
    rows = session.scalars(select(Person).where(Person.id.in_(ids)).order_by(Person.id).with_for_update()).all()
    found = {p.id: p for p in rows}
    for pid in ids:
        if pid not in found:
            raise MergeError(f"no person {pid}")
    return found


def _open_lead(session: Session, person_id: int) -> Lead | None:
    return session.scalars(select(Lead).where(Lead.person_id == person_id, Lead.status.in_(LeadStatus.OPEN),
                                              Lead.merged_into_id.is_(None))).first()


def merge_persons(session: Session, kept_id: int, merged_id: int, actor: str, reason: str | None = None) -> PersonMerge:
    if kept_id == merged_id:
        raise MergeError("a person cannot be merged into itself")
    persons = _lock_persons(session, kept_id, merged_id)
    kept, merged = persons[kept_id], persons[merged_id]
    for p in (kept, merged):
        if p.merged_into_id is not None:
            raise MergeError(f"person {p.id} was already merged into person {p.merged_into_id}")
    now = utcnow()
    moved: dict = {"keys": [], "leads": [], "touches": {}, "merged_leads": [], "name_taken": False,
                   "duplicates": []}

    moved["keys"] = list(session.scalars(select(IdentityKey.id).where(IdentityKey.person_id == merged_id)))
    session.execute(update(IdentityKey).where(IdentityKey.id.in_(moved["keys"])).values(person_id=kept_id))

    kept_open, merged_open = _open_lead(session, kept_id), _open_lead(session, merged_id)
    if kept_open is not None and merged_open is not None:
        # One person, one open lead: the merged person's open lead folds into the kept one.
        touches = list(session.scalars(select(Touch.id).where(Touch.lead_id == merged_open.id)))
        moved["touches"] = {str(t): merged_open.id for t in touches}
        session.execute(update(Touch).where(Touch.id.in_(touches)).values(lead_id=kept_open.id))
        merged_open.merged_into_id = kept_open.id
        moved["merged_leads"] = [merged_open.id]
        session.flush()
    moved["leads"] = list(session.scalars(select(Lead.id).where(Lead.person_id == merged_id)))
    session.execute(update(Lead).where(Lead.id.in_(moved["leads"])).values(person_id=kept_id))

    merged.merged_into_id = kept_id
    if not kept.name and merged.name:
        kept.name, moved["name_taken"] = merged.name, True
    pair = or_((PossibleDuplicate.person_id == kept_id) & (PossibleDuplicate.other_person_id == merged_id),
               (PossibleDuplicate.person_id == merged_id) & (PossibleDuplicate.other_person_id == kept_id))
    moved["duplicates"] = list(session.scalars(select(PossibleDuplicate.id).where(
        pair, PossibleDuplicate.resolved_by_merge_id.is_(None))))

    merge = PersonMerge(kept_person_id=kept_id, merged_person_id=merged_id, merged_by=actor, merged_at=now,
                        reason=reason, moved=moved)
    session.add(merge)
    session.flush()
    session.execute(update(PossibleDuplicate).where(PossibleDuplicate.id.in_(moved["duplicates"]))
                    .values(resolved_by_merge_id=merge.id))
    for lead_id in sorted(set(moved["leads"]) | ({kept_open.id} if kept_open else set())):
        session.add(LeadHistory(lead_id=lead_id, at=now, kind="merged", actor=actor,
                                data={"merge_id": merge.id, "kept_person_id": kept_id,
                                      "merged_person_id": merged_id, "reason": reason}))
    return merge


def unmerge_persons(session: Session, merge_id: int, actor: str) -> PersonMerge:
    merge = session.execute(select(PersonMerge).where(PersonMerge.id == merge_id)
                            .with_for_update()).scalar_one_or_none()
    if merge is None:
        raise MergeError(f"no merge {merge_id}")
    if merge.undone_at is not None:
        raise MergeError(f"merge {merge_id} was already undone by {merge.undone_by}"
                         f" at {merge.undone_at:%Y-%m-%d %H:%M}")
    persons = _lock_persons(session, merge.kept_person_id, merge.merged_person_id)
    kept, merged = persons[merge.kept_person_id], persons[merge.merged_person_id]
    moved, now = merge.moved, utcnow()

    session.execute(update(IdentityKey).where(IdentityKey.id.in_(moved["keys"])).values(person_id=merged.id))
    session.execute(update(Lead).where(Lead.id.in_(moved["leads"])).values(person_id=merged.id))
    session.execute(update(Lead).where(Lead.id.in_(moved["merged_leads"])).values(merged_into_id=None))
    for touch_id, lead_id in moved["touches"].items():
        session.execute(update(Touch).where(Touch.id == int(touch_id)).values(lead_id=lead_id))
    merged.merged_into_id = None
    if moved["name_taken"]:
        kept.name = None
    session.execute(update(PossibleDuplicate).where(PossibleDuplicate.id.in_(moved["duplicates"]))
                    .values(resolved_by_merge_id=None))
    merge.undone_at, merge.undone_by = now, actor
    affected = set(moved["leads"]) | {int(lid) for lid in moved["touches"].values()} | set(
        session.scalars(select(Lead.id).where(Lead.person_id == kept.id, Lead.status.in_(LeadStatus.OPEN))))
    for lead_id in sorted(affected):
        session.add(LeadHistory(lead_id=lead_id, at=now, kind="unmerged", actor=actor,
                                data={"merge_id": merge.id, "kept_person_id": kept.id, "merged_person_id": merged.id}))
    return merge


# -- privacy: export and erase one person (152-FZ / GDPR) ------------------------------------------------

ERASED = "(erased)"


def _person_rows(session: Session, person: Person) -> tuple[list[Lead], list[Touch], list]:
    from hub.store.models import InboundEvent

    leads = list(session.scalars(select(Lead).where(Lead.person_id == person.id).order_by(Lead.id)))
    touches = list(session.scalars(select(Touch).where(Touch.lead_id.in_([lead.id for lead in leads]))
                                   .order_by(Touch.id)))
    events = list(session.scalars(select(InboundEvent).where(InboundEvent.id.in_([t.event_id for t in touches]))
                                  .order_by(InboundEvent.id)))
    return leads, touches, events


def export_person(session: Session, person: Person) -> dict:
    """Everything the hub holds about one person."""
    from hub.store.models import Notification
    from hub.store.serialize import event_to_dict, lead_to_dict

    leads, _, events = _person_rows(session, person)
    notes = session.scalars(select(Notification).where(Notification.lead_id.in_([lead.id for lead in leads]))
                            .order_by(Notification.id))
    return {"person": {"id": person.id, "name": person.name, "created_at": person.created_at.isoformat(),
                       "keys": [{"kind": k.kind, "value": k.value} for k in person.keys]},
            "leads": [lead_to_dict(lead) for lead in leads],
            "raw_events": [event_to_dict(e, with_body=True) for e in events],
            "notifications": [{"id": n.id, "channel": n.channel, "recipient": n.recipient, "text": n.text,
                               "status": n.status, "created_at": n.created_at.isoformat()} for n in notes]}


def forget_person(session: Session, person: Person, actor: str) -> dict:
    """Erase the person's personal data everywhere it is held; keep the rows (statuses, sources, UTM,
    times) so counts, conversion and reconcile still add up. Their keys are deleted: if they write again,
    they are a new person. What managers wrote about them (notes, call-back tasks) is erased too: it is
    about the person, and often quotes them."""
    from hub.store.models import LeadTask, Notification, SinkLink

    leads, touches, events = _person_rows(session, person)
    lead_ids = [lead.id for lead in leads]
    tasks = list(session.scalars(select(LeadTask).where(LeadTask.lead_id.in_(lead_ids))))
    counts = {"keys": len(person.keys), "leads": len(leads), "touches": len(touches), "raw_events": len(events),
              "notes": 0, "tasks": len(tasks)}
    # Their VK name and city were cached by VK user id: they go with the keys.
    forget_vk_profiles(session, [k.value for k in person.keys if k.kind == "vk"])
    for key in list(person.keys):
        session.delete(key)
    person.name = None
    for t in touches:
        t.message, t.contacts, t.referrer = None, [], None
        t.landing_page = t.landing_page.split("?", 1)[0] if t.landing_page else None   # a query may hold an e-mail
    for e in events:
        e.body, e.payload, e.headers = b"", None, {}
    session.execute(update(Notification).where(Notification.lead_id.in_(lead_ids)).values(text=ERASED))
    # The answer to the client went to their own chat or address; one not sent yet never will be.
    session.execute(update(Notification).where(Notification.lead_id.in_(lead_ids), Notification.kind == "client_answer")
                    .values(recipient=ERASED, status=case((Notification.status == "pending", "dead"),
                                                          else_=Notification.status)))
    for task in tasks:
        task.text = ERASED
    # A CRM post under way keeps its texts (a note may quote a phone) to be recognised if its answer was lost:
    # forgotten too; at worst that post is made once more, with the erased text.
    for link in session.scalars(select(SinkLink).where(SinkLink.lead_id.in_(lead_ids))):
        remembered = link.remembered or {}
        if remembered.get("in_flight"):
            link.remembered = {**remembered, "in_flight": []}
    for entry in session.scalars(select(LeadHistory).where(LeadHistory.lead_id.in_(lead_ids))):
        if "keys" in entry.data:
            entry.data = {**entry.data, "keys": []}
        if entry.kind in ("note", "task") and "text" in entry.data:     # a note, or a task as it was set
            entry.data = {**entry.data, "text": ERASED}
            if entry.kind == "note":
                counts["notes"] += 1
    session.execute(update(PossibleDuplicate).where(or_(PossibleDuplicate.person_id == person.id,
                                                        PossibleDuplicate.other_person_id == person.id))
                    .values(keys=[]))
    for lead_id in lead_ids:
        session.add(LeadHistory(lead_id=lead_id, at=utcnow(), kind="forgotten", actor=actor,
                                data={"erased": counts}))
    return counts
