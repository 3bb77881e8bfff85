"""Each manager's work per day — the daily report a sales team otherwise fills in by hand: the page (the
period per manager, then one metric per manager per day) and its CSV (a row per manager per day)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from flask import g, render_template, request
from flask_babel import get_locale, gettext

from hub.desk.period import Period, managers_in_scope, team_period
from hub.desk.report_activity import DEFAULT_DAYS, METRICS, activity_report
from hub.i18n import N_
from hub.store.db import transaction
from hub.store.users import Role
from hub.web.common import allow, current_hub
from hub.web.pages.blueprint import pages, period_arg
from hub.web.pages.report_statuses import csv_answer, zone_label

METRIC_LABELS = {
    "attempts": N_("Contact attempts"), "taken": N_("Taken into work"), "converted": N_("Converted"),
    "refused": N_("Refused"), "notes": N_("Notes"), "tasks_set": N_("Call-backs set"),
    "tasks_done": N_("Call-backs done"), "calls_routed": N_("Calls put through"),
    "calls_answered": N_("Clients' calls answered"), "calls_missed": N_("Clients' calls missed"),
}
# A day in the grid's head: the weekday first, the daily report's way ("пн 02.03", "Mon Mar 2").
GRID_DAY_FORMATS = {"en": "EEE MMM d", "ru": "EEE dd.MM"}


def _activity(period: Period) -> dict[str, Any]:
    hub = current_hub()
    with transaction(hub.engine, read_only=True) as session:
        return activity_report(session, hub.config, period, managers_in_scope(g.actor, hub.config))


def _shortcuts(today: date) -> list[tuple[str, Any, Any]]:
    """The periods a head of sales asks for most: (label, date_from, date_to)."""
    yesterday = today - timedelta(days=1)
    return [(gettext("Today"), today, today), (gettext("Yesterday"), yesterday, yesterday),
            (gettext("Last 7 days"), today - timedelta(days=6), today),
            (gettext("Last 30 days"), today - timedelta(days=29), today)]


@pages.get("/report/activity")
@allow(Role.ADMIN, Role.LEAD)
def report_activity():
    period = period_arg(DEFAULT_DAYS)
    metric = request.args.get("metric") if request.args.get("metric") in METRICS else METRICS[0]
    today = team_period(current_hub().config, None, None, 1).date_to
    labels = {m: gettext(text) for m, text in METRIC_LABELS.items()}
    return render_template("report_activity.html", report=_activity(period), period=period.as_dict(),
                           metric=metric, metrics=METRICS, metric_labels=labels, shortcuts=_shortcuts(today),
                           zone=zone_label(period), grid_day_format=GRID_DAY_FORMATS[str(get_locale())])


@pages.get("/report/activity.csv")
@allow(Role.ADMIN, Role.LEAD)
def report_activity_csv():
    """A row per manager per day of the period, idle days too (a table to pivot)."""
    period = period_arg(DEFAULT_DAYS)
    report = _activity(period)
    head = ["manager", "team", "day", *METRICS]
    local = [gettext("Manager"), gettext("Team"), gettext("Day"), *[gettext(METRIC_LABELS[m]) for m in METRICS]]
    rows = [head, local] + [[row["manager"], row["team"] or "", day["day"], *[day[m] for m in METRICS]]
                            for row in report["managers"] for day in row["days"]]
    return csv_answer(rows, f"leadhub-activity-{period.date_from}-{period.date_to}.csv")
