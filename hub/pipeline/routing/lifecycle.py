"""The lead's state machine under operators' commands — take, converted or refused, a contact attempt,
reassign — and a manager's duty and vacation. Each command locks the lead, refuses what cannot be done
with a RoutingError that says why, and logs what it did."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.config import Config
from hub.errors import HubError
from hub.i18n import Msg
from hub.outbox.forwarding import queue_forwarding
from hub.pipeline.history import from_to, history
from hub.pipeline.routing.assignment import UPDATE_LEAD, assign, why_fields
from hub.pipeline.routing.rules import forget_manager_states
from hub.pipeline.routing.sla import restart_follow_up
from hub.store.db import execute, insert_ignoring_conflicts
from hub.store.models import Lead, LeadHistory, LeadStatus, ManagerState

# What hands a lead to someone (or to the queue): the moment the lead's clock for its next owner starts.
HANDOVERS = ("assigned", "reassigned", "escalated")
_CLOCK_KINDS = (*HANDOVERS, "unassigned", "reopened", "taken", "attempt")


class RoutingError(HubError):
    """An operator's lead or manager command that cannot be done as asked; the message says why (in
    English as ``str()``, in the reader's language through ``msg.translate``)."""

    def __init__(self, msg: Msg):
        self.msg = msg
        super().__init__(str(msg))


def lock_lead(session: Session, lead_id: int) -> Lead:
    lead = session.execute(select(Lead).where(Lead.id == lead_id).with_for_update()).scalar_one_or_none()
    if lead is None or lead.merged_into_id is not None:
        raise RoutingError(Msg("no lead %(id)s", id=lead_id) if lead is None else
                           Msg("lead %(id)s was merged into lead %(into)s", id=lead_id, into=lead.merged_into_id))
    return lead


def take(session: Session, config: Config, lead_id: int, manager: str, now: datetime) -> Lead:
    if config.manager(manager) is None:
        raise RoutingError(Msg("no manager named %(name)r", name=manager))
    lead = lock_lead(session, lead_id)
    if lead.status != LeadStatus.NEW:
        raise RoutingError(Msg("lead %(id)s is %(status)s; only a new lead can be taken", id=lead_id,
                               status=lead.status))
    if lead.owner not in (None, manager):
        raise RoutingError(Msg("lead %(id)s belongs to %(owner)s; reassign it first", id=lead_id, owner=lead.owner))
    previous = lead.owner
    waited_s = _seconds(now, _waiting_since(session, lead))
    lead.status, lead.owner, lead.taken_at, lead.sla_due_at, lead.updated_at = \
        LeadStatus.IN_WORK, manager, now, None, now
    history(session, lead_id, "taken", actor=manager, at=now, **from_to(previous, manager),
            **why_fields(Msg("taken into work")), waited_s=waited_s)
    restart_follow_up(session, config, lead, now)
    queue_forwarding(session, config, lead_id, lead.source)
    return lead


def set_status(session: Session, config: Config, lead_id: int, status: str, reason: str | None, actor: str,
               now: datetime, amount: Decimal | None = None) -> Lead:
    """Converted (with the deal's amount, if known) or refused (with a reason from [[refuse_reasons]])."""
    lead = lock_lead(session, lead_id)
    if status not in (LeadStatus.CONVERTED, LeadStatus.REFUSED):
        raise RoutingError(Msg("status %(status)r: set converted or refused (new → in_work is `take`)",
                               status=status))
    if lead.status not in LeadStatus.OPEN:
        raise RoutingError(Msg("lead %(id)s is already %(status)s", id=lead_id, status=lead.status))
    if status == LeadStatus.REFUSED:
        known = ", ".join(r.code for r in config.refuse_reasons)
        if reason is None:
            raise RoutingError(Msg("a refusal needs a reason: one of %(known)s", known=known))
        rr = config.refuse_reason(reason)
        if rr is None:
            raise RoutingError(Msg("unknown refusal reason %(reason)r (known: %(known)s)", reason=reason, known=known))
        if lead.contact_attempts < rr.min_attempts:
            raise RoutingError(Msg('"%(reason)s" needs %(needed)s contact attempts; lead %(id)s has %(has)s',
                                   reason=Msg(rr.label), needed=rr.min_attempts, id=lead_id,
                                   has=lead.contact_attempts))
    elif reason is not None:
        raise RoutingError(Msg("--reason goes with refused only"))
    if amount is not None and (status != LeadStatus.CONVERTED or amount < 0):
        raise RoutingError(Msg("an amount goes with converted only, and is not negative"))
    previous = lead.status
    lead.status, lead.refuse_reason, lead.sla_due_at, lead.updated_at = status, reason, None, now
    lead.amount, lead.follow_up_due_at = amount, None
    extra: dict[str, Any] = {"amount": str(amount)} if amount is not None else {}
    history(session, lead_id, "status", actor=actor, at=now, **from_to(previous, status), reason=reason, **extra)
    queue_forwarding(session, config, lead_id, lead.source)
    return lead


