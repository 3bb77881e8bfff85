"""Who gets the lead: warmth rules, routing rules, availability, fair and persistent round-robin, SLA.

Everything here runs inside the transaction that processes the event (or the scheduler's, or an
operator's command), so an assignment, its round-robin step, its audit entry and its notification
commit together or not at all: a retried or replayed event never advances the round-robin twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import phonenumbers
from sqlalchemy import bindparam, event, func, insert, select, update
from sqlalchemy.orm import Session

from hub.config import WEEKDAYS, Config, ManagerConfig, RoutingRule, WarmthRule
from hub.store.db import dialect_insert_for, execute, insert_ignoring_conflicts, mark_queued
from hub.outbox.forwarding import queue_forwarding
from hub.pipeline.history import history
from hub.errors import HubError
from hub.i18n import Msg
from hub.store.models import Lead, LeadStatus, ManagerState, Notification, RoutingPosition, utcnow

WARMTH_ORDER = {"cold": 0, "warm": 1, "hot": 2}
_LEADS = Lead.__table__
INSERT_NOTIFICATION = insert(Notification.__table__)
# The columns to set come from the parameters (SQLAlchemy compiles and caches one statement per set of them).
UPDATE_LEAD = update(_LEADS).where(_LEADS.c.id == bindparam("b_lead_id"))
OPEN_LEADS_OF = (select(_LEADS.c.owner, func.count()).where(
    _LEADS.c.owner.in_(bindparam("owners", expanding=True)), _LEADS.c.status.in_(LeadStatus.OPEN),
    _LEADS.c.merged_into_id.is_(None)).group_by(_LEADS.c.owner))


class RoutingError(HubError):
    """An operator's lead or manager command that cannot be done as asked; the message says why (in
    English as ``str()``, in the reader's language through ``msg.translate``)."""

    def __init__(self, msg: Msg):
        self.msg = msg
        super().__init__(str(msg))


# -- warmth ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TouchFacts:
    """What warmth and routing rules may look at."""

    source: str
    tags: list[str]
    message: str
    fields: dict
    repeat: bool
    region: str | None


def _matches_warmth(rule: WarmthRule, facts: TouchFacts) -> bool:
    if rule.sources and facts.source not in rule.sources:
        return False
    if rule.tags and not set(rule.tags) & set(facts.tags):
        return False
    if rule.repeat is not None and rule.repeat != facts.repeat:
        return False
    if rule.message_keywords and not any(k.casefold() in facts.message.casefold() for k in rule.message_keywords):
        return False
    lowered = {str(k).lower(): v for k, v in facts.fields.items()}
    for name, expected in rule.fields.items():
        if str(lowered.get(name.lower(), "")).strip().casefold() != expected.casefold():
            return False
    return True


def judge_warmth(config: Config, facts: TouchFacts) -> tuple[str, int | None, str]:
    """(warmth, score, the rule that decided — or "default")."""
    for rule in config.warmth.rules:
        if _matches_warmth(rule, facts):
            return rule.warmth, rule.score, rule.name
    return config.warmth.default, None, "default"


def phone_region(e164: str | None) -> str | None:
    if not e164:
        return None
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(e164))
    except phonenumbers.NumberParseException:
        return None


# -- availability ---------------------------------------------------------------------------------------

def _in_working_hours(manager: ManagerConfig, now: datetime) -> bool:
    local = now.astimezone(ZoneInfo(manager.timezone))
    if WEEKDAYS[local.weekday()] not in manager.working_days:
        return False
    if manager.working_hours is None:
        return True
    start, end = manager.working_hours.split("-")
    begin = time.fromisoformat(start)
    finish = time(23, 59, 59, 999999) if end == "24:00" else time.fromisoformat(end)
    return begin <= local.time() < finish


MANAGER_STATES = select(ManagerState.__table__.c.name, ManagerState.__table__.c.on_duty,
                        ManagerState.__table__.c.vacation_until)
_STATES_KEY = "hub.manager_states"


@event.listens_for(Session, "after_transaction_end")
def _forget_manager_states(session: Session, transaction) -> None:
    if transaction.parent is None:           # the copy lives as long as the outermost transaction
        session.info.pop(_STATES_KEY, None)


def _manager_states(session: Session) -> dict:
    """Every manager's duty and vacation, read once per transaction: a worker's batch routes many leads in
    one transaction, and nothing in it changes these (set_manager_state forgets the copy)."""
    states = session.info.get(_STATES_KEY)
    if states is None:
        states = session.info[_STATES_KEY] = {r.name: r for r in execute(session, MANAGER_STATES)}
    return states


