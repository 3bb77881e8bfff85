"""The sales reports' request and answer shapes in /api/v1 (managers, statuses and handovers, the funnel per
channel, activity per day): what the OpenAPI document publishes for them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hub.web.api_models import Day


class PeriodQuery(BaseModel):
    """A report's period: the team's calendar days ([ui] timezone), both ends included."""

    model_config = ConfigDict(extra="forbid")
    date_from: Day | None = Field(None, description="the first day (YYYY-MM-DD); default: 29 days before date_to")
    date_to: Day | None = Field(None, description="the last day, included; default: today in the team's time zone")


class PeriodOut(BaseModel):
    date_from: str
    date_to: str
    timezone: str = Field(description="the zone whose calendar days the period counts ([ui] timezone)")


# -- managers ------------------------------------------------------------------------------------------------

class Speed(BaseModel):
    median: float | None = Field(description="seconds, the median; null when there is nothing to time")
    p90: float | None = Field(description="seconds, the 90th percentile (linear between ranks)")
    count: int = Field(description="how many takes (or first attempts) the percentiles are of")


class ManagerCounts(BaseModel):
    received: int = Field(description="distinct leads handed to them in the period (assigned, reassigned, "
                                      "escalated to them)")
    taken: int = Field(description="leads they took into work in the period")
    converted: int = Field(description="leads they converted in the period (a team lead's or an admin's "
                                       "closing counts for the lead's owner)")
    refused: int = Field(description="leads they refused in the period (counted like converted)")
    refused_by_reason: dict[str, int] = Field(description="refusals per reason code ([[refuse_reasons]])")
    open_now: int = Field(description="open leads (new or in work) they own now, whatever the period")
    overdue_now: int = Field(description="of those, new past the SLA, in work past the follow-up, or with a "
                                         "call-back due and not done")
    speed_to_lead: Speed = Field(description="from the lead given to them (or entering the queue) to taken, for "
                                             "the takes in the period")
    to_first_attempt: Speed = Field(description="from the lead given to them to their first contact attempt, "
                                                "for the attempts in the period")
    sla_lost: int = Field(description="leads the hub reassigned or escalated away from them, not taken in time")
    sla_won: int = Field(description="leads the hub reassigned to them from someone who did not take them")
    attempts: int = Field(description="contact attempts they counted in the period")
    notes: int = Field(description="notes they wrote in the period")
    tasks_done: int = Field(description="call-backs they marked done in the period")
    revenue: str = Field(description="sum of the amounts of the deals they converted in the period, exact "
                                     "decimal text", examples=["125000.00"])


class ManagerRow(ManagerCounts):
    name: str = Field(description="the manager ([[managers]] name)")
    team: str = Field(description="their team")


class TeamRow(ManagerCounts):
    name: str = Field(description="the team")
    lead: str | None = Field(description="its team lead")
    managers: int = Field(description="how many managers it has; the counts are their sums, the speeds over all "
                                      "their takes and attempts")


class ManagersReport(BaseModel):
    period: PeriodOut = Field(description="the period reported")
    managers: list[ManagerRow] = Field(description="a row per manager this reader may see, in config order")
    teams: list[TeamRow] = Field(description="a row per team whose managers this reader sees, in config order")
    reasons: list[str] = Field(description="the refusal reason codes that appear in the rows")


# -- statuses and handovers ----------------------------------------------------------------------------------

class StatusCounts(BaseModel):
    leads: int = Field(description="leads created in the period (merged ones left out)")
    new: int = Field(description="of them, new now (not taken yet)")
    in_work: int = Field(description="of them, in work now")
    converted: int = Field(description="of them, converted")
    refused: int = Field(description="of them, refused")
    refused_by_reason: dict[str, int] = Field(
        description='the refused ones per refusal reason code ([[refuse_reasons]]; "(none)": refused without one)')
    conversion: float | None = Field(description="percent converted, one decimal; null without leads")
    refusal: float | None = Field(description="percent refused, one decimal; null without leads")


class StatusesBySource(StatusCounts):
    source: str = Field(description="the lead's source (its first touch's)")


class StatusesByOwner(StatusCounts):
    owner: str | None = Field(description="the manager who owns the leads now; null: the queue (nobody)")


class StatusesReport(BaseModel):
    """Leads created in the period by their status now, per source and per owner (a marketer: per source only,
    ``by_owner`` absent)."""

    period: PeriodOut
    statuses: list[str] = Field(description="the statuses counted, in the lead's order")
    reasons: list[str] = Field(description="the refusal reason codes: the config's, then any other found")
    total: StatusCounts = Field(description="every lead of the report")
    by_source: list[StatusesBySource] = Field(description="per source, most leads first")
    by_owner: list[StatusesByOwner] | None = Field(
        None, description="per owner in the config's order, the queue last; absent for a marketer")


class HandoverQuery(PeriodQuery):
    limit: int = Field(50, ge=1, le=1000, description="how many entries, newest first")
    offset: int = Field(0, ge=0, le=10_000_000, description="how many of the newest to skip")


class HandoverOut(BaseModel):
    lead_id: int = Field(description="the lead handed over")
    at: str = Field(description="when (ISO 8601, UTC)")
    kind: str = Field(description="reassigned: to another manager (by a person, or by the SLA sweep); escalated: "
                                  "to the team lead")
    from_: str | None = Field(alias="from", description="the manager it was taken from; null: the queue")
    to: str | None = Field(description="the manager it was given to")
    by: str = Field(description='who did it: a person\'s name, or "hub" (the SLA sweep)')
    why: str | None = Field(description="why, in English (the hub's reasons) or as the person wrote it")
    came_back_at: str | None = Field(
        description="when a later assignment gave the lead back to the manager it was taken from; null: it did not")


class HandoverLog(BaseModel):
    period: PeriodOut
    total: int = Field(description="entries in the period, every page")
    limit: int
    offset: int
    items: list[HandoverOut] = Field(description="newest first")


# -- funnel per channel --------------------------------------------------------------------------------------

class FunnelQuery(PeriodQuery):
    group_by: Literal["source", "utm_campaign", "tag"] = Field(
        "source", description="source; utm_campaign (the touch's campaign); tag (the lead's tags: a lead counts "
                              "once in each; one attribution)")


_MONEY = "decimal text in [web] currency, e.g. \"12500.00\""


class FunnelCounts(BaseModel):
    received: int = Field(description="leads created in the period (merged leads left out)")
    taken: int = Field(description="of them, taken into work, or converted without being taken")
    converted: int
    refused: int
    open: int = Field(description="new or in work now")
    taken_rate: float | None = Field(description="taken ÷ received, percent, one decimal; null when none received")
    conversion: float | None = Field(description="converted ÷ received, percent, one decimal; null when none "
                                                 "received")
    spend: str | None = Field(description=f"{_MONEY}: the source's spend counted for the period (a month partly "
                                          "inside by its days); null when none was entered, and grouped by "
                                          "campaign or tag (spend is entered per source)")
    cost_per_lead: str | None = Field(description=f"{_MONEY}: spend ÷ received")
    cost_per_client: str | None = Field(description=f"{_MONEY}: spend ÷ converted")
    revenue: str | None = Field(description=f"{_MONEY}: the converted leads' amounts; null when none has one")
    return_on_spend: float | None = Field(description="revenue ÷ spend, two decimals; null without spend or "
                                                      "revenue")


class FunnelRow(FunnelCounts):
    key: str = Field(description='the source, campaign or tag; "(none)" for leads without one')
    kind: Literal["inbound", "cold_base"] = Field(
        description="cold_base: the touch came through the CSV importer (`hub import`); inbound: any other channel")


class FunnelTotal(FunnelCounts):
    kind: Literal["inbound", "cold_base", "all"]


class FunnelTotals(BaseModel):
    first_touch: list[FunnelTotal]
    last_touch: list[FunnelTotal]


class SpendPartOut(BaseModel):
    source: str
    month: str = Field(description="YYYY-MM")
    amount: str = Field(description=f"{_MONEY}: entered for the whole month")
    days_counted: int = Field(description="the month's days inside the period")
    days_in_month: int
    counted: str = Field(description=f"{_MONEY}: amount × days_counted ÷ days_in_month")


class CheapestClient(BaseModel):
    source: str
    kind: Literal["inbound", "cold_base"]
    cost_per_client: str = Field(description=_MONEY)
    converted: int
    spend: str = Field(description=_MONEY)


class LowestCostPerClient(BaseModel):
    first_touch: CheapestClient | None = Field(description="null when no source has both spend and a client")
    last_touch: CheapestClient | None


class FunnelReport(BaseModel):
    period: PeriodOut
    group_by: str
    attributions: list[str] = Field(description='["first_touch", "last_touch"]; ["first_touch"] for tags')
    first_touch: list[FunnelRow] = Field(description="groups by the lead's first touch (its own source and "
                                                     "campaign), most leads first")
    last_touch: list[FunnelRow] | None = Field(description="groups by the lead's latest touch; null for tags "
                                                           "(a tag is the lead's, not a touch's)")
    totals: FunnelTotals = Field(description="inbound channels against the cold base, and all, per attribution")
    spend: list[SpendPartOut] = Field(description="the spend entered for the months the period touches, and "
                                                  "the part of each it counts")
    lowest_cost_per_client: LowestCostPerClient = Field(description="the source whose client cost least")



# -- activity per day ----------------------------------------------------------------------------------------

class ActivityQuery(PeriodQuery):
    """The team's calendar days ([ui] timezone), both ends included; a week by default, as on the page."""

    date_from: Day | None = Field(None, description="the first day (YYYY-MM-DD); default: 6 days before date_to")

