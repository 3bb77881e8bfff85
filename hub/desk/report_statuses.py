"""Leads by status and refusal reason, per source and per owner, and the handover log with the day a lead
came back to the manager it was taken from — what the head of sales reads to see who refuses most and why,
and where leads wander. Each is a few GROUP BY queries over the period's rows, never the leads one by one.

Who is in a report is the caller's choice (hub.desk.period.managers_in_scope): ``managers`` None is everyone,
a list the owners a team lead may see (their leads and the queue's, as in their inbox). A marketer's report
is the per-source part only: ``by_owner=False`` leaves every manager out, names and rows alike."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import and_, func, or_, select, true
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.elements import ColumnElement

from hub.config import Config
from hub.desk.period import Period
from hub.store.models import Lead, LeadHistory, LeadStatus

STATUSES = (LeadStatus.NEW, LeadStatus.IN_WORK, LeadStatus.CONVERTED, LeadStatus.REFUSED)
NO_REASON = "(none)"          # a refused lead without a reason (an old CRM's import may have one)
HANDOVER_KINDS = ("reassigned", "escalated")
# What gives a lead (back) to someone: the first of these, after a handover, naming its "from" as the new
# owner is the day the lead came back.
GIVING_KINDS = ("assigned", "reassigned")


def _counts() -> dict[str, Any]:
    return {"leads": 0, **{s: 0 for s in STATUSES}, "refused_by_reason": {}}


def _add(row: dict[str, Any], status: str, reason: str | None, n: int) -> None:
    row["leads"] += n
    if status in row:
        row[status] += n
    if status == LeadStatus.REFUSED:
        key = reason or NO_REASON
        row["refused_by_reason"][key] = row["refused_by_reason"].get(key, 0) + n


def _finished(row: dict[str, Any]) -> dict[str, Any]:
    """A row with its share converted and refused (percent of its leads, one decimal; None without leads)."""
    leads = row["leads"]
    row["conversion"] = round(100 * row[LeadStatus.CONVERTED] / leads, 1) if leads else None
    row["refusal"] = round(100 * row[LeadStatus.REFUSED] / leads, 1) if leads else None
    return row


def owner_scope(managers: list[str] | None) -> ColumnElement[bool]:
    """The leads of these owners and of the queue (what a team lead's inbox shows); None: every lead."""
    if managers is None:
        return true()
    return or_(Lead.owner.in_(managers), Lead.owner.is_(None))


def statuses_report(session: Session, config: Config, period: Period, managers: list[str] | None,
                    by_owner: bool = True) -> dict[str, Any]:
    """The leads created in the period (merged ones left out) by their status now: per source, and with
    ``by_owner`` per owner (None: the queue), the refused ones by reason too. One GROUP BY query."""
    columns = [Lead.source, Lead.status, Lead.refuse_reason] + ([Lead.owner] if by_owner else [])
    query = (select(*columns, func.count())
             .where(Lead.created_at >= period.start, Lead.created_at < period.end, Lead.merged_into_id.is_(None),
                    owner_scope(managers))
             .group_by(*columns))
    total = _counts()
    sources: dict[str, dict[str, Any]] = defaultdict(_counts)
    owners: dict[str | None, dict[str, Any]] = defaultdict(_counts)
    for row in session.execute(query):
        values: tuple[Any, ...] = tuple(row)
        source, status, reason, n = values[0], values[1], values[2], values[-1]
        _add(total, status, reason, n)
        _add(sources[source], status, reason, n)
        if by_owner:
            _add(owners[values[3]], status, reason, n)
    known = [r.code for r in config.refuse_reasons]
    found = set(total["refused_by_reason"]) - set(known)
    order = {m.name: i for i, m in enumerate(config.managers)}
    out: dict[str, Any] = {
        "period": period.as_dict(),
        "statuses": list(STATUSES),
        "reasons": known + sorted(found),
        "total": _finished(total),
        "by_source": [_finished({"source": key, **row}) for key, row in
                      sorted(sources.items(), key=lambda kv: (-kv[1]["leads"], kv[0]))],
    }
    if by_owner:
        # Managers in the config's order (the team's own list), anyone since removed after them, the queue last.
        out["by_owner"] = [_finished({"owner": key, **row}) for key, row in sorted(
            owners.items(), key=lambda kv: (kv[0] is None, order.get(kv[0] or "", len(order)), kv[0] or ""))]
    return out


# -- the handover log --------------------------------------------------------------------------------------

def _handovers_where(period: Period, managers: list[str] | None) -> list[ColumnElement[bool]]:
    where = [LeadHistory.at >= period.start, LeadHistory.at < period.end, LeadHistory.kind.in_(HANDOVER_KINDS),
             Lead.merged_into_id.is_(None)]
    if managers is not None:
        where.append(or_(LeadHistory.data["from"].as_string().in_(managers),
                         LeadHistory.data["to"].as_string().in_(managers)))
    return where


def handover_log(session: Session, config: Config, period: Period, managers: list[str] | None,
                 limit: int = 50, offset: int = 0) -> dict[str, Any]:
    """Every reassignment and escalation in the period, newest first, ``limit`` from ``offset``, with the
    total: the lead, when, from whom, to whom, by whom ("hub": the SLA sweep) and why, and ``came_back_at``,
    when a later assignment gave the lead back to the manager it was taken from (None: it did not). A team
    lead sees the entries that take a lead from or give it to someone in their scope."""
    later = aliased(LeadHistory)
    came_back = (select(func.min(later.at))
                 .where(later.lead_id == LeadHistory.lead_id, later.kind.in_(GIVING_KINDS), later.at > LeadHistory.at,
                        later.data["to"].as_string() == LeadHistory.data["from"].as_string())
                 .correlate(LeadHistory).scalar_subquery())
    where = _handovers_where(period, managers)
    joined = LeadHistory.__table__.join(Lead.__table__, Lead.id == LeadHistory.lead_id)
    newest_first = (LeadHistory.at.desc(), LeadHistory.id.desc())
    # The page's entries first, then their came-back moments: a lookup per entry shown, not per entry skipped.
    page = (select(LeadHistory.id).select_from(joined).where(and_(*where))
            .order_by(*newest_first).limit(limit).offset(offset).subquery())
    rows = session.execute(
        select(LeadHistory.lead_id, LeadHistory.at, LeadHistory.kind, LeadHistory.actor, LeadHistory.data,
               came_back.label("came_back_at"))
        .select_from(LeadHistory.__table__.join(page, page.c.id == LeadHistory.id))
        .order_by(*newest_first)).all()
    if 0 < len(rows) < limit or not rows and not offset:
        total = offset + len(rows)      # the page ends the log: no need to count the period again
    else:
        total = session.scalar(select(func.count()).select_from(joined).where(*where)) or 0
    entries = []
    for lead_id, at, kind, actor, data, came_back_at in rows:
        entry = {"lead_id": lead_id, "at": at.isoformat(), "kind": kind, "from": data.get("from"),
                 "to": data.get("to"), "by": actor, "why": data.get("why"),
                 "came_back_at": came_back_at.isoformat() if came_back_at else None}
        if data.get("why_msg"):
            entry["why_msg"] = data["why_msg"]        # the hub's own reason, for each reader's language
        entries.append(entry)
    return {"period": period.as_dict(), "total": total, "limit": limit, "offset": offset, "items": entries}
