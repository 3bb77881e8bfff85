"""The channel report, spend and cost per lead, channel health, and the managers' overview: what heads and
marketers read, on pages, in the API and in CSV."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Date,
    and_,
    case,
    cast,
    func,
    select,
)
from sqlalchemy.orm import Session

from hub.config import Config
from hub.connector import WebhookConnector
from hub.desk.queries import NO_WARMTH, WARMTHS, day_start
from hub.pipeline.routing.rules import OPEN_LEADS_OF, availability
from hub.runtime import Hub
from hub.store.models import (
    EventStatus,
    InboundEvent,
    Lead,
    LeadStatus,
    ManagerState,
    PollState,
    SourceSpend,
    TelegramLink,
    utcnow,
)

# -- the channel report -----------------------------------------------------------------------------------

def utc_day(session: Session):
    """The UTC calendar day of lead.created_at, in the database's own dialect."""
    if session.get_bind().dialect.name == "sqlite":
        return func.date(Lead.created_at)          # stored as naive UTC text
    return cast(func.timezone("UTC", Lead.created_at), Date)


@dataclass
class GroupRow:
    key: str
    leads: int = 0
    by_warmth: dict[str, dict[str, int]] = field(default_factory=dict)   # warmth -> {leads, converted, refused}

    def conversion(self, warmth: str | None = None) -> float | None:
        cells = [self.by_warmth.get(warmth, {})] if warmth else list(self.by_warmth.values())
        total = sum(c.get("leads", 0) for c in cells)
        return round(100 * sum(c.get("converted", 0) for c in cells) / total, 1) if total else None


def channel_report(session: Session, date_from: date, date_to: date, group_by: str = "source") -> dict[str, Any]:
    """Leads per day, and conversion per warmth group, per source or per first-touch utm_campaign, for the
    leads created from ``date_from`` to ``date_to`` (UTC days, both included); cost per lead by month."""
    if group_by not in ("source", "utm_campaign"):
        raise ValueError("group_by is source or utm_campaign")
    group_col = Lead.source if group_by == "source" else func.coalesce(Lead.utm_campaign, "(none)")
    in_range = and_(Lead.created_at >= day_start(date_from),
                    Lead.created_at < day_start(date_to + timedelta(days=1)), Lead.merged_into_id.is_(None))
    day = utc_day(session)
    per_day: dict[str, dict[str, int]] = defaultdict(dict)
    for d, key, n in session.execute(select(day, group_col, func.count()).where(in_range).group_by(day, group_col)):
        per_day[str(d)][key] = n
    groups: dict[str, GroupRow] = {}
    converted = func.sum(case((Lead.status == LeadStatus.CONVERTED, 1), else_=0))
    refused = func.sum(case((Lead.status == LeadStatus.REFUSED, 1), else_=0))
    for key, warmth, n, conv, ref in session.execute(
            select(group_col, Lead.warmth, func.count(), converted, refused).where(in_range)
            .group_by(group_col, Lead.warmth)):
        row = groups.setdefault(key, GroupRow(key))
        row.leads += n
        row.by_warmth[warmth or NO_WARMTH] = {"leads": n, "converted": int(conv or 0), "refused": int(ref or 0)}
    days = [date_from + timedelta(days=i) for i in range((date_to - date_from).days + 1)]
    ordered = sorted(groups.values(), key=lambda g: (-g.leads, g.key))
    return {
        "date_from": date_from.isoformat(), "date_to": date_to.isoformat(), "group_by": group_by,
        "days": [{"day": d.isoformat(), "counts": per_day.get(d.isoformat(), {}),
                  "total": sum(per_day.get(d.isoformat(), {}).values())} for d in days],
        "groups": [{"key": g.key, "leads": g.leads, "conversion": g.conversion(),
                    "warmth": {w: {**g.by_warmth.get(w, {"leads": 0, "converted": 0, "refused": 0}),
                                   "conversion": g.conversion(w)} for w in (*WARMTHS, NO_WARMTH)}}
                   for g in ordered],
        "cost": cost_per_lead(session, date_from, date_to) if group_by == "source" else [],
    }


def _months(date_from: date, date_to: date) -> list[str]:
    out, y, m = [], date_from.year, date_from.month
    while (y, m) <= (date_to.year, date_to.month):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def cost_per_lead(session: Session, date_from: date, date_to: date) -> list[dict[str, Any]]:
    """Per source and calendar month touched by the range: the spend entered, the leads of that whole
    month, and their ratio. Whole months, because spend is entered per month."""
    months = _months(date_from, date_to)
    spend = {(s.source, s.month): s.amount for s in
             session.scalars(select(SourceSpend).where(SourceSpend.month.in_(months)))}
    if not spend:
        return []
    first = date(int(months[0][:4]), int(months[0][5:]), 1)
    last_y, last_m = int(months[-1][:4]), int(months[-1][5:])
    end = date(last_y + (last_m == 12), 1 if last_m == 12 else last_m + 1, 1)
    month = func.substr(cast(utc_day(session), Lead.source.type), 1, 7)
    counts = {(src, m): n for src, m, n in session.execute(
        select(Lead.source, month, func.count()).where(
            Lead.created_at >= day_start(first), Lead.created_at < day_start(end), Lead.merged_into_id.is_(None),
            Lead.source.in_({s for s, _ in spend})).group_by(Lead.source, month))}
    rows = []
    for (src, m), amount in sorted(spend.items()):
        leads = counts.get((src, m), 0)
        amount = Decimal(amount)
        rows.append({"source": src, "month": m, "spend": float(amount), "leads": leads,
                     "cost_per_lead": float((amount / leads).quantize(Decimal("0.01"))) if leads else None})
    return rows


