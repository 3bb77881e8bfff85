"""The sales reports' request and answer shapes in /api/v1 (managers, statuses and handovers, the funnel per
channel, activity per day): what the OpenAPI document publishes for them."""

from __future__ import annotations

from typing import Any

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


# -- statuses and handovers ----------------------------------------------------------------------------------


# -- funnel per channel --------------------------------------------------------------------------------------


# -- activity per day ----------------------------------------------------------------------------------------


__all__ = ["Any", "PeriodOut", "PeriodQuery"]
