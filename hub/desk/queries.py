"""What the web pages, the API and the command line read: the inbox, one lead, the channel report, channel
health, managers.

Pages and /api/v1 call the same functions, so a number on a page and in the API cannot disagree. Every
query here is bounded (a page of leads, a date range) and served by an index on 100k+ leads — but a search
by name or e-mail, which reads every person's name once (bench/pages.py: 31 ms on SQLite, 62 on PostgreSQL
at 100k), and the tag filter, which reads the tags of every lead with some.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    Date,
    String,
    and_,
    bindparam,
    case,
    cast,
    func,
    select,
    true,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator

from hub.config import Config
from hub.connector import WebhookConnector
from hub.desk.access import Actor, lead_scope
from hub.pipeline.normalise import normalise_phone
from hub.pipeline.routing.rules import OPEN_LEADS_OF, availability
from hub.runtime import Hub
from hub.store.models import (
    DeliveryStatus,
    EventStatus,
    IdentityKey,
    InboundEvent,
    KeyKind,
    Lead,
    LeadHistory,
    LeadStatus,
    LeadTask,
    ManagerState,
    Person,
    PollState,
    PossibleDuplicate,
    SinkDelivery,
    SourceSpend,
    utcnow,
)
from hub.store.serialize import event_to_dict, lead_to_dict
from hub.store.users import ApiToken, User

WARMTHS = ("hot", "warm", "cold")
NO_WARMTH = "none"


# -- search: case-insensitive on both stores, Cyrillic included -----------------------------------------
# PostgreSQL's ILIKE folds case by the database's LC_CTYPE (a UTF-8 locale folds Cyrillic; the bare "C" locale
# folds ASCII only, like SQLite: create the database with a UTF-8 one). SQLite's LIKE and
# lower() fold ASCII only, so there the text is matched with GLOB and a character class of each letter's
# cases: "иван" → *[иИ][вВ][аА][нН]*. GLOB runs in SQLite's C code; a Python casefold() registered as an SQL
# function was measured at twice its cost (44 vs 20 ms for 100k names), and it is called for every row.
# (A letter whose fold is two letters, ß → ss, matches only as written; names here do not need it.)

GLOB_SPECIAL = "*?["


def _glob_class(ch: str) -> str:
    cases = sorted({c for c in (ch, ch.lower(), ch.upper(), ch.casefold()) if len(c) == 1})
    if len(cases) > 1:
        return "[" + "".join(cases) + "]"
    return f"[{ch}]" if ch in GLOB_SPECIAL else ch


def _like_escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class _FoldedPattern(TypeDecorator[str]):
    """The text a person typed, turned at execution into the database's pattern for it: a GLOB pattern on
    SQLite, an ILIKE pattern on PostgreSQL. ``part``: anywhere in the value; else the whole value."""

    impl = String
    cache_ok = True

    def __init__(self, part: bool):
        super().__init__()
        self.part = part

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            body = "".join(_glob_class(ch) for ch in value)
            return f"*{body}*" if self.part else body
        body = _like_escaped(value)
        return f"%{body}%" if self.part else body


class _matches_folded(FunctionElement[bool]):
    """``column`` matches a _FoldedPattern, whatever the case of either."""

    type = Boolean()
    _is_implicitly_boolean = True     # a condition as it is: no "= 1" after it on SQLite (that hides an index)
    inherit_cache = True
    name = "matches_folded"


@compiles(_matches_folded, "sqlite")
def _matches_folded_sqlite(element: _matches_folded, compiler: Any, **kw: Any) -> str:
    column, pattern = element.clauses
    return f"({compiler.process(column, **kw)} GLOB {compiler.process(pattern, **kw)})"


@compiles(_matches_folded, "postgresql")
def _matches_folded_postgresql(element: _matches_folded, compiler: Any, **kw: Any) -> str:
    column, pattern = element.clauses
    return f"({compiler.process(column, **kw)} ILIKE {compiler.process(pattern, **kw)} ESCAPE '\\')"


def _folded(column: Any, text: str, part: bool) -> ColumnElement[bool]:
    return _matches_folded(column, bindparam(None, text, type_=_FoldedPattern(part)))


class _has_tag(FunctionElement[bool]):
    """The lead's JSON list of tags holds this tag (a _FoldedPattern of the whole value)."""

    type = Boolean()
    _is_implicitly_boolean = True     # a condition as it is: no "= 1" after it on SQLite (that hides an index)
    inherit_cache = True
    name = "has_tag"


