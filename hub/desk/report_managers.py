"""The managers report: per manager and per team, for a period of the team's days — leads received, taken,
converted, refused (by reason), attempts, notes, call-backs done, revenue, SLA reassignments lost and won, the
speed to lead and to the first contact attempt — and what each has open and overdue now. The head of sales'
"who answered slowest last week, who refused most and why". The page, its CSV and /api/v1 all read it.

Every count is a GROUP BY over the period's history entries (the index on lead_history (at, kind, actor)
makes the period a range scan); only the speeds' seconds come into Python, for the percentiles, which are
computed the same way on both stores (hub.desk.period.percentile). Leads merged into another never count.
Its cost grows with the entries in the period (about five per lead), not with the store.

Who an entry is counted for:
- received: the distinct leads handed to the manager in the period (assigned, reassigned or escalated to
  them: routing, the SLA, a team lead, a returning person given back to its owner);
- taken, attempts, notes, tasks done: whoever did it (the entry's actor);
- converted, refused and revenue: the manager who closed the lead; when a team lead or an admin closed it
  for a manager, the lead's owner (a team lead closing a lead of their own counts for themselves). A lead
  closed, reopened and closed again in the period counts twice: two outcomes, two deals;
- speed to lead: the seconds ``take()`` recorded (``waited_s``: since the lead was given to the taker, or
  since it entered the queue when taken from there);
- to first attempt: the seconds ``count_attempt()`` recorded on the owner's first attempt since the lead was
  given to them (``after_s``). Takes and attempts written before the hub recorded these seconds have none
  and are left out of the speeds (they still count as taken and as attempts);
- SLA lost: leads the hub reassigned or escalated away from the manager for not being taken in time; SLA
  won: leads the hub reassigned to them from someone who did not take them.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Numeric, and_, case, cast, distinct, func, or_, select
from sqlalchemy.orm import Session

from hub.config import Config
from hub.desk.period import Period, percentile
from hub.pipeline.routing.lifecycle import HANDOVERS
from hub.store.models import Lead, LeadHistory, LeadStatus, LeadTask, utcnow

_H, _L, _T = LeadHistory.__table__.c, Lead.__table__.c, LeadTask.__table__.c
_TO = LeadHistory.data["to"].as_string()
_FROM = LeadHistory.data["from"].as_string()
COUNTS = ("received", "taken", "converted", "refused", "attempts", "notes", "tasks_done", "sla_lost", "sla_won",
          "open_now", "overdue_now")
SPEEDS = ("speed_to_lead", "to_first_attempt")
ACTIVITY = {"taken": "taken", "attempt": "attempts", "note": "notes", "task_done": "tasks_done"}
CENTS = Decimal("0.01")
MERGED_CHUNK = 500              # merged leads' ids per query that takes their entries off


def managers_report(session: Session, config: Config, period: Period, managers: list[str] | None = None,
                    now: datetime | None = None) -> dict[str, Any]:
    """The report for the configured managers named in ``managers`` (None: all of them), in config order,
    each with a row even when they did nothing; and a row per team whose members are all in it."""
    names = [m.name for m in config.managers if managers is None or m.name in managers]
    rows: dict[str, dict[str, Any]] = {name: _empty_row(name, config.manager(name).team)  # type: ignore[union-attr]
                                       for name in names}
    seconds: dict[str, dict[str, list[float]]] = {name: {s: [] for s in SPEEDS} for name in names}
    if names:
        in_period = and_(_H.at >= period.start, _H.at < period.end)
        _collect(session, config, in_period, names, rows, seconds, 1)
        # Leads merged into another never count: their entries are counted apart and taken off again, which
        # keeps the lead table out of the period's scans (merged leads are few; usually there are none).
        merged = list(session.scalars(select(_L.id).where(_L.merged_into_id.is_not(None))))
        for i in range(0, len(merged), MERGED_CHUNK):
            _collect(session, config, and_(in_period, _H.lead_id.in_(merged[i:i + MERGED_CHUNK])), names, rows,
                     seconds, -1)
        _open_now(session, names, rows, now or utcnow())
    for name, row in rows.items():
        row.update({s: _speed(seconds[name][s]) for s in SPEEDS})
        row["refused_by_reason"] = {code: n for code, n in row["refused_by_reason"].items() if n}
    teams = _teams(config, names, rows, seconds)
    codes = {code for row in rows.values() for code in row["refused_by_reason"]}
    known = [r.code for r in config.refuse_reasons]
    return {"period": period.as_dict(), "managers": [_public(row) for row in rows.values()], "teams": teams,
            "reasons": [c for c in known if c in codes] + sorted(codes - set(known))}


def yesterday_per_manager(session: Session, config: Config, day: date, managers: list[str] | None = None,
                          timezone: str | None = None) -> dict[str, dict[str, int]]:
    """The daily digest's lines: per manager, for ``day`` (the team's, or in ``timezone``: the reader's), leads
    received, taken, converted, refused and contact attempts."""
    report = managers_report(session, config, Period(day, day, timezone or config.ui.timezone), managers)
    return {row["name"]: {k: row[k] for k in ("received", "taken", "converted", "refused", "attempts")}
            for row in report["managers"]}


# -- the counts -----------------------------------------------------------------------------------------------
# Each query reads one or a few kinds of entry in the period, by the (at, kind, actor) index; only the kinds
# whose numbers live in the entry's JSON (handovers, closings, the seconds) read the entries themselves.

def _collect(session: Session, config: Config, where, names: list[str], rows: dict[str, dict[str, Any]],
             seconds: dict[str, dict[str, list[float]]], sign: int) -> None:
    """Add (sign 1) or take off (sign -1) the counts and seconds of the entries ``where`` selects."""
    _received(session, where, names, rows, sign)
    _activity(session, where, names, rows, sign)
    _sla(session, where, names, rows, sign)
    _closings(session, config, where, names, rows, sign)
    _speeds(session, where, names, seconds, sign)


def _received(session: Session, where, names: list[str], rows: dict[str, dict[str, Any]], sign: int) -> None:
    query = select(_TO, func.count(distinct(_H.lead_id))).where(
        where, _H.kind.in_(HANDOVERS), _TO.in_(names)).group_by(_TO)
    for name, n in session.execute(query):
        rows[name]["received"] += sign * n


def _activity(session: Session, where, names: list[str], rows: dict[str, dict[str, Any]], sign: int) -> None:
    query = select(_H.actor, _H.kind, func.count()).where(
        where, _H.kind.in_(ACTIVITY), _H.actor.in_(names)).group_by(_H.actor, _H.kind)
    for name, kind, n in session.execute(query):
        rows[name][ACTIVITY[kind]] += sign * n


def _sla(session: Session, where, names: list[str], rows: dict[str, dict[str, Any]], sign: int) -> None:
    """The hub's own reassignments and escalations (actor "hub"): lost by whom it was taken from, won by whom
    it went to. An escalation that found no team lead left the lead where it was: nobody lost it."""
    query = select(_H.kind, _FROM, _TO, func.count()).where(
        where, _H.kind.in_(("reassigned", "escalated")), _H.actor == "hub",
        or_(_FROM.in_(names), _TO.in_(names))).group_by(_H.kind, _FROM, _TO)
    for kind, was, to, n in session.execute(query):
        if was == to:
            continue
        if was in rows:
            rows[was]["sla_lost"] += sign * n
        if kind == "reassigned" and to in rows:
            rows[to]["sla_won"] += sign * n


def _closings(session: Session, config: Config, where, names: list[str], rows: dict[str, dict[str, Any]],
              sign: int) -> None:
    """Converted and refused (with reason and amount), counted for who closed the lead; a team lead's or an
    admin's closing of someone's lead for its owner (see the module's docstring). The owner is looked up for
    those entries only."""
    team_leads = {t.lead for t in config.teams if t.lead}
    workers = [m.name for m in config.managers if m.name not in team_leads]
    owner = case((_H.actor.in_(workers), None),
                 else_=select(_L.owner).where(_L.id == _H.lead_id).scalar_subquery())
    reason = LeadHistory.data["reason"].as_string()
    amount = cast(LeadHistory.data["amount"].as_string(), Numeric(14, 2))
    query = select(_H.actor, owner, _TO, reason, func.count(), func.sum(amount)).where(
        where, _H.kind == "status", _TO.in_((LeadStatus.CONVERTED, LeadStatus.REFUSED))).group_by(
        _H.actor, owner, _TO, reason)
    for actor, owned_by, to, code, n, total in session.execute(query):
        row = rows.get(owned_by or actor)
        if row is None:
            continue
        if to == LeadStatus.CONVERTED:
            row["converted"] += sign * n
            row["revenue"] += sign * Decimal(total or 0)
        else:
            row["refused"] += sign * n
            key = code or "(none)"
            row["refused_by_reason"][key] = row["refused_by_reason"].get(key, 0) + sign * n


def _speeds(session: Session, where, names: list[str], seconds: dict[str, dict[str, list[float]]],
            sign: int) -> None:
    """The seconds take() and count_attempt() recorded (only the first attempt since a lead was given has
    them). Entries written before the hub recorded them have none, and are left out."""
    value = case((_H.kind == "taken", LeadHistory.data["waited_s"].as_float()),
                 else_=LeadHistory.data["after_s"].as_float())
    query = select(_H.actor, _H.kind, value).where(
        where, _H.kind.in_(("taken", "attempt")), _H.actor.in_(names), value.is_not(None))
    for name, kind, n in session.execute(query):
        values = seconds[name]["speed_to_lead" if kind == "taken" else "to_first_attempt"]
        if sign > 0:
            values.append(float(n))
        else:
            values.remove(float(n))


def _open_now(session: Session, names: list[str], rows: dict[str, dict[str, Any]], now: datetime) -> None:
    """Open leads owned now, and how many of them are overdue: new past the SLA, in work past the follow-up,
    or with a call-back due and not done (the open call-backs due are few: read once, not per lead)."""
    tasks_due = select(_T.lead_id).where(_T.done_at.is_(None), _T.due_at <= now)
    overdue = or_(and_(_L.status == LeadStatus.NEW, _L.sla_due_at <= now),
                  and_(_L.status == LeadStatus.IN_WORK, _L.follow_up_due_at <= now), _L.id.in_(tasks_due))
    query = select(_L.owner, func.count(), func.sum(case((overdue, 1), else_=0))).where(
        _L.owner.in_(names), _L.status.in_(LeadStatus.OPEN), _L.merged_into_id.is_(None)).group_by(_L.owner)
    for name, n, late in session.execute(query):
        rows[name]["open_now"], rows[name]["overdue_now"] = n, int(late or 0)


# -- rows -----------------------------------------------------------------------------------------------------

def _empty_row(name: str, team: str) -> dict[str, Any]:
    return {"name": name, "team": team, **dict.fromkeys(COUNTS, 0), "refused_by_reason": {},
            "revenue": Decimal(0)}


def _speed(values: list[float]) -> dict[str, Any]:
    """Median and 90th percentile in seconds (one decimal), and how many takes or attempts they are of."""
    def rounded(share: float) -> float | None:
        value = percentile(values, share)
        return None if value is None else round(value, 1)
    return {"median": rounded(0.5), "p90": rounded(0.9), "count": len(values)}


def _public(row: dict[str, Any]) -> dict[str, Any]:
    """A row as the API, the page and the CSV give it: money as exact decimal text."""
    return {**row, "revenue": str(row["revenue"].quantize(CENTS))}


def _teams(config: Config, names: list[str], rows: dict[str, dict[str, Any]],
           seconds: dict[str, dict[str, list[float]]]) -> list[dict[str, Any]]:
    """A row per configured team whose members are all in the report (a partial team's sums would mislead):
    the members' sums, and the speeds' percentiles over all the members' takes and attempts."""
    shown = set(names)
    out = []
    for team in config.teams:
        members = [m.name for m in config.managers if m.team == team.name]
        if not set(members) <= shown or (not members and len(shown) < len(config.managers)):
            continue
        row: dict[str, Any] = {"name": team.name, "lead": team.lead, "managers": len(members),
                               **dict.fromkeys(COUNTS, 0), "refused_by_reason": defaultdict(int),
                               "revenue": Decimal(0)}
        for member in members:
            for key in (*COUNTS, "revenue"):
                row[key] += rows[member][key]
            for code, n in rows[member]["refused_by_reason"].items():
                row["refused_by_reason"][code] += n
        row["refused_by_reason"] = dict(row["refused_by_reason"])
        for s in SPEEDS:
            row[s] = _speed([v for member in members for v in seconds[member][s]])
        out.append(_public(row))
    return out
