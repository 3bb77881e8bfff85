"""The funnel per channel: for the leads created in a period (the team's days), received → taken → converted
per source, per first-touch campaign or per tag, by first touch and by last touch side by side; what the
channel cost (spend → cost per lead, cost per client), what it brought (revenue, return on spend); and the
inbound channels against the cold base (leads imported from a CSV file). The page, its CSV and /api/v1 all
read ``funnel_report``.

What counts:
- received: the leads created in the period, merged leads left out; taken: those a manager took into work
  (``taken_at`` set) or that were converted without being taken; converted, refused, open: by their status
  now; rates are percent of received, one decimal, null when nothing was received;
- first touch: the lead's own ``source`` and ``utm_campaign`` (the first touch's, kept on the lead); last
  touch: the source and campaign of the lead's latest touch (its greatest touch id, found in SQL);
- tag: a lead counts once in each of its tags, "(none)" when it has none. Tags are the lead's, not a
  touch's, so there is one attribution (``last_touch`` is None) and a row's kind is its first touch's;
- kind: ``cold_base`` for leads from the CSV importer's connector, else ``inbound``. By first touch, the
  kind of the lead's source: a configured source's connector, or for a source that is not configured (an
  import's: ``hub import --source old_crm``) the channel its leads' first touch came through. By last touch,
  the channel of that touch: a person from the cold base who answered an ad is inbound there. (So name an
  import apart from the live sources: one run as ``--source site`` counts as the site.) The same campaign
  or tag may have a row of each kind;
- spend: entered per source per calendar month. A month wholly inside the period counts whole; a month
  partly inside counts by its days inside it (15 of April's 30 days: half of April's spend) — the default
  period is "the last 30 days", which whole months only would leave empty or overstate. Spend is per source,
  so grouped by campaign or tag the spend, cost and return columns are None (dividing a source's spend among
  its campaigns by their leads would only restate the source's cost per lead); revenue is the deals'
  amounts, so it is there in every grouping;
- revenue: the amounts of the converted leads (None when none of them has an amount); return on spend:
  revenue ÷ spend (None without spend or without revenue).

A team lead reads every channel, as the admin and the marketer do: a channel's numbers are not a person's,
and a channel's spend is the company's, so cost per client over one team's leads would be wrong.

Aggregation is SQL's, and reads each lead once: one GROUP BY over the period's leads (source, campaign,
status, taken — on the report's index range, no join; for tags the same over the leads' tags, the rows of a
lead's first tag giving the per-lead numbers), and one over the touches of the period's lead ids for the
leads that have more than one (GROUP BY lead_id HAVING count > 1, max(touch.id): their latest touch), which
move from their first touch's group to their latest's. Joining every lead to its latest touch cost half as much
again at 100k leads, for the few who came back. Python adds up those groups and divides. Money is exact:
Decimal throughout, cents rounded half up once, at the end, and given out as decimal text ("12500.00") like
a lead's amount."""

from __future__ import annotations

import calendar
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, NamedTuple

from sqlalchemy import and_, case, func, select, true
from sqlalchemy.orm import Session, aliased

from hub.config import Config
from hub.desk.period import Period
from hub.intake.importer import CSV_CONNECTOR
from hub.store.models import Lead, LeadStatus, SourceSpend, Touch

GROUPINGS = ("source", "utm_campaign", "tag")
KINDS = ("inbound", "cold_base")
ATTRIBUTIONS = ("first_touch", "last_touch")
COUNTS = ("received", "taken", "converted", "refused", "open")
NONE_KEY = "(none)"
CENTS = Decimal("0.01")


def funnel_report(session: Session, config: Config, period: Period, group_by: str = "source") -> dict[str, Any]:
    """The funnel for the leads created in ``period``, grouped by ``group_by`` (source | utm_campaign | tag)."""
    if group_by not in GROUPINGS:
        raise ValueError("group_by is source, utm_campaign or tag")
    spend_parts = spend_in_period(session, period)
    if group_by == "tag":
        tag_groups, groups = _tag_groups(session, period)
    else:
        tag_groups, groups = [], _lead_groups(session, period)
    kinds = _source_kinds(session, config, groups, [part.source for part in spend_parts])
    movers = _movers(session, period, groups)
    # Spend goes on the source's row of the source's kind.
    spend = {(kinds[source], source): amount for source, amount in _spend_per_source(spend_parts).items()}
    by_source = {a: _cells(groups, movers, kinds, a, "source") for a in ATTRIBUTIONS}
    for cells in by_source.values():          # a source that cost money and brought nothing still has a row
        for key in spend:
            cells.setdefault(key, _Cell())
    last: dict[tuple[str, str], _Cell] | None
    if group_by == "source":
        first, last = by_source["first_touch"], by_source["last_touch"]
    elif group_by == "utm_campaign":
        first, last = (_cells(groups, movers, kinds, "first_touch", "utm_campaign"),
                       _cells(groups, movers, kinds, "last_touch", "utm_campaign"))
    else:
        first, last = _cells(tag_groups, [], kinds, "first_touch", "tag"), None
    money = spend if group_by == "source" else None
    return {
        "period": period.as_dict(), "group_by": group_by,
        "attributions": ["first_touch"] if last is None else list(ATTRIBUTIONS),
        "first_touch": _rows(first, money),
        "last_touch": None if last is None else _rows(last, money),
        "totals": {a: _totals(_cells(groups, movers, kinds, a, "kind"), spend) for a in ATTRIBUTIONS},
        "spend": [part.as_dict() for part in spend_parts],
        "lowest_cost_per_client": {a: _cheapest(_rows(by_source[a], spend)) for a in ATTRIBUTIONS},
    }


