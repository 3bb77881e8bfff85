"""The sales team's part of the configuration: managers, teams, warmth and routing rules, refusal reasons.

Read by hub/config.py (``Config`` holds them) and by the routing (hub/pipeline/routing/). Like every
config table, a key nobody reads is an error.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hub.i18n import N_


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


Warmth = Literal["cold", "warm", "hot"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HOURS = re.compile(r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-4]):[0-5]\d$")


class ManagerConfig(_Strict):
    name: str = Field(min_length=1, max_length=128)
    team: str
    email: str | None = None
    telegram_chat_id: str | None = None
    weight: int = Field(1, ge=1, le=100, description="share in `weighted` routing")
    active: bool = True
    timezone: str = "UTC"
    working_hours: str | None = Field(None, description='"09:00-18:00" in the manager\'s own time zone; none: always')
    working_days: list[Weekday] = list(WEEKDAYS[:5])
    max_open_leads: int | None = Field(None, ge=1)
    # Language of this manager's notifications (else their user's choice, else [ui] default_language).
    language: Literal["en", "ru"] | None = None
    # Their internal number on the PBX, to put calls through: one for every PBX source, or per source name.
    extension: str | None = Field(None, pattern=r"^[0-9*#]{1,16}$")
    extensions: dict[str, str] = {}

    def extension_for(self, source: str) -> str | None:
        return self.extensions.get(source) or self.extension

    @field_validator("working_hours")
    @classmethod
    def _hours(cls, v: str | None) -> str | None:
        if v is not None and not HOURS.match(v):
            raise ValueError('write it as "HH:MM-HH:MM", e.g. "09:00-18:00"')
        return v


class TeamConfig(_Strict):
    name: str
    # Its name on pages in other languages, e.g. {ru = "Север"}; else the name as written.
    labels: dict[Literal["en", "ru"], str] = {}
    lead: str | None = Field(None, description="manager who gets escalations and the team's fallback leads")


class WarmthRule(_Strict):
    """First matching rule decides the warmth (and score) of a touch; every condition given must hold."""

    name: str
    # Its name on pages in other languages, e.g. {ru = "просит счёт"}; else the name as written.
    labels: dict[Literal["en", "ru"], str] = {}
    warmth: Warmth
    score: int | None = None
    sources: list[str] = []
    tags: list[str] = []
    message_keywords: list[str] = Field([], description="any of these, case-insensitive, in the message")
    fields: dict[str, str] = Field({}, description="provider fields equal to these values (case-insensitive)")
    repeat: bool | None = Field(None, description="true: only a returning person; false: only a new one")


class WarmthConfig(_Strict):
    default: Warmth = "cold"
    rules: list[WarmthRule] = []


class RoutingRule(_Strict):
    """First matching rule assigns: every condition given must hold."""

    name: str
    # Its name on pages in other languages, e.g. {ru = "горячие и тёплые — старшим"}; else the name as written.
    labels: dict[Literal["en", "ru"], str] = {}
    warmth: list[Warmth] = []
    sources: list[str] = []
    tags: list[str] = []
    regions: list[str] = Field([], description="phone regions (RU, KZ, AM, …) of the person's first phone")
    team: str
    strategy: Literal["round_robin", "weighted", "least_loaded", "fixed"] = "round_robin"
    manager: str | None = Field(None, description="for strategy = fixed")
    sla_minutes: float | None = Field(None, gt=0, description="not taken in time: reassigned; left in the queue "
                                                              "this long: the on-duty team leads are alerted")
    follow_up_hours: float | None = Field(
        None, gt=0, description="in work with no attempt, note or task this long: the owner is reminded, "
                                "then (as long again) the team lead is told")


class RoutingConfig(_Strict):
    rules: list[RoutingRule] = []
    # Nobody the rule may choose is available. "team_lead": the team's lead if available, else the next
    # available member of the rule's team, else the queue with an alert to the on-duty team leads. "queue":
    # leave it unassigned in the queue (its rule's SLA then alerts them). Never someone unavailable.
    fallback: Literal["team_lead", "queue"] = "team_lead"
    # SLA reassignments of one lead before it is escalated to the team lead.
    max_reassignments: int = Field(2, ge=0)
    sla_check_seconds: float = Field(30, gt=0)


class RefuseReason(_Strict):
    code: str = Field(pattern=r"^[a-z0-9_]{1,64}$")
    label: str
    # The label in other languages, e.g. {ru = "не дозвонились"}; else the catalog's translation of `label`.
    labels: dict[Literal["en", "ru"], str] = {}
    min_attempts: int = Field(0, ge=0, description="contact attempts needed before this reason is allowed")


DEFAULT_REFUSE_REASONS = [
    RefuseReason(code="poor_quality", label=N_("poor quality: wrong contacts")),
    RefuseReason(code="by_mistake", label=N_("contacted by mistake")),
    RefuseReason(code="product_not_offered", label=N_("product not offered")),
    RefuseReason(code="no_answer_5_attempts", label=N_("no answer after 5 attempts"), min_attempts=5),
    RefuseReason(code="chose_competitor", label=N_("chose a competitor")),
]