@compiles(_has_tag, "sqlite")
def _has_tag_sqlite(element: _has_tag, compiler: Any, **kw: Any) -> str:
    tags, pattern = (compiler.process(c, **kw) for c in element.clauses)
    # A lead without tags is passed over by its text, unparsed.
    return f"({tags} != '[]' AND EXISTS (SELECT 1 FROM json_each({tags}) WHERE json_each.value GLOB {pattern}))"


@compiles(_has_tag, "postgresql")
def _has_tag_postgresql(element: _has_tag, compiler: Any, **kw: Any) -> str:
    tags, pattern = (compiler.process(c, **kw) for c in element.clauses)
    # A lead without tags is passed over by its text, unparsed; a JSON null (not a list) would make
    # json_array_elements_text fail for the whole query.
    return (f"(CAST({tags} AS TEXT) <> '[]' AND EXISTS (SELECT 1 FROM json_array_elements_text(CASE WHEN "
            f"json_typeof({tags}) = 'array' THEN {tags} END) AS tag WHERE tag ILIKE {pattern} ESCAPE '\\'))")


class _IdList(TypeDecorator[list[int]]):
    """A list of ids as one parameter: a PostgreSQL array, JSON text on SQLite. (An IN list of thousands of
    parameters costs PostgreSQL a linear search per row: 70 ms for 5,000 persons against 14 ms as an array.)"""

    impl = String
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        return dialect.type_descriptor(ARRAY(BigInteger) if dialect.name == "postgresql" else String())

    def process_bind_param(self, value: list[int] | None, dialect: Any) -> Any:
        return json.dumps(value) if dialect.name == "sqlite" else value


class _in_ids(FunctionElement[bool]):
    """``column`` is one of an _IdList's ids."""

    type = Boolean()
    _is_implicitly_boolean = True     # a condition as it is: no "= 1" after it on SQLite (that hides an index)
    inherit_cache = True
    name = "in_ids"


@compiles(_in_ids, "sqlite")
def _in_ids_sqlite(element: _in_ids, compiler: Any, **kw: Any) -> str:
    column, ids = (compiler.process(c, **kw) for c in element.clauses)
    return f"({column} IN (SELECT value FROM json_each({ids})))"


@compiles(_in_ids, "postgresql")
def _in_ids_postgresql(element: _in_ids, compiler: Any, **kw: Any) -> str:
    column, ids = (compiler.process(c, **kw) for c in element.clauses)
    return f"({column} = ANY({ids}))"


def search_persons(q: str, region: str):
    """The persons ``q`` names (a select of their ids, duplicates possible): a phone in any spelling
    (normalised, then its key exactly), else a part of their name or of one of their e-mails, in any case."""
    q = q.strip()
    phone = normalise_phone(q, region).value if "@" not in q and any(ch.isdigit() for ch in q) else None
    if phone:
        return select(IdentityKey.person_id).where(IdentityKey.kind == KeyKind.PHONE, IdentityKey.value == phone)
    by_name = select(Person.id).where(_folded(Person.name, q, part=True))
    # E-mail keys are stored casefolded (normalise_email).
    by_email = select(IdentityKey.person_id).where(IdentityKey.kind == KeyKind.EMAIL,
                                                   IdentityKey.value.contains(q.casefold(), autoescape=True))
    return union_all(by_name, by_email)


# -- the inbox --------------------------------------------------------------------------------------------

def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _after_day(day: date) -> datetime:
    """The first instant after this UTC day (the last representable one for date.max)."""
    return _day_start(day + timedelta(days=1)) if day < date.max else datetime.max.replace(tzinfo=UTC)


DEFAULT_REGION: str = Config.model_fields["default_region"].default


OPEN_VIEW, CLOSED_VIEW = "open", "closed"      # LeadFilter.status: a group of statuses
CLOSED_STATUSES = tuple(s for s in LeadStatus.ALL if s not in LeadStatus.OPEN)