class ActivityCounts(BaseModel):
    attempts: int = Field(description="contact attempts counted")
    taken: int = Field(description="leads taken into work")
    converted: int = Field(description="leads marked converted")
    refused: int = Field(description="leads marked refused")
    notes: int = Field(description="notes written")
    tasks_set: int = Field(description="call-backs set")
    tasks_done: int = Field(description="call-backs done")
    calls_routed: int = Field(description="calls the hub put through to them")
    calls_answered: int = Field(description="answered calls of the clients whose leads they own")
    calls_missed: int = Field(description="missed calls of the clients whose leads they own")


class ActivityDay(ActivityCounts):
    day: str = Field(description="the team's calendar day (YYYY-MM-DD, [ui] timezone)")


class ActivityManager(BaseModel):
    manager: str = Field(description="who did it: a manager's name (or the login of someone who is none)")
    team: str | None = Field(description="their team; null: none")
    total: ActivityCounts = Field(description="the whole period")
    days: list[ActivityDay] = Field(description="every day of the period, in order")


class ActivityReport(BaseModel):
    """Each manager's work per day: the daily report, from the lead history."""

    period: PeriodOut
    metrics: list[str] = Field(description="the counts of each row, in the order of a daily report")
    days: list[str] = Field(description="the period's days")
    managers: list[ActivityManager] = Field(description="every manager in the reader's scope, idle ones too")
    per_day: list[ActivityDay] = Field(description="every manager's work added up, per day")
    total: ActivityCounts = Field(description="everything in the period")


__all__ = ["Any", "ManagerRow", "ManagersReport", "PeriodOut", "PeriodQuery", "Speed", "TeamRow"]
