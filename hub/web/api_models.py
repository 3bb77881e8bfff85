"""The REST API's request and answer shapes (pydantic): spectree validates requests and writes the OpenAPI
document from them."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from hub.store.models import EventStatus

# Text a person or a script types: bounded, and no control characters (PostgreSQL refuses NUL in text).
Text = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]
SourceName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]


ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}")


def _iso(kind: type[date] | type[datetime]):
    """Dates and times only as ISO text: pydantic would otherwise read a number as a Unix timestamp."""
    def parse(value: Any) -> Any:
        if isinstance(value, kind):
            return value
        if not isinstance(value, str) or not ISO_DAY.match(value):
            raise ValueError("write it as ISO text, e.g. 2026-12-31" + ("" if kind is date else "T18:00:00Z"))
        return kind.fromisoformat(value)
    return BeforeValidator(parse)


Day = Annotated[date, _iso(date)]
Moment = Annotated[datetime, _iso(datetime)]
# Ids beyond a signed 64-bit integer cannot exist in either database.
MAX_ID = 2**63 - 1


class Error(BaseModel):
    error: str = Field(description="a stable code, e.g. not_found, invalid_request, conflict")
    message: str = Field(description="what went wrong and what to do, for a person")
    details: list[dict[str, Any]] | None = None


class Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class TouchOut(Out):
    id: int
    event_id: int
    source: str
    channel: str
    at: str
    utm_source: str | None
    utm_medium: str | None
    utm_campaign: str | None
    utm_content: str | None
    utm_term: str | None
    message: str | None
    recording: str | None


class HistoryOut(Out):
    at: str
    kind: str
    actor: str


class LeadOut(Out):
    id: int
    status: Literal["new", "in_work", "converted", "refused"]
    refuse_reason: str | None
    name: str | None
    phones: list[str] = Field(description="E.164")
    emails: list[str]
    source: str = Field(description="the first touch's source")
    first_touch: TouchOut | None
    last_touch: TouchOut | None
    warmth: Literal["cold", "warm", "hot"] | None
    score: int | None
    owner: str | None
    tags: list[str]
    sla_due_at: str | None
    contact_attempts: int
    created_at: str
    updated_at: str


class LeadFull(LeadOut):
    touches: list[TouchOut]
    history: list[HistoryOut]


class LeadList(BaseModel):
    items: list[LeadOut]
    total: int = Field(description="leads matching the filters, counted up to 10001")
    total_is_exact: bool = Field(description="false: more than 10000 match")
    next_before: int | None = Field(description="pass as `before` for the next (older) page; null: no more")


class LeadQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["new", "in_work", "converted", "refused"] | None = None
    warmth: Literal["cold", "warm", "hot", "none"] | None = None
    source: SourceName | None = None
    owner: Text | None = Field(None, description='a manager\'s name, or "-" for the unassigned queue')
    date_from: Day | None = Field(None, description="created on or after this UTC day")
    date_to: Day | None = Field(None, description="created on or before this UTC day")
    overdue: bool = False
    limit: int = Field(50, ge=1, le=200)
    before: int | None = Field(None, ge=1, le=MAX_ID, description="the `next_before` of the previous page")


class StatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    status: Literal["in_work", "converted", "refused"] = Field(description="in_work: take it (managers)")
    reason: Text | None = Field(None, description="refused: a refusal reason code")


class OwnerIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    owner: Text
    why: Text = "reassigned by hand"


class EventOut(Out):
    id: int
    source: str
    external_id: str
    received_at: str
    status: str
    attempts: int
    reject_reason: str | None
    last_error: str | None
    lead_id: int | None


class EventList(BaseModel):
    items: list[EventOut]
    next_before: int | None


class EventQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal[EventStatus.ALL] | None = None  # type: ignore[valid-type]  # Literal unpacks the tuple at run time
    source: SourceName | None = None
    limit: int = Field(50, ge=1, le=200)
    before: int | None = Field(None, ge=1, le=MAX_ID)


class ReplayOut(BaseModel):
    replayed: list[int]
    refused: list[dict[str, Any]]


class ReportQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    date_to: Day | None = Field(None, description="the last UTC day of the report; default: today")
    days: int = Field(30, ge=1, le=367, description="how many days up to date_to, date_to included")
    group_by: Literal["source", "utm_campaign"] = "source"


class WarmthCell(BaseModel):
    leads: int
    converted: int
    refused: int
    conversion: float | None = Field(description="percent converted; null when no leads")


class ReportGroup(BaseModel):
    key: str
    leads: int
    conversion: float | None
    warmth: dict[str, WarmthCell]


class ReportDay(BaseModel):
    day: str
    counts: dict[str, int]
    total: int


class CostRow(BaseModel):
    source: str
    month: str
    spend: float
    leads: int
    cost_per_lead: float | None


class Report(BaseModel):
    date_from: str
    date_to: str
    group_by: str
    days: list[ReportDay]
    groups: list[ReportGroup]
    cost: list[CostRow]


class SourceHealth(Out):
    name: str
    connector: str
    kind: Literal["webhook", "polling"]
    url: str | None
    last_event_at: str | None
    events_today: int
    rejected_today: int
    pending: int
    dead: int


class SourceList(BaseModel):
    items: list[SourceHealth]


class SpendIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    month: Annotated[str, StringConstraints(pattern=r"^20[0-9]{2}-(0[1-9]|1[0-2])$")] = Field(
        description="YYYY-MM")
    amount: float = Field(ge=0, le=999_999_999_999, allow_inf_nan=False, description="in [web] currency")


class TryIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    payload: str = Field(max_length=1_048_576, description="the body as the provider sends it")
    content_type: Text | None = Field(None, description="default: JSON if it parses as JSON, else a form")
    path: Annotated[str, StringConstraints(max_length=200, pattern=r"^[A-Za-z0-9_/.-]*$")] = ""


class TryOut(BaseModel):
    events: list[dict[str, Any]]
    reply: str | None
    refused: str | None = Field(None, description="why the connector refuses the whole payload, if it does")


class ManagerOut(Out):
    name: str
    team: str | None
    on_duty: bool
    vacation_until: str | None
    open_leads: int
    available: bool
    unavailable_because: str | None


class ManagerList(BaseModel):
    items: list[ManagerOut]


class ManagerIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"minProperties": 1})
    on_duty: bool | None = None
    vacation_until: Moment | None = Field(None, description="no new leads until then (UTC if no offset)")
    clear_vacation: bool = Field(False, description="back from vacation now")


class Me(BaseModel):
    login: str
    role: Literal["admin", "marketer", "manager", "lead", "telephony"]
    manager: str | None


# -- routes -------------------------------------------------------------------------------------------------


class LookupQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    phone: Annotated[str, StringConstraints(min_length=3, max_length=40, pattern=r"^[0-9+()\- .]+$")] = Field(
        description='any spelling: "8 (912) 345-67-89", "+7 912 3456789", "79123456789"')
    source: SourceName | None = Field(None, description="the PBX source, for its phone region")


class LookupLead(Out):
    id: int
    status: str
    warmth: str | None
    owner: str | None
    owner_extension: str | None
    link: str


class LookupOut(BaseModel):
    phone: str = Field(description="E.164")
    person: dict[str, Any]
    lead: LookupLead | None
    last_touches: list[dict[str, Any]]
