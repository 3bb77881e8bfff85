"""/api/v1/reports/*: the head of sales' reports (managers, statuses and handovers, the funnel per channel,
activity per day). Same numbers as the pages and their CSV: all three call hub.desk's report functions.
A team lead's report covers their teams; a marketer gets channel-level numbers only, never a person."""

from __future__ import annotations

from flask import g, jsonify
from spectree import Response as Resp

from hub.desk.period import Period, lenient_period, managers_in_scope
from hub.desk.report_activity import DEFAULT_DAYS as ACTIVITY_DAYS, activity_report
from hub.desk.report_funnel import funnel_report
from hub.desk.report_managers import managers_report
from hub.desk.report_statuses import handover_log, statuses_report
from hub.store.db import transaction
from hub.store.users import Role
from hub.web.api import api, spec
from hub.web.api_models import Error
from hub.web.api_report_models import (
    ActivityQuery,
    ActivityReport,
    FunnelQuery,
    FunnelReport,
    HandoverLog,
    HandoverQuery,
    ManagersReport,
    PeriodQuery,
    StatusesReport,
)
from hub.web.common import allow, current_hub


def period_of(query: PeriodQuery) -> Period:
    """The query's period in the team's time zone. Like the pages, reversed dates are turned round and a
    range longer than MAX_DAYS is shortened to its last days; the answer's ``period`` says what was reported
    (a schema-valid request is never refused for its dates)."""
    return lenient_period(current_hub().config, query.date_from, query.date_to)[0]


# -- managers ------------------------------------------------------------------------------------------------

@api.get("/reports/managers")
@allow(Role.ADMIN, Role.LEAD)
@spec.validate(query=PeriodQuery, resp=Resp(HTTP_200=ManagersReport, HTTP_401=Error, HTTP_403=Error,
                                            HTTP_422=Error), tags=["reports"])
def report_managers(query: PeriodQuery):
    """Per manager and per team, for the team's days from date_from to date_to: leads received, taken,
    converted, refused by reason, contact attempts, notes, call-backs done, revenue, SLA reassignments lost
    and won, the median and 90th-percentile seconds to take a lead and to the first attempt; and the open and
    overdue leads now. A team lead gets their teams' managers (and themselves)."""
    hub = current_hub()
    period = period_of(query)
    with transaction(hub.engine, read_only=True) as session:
        return jsonify(managers_report(session, hub.config, period, managers_in_scope(g.actor, hub.config)))


# -- statuses and handovers ----------------------------------------------------------------------------------

@api.get("/reports/statuses")
@allow(Role.ADMIN, Role.LEAD, Role.MARKETER)
@spec.validate(query=PeriodQuery, resp=Resp(HTTP_200=StatusesReport, HTTP_401=Error, HTTP_403=Error,
                                            HTTP_422=Error), tags=["reports"])
def report_statuses(query: PeriodQuery):
    """The leads created from date_from to date_to (the team's days) by their status now, per source and per
    owner (null: the queue), the refused ones per reason. A team lead gets their teams' leads and the
    queue's; a marketer the per-source part only, no manager in it."""
    hub = current_hub()
    period = period_of(query)
    marketer = g.actor.role == Role.MARKETER
    managers = None if marketer else managers_in_scope(g.actor, hub.config)
    with transaction(hub.engine, read_only=True) as session:
        return jsonify(statuses_report(session, hub.config, period, managers, by_owner=not marketer))


@api.get("/reports/handovers")
@allow(Role.ADMIN, Role.LEAD)
@spec.validate(query=HandoverQuery, resp=Resp(HTTP_200=HandoverLog, HTTP_401=Error, HTTP_403=Error,
                                             HTTP_422=Error), tags=["reports"])
def report_handovers(query: HandoverQuery):
    """The handover log: every reassignment and escalation from date_from to date_to, newest first, with the
    moment a later assignment gave the lead back to the manager it was taken from. A team lead gets the
    entries from or to their teams' managers (and themselves)."""
    hub = current_hub()
    period = period_of(query)
    with transaction(hub.engine, read_only=True) as session:
        log = handover_log(session, hub.config, period, managers_in_scope(g.actor, hub.config),
                           query.limit, query.offset)
    for item in log["items"]:
        item.pop("why_msg", None)         # the pages translate it; the API says "why" in English
    return jsonify(log)


# -- funnel per channel --------------------------------------------------------------------------------------

@api.get("/reports/funnel")
@allow(Role.ADMIN, Role.LEAD, Role.MARKETER)
@spec.validate(query=FunnelQuery, resp=Resp(HTTP_200=FunnelReport, HTTP_401=Error, HTTP_403=Error,
                                            HTTP_422=Error), tags=["reports"])
def report_funnel(query: FunnelQuery):
    """The funnel per channel for the leads created in the team's days from date_from to date_to: received,
    taken, converted, refused, open per source, campaign or tag, by first touch and by last touch side by
    side; spend (a month partly inside the period by its days), cost per lead and per client, revenue and
    return on spend; inbound channels against the cold base (CSV imports). Channel-level numbers only: a
    team lead and a marketer read every channel, as the admin does."""
    hub = current_hub()
    period = period_of(query)
    with transaction(hub.engine, read_only=True) as session:
        return jsonify(funnel_report(session, hub.config, period, query.group_by))



# -- activity per day ----------------------------------------------------------------------------------------

@api.get("/reports/activity")
@allow(Role.ADMIN, Role.LEAD)
@spec.validate(query=ActivityQuery, resp=Resp(HTTP_200=ActivityReport, HTTP_401=Error, HTTP_403=Error,
                                              HTTP_422=Error), tags=["reports"])
def report_activity(query: ActivityQuery):
    """Each manager's work per day (the team's days) from date_from to date_to: contact attempts, leads taken,
    converted and refused, notes, call-backs set and done, calls put through to them, and their clients'
    calls answered and missed; totals per manager, per day and in all. A team lead gets their teams."""
    hub = current_hub()
    period = lenient_period(hub.config, query.date_from, query.date_to, ACTIVITY_DAYS)[0]
    with transaction(hub.engine, read_only=True) as session:
        return jsonify(activity_report(session, hub.config, period, managers_in_scope(g.actor, hub.config)))
