"""What the web pages, the API and the command line read: the inbox, one lead, the live inbox (reports: reports.py;
the command line's listings: listings.py; search: search.py).

Pages and /api/v1 call the same functions, so a number on a page and in the API cannot disagree. Every
query here is bounded (a page of leads, a date range) and served by an index on 100k+ leads — but a search
by name or e-mail, which reads every person's name once (bench/pages.py: 31 ms on SQLite, 62 on PostgreSQL
at 100k), and the tag filter, which reads the tags of every lead with some.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    bindparam,
    case,
    func,
    select,
)
from sqlalchemy.orm import Session, selectinload

from hub.config import Config
from hub.desk.access import Actor, lead_scope
from hub.desk.search import FoldedPattern, IdList, has_tag, in_ids, search_persons
from hub.store.models import (
    Lead,
    LeadHistory,
    LeadStatus,
    LeadTask,
    Person,
    utcnow,
)

WARMTHS = ("hot", "warm", "cold")
NO_WARMTH = "none"


# -- the inbox --------------------------------------------------------------------------------------------

def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def after_day(day: date) -> datetime:
    """The first instant after this UTC day (the last representable one for date.max)."""
    return day_start(day + timedelta(days=1)) if day < date.max else datetime.max.replace(tzinfo=UTC)


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
            query = query.where(Lead.created_at >= day_start(self.date_from))
        if self.date_to:
            query = query.where(Lead.created_at < after_day(self.date_to))
        if self.overdue:
            query = query.where(Lead.status == LeadStatus.NEW, Lead.sla_due_at < now)
        if self.q and self.q.strip():
            query = query.where(Lead.person_id.in_(search_persons(self.q, region)))
        if self.person_ids is not None:
            query = query.where(in_ids(Lead.person_id, bindparam(None, self.person_ids, type_=IdList())))
        if self.tag and self.tag.strip():
            query = query.where(has_tag(Lead.tags, bindparam(None, " ".join(self.tag.split()),
                                                               type_=FoldedPattern(part=False))))
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


def page_of_leads(session: Session, config: Config, scope: ColumnElement[bool], f: LeadFilter, limit: int,
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
    return page_of_leads(session, config, lead_scope(actor, config), f, limit, before, order, loads)


def get_lead(session: Session, config: Config, actor: Actor, lead_id: int) -> Lead | None:
    """The lead with its person, touches, history and tasks, if this actor may see it."""
    return session.scalars(select(Lead).where(Lead.id == lead_id, lead_scope(actor, config)).options(
        selectinload(Lead.person).selectinload(Person.keys), selectinload(Lead.touches),
        selectinload(Lead.history), selectinload(Lead.tasks))).one_or_none()


def is_overdue(lead: Lead, now: datetime) -> bool:
    return lead.status == LeadStatus.NEW and lead.sla_due_at is not None and lead.sla_due_at < now


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
