"""Which rule applies and who may take a lead: warmth rules, routing rules, availability (duty, vacation,
working hours, open-lead caps) and the strategies that choose among the available — fixed, fair and
persistent round-robin, smooth weighted, least loaded."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time
from functools import cache
from zoneinfo import ZoneInfo

import phonenumbers
from sqlalchemy import bindparam, event, func, select
from sqlalchemy.orm import Session

from hub.config import Config
from hub.i18n import Msg
from hub.sales_config import WEEKDAYS, ManagerConfig, RoutingRule, WarmthRule
from hub.store.db import Prebuilt, dialect_insert_for, execute
from hub.store.models import Lead, LeadStatus, ManagerState, RoutingPosition

WARMTH_ORDER = {"cold": 0, "warm": 1, "hot": 2}
_LEADS = Lead.__table__
OPEN_LEADS_OF = (select(_LEADS.c.owner, func.count()).where(
    _LEADS.c.owner.in_(bindparam("owners", expanding=True)), _LEADS.c.status.in_(LeadStatus.OPEN),
    _LEADS.c.merged_into_id.is_(None)).group_by(_LEADS.c.owner))


# -- warmth and routing rules ---------------------------------------------------------------------------

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


def forget_manager_states(session: Session) -> None:
    """Drop the transaction's copy of every manager's duty and vacation (when one of them changes)."""
    session.info.pop(_STATES_KEY, None)


@event.listens_for(Session, "after_transaction_end")
def _forget_at_transaction_end(session: Session, transaction) -> None:
    if transaction.parent is None:           # the copy lives as long as the outermost transaction
        forget_manager_states(session)


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
    out: dict[str, Msg | None] = {}
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


def on_duty(session: Session, config: Config, names: list[str], now: datetime) -> list[str]:
    """Those of ``names`` who are at work in the wide sense: active, on duty and not on vacation (their working
    hours and open-lead cap aside) — whom an alert about a waiting lead may reach."""
    states = _manager_states(session)
    out = []
    for name in names:
        manager, state = config.manager(name), states.get(name)
        if manager is None or not manager.active:
            continue
        if state is not None and (not state.on_duty or (state.vacation_until and state.vacation_until > now)):
            continue
        out.append(name)
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
    return _advance_stmt(session.get_bind().dialect.name).one(session, {"key": key}).position


RULE_POSITION = select(RoutingPosition.__table__.c.position).where(RoutingPosition.__table__.c.key == bindparam("key"))


@cache
def _advance_stmt(dialect: str) -> Prebuilt:
    positions = RoutingPosition.__table__
    stmt = dialect_insert_for(dialect)(positions).values(key=bindparam("key"), position=1)
    return Prebuilt(stmt.on_conflict_do_update(index_elements=[positions.c.key],
                                               set_={"position": positions.c.position + 1})
                    .returning(positions.c.position))


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


def next_in_team(session: Session, config: Config, rule: RoutingRule, now: datetime,
                 skip: tuple[str | None, ...] = ()) -> tuple[str | None, Msg]:
    """The next available member of the rule's team, ``skip`` aside: the fallback of a rule whose own choice
    found nobody. Round-robin from the rule's position, which ``choose`` already stepped for this lead, so a
    lead still moves it exactly once."""
    members = [m.name for m in team_members(config, rule.team) if m.name not in skip]
    free = availability(session, config, members, now)
    position = execute(session, RULE_POSITION, {"key": f"rule:{rule.name}"}).scalar()
    start = (position or 1) - 1
    for i in range(len(members)):
        candidate = members[(start + i) % len(members)]
        if free[candidate] is None:
            return candidate, Msg("fallback: next available in the team")
    return None, Msg("nobody else in the team available")
