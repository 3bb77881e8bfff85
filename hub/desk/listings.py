"""The command line's listings and records: newest leads and events, one lead, the handover log, persons and
their possible duplicates, dead deliveries, users and tokens."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    select,
    true,
)
from sqlalchemy.orm import Session, selectinload

from hub.config import Config
from hub.desk.queries import NEWEST, LeadFilter, page_of_leads
from hub.store.models import (
    DeliveryStatus,
    InboundEvent,
    Lead,
    LeadHistory,
    Person,
    PossibleDuplicate,
    SinkDelivery,
)
from hub.store.serialize import event_to_dict, lead_to_dict
from hub.store.users import ApiToken, User

# -- the command line's listings --------------------------------------------------------------------------
# An operator on the server sees everything: these read without an actor's scope. Users, tokens and
# open duplicates are a handful of rows, so those lists have no limit.

HANDOVER_KINDS = ("assigned", "reassigned", "escalated", "taken")


def _everything_of_a_lead() -> list[Any]:
    return [selectinload(Lead.person).selectinload(Person.keys), selectinload(Lead.touches),
            selectinload(Lead.history), selectinload(Lead.tasks)]


def _lead_with_everything():
    return select(Lead).where(Lead.merged_into_id.is_(None)).options(*_everything_of_a_lead())


def newest_leads(session: Session, config: Config, f: LeadFilter, limit: int = 50, order: str = NEWEST,
                 with_touches: bool = False) -> list[dict[str, Any]]:
    """Leads, newest first (or "due" first, see list_leads), merged ones left out."""
    page = page_of_leads(session, config, true(), f, limit, None, order, _everything_of_a_lead())
    return [lead_to_dict(lead, with_touches=with_touches) for lead in page.leads]


def lead_details(session: Session, lead_id: int) -> dict[str, Any] | None:
    """One lead with its person's keys, touches and history; None if there is none (or it was merged)."""
    lead = session.scalars(_lead_with_everything().where(Lead.id == lead_id)).one_or_none()
    return lead_to_dict(lead) if lead else None


def handover_log(session: Session, lead_id: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Every assignment, reassignment, escalation and take (of one lead, if given), newest first."""
    query = select(LeadHistory).where(LeadHistory.kind.in_(HANDOVER_KINDS)).order_by(LeadHistory.id.desc())
    if lead_id:
        query = query.where(LeadHistory.lead_id == lead_id)
    return [{"lead_id": h.lead_id, "at": h.at.isoformat(), "kind": h.kind, "from": h.data.get("from"),
             "to": h.data.get("to"), "why": h.data.get("why"), "by": h.actor}
            for h in session.scalars(query.limit(limit))]


def person_details(session: Session, person: Person) -> dict[str, Any]:
    """A person's keys and leads (merged ones too, marked)."""
    leads_of = session.scalars(select(Lead).where(Lead.person_id == person.id).order_by(Lead.id)).all()
    return {"id": person.id, "name": person.name, "merged_into_id": person.merged_into_id,
            "keys": [f"{k.kind}:{k.value}" for k in person.keys],
            "leads": [{"id": lead.id, "status": lead.status, "merged_into_id": lead.merged_into_id}
                      for lead in leads_of]}


def possible_duplicates(session: Session, include_resolved: bool = False) -> list[dict[str, Any]]:
    """Pairs of persons one delivery's keys pointed to at once, oldest first."""
    query = select(PossibleDuplicate).order_by(PossibleDuplicate.id)
    if not include_resolved:
        query = query.where(PossibleDuplicate.resolved_by_merge_id.is_(None))
    return [{"id": d.id, "person_id": d.person_id, "other_person_id": d.other_person_id, "keys": d.keys,
             "event_id": d.event_id, "created_at": d.created_at.isoformat(),
             "resolved_by_merge_id": d.resolved_by_merge_id} for d in session.scalars(query)]


def newest_events(session: Session, status: str | None = None, source: str | None = None,
                  limit: int = 50) -> list[dict[str, Any]]:
    """Inbound events of every source (or one), newest first."""
    query = select(InboundEvent).order_by(InboundEvent.id.desc()).limit(limit)
    if status:
        query = query.where(InboundEvent.status == status)
    if source:
        query = query.where(InboundEvent.source == source)
    return [event_to_dict(e) for e in session.scalars(query)]


def event_details(session: Session, event_id: int) -> dict[str, Any] | None:
    """One event with its raw body and headers."""
    event = session.get(InboundEvent, event_id)
    return event_to_dict(event, with_body=True) if event else None


def dead_deliveries(session: Session, limit: int = 100) -> list[dict[str, Any]]:
    """Sink deliveries that gave up, oldest first, with their last error."""
    return [{"id": d.id, "sink": d.sink, "lead_id": d.lead_id, "attempts": d.attempts, "last_error": d.last_error}
            for d in session.scalars(select(SinkDelivery).where(SinkDelivery.status == DeliveryStatus.DEAD)
                                     .order_by(SinkDelivery.id).limit(limit))]


def has_users(session: Session) -> bool:
    return session.scalar(select(User.id).limit(1)) is not None


def users_overview(session: Session) -> list[dict[str, Any]]:
    """Every user with role, manager link and last sign-in, by login."""
    return [{"login": u.login, "role": u.role, "manager": u.manager, "disabled": u.disabled,
             "last_login_at": u.last_login_at.isoformat() if u.last_login_at else None}
            for u in session.scalars(select(User).order_by(User.login))]


def api_tokens_overview(session: Session) -> list[dict[str, Any]]:
    """Every API token with its user, name, prefix and last use; never the token itself."""
    return [{"id": t.id, "login": u.login, "name": t.name, "prefix": t.prefix,
             "created_at": t.created_at.isoformat(),
             "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
             "revoked": t.revoked_at is not None}
            for t, u in session.execute(select(ApiToken, User).join(User, User.id == ApiToken.user_id)
                                        .order_by(ApiToken.id))]