def set_spend(session: Session, source: str, month: str, amount: Decimal, actor: str) -> None:
    row = session.get(SourceSpend, (source, month), with_for_update=True)
    if row is None:
        session.add(SourceSpend(source=source, month=month, amount=amount, updated_at=utcnow(), updated_by=actor))
    else:
        row.amount, row.updated_at, row.updated_by = amount, utcnow(), actor


# -- channel health ---------------------------------------------------------------------------------------

def channel_health(session: Session, hub: Hub) -> list[dict[str, Any]]:
    """Per configured source: its URL, last delivery, today's deliveries and rejections, the queue, dead
    letters, and for polling sources the last poll."""
    now = utcnow()
    today = day_start(now.date())
    names = list(hub.sources)
    today_counts: dict[str, dict[str, int]] = defaultdict(dict)
    for src, status, n in session.execute(
            select(InboundEvent.source, InboundEvent.status, func.count())
            .where(InboundEvent.received_at >= today).group_by(InboundEvent.source, InboundEvent.status)):
        today_counts[src][status] = n
    waiting = {(src, st): n for src, st, n in session.execute(
        select(InboundEvent.source, InboundEvent.status, func.count())
        .where(InboundEvent.status.in_([EventStatus.DEAD, EventStatus.PENDING, EventStatus.PROCESSING]))
        .group_by(InboundEvent.source, InboundEvent.status))}
    polls = {p.source: p for p in session.scalars(select(PollState))}
    base = hub.config.notify.base_url.rstrip("/")
    rows = []
    for name in names:
        source = hub.sources[name]
        last = session.scalar(select(func.max(InboundEvent.received_at)).where(InboundEvent.source == name))
        counts = today_counts.get(name, {})
        poll = polls.get(name)
        webhook = isinstance(source.connector, WebhookConnector)
        rows.append({
            "name": name, "connector": source.connector.name, "enabled": source.config.enabled,
            "kind": "webhook" if webhook else "polling",
            "url": f"{base}/hooks/{name}" if webhook else None,
            "needs_token": bool(getattr(source.connector.settings, "token", None)) if webhook else False,
            "last_event_at": last.isoformat() if last else None,
            "events_today": sum(counts.values()),
            "rejected_today": counts.get(EventStatus.REJECTED, 0),
            "pending": waiting.get((name, EventStatus.PENDING), 0) + waiting.get((name, EventStatus.PROCESSING), 0),
            "dead": waiting.get((name, EventStatus.DEAD), 0),
            "last_poll_at": poll.polled_at.isoformat() if poll and poll.polled_at else None,
            "last_poll_error": poll.last_error if poll else None,
        })
    return rows


def recent_events(session: Session, source: str, status: str | None = None, limit: int = 20) -> list[InboundEvent]:
    query = select(InboundEvent).where(InboundEvent.source == source)
    if status:
        query = query.where(InboundEvent.status == status)
    return list(session.scalars(query.order_by(InboundEvent.id.desc()).limit(limit)))


# -- managers ---------------------------------------------------------------------------------------------

def managers_overview(session: Session, config: Config, names: list[str] | None = None,
                      translate: Callable[[str], str] | None = None) -> list[dict[str, Any]]:
    """Every manager (or those named) with team, state, open leads and whether they can take a lead now
    (why not: in English, or through ``translate`` for a page)."""
    managers = [m for m in config.managers if names is None or m.name in names]
    all_names = [m.name for m in managers]
    if not all_names:
        return []
    now = utcnow()
    free = availability(session, config, all_names, now)
    states = {s.name: s for s in session.scalars(select(ManagerState).where(ManagerState.name.in_(all_names)))}
    open_counts: dict[str, int] = dict(session.execute(OPEN_LEADS_OF, {"owners": all_names}).all())
    # Whose leads reach them in Telegram with buttons (hub managers link-telegram, or the profile page).
    linked = set(session.scalars(select(TelegramLink.manager).where(TelegramLink.manager.in_(all_names))))
    rows = []
    for m in managers:
        state, why_not = states.get(m.name), free[m.name]
        rows.append({"name": m.name, "team": m.team, "weight": m.weight, "active": m.active,
                     "on_duty": state.on_duty if state else True,
                     "vacation_until": state.vacation_until.isoformat() if state and state.vacation_until else None,
                     "open_leads": open_counts.get(m.name, 0), "max_open_leads": m.max_open_leads,
                     "available": why_not is None, "telegram_linked": m.name in linked,
                     "unavailable_because": (why_not.translate(translate) if translate else str(why_not))
                     if why_not else None})
    return rows


