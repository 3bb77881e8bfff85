"""Each manager's work per day — contact attempts, leads taken, converted and refused, notes, call-backs set
and done, calls — the "daily report" sales teams otherwise fill in by hand, read from what the hub already
records.

The lead history says who did what and when: it is counted in SQL per person, kind and UTC hour (one row per
hour a person worked, whatever they did in it) and the hours are given to the team's days here
(hub.desk.period). Calls are of two kinds of record: a call the hub put through to a manager (a
``call_routed`` history entry, its ``to`` the manager, its actor the hub), and a call's outcome, which the
telephony connectors write on the call's touch ("answered call to …", "missed call to …"; Zadarma's end of
call "call answered, 35 s", "call busy, 0 s"): it counts for the manager who owns the caller's lead.

Actions are counted on whatever lead they were done — one since merged into another too: the attempt was
made all the same."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from typing import Any

from sqlalchemy import and_, case, func, not_, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from hub.config import Config
from hub.desk.period import Period, hour_bucket, hour_to_moment
from hub.store.models import InboundEvent, Lead, LeadHistory, LeadStatus, Touch

DEFAULT_DAYS = 7             # a week, what a head of sales goes through on Monday (the page's and the API's default)
# The metrics, in the order of a hand-written daily report.
METRICS = ("attempts", "taken", "converted", "refused", "notes", "tasks_set", "tasks_done",
           "calls_routed", "calls_answered", "calls_missed")
KIND_METRICS = {"attempt": "attempts", "taken": "taken", "note": "notes", "task": "tasks_set",
                "task_done": "tasks_done"}
STATUS_METRICS = {LeadStatus.CONVERTED: "converted", LeadStatus.REFUSED: "refused"}
HUB_ACTOR = "hub"             # the hub's own entries (routing, SLA): nobody's work
# How the built-in telephony connectors word a call's outcome on its touch (connectors/mango.py,
# telephony_generic.py: "answered call to …" / "missed call to …"; zadarma.py at the call's end:
# "call <disposition>, <seconds> s", where any disposition but "answered" is a missed call).
CALL_WORDING = ("mango", "telephony_generic")
CALL_END_WORDING = ("zadarma",)
# A call's touches are found by when their deliveries arrived (indexed), then counted by when the call was: a
# PBX reports a call after it happened (minutes, or much later when a delivery is retried), never a day before.
PBX_CLOCK_SKEW = timedelta(days=1)


def _zero() -> dict[str, int]:
    return dict.fromkeys(METRICS, 0)


def _call_outcomes() -> tuple[ColumnElement[int], ColumnElement[int]]:
    """(answered, missed) of a touch, 1 or 0 each, from its connector's wording."""
    message, channel = Touch.message, Touch.channel
    answered = or_(and_(channel.in_(CALL_WORDING), message.like("answered call%")),
                   and_(channel.in_(CALL_END_WORDING), message.like("call answered%")))
    missed = or_(and_(channel.in_(CALL_WORDING), message.like("missed call%")),
                 and_(channel.in_(CALL_END_WORDING), message.like("call %"), not_(message.like("call answered%"))))
    return case((answered, 1), else_=0), case((missed, 1), else_=0)


def _hour(session: Session, column) -> ColumnElement[str]:
    """hour_bucket, cheaper on SQLite: SQLAlchemy stores a moment there as 'YYYY-MM-DD HH:MM:SS.ffffff' (naive
    UTC), so its first 13 characters are the hour — where strftime would parse every one of a month's hundred
    thousand entries."""
    if session.get_bind().dialect.name == "sqlite":
        return func.substr(column, 1, 13)
    return hour_bucket(session, column)