def availability(session: Session, config: Config, names: list[str], now: datetime) -> dict[str, Msg | None]:
    """For each manager: None when they can take a lead now, else why not."""
    states = _manager_states(session)
    capped = [n for n in names if (m := config.manager(n)) and m.max_open_leads]
    open_counts = dict(execute(session, OPEN_LEADS_OF, {"owners": capped}).all()) if capped else {}
    out: dict[str, str | None] = {}
    for name in names:
        manager, state = config.manager(name), states.get(name)
        if manager is None:
            out[name] = Msg("not in the config")
        elif not manager.active:
            out[name] = Msg("inactive")
        elif state is not None and not state.on_duty:
            out[name] = Msg("off duty")
        elif state is not None and state.vacation_until and state.vacation_until > now:
            out[name] = Msg("on vacation until %(until)s UTC", until=f"{state.vacation_until:%Y-%m-%d %H:%M}")
        elif not _in_working_hours(manager, now):
            out[name] = Msg("outside working hours")
        elif manager.max_open_leads and open_counts.get(name, 0) >= manager.max_open_leads:
            out[name] = Msg("at the cap of %(cap)s open leads", cap=manager.max_open_leads)
        else:
            out[name] = None
    return out


# -- choosing a manager ---------------------------------------------------------------------------------

def _weighted_slots(members: list[ManagerConfig]) -> list[str]:
    """Smooth weighted round-robin (as nginx does it): weights 3:1:1 give A B A C A, not A A A B C."""
    current = {m.name: 0 for m in members}
    total = sum(m.weight for m in members)
    slots = []
    for _ in range(total):
        for m in members:
            current[m.name] += m.weight
        best = max(members, key=lambda m: current[m.name])
        current[best.name] -= total
        slots.append(best.name)
    return slots


def _advance(session: Session, key: str) -> int:
    """Step the rule's position in the database and return the new value (1, 2, …): one
    ``INSERT … ON CONFLICT DO UPDATE … RETURNING``, atomic, and the row stays locked until commit."""
    return execute(session, _advance_stmt(session.get_bind().dialect.name), {"key": key}).scalar_one()


@cache
def _advance_stmt(dialect: str):
    positions = RoutingPosition.__table__
    stmt = dialect_insert_for(dialect)(positions).values(key=bindparam("key"), position=1)
    return stmt.on_conflict_do_update(index_elements=[positions.c.key],
                                      set_={"position": positions.c.position + 1}).returning(positions.c.position)


def team_members(config: Config, team: str) -> list[ManagerConfig]:
    return [m for m in config.managers if m.team == team and m.active]


def choose(session: Session, config: Config, rule: RoutingRule, now: datetime,
           exclude: str | None = None) -> tuple[str | None, Msg]:
    """(manager, why) for a rule, among available members; (None, why) when nobody can take it."""
    members = team_members(config, rule.team)
    if rule.strategy == "fixed":
        members = [m for m in config.managers if m.name == rule.manager]
    free = availability(session, config, [m.name for m in members], now)
    if exclude in free:
        free[exclude] = Msg("the current owner")
    available = [m for m in members if free[m.name] is None]
    position = _advance(session, f"rule:{rule.name}")      # also serialises assignments of this rule
    if not available:
        reasons = Msg.join(*[Msg("%(name)s: %(why)s", name=n, why=why) for n, why in free.items()]) if free \
            else Msg("team %(team)r has no active members", team=rule.team)
        return None, Msg("nobody available (%(reasons)s)", reasons=reasons)
    if rule.strategy == "fixed":
        return available[0].name, Msg("rule %(rule)r: fixed", rule=rule.name)
    if rule.strategy == "least_loaded":
        counts = dict(execute(session, OPEN_LEADS_OF, {"owners": [m.name for m in available]}).all())
        best = min(available, key=lambda m: counts.get(m.name, 0))       # ties: config order
        return best.name, Msg("rule %(rule)r: least loaded (%(open)s open)", rule=rule.name,
                              open=counts.get(best.name, 0))
    slots = [m.name for m in members] if rule.strategy == "round_robin" else _weighted_slots(members)
    names = {m.name for m in available}
    start = (position - 1) % len(slots)
    for i in range(len(slots)):
        candidate = slots[(start + i) % len(slots)]
        if candidate in names:
            return candidate, (Msg("rule %(rule)r: round-robin", rule=rule.name) if rule.strategy == "round_robin"
                               else Msg("rule %(rule)r: weighted", rule=rule.name))
    return None, Msg("nobody available")


