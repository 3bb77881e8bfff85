"""Giving a lead to its owner: a new or returning lead routed (warmth, then sticky owner or the matching
rule, then the fallback: only ever to someone available), the assignment written with its SLA clock and
history entry, and the owner's notification queued in the outbox. A lead nobody can take waits in the
queue, on its rule's SLA clock too, and the on-duty team leads hear of it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from hub.config import Config
from hub.i18n import Msg
from hub.outbox.messages import language_of, render
from hub.pipeline.history import from_to, history
from hub.pipeline.routing.rules import (
    WARMTH_ORDER,
    TouchFacts,
    availability,
    choose,
    judge_warmth,
    matching_rule,
    next_in_team,
    on_duty,
)
from hub.sales_config import RoutingRule
from hub.store.db import Prebuilt, execute, mark_queued
from hub.store.models import Lead, LeadStatus, Notification, TelegramLink, utcnow

_LEADS = Lead.__table__
INSERT_NOTIFICATION = insert(Notification.__table__)
# The columns to set come from the parameters (SQLAlchemy compiles and caches one statement per set of them).
UPDATE_LEAD = update(_LEADS).where(_LEADS.c.id == bindparam("b_lead_id"))
# A lead already waiting in the queue under a rule (its person wrote again) keeps the clock it has.
ENTER_QUEUE = update(_LEADS).where(_LEADS.c.id == bindparam("b_lead_id"), _LEADS.c.routing_rule.is_(None))


@cache
def _update_lead_setting(columns: tuple[str, ...]) -> Prebuilt:
    return Prebuilt(update(_LEADS).where(_LEADS.c.id == bindparam("b_lead_id"))
                    .values({column: bindparam(column) for column in columns}))


def update_lead(session: Session, lead_id: int, values: dict[str, Any]) -> int:
    """UPDATE_LEAD for the routing of every new lead: one prebuilt statement per set of columns (on SQLite run
    on the DBAPI cursor). Returns the rows it changed."""
    return _update_lead_setting(tuple(sorted(values))).run(session, {"b_lead_id": lead_id, **values})


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
    if config.notify.telegram:
        # The chat the manager linked with /link (hub/desk/manager_bot.py) wins over the configured one.
        chat_id = session.scalar(select(TelegramLink.chat_id).where(TelegramLink.manager == manager_name)) \
            or manager.telegram_chat_id
        if chat_id:
            rows.append({"channel": "telegram", "recipient": chat_id})
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
            row, lead_id=lead_id, kind=template, subject=subject, text=text, status="pending", attempts=0,
            next_attempt_at=now, created_at=now))
    mark_queued(session, "notification")
    return len(rows)


def alert_team_leads(session: Session, config: Config, lead_id: int, teams: list[str] | None, now: datetime,
                     **context) -> list[str]:
    """Tell every on-duty team lead of these teams — none of them on duty, or no teams: every on-duty team
    lead — that the lead waits in the queue (template queued.txt). Returns whom."""
    def leads_of(names: list[str] | None) -> list[str]:
        return sorted({t.lead for t in config.teams if t.lead and (names is None or t.name in names)})
    told = on_duty(session, config, leads_of(teams), now) if teams else []
    told = told or on_duty(session, config, leads_of(None), now)
    for name in told:
        queue_notifications(session, config, name, lead_id, "queued", **context)
    return told


def alerted(told: list[str]) -> Msg:
    """alert_team_leads' outcome as a reason for the lead's history."""
    return Msg("team leads alerted: %(names)s", names=", ".join(told)) if told \
        else Msg("no team lead on duty to alert")


def assign(session: Session, config: Config, lead_id: int, to: str | None, previous: str | None, why: str | Msg,
           rule: RoutingRule | None, now: datetime, kind: str = "assigned", actor: str = "hub",
           event_id: int | None = None, summary: str = "", reassign_count: int | None = None,
           also: dict | None = None) -> None:
    """Give the lead to ``to`` (None: leave it in the queue), start its SLA clock (in the queue too), log the
    handover and queue the new owner's notification. ``also``: other columns of the lead to set in the same
    UPDATE."""
    sla = rule.sla_minutes if rule else None
    values: dict[str, Any] = dict(owner=to, assigned_at=now if to else None, updated_at=now,
                                  sla_due_at=now + timedelta(minutes=sla) if sla else None,
                                  routing_rule=rule.name if rule else None)
    if reassign_count is not None:
        values["reassign_count"] = reassign_count
    values.update(also or {})
    update_lead(session, lead_id, values)
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
            update_lead(session, lead.id, warmth_values)
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
                    update_lead(session, lead.id, {"assigned_at": now,
                                                   "sla_due_at": now + timedelta(minutes=rule.sla_minutes)})
            return None
    if rule is None:
        if lead.owner is None:
            history(session, lead.id, "unassigned", event_id=event_id, at=now,
                    **why_fields(Msg("no routing rule matched")))
        return None
    to, why = choose(session, config, rule, now)
    if to is None:
        to, why = _fallback(session, config, rule, why, now)
    if to is not None:
        return to, why, rule
    # The queue. An owned lead gets there (and on the queue's clock) by assign(None); an unowned one here.
    entered = lead.owner is not None or _enter_queue(session, rule, lead.id, how, now)
    if entered and config.routing.fallback == "team_lead":     # "queue": the queue is where leads wait anyway
        why = Msg.join(why, alerted(alert_team_leads(session, config, lead.id, [rule.team], now, about=summary,
                                                     why=why, minutes=None)))
    if lead.owner is not None:
        return None, why, rule
    history(session, lead.id, "unassigned", event_id=event_id, at=now, **why_fields(why))
    return None


def _fallback(session: Session, config: Config, rule: RoutingRule, why: Msg,
              now: datetime) -> tuple[str | None, Msg]:
    """Nobody the rule may choose is available. "team_lead": the team lead if available, else the next
    available member of the rule's team; else (and with "queue") nobody: the lead waits in the queue."""
    if config.routing.fallback == "team_lead":
        team = config.team(rule.team)
        if team and team.lead:
            why_not = availability(session, config, [team.lead], now)[team.lead]
            if why_not is None:
                return team.lead, Msg.join(why, Msg("fallback: team lead"))
            why = Msg.join(why, Msg("team lead %(name)s: %(why)s", name=team.lead, why=why_not))
        if rule.strategy == "fixed":    # choose looked at the rule's one manager: the rest of its team may be in
            to, how = next_in_team(session, config, rule, now, skip=(rule.manager, team.lead if team else None))
            if to is not None:
                return to, Msg.join(why, how)
            why = Msg.join(why, how)
    return None, Msg.join(why, Msg("left in the queue"))


def _enter_queue(session: Session, rule: RoutingRule, lead_id: int, how: str, now: datetime) -> bool:
    """An unowned lead waits in the queue under its rule, on the rule's SLA clock; True when it entered the
    queue now, False when it was already waiting there (its person wrote again: the clock runs on)."""
    values = {"routing_rule": rule.name,
              "sla_due_at": now + timedelta(minutes=rule.sla_minutes) if rule.sla_minutes else None}
    if how == "existing":
        return execute(session, ENTER_QUEUE, {"b_lead_id": lead_id, **values}).rowcount == 1
    return update_lead(session, lead_id, values) == 1