def _history_counts(session: Session, period: Period, managers: list[str] | None):
    """(person, metric, UTC hour, count) of the history: the people's own actions, and calls put through.
    The actions are counted from the (at, kind, actor) index alone, a row per person and hour; the two kinds
    whose ``to`` matters (a status change, a call put through) read their entries' data apart."""
    hour = _hour(session, LeadHistory.at)
    in_period = [LeadHistory.at >= period.start, LeadHistory.at < period.end]
    sums = [func.sum(case((LeadHistory.kind == kind, 1), else_=0)) for kind in KIND_METRICS]
    actions = (select(LeadHistory.actor, hour, *sums)
               .where(*in_period, LeadHistory.kind.in_(KIND_METRICS), LeadHistory.actor != HUB_ACTOR)
               .group_by(LeadHistory.actor, hour))
    if managers is not None:
        actions = actions.where(LeadHistory.actor.in_(managers))
    for actor, at_hour, *counts in session.execute(actions):
        for metric, n in zip(KIND_METRICS.values(), counts, strict=True):
            if n:
                yield actor, metric, at_hour, int(n)
    to = LeadHistory.data["to"].as_string()
    by_to = (select(LeadHistory.actor, LeadHistory.kind, to, hour, func.count())
             .where(*in_period, LeadHistory.kind.in_(("status", "call_routed")))
             .group_by(LeadHistory.actor, LeadHistory.kind, to, hour))
    for actor, kind, status_to, at_hour, n in session.execute(by_to):
        # A call put through is the work of the manager it went to (the hub routed it); a status, of its actor.
        person = status_to if kind == "call_routed" else actor
        counted = "calls_routed" if kind == "call_routed" else STATUS_METRICS.get(status_to)
        if counted and person and person != HUB_ACTOR and (managers is None or person in managers):
            yield person, counted, at_hour, n


def _call_counts(session: Session, period: Period, managers: list[str] | None):
    """(owner, metric, UTC hour, count) of the calls with an outcome, by the owner of the caller's lead."""
    answered, missed = _call_outcomes()
    bucket = _hour(session, Touch.at)
    query = (select(Lead.owner, bucket, func.sum(answered), func.sum(missed))
             .select_from(Touch).join(InboundEvent, InboundEvent.id == Touch.event_id)
             .join(Lead, Lead.id == Touch.lead_id)
             .where(InboundEvent.received_at >= period.start - PBX_CLOCK_SKEW,
                    Touch.at >= period.start, Touch.at < period.end,
                    Touch.channel.in_(CALL_WORDING + CALL_END_WORDING), Lead.owner.is_not(None))
             .group_by(Lead.owner, bucket))
    if managers is not None:
        query = query.where(Lead.owner.in_(managers))
    for owner, hour, n_answered, n_missed in session.execute(query):
        if n_answered:
            yield owner, "calls_answered", hour, int(n_answered)
        if n_missed:
            yield owner, "calls_missed", hour, int(n_missed)


def activity_report(session: Session, config: Config, period: Period, managers: list[str] | None) -> dict[str, Any]:
    """Per manager per day of the period (the team's days), the METRICS; totals per manager, per day and in
    all. ``managers``: whose work (None: everyone's). Every manager in scope has a row, an idle one too —
    an empty row is what the head of sales looks for."""
    cells: dict[str, dict[date, dict[str, int]]] = defaultdict(lambda: defaultdict(_zero))
    days_of: dict[str, date] = {}          # an hour's day, worked out once per hour (strptime is slow)
    for rows in (_history_counts(session, period, managers), _call_counts(session, period, managers)):
        for person, metric, hour, n in rows:
            day = days_of.get(hour) or days_of.setdefault(hour, period.local_day(hour_to_moment(hour)))
            if period.date_from <= day <= period.date_to:
                cells[person][day][metric] += n
    in_scope = [m for m in config.managers if managers is None or m.name in managers]
    names = [m.name for m in in_scope if m.active or m.name in cells]
    names += sorted(set(cells) - set(names))           # someone who acted but is no manager (now): an admin
    teams = {m.name: m.team for m in config.managers}
    days = period.days
    out_rows, per_day = [], {day: _zero() for day in days}
    total = _zero()
    for name in names:
        row_total = _zero()
        row_days = []
        for day in days:
            counts = cells[name][day] if day in cells.get(name, {}) else _zero()
            row_days.append({"day": day.isoformat(), **counts})
            for metric, n in counts.items():
                row_total[metric] += n
                per_day[day][metric] += n
                total[metric] += n
        out_rows.append({"manager": name, "team": teams.get(name), "total": row_total, "days": row_days})
    return {"period": period.as_dict(), "metrics": list(METRICS), "days": [d.isoformat() for d in days],
            "managers": out_rows, "per_day": [{"day": d.isoformat(), **per_day[d]} for d in days], "total": total}
