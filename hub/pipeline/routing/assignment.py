"""Giving a lead to its owner: a new or returning lead routed (warmth, then sticky owner or the matching
rule), the assignment written with its SLA clock and history entry, and the owner's notification queued
in the outbox."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, insert, update
from sqlalchemy.orm import Session

from hub.config import Config, RoutingRule
from hub.i18n import Msg
from hub.outbox.messages import language_of, render
from hub.pipeline.history import from_to, history
from hub.pipeline.routing.rules import WARMTH_ORDER, TouchFacts, availability, choose, judge_warmth, matching_rule
from hub.store.db import execute, mark_queued
from hub.store.models import Lead, LeadStatus, Notification, utcnow

_LEADS = Lead.__table__
INSERT_NOTIFICATION = insert(Notification.__table__)
# The columns to set come from the parameters (SQLAlchemy compiles and caches one statement per set of them).
UPDATE_LEAD = update(_LEADS).where(_LEADS.c.id == bindparam("b_lead_id"))


def lead_link(config: Config, lead_id: int) -> str:
    return f"{config.notify.base_url.rstrip('/')}/leads/{lead_id}"


def why_fields(why: str | Msg) -> dict:
    """A history entry's reason: English text for the API and CLI, and, for the hub's own reasons, the
    message itself so that each reader sees it in their language."""
    if isinstance(why, Msg):
        return {"why": str(why), "why_msg": why.to_json()}
    return {"why": why}


def queue_notifications(session: Session, config: Config, manager_name: str, lead_id: int | None, template: str,
                        **context) -> int:
    """Outbox rows for the manager's channels, in the manager's language and time zone (hub/outbox/messages.py);
    sent after commit by the notifier. Returns how many."""
    manager = config.manager(manager_name)
    if manager is None:
        return 0
    rows = []
    if manager.telegram_chat_id and config.notify.telegram:
        rows.append({"channel": "telegram", "recipient": manager.telegram_chat_id})
    if manager.email and config.notify.email:
        rows.append({"channel": "email", "recipient": manager.email})
    if not rows:
        return 0
    subject, text = render(config, template, language_of(session, config, manager_name), manager.timezone,
                           lead_id=lead_id, link=lead_link(config, lead_id) if lead_id else
                           f"{config.notify.base_url.rstrip('/')}/leads", **context)
    now = utcnow()
    for row in rows:
        execute(session, INSERT_NOTIFICATION, dict(
            row, lead_id=lead_id, subject=subject, text=text, status="pending", attempts=0,
            next_attempt_at=now, created_at=now))
    mark_queued(session, "notification")
    return len(rows)


def assign(session: Session, config: Config, lead_id: int, to: str | None, previous: str | None, why: str | Msg,
           rule: RoutingRule | None, now: datetime, kind: str = "assigned", actor: str = "hub",
           event_id: int | None = None, summary: str = "", reassign_count: int | None = None,
           also: dict | None = None) -> None:
    """Give the lead to ``to`` (None: leave it in the queue), start its SLA clock, log the handover and
    queue the new owner's notification. ``also``: other columns of the lead to set in the same UPDATE."""
    sla = rule.sla_minutes if rule else None
    values: dict[str, Any] = dict(owner=to, assigned_at=now if to else None, updated_at=now,
                                  sla_due_at=now + timedelta(minutes=sla) if (to and sla) else None,
                                  routing_rule=rule.name if rule else None)
    if reassign_count is not None:
        values["reassign_count"] = reassign_count
    values.update(also or {})
    execute(session, UPDATE_LEAD, {"b_lead_id": lead_id, **values})
    history(session, lead_id, kind, actor=actor, event_id=event_id, at=now, **from_to(previous, to),
            **why_fields(why))
    if to and kind == "assigned":
        queue_notifications(session, config, to, lead_id, "new_lead", about=summary)
    elif to:
        queue_notifications(session, config, to, lead_id, "handed_over", about=summary, previous=previous)


@dataclass
class LeadState:
    id: int
    status: str
    owner: str | None
    warmth: str | None


def route_lead(session: Session, config: Config, lead: LeadState, how: str, facts: TouchFacts,
               event_id: int | None, now: datetime, summary: str) -> None:
    """Warmth, then the owner: sticky while the owner is available, else the first matching rule."""
    warmth, score, decided_by = judge_warmth(config, facts)
    warmth_values: dict = {}
    if lead.warmth is None or WARMTH_ORDER[warmth] > WARMTH_ORDER.get(lead.warmth, -1):
        warmth_values = {"warmth": warmth, "score": score, "warmth_rule": decided_by}
        if lead.warmth is not None:
            history(session, lead.id, "warmth", event_id=event_id, at=now, **from_to(lead.warmth, warmth),
                    rule=decided_by)
        lead.warmth = warmth
    decision = _owner_for(session, config, lead, how, facts, event_id, now, summary)
    if decision is None:
        if warmth_values:
            execute(session, UPDATE_LEAD, {"b_lead_id": lead.id, **warmth_values})
        return
    to, why, rule = decision
    # The warmth goes into the assignment's UPDATE: one statement for the lead instead of two.
    assign(session, config, lead.id, to, lead.owner, why, rule, now, event_id=event_id, summary=summary,
           also=warmth_values)
    lead.owner = to             # a later event of the same lead in this transaction sees its owner


def _owner_for(session: Session, config: Config, lead: LeadState, how: str, facts: TouchFacts,
               event_id: int | None, now: datetime, summary: str) -> tuple[str | None, Msg, RoutingRule] | None:
    """Who should own the lead now, or None when nothing is to be assigned (what was decided instead is
    already in the history)."""
    if not config.routing.rules or lead.status not in LeadStatus.OPEN or (how == "existing" and lead.owner):
        return None                              # an owned lead keeps its owner when the person writes again
    rule = matching_rule(config, lead.warmth, facts)
    if lead.owner:
        why_not = availability(session, config, [lead.owner], now)[lead.owner]
        if why_not is None:
            if how == "reopened":
                history(session, lead.id, "assigned", event_id=event_id, at=now,
                        **from_to(lead.owner, lead.owner), **why_fields(Msg("sticky: the person's owner")))
                queue_notifications(session, config, lead.owner, lead.id, "lead_back", about=summary)
                if rule and rule.sla_minutes:
                    execute(session, UPDATE_LEAD, {"b_lead_id": lead.id, "assigned_at": now,
                                                   "sla_due_at": now + timedelta(minutes=rule.sla_minutes)})
            return None
    if rule is None:
        if lead.owner is None:
            history(session, lead.id, "unassigned", event_id=event_id, at=now,
                    **why_fields(Msg("no routing rule matched")))
        return None
    to, why = choose(session, config, rule, now)
    if to is None:
        to, why = _fallback(config, rule, why)
    if to is None and lead.owner is None:
        history(session, lead.id, "unassigned", event_id=event_id, at=now, **why_fields(why))
        return None
    return to, why, rule


def _fallback(config: Config, rule: RoutingRule, why: Msg) -> tuple[str | None, Msg]:
    team = config.team(rule.team)
    if config.routing.fallback == "team_lead" and team and team.lead:
        return team.lead, Msg.join(why, Msg("fallback: team lead"))
    return None, Msg.join(why, Msg("left in the queue"))