def matching_rule(config: Config, warmth: str | None, facts: TouchFacts) -> RoutingRule | None:
    for rule in config.routing.rules:
        if rule.warmth and warmth not in rule.warmth:
            continue
        if rule.sources and facts.source not in rule.sources:
            continue
        if rule.tags and not set(rule.tags) & set(facts.tags):
            continue
        if rule.regions and facts.region not in rule.regions:
            continue
        return rule
    return None


# -- writing an assignment ------------------------------------------------------------------------------

def lead_link(config: Config, lead_id: int) -> str:
    return f"{config.notify.base_url.rstrip('/')}/leads/{lead_id}"


def _why(why: str | Msg) -> dict:
    """A history entry's reason: English text for the API and CLI, and, for the hub's own reasons, the
    message itself so that each reader sees it in their language."""
    if isinstance(why, Msg):
        return {"why": str(why), "why_msg": why.to_json()}
    return {"why": why}


def queue_notifications(session: Session, config: Config, manager_name: str, lead_id: int | None, template: str,
                        **context) -> int:
    """Outbox rows for the manager's channels, in the manager's language and time zone (hub/messages.py);
    sent after commit by the notifier. Returns how many."""
    from hub.outbox.messages import language_of, render

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
    values = dict(owner=to, assigned_at=now if to else None, updated_at=now,
                  sla_due_at=now + timedelta(minutes=sla) if (to and sla) else None,
                  routing_rule=rule.name if rule else None)
    if reassign_count is not None:
        values["reassign_count"] = reassign_count
    values.update(also or {})
    execute(session, UPDATE_LEAD, {"b_lead_id": lead_id, **values})
    history(session, lead_id, kind, actor=actor, event_id=event_id, at=now, **{"from": previous, "to": to},
            **_why(why))
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
            history(session, lead.id, "warmth", event_id=event_id, at=now, **{"from": lead.warmth, "to": warmth,
                                                                               "rule": decided_by})
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
                        **{"from": lead.owner, "to": lead.owner}, **_why(Msg("sticky: the person's owner")))
                queue_notifications(session, config, lead.owner, lead.id, "lead_back", about=summary)
                if rule and rule.sla_minutes:
                    execute(session, UPDATE_LEAD, {"b_lead_id": lead.id, "assigned_at": now,
                                                   "sla_due_at": now + timedelta(minutes=rule.sla_minutes)})
            return None
    if rule is None:
        if lead.owner is None:
            history(session, lead.id, "unassigned", event_id=event_id, at=now, **_why(Msg("no routing rule matched")))
        return None
    to, why = choose(session, config, rule, now)
    if to is None:
        to, why = _fallback(config, rule, why)
    if to is None and lead.owner is None:
        history(session, lead.id, "unassigned", event_id=event_id, at=now, **_why(why))
        return None
    return to, why, rule


def _fallback(config: Config, rule: RoutingRule, why: Msg) -> tuple[str | None, Msg]:
    team = config.team(rule.team)
    if config.routing.fallback == "team_lead" and team and team.lead:
        return team.lead, Msg.join(why, Msg("fallback: team lead"))
    return None, Msg.join(why, Msg("left in the queue"))


# -- SLA ------------------------------------------------------------------------------------------------

OVERDUE = (select(_LEADS.c.id, _LEADS.c.owner, _LEADS.c.routing_rule, _LEADS.c.reassign_count)
           .where(_LEADS.c.status == LeadStatus.NEW, _LEADS.c.owner.is_not(None),
                  _LEADS.c.sla_due_at <= bindparam("now"), _LEADS.c.merged_into_id.is_(None))
           .order_by(_LEADS.c.sla_due_at).limit(200).with_for_update(skip_locked=True))


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
        history(session, lead.id, "escalated", at=now, **{"from": lead.owner, "to": lead_of_team or lead.owner},
                **_why(Msg.join(why, Msg("escalated to the team lead"))))
        if lead_of_team:
            queue_notifications(session, config, lead_of_team, lead.id, "escalated", previous=lead.owner)
        done.append({"lead_id": lead.id, "from": lead.owner, "to": lead_of_team, "kind": "escalated"})
    return done


# -- operator commands ----------------------------------------------------------------------------------

