"""The REST API's request and answer shapes (pydantic): spectree validates requests and writes the OpenAPI
document from them."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from hub.pipeline.worklog import MAX_NOTE_CHARS, MAX_TAG_CHARS, MAX_TAGS, MAX_TASK_CHARS
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


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("give the time with its offset, e.g. 2026-12-31T18:00:00+03:00 (or Z for UTC)")
    return value


Day = Annotated[date, _iso(date)]
Moment = Annotated[datetime, _iso(datetime)]
AwareMoment = Annotated[datetime, _iso(datetime), AfterValidator(_aware)]
# What a manager writes: lines (\n or \r\n) and tabs, no other control characters (PostgreSQL refuses NUL).
LongText = Annotated[str, StringConstraints(min_length=1, pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]+$")]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TAG_CHARS, pattern=r"^[^\x00-\x1f\x7f]+$")]
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
    follow_up_due_at: str | None = Field(description="in work: by when its owner is to act again (an attempt, "
                                                     "a note, a task)")
    amount: str | None = Field(description='converted: the deal\'s amount as decimal text, e.g. "12500.00"')
    contact_attempts: int
    created_at: str
    updated_at: str


class NoteOut(BaseModel):
    id: int
    at: str
    actor: str
    text: str


class TaskOut(BaseModel):
    id: int
    text: str
    due_at: str
    created_at: str
    created_by: str
    done_at: str | None
    done_by: str | None
    overdue: bool = Field(description="not done and its time has passed")


class LeadFull(LeadOut):
    touches: list[TouchOut]
    history: list[HistoryOut]
    notes: list[NoteOut] = Field(description="the history's notes, oldest first")
    tasks: list[TaskOut] = Field(description="call-back tasks, by due time")


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
    q: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")] | None = \
        Field(None, description='a phone in any spelling ("8 912 345-67-89"), or part of a name or an e-mail, '
                                'in any case')
    tag: Tag | None = Field(None, description="leads with this tag, in any case")
    order: Literal["newest", "due"] = Field(
        "newest", description="due: open leads first, by SLA, then call-back task, then follow-up, then warmth; "
                              "one page (no `next_before`)")
    limit: int = Field(50, ge=1, le=200)
    before: int | None = Field(None, ge=1, le=MAX_ID, description="the `next_before` of the previous page "
                                                                  "(order=newest)")


class StatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    status: Literal["in_work", "converted", "refused"] = Field(description="in_work: take it (managers)")
    reason: Text | None = Field(None, description="refused: a refusal reason code")
    amount: float | None = Field(None, ge=0, le=999_999_999_999.99, allow_inf_nan=False,
                                 description="converted: the deal's amount, in [web] currency (kept to 2 decimals)")


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    text: Annotated[LongText, StringConstraints(max_length=MAX_NOTE_CHARS)]


class TagsIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    tags: list[Tag] = Field(max_length=MAX_TAGS, description="the lead's whole list: a tag left out is taken "
                                                             "off; the same tag in another case counts once")


class TaskIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    due_at: AwareMoment = Field(description="when to call back, with its offset: 2026-12-31T18:00:00+03:00")
    text: Annotated[LongText, StringConstraints(max_length=MAX_TASK_CHARS)]


MAX_BATCH = 200


def _whole(value: Any) -> Any:
    """JSON's 5.0 is the integer 5 (JSON Schema says so); a strict model would refuse it."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    lead_ids: list[Annotated[int, Field(ge=1, le=MAX_ID), BeforeValidator(_whole)]] = Field(
        min_length=1, max_length=MAX_BATCH)
    to: Text = Field(description="the manager who gets them")
    why: Text | None = Field(None, description='for the handover log; default "reassigned by hand"')


class AssignOut(BaseModel):
    to: str
    reassigned: list[int] = Field(description="handed over (each in the handover log)")
    unchanged: list[int] = Field(description="already theirs")


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
    telegram_linked: bool = Field(description="their Telegram is linked: leads come there with buttons")


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