@dataclass
class LeadFilter:
    status: str | None = None         # a status, or "open" (new, in work) or "closed" (converted, refused)
    warmth: str | None = None
    source: str | None = None
    owner: str | None = None          # a manager's name, or "-" for the unassigned queue
    date_from: date | None = None     # created on or after (UTC day)
    date_to: date | None = None       # created on or before (UTC day)
    overdue: bool = False             # new, assigned, SLA passed
    q: str | None = None              # a phone in any spelling, or part of a name or an e-mail (search_persons)
    tag: str | None = None            # one of the lead's tags, in any case
    person_ids: list[int] | None = None   # leads of these persons (a search, resolved: _resolve_search)

    def apply(self, query, now: datetime, region: str = DEFAULT_REGION):
        """``query`` (a select over leads) narrowed to the leads this filter lets through. ``region``: how a
        phone in ``q`` written without its country code is read (the config's default_region)."""
        # A group as "not the other group": IN would send SQLite to the status index and then sort every
        # match by id (26 ms at 100k leads, half of them open); NOT IN walks the newest first (0.1 ms).
        if self.status == OPEN_VIEW:
            query = query.where(Lead.status.not_in(CLOSED_STATUSES))
        elif self.status == CLOSED_VIEW:
            query = query.where(Lead.status.not_in(LeadStatus.OPEN))
        elif self.status:
            query = query.where(Lead.status == self.status)
        if self.warmth:
            query = query.where(Lead.warmth.is_(None) if self.warmth == NO_WARMTH else Lead.warmth == self.warmth)
        if self.source:
            query = query.where(Lead.source == self.source)
        if self.owner:
            query = query.where(Lead.owner.is_(None) if self.owner == "-" else Lead.owner == self.owner)
        if self.date_from:
            query = query.where(Lead.created_at >= _day_start(self.date_from))
        if self.date_to:
            query = query.where(Lead.created_at < _after_day(self.date_to))
        if self.overdue:
            query = query.where(Lead.status == LeadStatus.NEW, Lead.sla_due_at < now)
        if self.q and self.q.strip():
            query = query.where(Lead.person_id.in_(search_persons(self.q, region)))
        if self.person_ids is not None:
            query = query.where(_in_ids(Lead.person_id, bindparam(None, self.person_ids, type_=_IdList())))
        if self.tag and self.tag.strip():
            query = query.where(_has_tag(Lead.tags, bindparam(None, " ".join(self.tag.split()),
                                                               type_=_FoldedPattern(part=False))))
        return query


# Counting every match of a broad filter would cost as much as reading them; past this, "10000+".
TOTAL_CAP = 10_000

NEWEST, DUE = "newest", "due"
ORDERS = (NEWEST, DUE)
_WARMTH_RANK = case({"hot": 0, "warm": 1, "cold": 2}, value=Lead.warmth, else_=3)


@dataclass
class LeadPage:
    leads: list[Lead]
    total: int                        # matches, counted up to TOTAL_CAP
    next_before: int | None           # pass as ``before`` for the next (older) page; always None for "due"

    @property
    def total_is_exact(self) -> bool:
        return self.total <= TOTAL_CAP


def _due_first(query):
    """Open leads by what is due: the SLA (overdue ones first, as their due time has passed), then the
    earliest open call-back task, then the follow-up, then warmth hot → warm → cold, then newest."""
    next_task = (select(LeadTask.lead_id, func.min(LeadTask.due_at).label("due_at"))
                 .where(LeadTask.done_at.is_(None)).group_by(LeadTask.lead_id).subquery())
    return (query.outerjoin(next_task, next_task.c.lead_id == Lead.id)
            .where(Lead.status.in_(LeadStatus.OPEN))
            .order_by(Lead.sla_due_at.asc().nulls_last(), next_task.c.due_at.asc().nulls_last(),
                      Lead.follow_up_due_at.asc().nulls_last(), _WARMTH_RANK, Lead.id.desc()))


# A search naming up to this many persons is answered from their ids (the index on lead.person_id) by the
# page and by its count alike, so the names are read once, not twice; one naming more (a letter or two) is
# answered as a subquery. Measured at 100k leads: the leads of 12,921 persons by their ids, a page and its
# count, 19 + 33 ms on PostgreSQL, 13 + 10 on SQLite; as a subquery each reads every name again (~35 ms).
SEARCH_PERSONS_MAX = 20_000


def _resolve_search(session: Session, f: LeadFilter, region: str) -> LeadFilter:
    if not (f.q and f.q.strip()):
        return f
    persons = list(session.scalars(search_persons(f.q, region).limit(SEARCH_PERSONS_MAX + 1)))
    if len(persons) > SEARCH_PERSONS_MAX:
        return f
    return replace(f, q=None, person_ids=sorted(set(persons)))


