"""The clocks on a lead, swept by the scheduler's leader: a lead not taken within its rule's SLA is
reassigned (or escalated to the team lead); a lead left in the queue past that SLA is told to the on-duty
team leads; a lead in work left untouched for its rule's follow_up_hours reminds its owner, then the team
lead; a call-back task due reminds the lead's owner. Each sweep claims its rows with SKIP LOCKED, acts once
per step and writes the step in the lead's history. And the team leads' daily digest of what is waiting."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from hub.config import Config
from hub.i18n import Msg
from hub.outbox.forwarding import queue_forwarding
from hub.pipeline.history import from_to, history
from hub.pipeline.routing.assignment import (
    UPDATE_LEAD,
    alert_team_leads,
    alerted,
    assign,
    queue_notifications,
    why_fields,
)
from hub.pipeline.routing.rules import choose
from hub.store.db import execute
from hub.store.models import IdentityKey, KeyKind, Lead, LeadHistory, LeadStatus, LeadTask, Person

_LEADS = Lead.__table__
OVERDUE = (select(_LEADS.c.id, _LEADS.c.owner, _LEADS.c.routing_rule, _LEADS.c.reassign_count)
           .where(_LEADS.c.status == LeadStatus.NEW, _LEADS.c.owner.is_not(None),
                  _LEADS.c.sla_due_at <= bindparam("now"), _LEADS.c.merged_into_id.is_(None))
           .order_by(_LEADS.c.sla_due_at).limit(200).with_for_update(skip_locked=True))
# Leads in the queue (nobody could take them) past their rule's SLA: told to the team leads once (the clock
# then stops, as an escalated lead's does).
QUEUE_OVERDUE = (select(_LEADS.c.id, _LEADS.c.routing_rule)
                 .where(_LEADS.c.status == LeadStatus.NEW, _LEADS.c.owner.is_(None),
                        _LEADS.c.sla_due_at <= bindparam("now"), _LEADS.c.merged_into_id.is_(None))
                 .order_by(_LEADS.c.sla_due_at).limit(200).with_for_update(skip_locked=True))
FOLLOW_UP_DUE = (select(_LEADS.c.id, _LEADS.c.owner, _LEADS.c.routing_rule, _LEADS.c.follow_up_stage,
                        _LEADS.c.follow_up_due_at, _LEADS.c.contact_attempts)
                 .where(_LEADS.c.status == LeadStatus.IN_WORK, _LEADS.c.owner.is_not(None),
                        _LEADS.c.follow_up_due_at <= bindparam("now"), _LEADS.c.follow_up_stage < 2,
                        _LEADS.c.merged_into_id.is_(None))
                 .order_by(_LEADS.c.follow_up_due_at).limit(200).with_for_update(skip_locked=True))
# What restarts the follow-up clock (hub/pipeline/routing/lifecycle.py, hub/pipeline/worklog.py): the last of
# them says how long a lead has gone untouched.
WORKED_KINDS = ("taken", "attempt", "note", "task", "task_done")
_HISTORY = LeadHistory.__table__
LAST_WORKED = (select(_HISTORY.c.lead_id, func.max(_HISTORY.c.at))
               .where(_HISTORY.c.lead_id.in_(bindparam("lead_ids", expanding=True)),
                      _HISTORY.c.kind.in_(WORKED_KINDS)).group_by(_HISTORY.c.lead_id))
_TASKS = LeadTask.__table__
# Only the task rows are locked: the lead's row stays free for its owner working it meanwhile.
TASKS_DUE = (select(_TASKS.c.id, _TASKS.c.lead_id, _TASKS.c.text, _TASKS.c.due_at, _TASKS.c.created_by,
                    _LEADS.c.owner)
             .join(_LEADS, _LEADS.c.id == _TASKS.c.lead_id)
             # A closed lead's call-back is not reminded (it would be, should the lead reopen).
             .where(_TASKS.c.done_at.is_(None), _TASKS.c.reminded_at.is_(None), _TASKS.c.due_at <= bindparam("now"),
                    _LEADS.c.status.in_(LeadStatus.OPEN))
             .order_by(_TASKS.c.due_at).limit(200).with_for_update(skip_locked=True, of=_TASKS))
UPDATE_TASK = update(_TASKS).where(_TASKS.c.id == bindparam("b_task_id"))


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


def digest(session: Session, config: Config, now: datetime, team_leads: list[str] | None = None,
           yesterday: dict[str, list[dict]] | None = None) -> int:
    """Tell each team lead (or those named) what is waiting: leads in the queue, and their teams' leads past
    the SLA; with ``yesterday`` (team lead → rows per manager, from the managers report) also yesterday's
    numbers per manager. Returns how many messages were queued."""
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
    sent = 0
    for lead_of_team in team_leads if team_leads is not None else sorted({t.lead for t in config.teams if t.lead}):
        teams = {t.name for t in config.teams if t.lead == lead_of_team}
        theirs = {m.name for m in config.managers if m.team in teams} | {lead_of_team}
        their_overdue = [r for r in overdue if r.owner in theirs]
        numbers = (yesterday or {}).get(lead_of_team) or []
        if not queued and not their_overdue and not any(_did_something(row) for row in numbers):
            continue
        sent += queue_notifications(session, config, lead_of_team, None, "digest", today=now.date(),
                                    queued=queued, overdue=their_overdue, yesterday=numbers)
    return sent


def _did_something(row: dict) -> bool:
    return any(row.get(k) for k in ("received", "taken", "converted", "refused", "attempts"))


def sweep_queue(session: Session, config: Config, now: datetime) -> list[dict]:
    """Leads left in the queue past their rule's SLA: every on-duty team lead of the rule's team (none:
    every on-duty team lead) is alerted, once. They stay in the queue, and in the digest."""
    done: list[dict] = []
    rules = {r.name: r for r in config.routing.rules}
    waiting = execute(session, QUEUE_OVERDUE, {"now": now}).all()
    about = _about(session, [lead.id for lead in waiting])
    for lead in waiting:
        rule = rules.get(lead.routing_rule)
        minutes = rule.sla_minutes if rule else None
        why = Msg("SLA: not taken from the queue within %(minutes)s min", minutes=f"{minutes:g}") if minutes \
            else Msg("SLA: not taken from the queue in time")
        told = alert_team_leads(session, config, lead.id, [rule.team] if rule else None, now,
                                about=about[lead.id].summary, why=why, minutes=f"{minutes:g}" if minutes else None)
        execute(session, UPDATE_LEAD, {"b_lead_id": lead.id, "sla_due_at": None})
        history(session, lead.id, "queue_escalated", at=now, alerted=told, **why_fields(Msg.join(why, alerted(told))))
        done.append({"lead_id": lead.id, "from": None, "to": ", ".join(told) or None, "kind": "queue_escalated"})
    return done


def sweep_follow_up(session: Session, config: Config, now: datetime) -> list[dict]:
    """Leads in work whose follow-up is due: the first time its owner is reminded (and the clock runs once
    more), the second time the team lead of the rule's team is told, and the clock stops."""
    done: list[dict] = []
    rules = {r.name: r for r in config.routing.rules}
    due = execute(session, FOLLOW_UP_DUE, {"now": now}).all()
    if not due:
        return done
    about = _about(session, [lead.id for lead in due])
    worked = dict(execute(session, LAST_WORKED, {"lead_ids": [lead.id for lead in due]}).all())
    # The reasons that need contact attempts first ("no answer after 5 attempts"): how far the owner is.
    needs = [r for r in config.refuse_reasons if r.min_attempts]
    for lead in due:
        rule = rules.get(lead.routing_rule)
        hours = rule.follow_up_hours if rule else None
        if rule is None or not hours:     # the rule has no follow-up (any more): no clock, as restart_follow_up
            execute(session, UPDATE_LEAD, {"b_lead_id": lead.id, "follow_up_due_at": None, "follow_up_stage": 0})
            continue
        untouched = now - worked.get(lead.id, lead.follow_up_due_at - timedelta(hours=hours))
        facts = dict(about=about[lead.id].summary, untouched=untouched, attempts=lead.contact_attempts, needs=needs)
        idle = Msg("no contact attempt, note or call-back for %(hours)s h",
                   hours=f"{untouched.total_seconds() / 3600:.1f}".removesuffix(".0"))
        if lead.follow_up_stage == 0:
            queue_notifications(session, config, lead.owner, lead.id, "follow_up", **facts)
            execute(session, UPDATE_LEAD, {"b_lead_id": lead.id, "follow_up_stage": 1,
                                           "follow_up_due_at": now + timedelta(hours=hours)})
            history(session, lead.id, "follow_up_reminded", at=now, manager=lead.owner,
                    **why_fields(Msg.join(idle, Msg("%(name)s reminded", name=lead.owner))))
            done.append({"lead_id": lead.id, "from": None, "to": lead.owner, "kind": "follow_up_reminded"})
            continue
        team = config.team(rule.team)
        told = team.lead if team and team.lead != lead.owner else None     # the owner was reminded already
        if told:
            queue_notifications(session, config, told, lead.id, "follow_up_escalated", owner=lead.owner, **facts)
        execute(session, UPDATE_LEAD, {"b_lead_id": lead.id, "follow_up_stage": 2, "follow_up_due_at": None})
        history(session, lead.id, "follow_up_escalated", at=now, manager=lead.owner, team_lead=told,
                **why_fields(Msg.join(idle, Msg("the team lead %(name)s told", name=told) if told
                                      else Msg("no other team lead to tell"))))
        done.append({"lead_id": lead.id, "from": lead.owner, "to": told, "kind": "follow_up_escalated"})
    return done