# -- the leads, counted in SQL --------------------------------------------------------------------------------

class _Group(NamedTuple):
    """Leads alike in first touch (source, campaign; or a tag), status and whether they were taken."""

    source: str
    campaign: str
    tag: str | None
    status: str
    taken: bool
    leads: int
    amount: Decimal | None      # the sum of the amounts given
    amounts: int                # how many leads gave one
    first_id: int               # the group's lowest and highest lead id
    last_id: int


class _Mover(NamedTuple):
    """Leads whose latest touch is not their first (a person who came back), grouped like _Group, with the
    latest touch's channel, source and campaign."""

    source: str
    campaign: str
    status: str
    taken: bool
    last_channel: str
    last_source: str
    last_campaign: str
    leads: int
    amount: Decimal | None
    amounts: int


@dataclass
class _Cell:
    received: int = 0
    taken: int = 0
    converted: int = 0
    refused: int = 0
    open: int = 0
    revenue_total: Decimal = Decimal(0)
    amounts: int = 0

    @property
    def revenue(self) -> Decimal | None:
        return self.revenue_total if self.amounts else None

    def add(self, status: str, taken: bool, leads: int, amount: Decimal | None, amounts: int, sign: int = 1) -> None:
        leads *= sign
        self.received += leads
        if taken or status == LeadStatus.CONVERTED:
            self.taken += leads
        if status == LeadStatus.CONVERTED:
            self.converted += leads
            self.revenue_total += sign * Decimal(amount or 0)
            self.amounts += sign * amounts
        elif status == LeadStatus.REFUSED:
            self.refused += leads
        elif status in LeadStatus.OPEN:
            self.open += leads

    def merge(self, other: _Cell) -> None:
        for name in (*COUNTS, "revenue_total", "amounts"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def _in_period(period: Period):
    return and_(Lead.created_at >= period.start, Lead.created_at < period.end, Lead.merged_into_id.is_(None))


def _sums() -> list:
    # Grouped by status, so the amounts are summed as they are and only converted groups' are used.
    return [func.count(), func.sum(Lead.amount), func.count(Lead.amount)]


def _lead_groups(session: Session, period: Period) -> list[_Group]:
    """The period's leads by first-touch source and campaign, status and taken: one pass over the report's
    index range, no join."""
    keys = [Lead.source, func.coalesce(Lead.utm_campaign, NONE_KEY), Lead.status, Lead.taken_at.is_not(None)]
    query = (select(*keys, *_sums(), func.min(Lead.id), func.max(Lead.id)).where(_in_period(period))
             .group_by(*keys))
    rows: Any = session.execute(query)       # rows of the columns above (their types are lost in the grouping)
    return [_Group(source, campaign, None, status, bool(taken), n, amount, amounts, lo, hi)
            for source, campaign, status, taken, n, amount, amounts, lo, hi in rows]


def _tag_groups(session: Session, period: Period) -> tuple[list[_Group], list[_Group]]:
    """The same per tag (a lead once in each of its tags, "(none)" when it has none), and per lead: the
    leads' groups are the rows of their first tag, so the tag page reads the leads once, not twice."""
    if session.get_bind().dialect.name == "sqlite":
        tags = func.json_each(Lead.tags).table_valued("value", "key", joins_implicitly=True)
        first = func.coalesce(tags.c.key, 0) == 0
    else:
        # A JSON null (not a list) would make json_array_elements_text fail the whole query.
        array = case((func.json_typeof(Lead.tags) == "array", Lead.tags))
        tags = func.json_array_elements_text(array).table_valued(
            "value", with_ordinality="position", joins_implicitly=True).render_derived(name="tag")
        first = func.coalesce(tags.c.position, 1) == 1
    tag = func.coalesce(tags.c.value, NONE_KEY)
    keys = [tag, first, Lead.source, Lead.status, Lead.taken_at.is_not(None)]
    query = (select(*keys, *_sums(), func.min(Lead.id), func.max(Lead.id)).select_from(Lead)
             .outerjoin(tags, true()).where(_in_period(period)).group_by(*keys))
    rows: Any = session.execute(query)
    per_tag, per_lead = [], []
    for tag_name, is_first, source, status, taken, n, amount, amounts, lo, hi in rows:
        group = _Group(source, NONE_KEY, tag_name, status, bool(taken), n, amount, amounts, lo, hi)
        per_tag.append(group)
        if is_first:
            per_lead.append(group._replace(tag=None))
    return per_tag, per_lead


def _movers(session: Session, period: Period, groups: list[_Group]) -> list[_Mover]:
    """The period's leads with more than one touch, with their latest touch (the greatest touch id). The
    touches are read through their lead_id index over the period's lead ids only; most leads have one touch,
    so this is what the last touch costs beyond the first — instead of a join to a touch for every lead."""
    if not groups:
        return []
    lowest, highest = min(g.first_id for g in groups), max(g.last_id for g in groups)
    returned = (select(Touch.lead_id, func.max(Touch.id).label("last_id"))
                .where(Touch.lead_id >= lowest, Touch.lead_id <= highest)
                .group_by(Touch.lead_id).having(func.count() > 1).subquery("returned"))
    last = aliased(Touch, name="last_touch")
    keys = [Lead.source, func.coalesce(Lead.utm_campaign, NONE_KEY), Lead.status, Lead.taken_at.is_not(None),
            last.channel, last.source, func.coalesce(last.utm_campaign, NONE_KEY)]
    query = (select(*keys, *_sums()).select_from(returned).join(Lead, Lead.id == returned.c.lead_id)
             .join(last, last.id == returned.c.last_id).where(_in_period(period)).group_by(*keys))
    rows: Any = session.execute(query)
    return [_Mover(source, campaign, status, bool(taken), channel, last_source, last_campaign, n, amount, amounts)
            for source, campaign, status, taken, channel, last_source, last_campaign, n, amount, amounts in rows]


def _kind_of(channel: str | None) -> str:
    return "cold_base" if channel == CSV_CONNECTOR else "inbound"


def _source_kinds(session: Session, config: Config, groups: list[_Group], others: list[str]) -> dict[str, str]:
    """Each source's kind: a configured source's by its connector; a source no longer or never configured
    (an import's: ``hub import --source old_crm``) by the channel of the first touch of one of its leads."""
    configured = {s.name: s.connector for s in config.sources}
    kinds = {name: _kind_of(connector) for name, connector in configured.items()}
    sample: dict[str, int] = {}
    for g in groups:
        if g.source not in configured:
            sample[g.source] = min(sample.get(g.source, g.first_id), g.first_id)
    if sample:
        firsts = select(func.min(Touch.id)).where(Touch.lead_id.in_(list(sample.values()))).group_by(Touch.lead_id)
        channels = dict(session.execute(select(Touch.lead_id, Touch.channel).where(Touch.id.in_(firsts))).all())
        kinds.update({source: _kind_of(channels.get(lead_id)) for source, lead_id in sample.items()})
    return {**{name: "inbound" for name in others}, **kinds}


def _cells(groups: list[_Group], movers: list[_Mover], kinds: dict[str, str], attribution: str,
           by: str) -> dict[tuple[str, str], _Cell]:
    """(kind, key) → the counts, by first touch or by last touch. By last touch a mover leaves its first
    touch's group for its latest touch's; everybody else's last touch is their first."""
    def key(kind: str, source: str, campaign: str, tag: str | None) -> tuple[str, str]:
        return kind, {"source": source, "utm_campaign": campaign, "tag": tag or NONE_KEY, "kind": ""}[by]

    cells: dict[tuple[str, str], _Cell] = defaultdict(_Cell)
    for g in groups:
        cells[key(kinds[g.source], g.source, g.campaign, g.tag)].add(g.status, g.taken, g.leads, g.amount, g.amounts)
    if attribution == "last_touch":
        for m in movers:
            counted = (m.status, m.taken, m.leads, m.amount, m.amounts)
            cells[key(kinds[m.source], m.source, m.campaign, None)].add(*counted, sign=-1)
            cells[key(_kind_of(m.last_channel), m.last_source, m.last_campaign, None)].add(*counted)
    return {k: cell for k, cell in cells.items() if cell.received}


# -- money --------------------------------------------------------------------------------------------------

@dataclass
class SpendPart:
    """A month's spend of a source and the part of it the period counts."""

    source: str
    month: str                      # YYYY-MM
    amount: Decimal                 # entered for the whole month
    days_counted: int               # the month's days inside the period
    days_in_month: int
    counted: Decimal = field(init=False)

    def __post_init__(self) -> None:
        self.counted = self.amount * self.days_counted / self.days_in_month      # exact until the total

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "month": self.month, "amount": _money(self.amount),
                "days_counted": self.days_counted, "days_in_month": self.days_in_month,
                "counted": _money(self.counted)}