def _page_of_leads(session: Session, config: Config, scope: ColumnElement[bool], f: LeadFilter, limit: int,
                   before: int | None, order: str, loads: list[Any]) -> LeadPage:
    if order not in ORDERS:
        raise ValueError(f"order is one of {', '.join(ORDERS)}")
    now = utcnow()
    f = _resolve_search(session, f, config.default_region)
    where = [scope, Lead.merged_into_id.is_(None)]
    base = f.apply(select(Lead).where(*where), now, config.default_region).options(*loads)
    if order == DUE:
        # Every open lead in scope is ranked on each request (an index cannot serve this order), so "due" is
        # one bounded page — the first ``limit`` (at most 200) — with no keyset for a next one. Closed leads
        # follow, newest first, when fewer open ones match.
        leads = list(session.scalars(_due_first(base).limit(limit)))
        if len(leads) < limit:
            leads += session.scalars(base.where(Lead.status.not_in(LeadStatus.OPEN))
                                     .order_by(Lead.id.desc()).limit(limit - len(leads)))
        more = False
    else:
        if before is not None:
            base = base.where(Lead.id < before)
        leads = list(session.scalars(base.order_by(Lead.id.desc()).limit(limit + 1)))
        more = len(leads) > limit
        leads = leads[:limit]
    if before is None and len(leads) < limit:
        total = len(leads)            # the first page holds every match: no need to count them again
    else:
        matching = f.apply(select(Lead.id).where(*where), now, config.default_region).limit(TOTAL_CAP + 1)
        total = session.scalar(select(func.count()).select_from(matching.subquery())) or 0
    return LeadPage(leads, total, leads[-1].id if more else None)


def list_leads(session: Session, config: Config, actor: Actor, f: LeadFilter, limit: int = 50,
               before: int | None = None, with_touches: bool = False, order: str = NEWEST) -> LeadPage:
    """The leads this actor may see, ``limit`` at a time. ``order``: "newest" first (keyset on the id: page
    2000 costs what page 1 does), or "due" (see _due_first; one page). Each lead comes with its person's keys
    and its tasks (and its touches, if asked)."""
    loads = [selectinload(Lead.person).selectinload(Person.keys), selectinload(Lead.tasks)]
    if with_touches:
        loads.append(selectinload(Lead.touches))
    return _page_of_leads(session, config, lead_scope(actor, config), f, limit, before, order, loads)


def get_lead(session: Session, config: Config, actor: Actor, lead_id: int) -> Lead | None:
    """The lead with its person, touches, history and tasks, if this actor may see it."""
    return session.scalars(select(Lead).where(Lead.id == lead_id, lead_scope(actor, config)).options(
        selectinload(Lead.person).selectinload(Person.keys), selectinload(Lead.touches),
        selectinload(Lead.history), selectinload(Lead.tasks))).one_or_none()


def is_overdue(lead: Lead, now: datetime) -> bool:
    return lead.status == LeadStatus.NEW and lead.sla_due_at is not None and lead.sla_due_at < now


# -- the channel report -----------------------------------------------------------------------------------