def _lock_lead(session: Session, lead_id: int) -> Lead:
    lead = session.execute(select(Lead).where(Lead.id == lead_id).with_for_update()).scalar_one_or_none()
    if lead is None or lead.merged_into_id is not None:
        raise RoutingError(Msg("no lead %(id)s", id=lead_id) if lead is None else
                           Msg("lead %(id)s was merged into lead %(into)s", id=lead_id, into=lead.merged_into_id))
    return lead


def take(session: Session, config: Config, lead_id: int, manager: str, now: datetime) -> Lead:
    if config.manager(manager) is None:
        raise RoutingError(Msg("no manager named %(name)r", name=manager))
    lead = _lock_lead(session, lead_id)
    if lead.status != LeadStatus.NEW:
        raise RoutingError(Msg("lead %(id)s is %(status)s; only a new lead can be taken", id=lead_id,
                               status=lead.status))
    if lead.owner not in (None, manager):
        raise RoutingError(Msg("lead %(id)s belongs to %(owner)s; reassign it first", id=lead_id, owner=lead.owner))
    previous = lead.owner
    lead.status, lead.owner, lead.taken_at, lead.sla_due_at, lead.updated_at = \
        LeadStatus.IN_WORK, manager, now, None, now
    history(session, lead_id, "taken", actor=manager, at=now, **{"from": previous, "to": manager},
            **_why(Msg("taken into work")))
    queue_forwarding(session, config, lead_id, lead.source)
    return lead


def set_status(session: Session, config: Config, lead_id: int, status: str, reason: str | None, actor: str,
               now: datetime) -> Lead:
    lead = _lock_lead(session, lead_id)
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
        raise RoutingError("--reason goes with refused only")
    previous = lead.status
    lead.status, lead.refuse_reason, lead.sla_due_at, lead.updated_at = status, reason, None, now
    history(session, lead_id, "status", actor=actor, at=now, **{"from": previous, "to": status, "reason": reason})
    queue_forwarding(session, config, lead_id, lead.source)
    return lead


def count_attempt(session: Session, lead_id: int, actor: str, now: datetime) -> Lead:
    lead = _lock_lead(session, lead_id)
    if lead.status not in LeadStatus.OPEN:
        raise RoutingError(Msg("lead %(id)s is %(status)s", id=lead_id, status=lead.status))
    lead.contact_attempts += 1
    lead.updated_at = now
    history(session, lead_id, "attempt", actor=actor, at=now, number=lead.contact_attempts)
    return lead


def reassign(session: Session, config: Config, lead_id: int, to: str, why: str | Msg, actor: str,
             now: datetime) -> Lead:
    if config.manager(to) is None:
        raise RoutingError(Msg("no manager named %(name)r", name=to))
    lead = _lock_lead(session, lead_id)
    if lead.status not in LeadStatus.OPEN:
        raise RoutingError(Msg("lead %(id)s is %(status)s; only open leads are reassigned", id=lead_id,
                               status=lead.status))
    rule = next((r for r in config.routing.rules if r.name == lead.routing_rule), None)
    assign(session, config, lead_id, to, lead.owner, why, rule, now, kind="reassigned", actor=actor)
    queue_forwarding(session, config, lead_id, lead.source)
    if lead.status == LeadStatus.IN_WORK:       # already taken: the new owner works on, no SLA clock
        execute(session, UPDATE_LEAD, {"b_lead_id": lead_id, "sla_due_at": None})
    session.expire(lead)
    return lead


def set_manager_state(session: Session, config: Config, name: str, actor: str, now: datetime,
                      on_duty: bool | None = None, vacation_until: datetime | None = None,
                      clear_vacation: bool = False) -> ManagerState:
    if config.manager(name) is None:
        raise RoutingError(Msg("no manager named %(name)r (known: %(known)s)", name=name,
                               known=", ".join(m.name for m in config.managers)))
    session.info.pop(_STATES_KEY, None)
    insert_ignoring_conflicts(session, ManagerState.__table__, ["name"],
                              {"name": name, "on_duty": True, "updated_at": now})
    state = session.execute(select(ManagerState).where(ManagerState.name == name).with_for_update()).scalar_one()
    if on_duty is not None:
        state.on_duty = on_duty
    if vacation_until is not None or clear_vacation:
        state.vacation_until = vacation_until
    state.updated_at, state.updated_by = now, actor
    return state


# -- daily digest ---------------------------------------------------------------------------------------

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