def months_in(period: Period) -> list[tuple[str, int, int]]:
    """(YYYY-MM, days of the month inside the period, days in the month) for each month the period touches."""
    out = []
    year, month = period.date_from.year, period.date_from.month
    while (year, month) <= (period.date_to.year, period.date_to.month):
        length = calendar.monthrange(year, month)[1]
        first, last = date(year, month, 1), date(year, month, length)
        inside = (min(last, period.date_to) - max(first, period.date_from)).days + 1
        out.append((f"{year:04d}-{month:02d}", inside, length))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def spend_in_period(session: Session, period: Period) -> list[SpendPart]:
    months = {name: (inside, length) for name, inside, length in months_in(period)}
    rows = session.execute(select(SourceSpend.source, SourceSpend.month, SourceSpend.amount)
                           .where(SourceSpend.month.in_(list(months)))
                           .order_by(SourceSpend.source, SourceSpend.month))
    return [SpendPart(source, month, Decimal(amount), *months[month]) for source, month, amount in rows]


def _spend_per_source(parts: list[SpendPart]) -> dict[str, Decimal]:
    total: dict[str, Decimal] = defaultdict(Decimal)
    for part in parts:
        total[part.source] += part.counted
    return {source: amount.quantize(CENTS, ROUND_HALF_UP) for source, amount in total.items()}