def _utc_day(session: Session):
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
    in_range = and_(Lead.created_at >= _day_start(date_from),
                    Lead.created_at < _day_start(date_to + timedelta(days=1)), Lead.merged_into_id.is_(None))
    day = _utc_day(session)
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
    month = func.substr(cast(_utc_day(session), Lead.source.type), 1, 7)
    counts = {(src, m): n for src, m, n in session.execute(
        select(Lead.source, month, func.count()).where(
            Lead.created_at >= _day_start(first), Lead.created_at < _day_start(end), Lead.merged_into_id.is_(None),
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
    today = _day_start(now.date())
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
    rows = []
    for m in managers:
        state, why_not = states.get(m.name), free[m.name]
        rows.append({"name": m.name, "team": m.team, "weight": m.weight, "active": m.active,
                     "on_duty": state.on_duty if state else True,
                     "vacation_until": state.vacation_until.isoformat() if state and state.vacation_until else None,
                     "open_leads": open_counts.get(m.name, 0), "max_open_leads": m.max_open_leads,
                     "available": why_not is None,
                     "unavailable_because": (why_not.translate(translate) if translate else str(why_not))
                     if why_not else None})
    return rows


# -- the command line's listings --------------------------------------------------------------------------
# An operator on the server sees everything: these read without an actor's scope. Users, tokens and
# open duplicates are a handful of rows, so those lists have no limit.

HANDOVER_KINDS = ("assigned", "reassigned", "escalated", "taken")


def _everything_of_a_lead() -> list[Any]:
    return [selectinload(Lead.person).selectinload(Person.keys), selectinload(Lead.touches),
            selectinload(Lead.history), selectinload(Lead.tasks)]


def _lead_with_everything():
    return select(Lead).where(Lead.merged_into_id.is_(None)).options(*_everything_of_a_lead())


def newest_leads(session: Session, config: Config, f: LeadFilter, limit: int = 50, order: str = NEWEST,
                 with_touches: bool = False) -> list[dict[str, Any]]:
    """Leads, newest first (or "due" first, see list_leads), merged ones left out."""
    page = _page_of_leads(session, config, true(), f, limit, None, order, _everything_of_a_lead())
    return [lead_to_dict(lead, with_touches=with_touches) for lead in page.leads]


def lead_details(session: Session, lead_id: int) -> dict[str, Any] | None:
    """One lead with its person's keys, touches and history; None if there is none (or it was merged)."""
    lead = session.scalars(_lead_with_everything().where(Lead.id == lead_id)).one_or_none()
    return lead_to_dict(lead) if lead else None


def handover_log(session: Session, lead_id: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Every assignment, reassignment, escalation and take (of one lead, if given), newest first."""
    query = select(LeadHistory).where(LeadHistory.kind.in_(HANDOVER_KINDS)).order_by(LeadHistory.id.desc())
    if lead_id:
        query = query.where(LeadHistory.lead_id == lead_id)
    return [{"lead_id": h.lead_id, "at": h.at.isoformat(), "kind": h.kind, "from": h.data.get("from"),
             "to": h.data.get("to"), "why": h.data.get("why"), "by": h.actor}
            for h in session.scalars(query.limit(limit))]


def person_details(session: Session, person: Person) -> dict[str, Any]:
    """A person's keys and leads (merged ones too, marked)."""
    leads_of = session.scalars(select(Lead).where(Lead.person_id == person.id).order_by(Lead.id)).all()
    return {"id": person.id, "name": person.name, "merged_into_id": person.merged_into_id,
            "keys": [f"{k.kind}:{k.value}" for k in person.keys],
            "leads": [{"id": lead.id, "status": lead.status, "merged_into_id": lead.merged_into_id}
                      for lead in leads_of]}


def possible_duplicates(session: Session, include_resolved: bool = False) -> list[dict[str, Any]]:
    """Pairs of persons one delivery's keys pointed to at once, oldest first."""
    query = select(PossibleDuplicate).order_by(PossibleDuplicate.id)
    if not include_resolved:
        query = query.where(PossibleDuplicate.resolved_by_merge_id.is_(None))
    return [{"id": d.id, "person_id": d.person_id, "other_person_id": d.other_person_id, "keys": d.keys,
             "event_id": d.event_id, "created_at": d.created_at.isoformat(),
             "resolved_by_merge_id": d.resolved_by_merge_id} for d in session.scalars(query)]


def newest_events(session: Session, status: str | None = None, source: str | None = None,
                  limit: int = 50) -> list[dict[str, Any]]:
    """Inbound events of every source (or one), newest first."""
    query = select(InboundEvent).order_by(InboundEvent.id.desc()).limit(limit)
    if status:
        query = query.where(InboundEvent.status == status)
    if source:
        query = query.where(InboundEvent.source == source)
    return [event_to_dict(e) for e in session.scalars(query)]


def event_details(session: Session, event_id: int) -> dict[str, Any] | None:
    """One event with its raw body and headers."""
    event = session.get(InboundEvent, event_id)
    return event_to_dict(event, with_body=True) if event else None


def dead_deliveries(session: Session, limit: int = 100) -> list[dict[str, Any]]:
    """Sink deliveries that gave up, oldest first, with their last error."""
    return [{"id": d.id, "sink": d.sink, "lead_id": d.lead_id, "attempts": d.attempts, "last_error": d.last_error}
            for d in session.scalars(select(SinkDelivery).where(SinkDelivery.status == DeliveryStatus.DEAD)
                                     .order_by(SinkDelivery.id).limit(limit))]


def has_users(session: Session) -> bool:
    return session.scalar(select(User.id).limit(1)) is not None


def users_overview(session: Session) -> list[dict[str, Any]]:
    """Every user with role, manager link and last sign-in, by login."""
    return [{"login": u.login, "role": u.role, "manager": u.manager, "disabled": u.disabled,
             "last_login_at": u.last_login_at.isoformat() if u.last_login_at else None}
            for u in session.scalars(select(User).order_by(User.login))]


def api_tokens_overview(session: Session) -> list[dict[str, Any]]:
    """Every API token with its user, name, prefix and last use; never the token itself."""
    return [{"id": t.id, "login": u.login, "name": t.name, "prefix": t.prefix,
             "created_at": t.created_at.isoformat(),
             "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
             "revoked": t.revoked_at is not None}
            for t, u in session.execute(select(ApiToken, User).join(User, User.id == ApiToken.user_id)
                                        .order_by(ApiToken.id))]


# -- the live inbox and the batch (the pages' inbox) ------------------------------------------------------

# What brings a lead into someone's inbox: it is new or came back, or it was handed to someone.
ARRIVAL_KINDS = ("created", "reopened", "assigned", "reassigned", "escalated")
# A history row's id is drawn when it is written but seen when its transaction commits, and a worker's
# transaction that drew its ids first may commit after another's. So the cursor handed back stays behind
# the rows of the last ARRIVAL_SETTLE (far longer than any of the hub's transactions): their arrivals are
# sent again, and the page skips the ones it has (by the row's id) instead of missing a late commit.
ARRIVAL_SETTLE = timedelta(seconds=60)
# History rows read per answer: a minute of a busy hub's arrivals; more are caught up by the next polls.
ARRIVALS_MAX = 200
# The tags offered besides [desk] tags are those of this many newest leads: tags are not indexed, and a
# rarer, older tag can still be typed.
TAGS_SCAN = 1000


@dataclass
class Arrivals:
    leads: list[Lead]               # the leads that arrived and pass the filter, latest arrival first
    arrival_of: dict[int, int]      # lead id -> the id of the history row it arrived by
    cursor: int                     # ask again with after=cursor


def inbox_arrivals(session: Session, config: Config, actor: Actor, f: LeadFilter, after: int | None,
                   now: datetime) -> Arrivals:
    """The leads that arrived in this actor's inbox, as ``f`` filters it, since the history row ``after``
    (None: the latest ones, for an inbox being drawn), but for what the actor did themselves."""
    if after is None:
        after = max((session.scalar(select(func.max(LeadHistory.id))) or 0) - ARRIVALS_MAX, 0)
    rows = session.execute(select(LeadHistory.id, LeadHistory.lead_id)
                           .where(LeadHistory.id > after, LeadHistory.kind.in_(ARRIVAL_KINDS),
                                  LeadHistory.actor != actor.name)
                           .order_by(LeadHistory.id).limit(ARRIVALS_MAX)).all()
    if len(rows) == ARRIVALS_MAX:     # a flood: move on past what was read, late commits or not
        cursor = rows[-1].id
    else:
        cursor = session.scalar(select(func.max(LeadHistory.id)).where(
            LeadHistory.id > after, LeadHistory.at < now - ARRIVAL_SETTLE)) or after
    arrival_of = {row.lead_id: row.id for row in rows}          # the latest arrival of each lead
    if not arrival_of:
        return Arrivals([], {}, cursor)
    query = f.apply(select(Lead).where(Lead.id.in_(arrival_of), lead_scope(actor, config),
                                       Lead.merged_into_id.is_(None)), now, config.default_region)
    leads = sorted(session.scalars(query.options(selectinload(Lead.person).selectinload(Person.keys),
                                                 selectinload(Lead.tasks))),
                   key=lambda lead: -arrival_of[lead.id])
    return Arrivals(leads, {lead.id: arrival_of[lead.id] for lead in leads}, cursor)


def owners_of_visible(session: Session, config: Config, actor: Actor, lead_ids: list[int]) -> dict[int, str | None]:
    """Of these leads, the ones this actor may see (merged ones left out), with their owners."""
    return {lead_id: owner for lead_id, owner in session.execute(
        select(Lead.id, Lead.owner).where(Lead.id.in_(lead_ids), lead_scope(actor, config),
                                          Lead.merged_into_id.is_(None)))}


def tags_in_use(session: Session, config: Config, actor: Actor) -> list[str]:
    """The tags on the newest TAGS_SCAN leads this actor sees, each once (in any case), sorted."""
    seen: dict[str, str] = {}
    for tags in session.scalars(select(Lead.tags).where(lead_scope(actor, config))
                                .order_by(Lead.id.desc()).limit(TAGS_SCAN)):
        for tag in tags or []:
            seen.setdefault(tag.casefold(), tag)
    return sorted(seen.values(), key=str.casefold)
