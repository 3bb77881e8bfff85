"""The clocks on a lead: the sweep that reassigns a lead not taken within its rule's SLA (or escalates it
to the team lead), the follow-up clock of a lead in work, and the team leads' daily digest of what is
waiting."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from hub.config import Config
from hub.i18n import Msg
from hub.outbox.forwarding import queue_forwarding
from hub.pipeline.history import from_to, history
from hub.pipeline.routing.assignment import UPDATE_LEAD, assign, queue_notifications, why_fields
from hub.pipeline.routing.rules import choose
from hub.store.db import execute
from hub.store.models import Lead, LeadStatus

_LEADS = Lead.__table__
OVERDUE = (select(_LEADS.c.id, _LEADS.c.owner, _LEADS.c.routing_rule, _LEADS.c.reassign_count)
           .where(_LEADS.c.status == LeadStatus.NEW, _LEADS.c.owner.is_not(None),
                  _LEADS.c.sla_due_at <= bindparam("now"), _LEADS.c.merged_into_id.is_(None))
           .order_by(_LEADS.c.sla_due_at).limit(200).with_for_update(skip_locked=True))


def restart_follow_up(session: Session, config: Config, lead: Lead, now: datetime) -> None:
    """Its owner acted on a lead in work (took it, tried to call, wrote a note, set a call-back): the
    follow-up clock starts again from now, by the lead's routing rule's ``follow_up_hours`` (none: no clock)."""
    rule = next((r for r in config.routing.rules if r.name == lead.routing_rule), None)
    hours = rule.follow_up_hours if rule else None
    in_work = lead.status == LeadStatus.IN_WORK
    lead.follow_up_due_at = now + timedelta(hours=hours) if hours and in_work else None
    lead.follow_up_stage = 0


def sweep_sla(session: Session, config: Config, now: datetime) -> list[dict]:
    """Reassign every lead not taken within its rule's SLA; after max_reassignments, escalate to the
    team lead. Returns what it did."""
    done = []
    rules = {r.name: r for r in config.routing.rules}
    for lead in execute(session, OVERDUE, {"now": now}).all():
        rule = rules.get(lead.routing_rule)
        team = config.team(rule.team) if rule else None
        minutes = rule.sla_minutes if rule else None
        why = Msg("SLA: not taken within %(minutes)s min", minutes=f"{minutes:g}") if minutes \
            else Msg("SLA: not taken in time")
        to = None
        if rule and lead.reassign_count < config.routing.max_reassignments:
            to, how = choose(session, config, rule, now, exclude=lead.owner)
            why = Msg.join(why, how)
        queue_forwarding(session, config, lead.id)          # reassigned or escalated: the sinks hear of it
        if to is not None:
            assign(session, config, lead.id, to, lead.owner, why, rule, now, kind="reassigned",
                   reassign_count=lead.reassign_count + 1)
            done.append({"lead_id": lead.id, "from": lead.owner, "to": to, "kind": "reassigned"})
            continue
        # Out of reassignments, or nobody else available: the team lead decides; the clock stops.
        lead_of_team = team.lead if team else None
        execute(session, UPDATE_LEAD, {"b_lead_id": lead.id, "sla_due_at": None,
                                       **({"owner": lead_of_team, "assigned_at": now} if lead_of_team else {})})
        history(session, lead.id, "escalated", at=now, **from_to(lead.owner, lead_of_team or lead.owner),
                **why_fields(Msg.join(why, Msg("escalated to the team lead"))))
        if lead_of_team:
            queue_notifications(session, config, lead_of_team, lead.id, "escalated", previous=lead.owner)
        done.append({"lead_id": lead.id, "from": lead.owner, "to": lead_of_team, "kind": "escalated"})
    return done


def digest(session: Session, config: Config, now: datetime) -> int:
    """Tell each team lead what is waiting: leads in the queue, and leads past their SLA. Returns how many
    messages were queued."""
    queued = session.execute(select(Lead.id, Lead.source, Lead.created_at).where(
        Lead.owner.is_(None), Lead.status.in_(LeadStatus.OPEN), Lead.merged_into_id.is_(None))
        .order_by(Lead.id)).all()
    sla = {r.name: r.sla_minutes for r in config.routing.rules if r.sla_minutes}
    owned = session.execute(select(Lead.id, Lead.owner, Lead.assigned_at, Lead.routing_rule).where(
        Lead.status == LeadStatus.NEW, Lead.owner.is_not(None), Lead.merged_into_id.is_(None))
        .order_by(Lead.assigned_at)).all()
    # Not taken within the rule's SLA, escalated ones included (their clock no longer runs).
    overdue = [r for r in owned if r.routing_rule in sla and r.assigned_at is not None
               and r.assigned_at + timedelta(minutes=sla[r.routing_rule]) <= now]
    if not queued and not overdue:
        return 0
    sent = 0
    for lead_of_team in sorted({t.lead for t in config.teams if t.lead}):
        sent += queue_notifications(session, config, lead_of_team, None, "digest", today=now.date(),
                                    queued=queued, overdue=overdue)
    return sent