def sweep_tasks(session: Session, config: Config, now: datetime) -> list[dict]:
    """Call-back tasks due and not done: the lead's owner is reminded, in their language and time zone, once."""
    done: list[dict] = []
    tasks = execute(session, TASKS_DUE, {"now": now}).all()
    about = _about(session, sorted({task.lead_id for task in tasks}))
    for task in tasks:
        manager = config.manager(task.owner or task.created_by)     # a lead in the queue: whoever set it
        to = manager.name if manager else None
        if manager is not None:
            tz = ZoneInfo(manager.timezone)
            queue_notifications(session, config, manager.name, task.lead_id, "task_due", name=about[task.lead_id].name,
                                about=about[task.lead_id].summary, text=task.text, due_at=task.due_at,
                                on_the_day=task.due_at.astimezone(tz).date() == now.astimezone(tz).date())
        execute(session, UPDATE_TASK, {"b_task_id": task.id, "reminded_at": now})
        history(session, task.lead_id, "task_reminded", at=now, task_id=task.id, manager=to,
                **why_fields(Msg("call-back due: %(name)s reminded", name=to) if to
                             else Msg("call-back due: nobody to remind")))
        done.append({"lead_id": task.lead_id, "from": None, "to": to, "kind": "task_reminded"})
    return done