def _money(value: Decimal | None) -> str | None:
    return None if value is None else str(value.quantize(CENTS, ROUND_HALF_UP))


def _ratio(part: Decimal | None, whole: Decimal | int | None) -> Decimal | None:
    if part is None or not whole:
        return None
    return Decimal(part) / Decimal(whole)


def _percent(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 1) if whole else None


def _row(cell: _Cell, spend: Decimal | None) -> dict[str, Any]:
    ros = _ratio(cell.revenue, spend)
    return {"received": cell.received, "taken": cell.taken, "converted": cell.converted, "refused": cell.refused,
            "open": cell.open, "taken_rate": _percent(cell.taken, cell.received),
            "conversion": _percent(cell.converted, cell.received),
            "spend": _money(spend), "cost_per_lead": _money(_ratio(spend, cell.received)),
            "cost_per_client": _money(_ratio(spend, cell.converted)), "revenue": _money(cell.revenue),
            "return_on_spend": None if ros is None else float(ros.quantize(CENTS, ROUND_HALF_UP))}


def _rows(cells: dict[tuple[str, str], _Cell], spend: dict[tuple[str, str], Decimal] | None) -> list[dict[str, Any]]:
    """The groups, most leads first. With ``spend`` (grouped by source: (kind, source) → spend) a source's
    spend is on its row; without it (campaigns, tags) the money columns but revenue are None."""
    rows = [{"key": key, "kind": kind, **_row(cell, None if spend is None else spend.get((kind, key)))}
            for (kind, key), cell in cells.items()]
    return sorted(rows, key=lambda r: (-r["received"], KINDS.index(r["kind"]), r["key"]))


def _totals(cells: dict[tuple[str, str], _Cell], spend: dict[tuple[str, str], Decimal]) -> list[dict[str, Any]]:
    """Inbound, cold base and all: one row each, with the spend of the sources of that kind."""
    rows = {kind: cells.get((kind, ""), _Cell()) for kind in KINDS}
    rows["all"] = _Cell()
    for kind in KINDS:
        rows["all"].merge(rows[kind])
    kind_spend: dict[str, Decimal | None] = {kind: None for kind in rows}
    for (source_kind, _), amount in spend.items():
        for kind in (source_kind, "all"):
            kind_spend[kind] = (kind_spend[kind] or Decimal(0)) + amount
    return [{"kind": kind, **_row(cell, kind_spend[kind])} for kind, cell in rows.items()]


def _cheapest(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The source whose client cost least (ties: the one with more clients, then by name)."""
    priced = [r for r in rows if r["cost_per_client"] is not None]
    if not priced:
        return None
    best = min(priced, key=lambda r: (Decimal(r["cost_per_client"]), -r["converted"], r["key"]))
    return {"source": best["key"], "kind": best["kind"], "cost_per_client": best["cost_per_client"],
            "converted": best["converted"], "spend": best["spend"]}