def count_attempt(session: Session, config: Config, lead_id: int, actor: str, now: datetime) -> Lead:
    lead = lock_lead(session, lead_id)
    if lead.status not in LeadStatus.OPEN:
        raise RoutingError(Msg("lead %(id)s is %(status)s", id=lead_id, status=lead.status))
    given_at = _first_attempt_clock(session, lead, actor)
    lead.contact_attempts += 1
    lead.updated_at = now
    # The owner's first attempt since the lead was given to them: how long it took (the managers report).
    timing = {"after_s": _seconds(now, given_at)} if given_at is not None else {}
    history(session, lead_id, "attempt", actor=actor, at=now, number=lead.contact_attempts, **timing)
    restart_follow_up(session, config, lead, now)
    return lead


def _clock_entries(session: Session, lead_id: int):
    """The lead's entries that start or stop the speed clocks, oldest first (a lead has a handful)."""
    return session.execute(select(LeadHistory.kind, LeadHistory.at, LeadHistory.actor, LeadHistory.data)
                           .where(LeadHistory.lead_id == lead_id, LeadHistory.kind.in_(_CLOCK_KINDS))
                           .order_by(LeadHistory.id)).all()


def _waiting_since(session: Session, lead: Lead) -> datetime:
    """Since when the lead has waited to be taken: its last handover (to its owner, or into the queue), or its
    reopening, else its creation (the first touch's time). Read from the history rather than ``assigned_at``,
    which a returning person's lead given back to its owner keeps from the first assignment when its rule has
    no SLA."""
    since = None
    for kind, at, _, data in _clock_entries(session, lead.id):
        if kind in ("unassigned", "reopened") or _handed_over(kind, data):
            since = at
    return since or lead.created_at


def _first_attempt_clock(session: Session, lead: Lead, actor: str) -> datetime | None:
    """When the lead was given to ``actor`` — handed over to them, or taken by them from the queue — if this
    attempt is their first since then and the lead is theirs; else None (nothing to time)."""
    if lead.owner != actor:
        return None
    given_at: datetime | None = None
    tried = False
    for kind, at, by, data in _clock_entries(session, lead.id):
        if (_handed_over(kind, data) and (data or {}).get("to") == actor) or \
                (kind == "taken" and by == actor and (data or {}).get("from") is None):
            given_at, tried = at, False
        elif kind == "attempt" and by == actor:
            tried = True
    return None if tried else given_at


def _handed_over(kind: str, data: dict | None) -> bool:
    """A handover that starts a new owner's clock: not an escalation that found no team lead and left the
    lead where it was (its from and to are the same owner); a returning lead given back to its owner is one."""
    return kind in HANDOVERS and not (kind == "escalated" and (data or {}).get("from") == (data or {}).get("to"))


def _seconds(now: datetime, since: datetime) -> int:
    return max(0, int((now - since).total_seconds()))


def reassign(session: Session, config: Config, lead_id: int, to: str, why: str | Msg, actor: str,
             now: datetime) -> Lead:
    if config.manager(to) is None:
        raise RoutingError(Msg("no manager named %(name)r", name=to))
    lead = lock_lead(session, lead_id)
    if lead.status not in LeadStatus.OPEN:
        raise RoutingError(Msg("lead %(id)s is %(status)s; only open leads are reassigned", id=lead_id,
                               status=lead.status))
    rule = next((r for r in config.routing.rules if r.name == lead.routing_rule), None)
    assign(session, config, lead_id, to, lead.owner, why, rule, now, kind="reassigned", actor=actor)
    queue_forwarding(session, config, lead_id, lead.source)
    if lead.status == LeadStatus.IN_WORK:       # already taken: the new owner works on, no SLA clock
        execute(session, UPDATE_LEAD, {"b_lead_id": lead_id, "sla_due_at": None})
        session.refresh(lead)
        restart_follow_up(session, config, lead, now)     # the new owner's follow-up starts from now
        session.flush()
    session.expire(lead)
    return lead


def set_manager_state(session: Session, config: Config, name: str, actor: str, now: datetime,
                      on_duty: bool | None = None, vacation_until: datetime | None = None,
                      clear_vacation: bool = False) -> ManagerState:
    if config.manager(name) is None:
        raise RoutingError(Msg("no manager named %(name)r (known: %(known)s)", name=name,
                               known=", ".join(m.name for m in config.managers)))
    forget_manager_states(session)
    insert_ignoring_conflicts(session, ManagerState.__table__, ["name"],
                              {"name": name, "on_duty": True, "updated_at": now})
    state = session.execute(select(ManagerState).where(ManagerState.name == name).with_for_update()).scalar_one()
    if on_duty is not None:
        state.on_duty = on_duty
    if vacation_until is not None or clear_vacation:
        state.vacation_until = vacation_until
    state.updated_at, state.updated_by = now, actor
    return state