SWEEPS = (sweep_sla, sweep_queue, sweep_follow_up, sweep_tasks)


@dataclass(frozen=True)
class _About:
    name: str | None            # the person's name, else their first phone or e-mail
    summary: str                # name · phone or e-mail, as a new lead's message shows them


def _about(session: Session, lead_ids: list[int]) -> dict[int, _About]:
    """Who each lead is, for the words of a reminder or an alert."""
    if not lead_ids:
        return {}
    people = dict(session.execute(select(Lead.id, Person.name).join(Person, Person.id == Lead.person_id)
                                  .where(Lead.id.in_(lead_ids))).all())
    contacts: dict[int, str] = {}
    keys = session.execute(select(Lead.id, IdentityKey.kind, IdentityKey.value)
                           .join(IdentityKey, IdentityKey.person_id == Lead.person_id)
                           .where(Lead.id.in_(lead_ids), IdentityKey.kind.in_((KeyKind.PHONE, KeyKind.EMAIL)))
                           .order_by(IdentityKey.kind.desc(), IdentityKey.id))     # "phone" > "email": phones first
    for lead_id, _, value in keys:
        contacts.setdefault(lead_id, value)
    return {lead_id: _About(name or contacts.get(lead_id),
                            " · ".join(filter(None, [name, contacts.get(lead_id)])))
            for lead_id, name in people.items()}
