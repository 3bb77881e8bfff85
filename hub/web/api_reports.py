"""/api/v1/reports/*: the head of sales' reports (managers, statuses and handovers, the funnel per channel,
activity per day). Same numbers as the pages and their CSV: all three call hub.desk's report functions.
A team lead's report covers their teams; a marketer gets channel-level numbers only, never a person."""

from __future__ import annotations

from flask import Response

from hub.desk.period import Period, PeriodError, team_period
from hub.web.api import error
from hub.web.api_report_models import PeriodQuery
from hub.web.common import current_hub


def period_of(query: PeriodQuery) -> Period | tuple[Response, int]:
    """The query's period in the team's time zone, or the 422 answer that says what to change."""
    try:
        return team_period(current_hub().config, query.date_from, query.date_to)
    except PeriodError as e:
        return error(422, "invalid_request", f"date_from/date_to: {e}")


# -- managers ------------------------------------------------------------------------------------------------


# -- statuses and handovers ----------------------------------------------------------------------------------


# -- funnel per channel --------------------------------------------------------------------------------------


# -- activity per day ----------------------------------------------------------------------------------------
