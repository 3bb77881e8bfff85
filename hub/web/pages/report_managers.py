"""The managers report: per manager and per team, leads received, taken, converted, refused by reason, speed to
lead and to the first attempt, SLA reassignments, activity and revenue (hub/desk/report_managers.py); a chart
of the speed to lead, and the page's answer to "who is slowest, who refuses most and why". Admins and team
leads (their teams) only: it names people."""

from __future__ import annotations

import io
from typing import Any

from flask import Response, g, render_template, request
from flask_babel import get_locale, gettext

from hub.desk.export import SafeCsvWriter
from hub.desk.period import managers_in_scope
from hub.desk.report_managers import managers_report
from hub.i18n import N_, reason_label
from hub.store.db import transaction
from hub.store.users import Role
from hub.web.common import allow, current_hub
from hub.web.pages.blueprint import pages, period_arg

# The CSV's columns after kind, name and team: the report's own keys (speeds in seconds), with their local names.
CSV_COLUMNS = (
    ("received", N_("Received")), ("taken", N_("Taken")), ("converted", N_("Converted")),
    ("refused", N_("Refused")), ("open_now", N_("Open now")), ("overdue_now", N_("Overdue now")),
    ("speed_to_lead_median_s", N_("Speed to lead, median, s")),
    ("speed_to_lead_p90_s", N_("Speed to lead, 90th percentile, s")),
    ("speed_to_lead_count", N_("Leads taken, timed")),
    ("to_first_attempt_median_s", N_("To first attempt, median, s")),
    ("to_first_attempt_p90_s", N_("To first attempt, 90th percentile, s")),
    ("to_first_attempt_count", N_("First attempts, timed")),
    ("sla_lost", N_("Lost by SLA")), ("sla_won", N_("Won by SLA")), ("attempts", N_("Attempts")),
    ("notes", N_("Notes")), ("tasks_done", N_("Call-backs done")), ("revenue", N_("Revenue")),
)


@pages.app_template_filter("duration")
def duration(seconds: float | None) -> str:
    """Seconds as a person says a wait: "45 s", "4 min", "1 h 20 min", "2 d 3 h" (in the reader's language)."""
    if seconds is None:
        return "—"
    if seconds < 59.5:
        return gettext("%(s)s s", s=round(seconds))
    minutes = round(seconds / 60)
    if minutes < 60:
        return gettext("%(m)s min", m=minutes)
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return gettext("%(h)s h %(m)s min", h=hours, m=minutes) if minutes else gettext("%(h)s h", h=hours)
    days, hours = divmod(hours, 24)
    return gettext("%(d)s d %(h)s h", d=days, h=hours) if hours else gettext("%(d)s d", d=days)


def _report() -> dict[str, Any]:
    hub = current_hub()
    period = period_arg()
    with transaction(hub.engine, read_only=True) as session:
        return managers_report(session, hub.config, period, managers_in_scope(g.actor, hub.config))


def _reason(code: str) -> str:
    rr = current_hub().config.refuse_reason(code)
    return reason_label(rr, str(get_locale()), gettext) if rr else code


def answers(report: dict[str, Any]) -> list[str]:
    """The page's first lines: who was slowest to take a lead, and who refused most and mostly why."""
    lines = []
    timed = [row for row in report["managers"] if row["speed_to_lead"]["count"]]
    if timed:
        slowest = max(timed, key=lambda row: row["speed_to_lead"]["median"])
        lines.append(gettext("Slowest to take a lead: %(name)s (median %(time)s).", name=slowest["name"],
                             time=duration(slowest["speed_to_lead"]["median"])))
    else:
        lines.append(gettext("No lead was taken in this period."))
    refusing = [row for row in report["managers"] if row["refused"]]
    if refusing:
        most = max(refusing, key=lambda row: row["refused"])
        reason = max(most["refused_by_reason"].items(), key=lambda item: item[1])[0]
        lines.append(gettext("Most refusals: %(name)s (%(count)s, mostly “%(reason)s”).", name=most["name"],
                             count=most["refused"], reason=_reason(reason)))
    else:
        lines.append(gettext("No refusals in this period."))
    return lines


def speed_chart(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The speed-to-lead bars, slowest on top: the median as a bar and the 90th percentile as a thin line,
    in percent of the longest p90, so that the SVG is laid out by the browser at any width."""
    timed = [row for row in report["managers"] if row["speed_to_lead"]["count"]]
    timed.sort(key=lambda row: (-row["speed_to_lead"]["median"], row["name"]))
    longest = max([row["speed_to_lead"]["p90"] or row["speed_to_lead"]["median"] for row in timed] + [1.0])
    return [{"name": row["name"], "median": row["speed_to_lead"]["median"], "p90": row["speed_to_lead"]["p90"],
             "count": row["speed_to_lead"]["count"],
             "median_pct": round(98 * row["speed_to_lead"]["median"] / longest, 2),
             "p90_pct": round(98 * (row["speed_to_lead"]["p90"] or 0) / longest, 2)} for row in timed]


def groups(report: dict[str, Any]) -> list[tuple[dict[str, Any] | None, list[dict[str, Any]]]]:
    """The manager rows under their team's subtotal (a team shown in full), teams in config order; managers of
    a team not shown in full come without a subtotal."""
    teams = {team["name"]: team for team in report["teams"]}
    order = [t.name for t in current_hub().config.teams]
    by_team: dict[str, list[dict[str, Any]]] = {}
    for row in report["managers"]:
        by_team.setdefault(row["team"], []).append(row)
    names = [t for t in order if t in by_team or t in teams] + [t for t in by_team if t not in order]
    return [(teams.get(name), by_team.get(name, [])) for name in names]


@pages.get("/report/managers")
@allow(Role.ADMIN, Role.LEAD)
def report_managers():
    report = _report()
    return render_template("report_managers.html", report=report, period=report["period"], answers=answers(report),
                           chart=speed_chart(report), groups=groups(report),
                           currency=current_hub().config.web.currency)


@pages.get("/report/managers.csv")
@allow(Role.ADMIN, Role.LEAD)
def report_managers_csv():
    report = _report()
    reasons = [r.code for r in current_hub().config.refuse_reasons]
    reasons += [code for code in report["reasons"] if code not in reasons]
    out = io.StringIO()
    writer = SafeCsvWriter(out)         # a manager's or team's name is whatever the config says: keep it text
    writer.writerow(["kind", "name", "team", *[key for key, _ in CSV_COLUMNS], *[f"refused_{c}" for c in reasons]])
    if request.args.get("header") == "local":
        writer.writerow([gettext("Row"), gettext("Name"), gettext("Team"), *[gettext(text) for _, text in CSV_COLUMNS],
                         *[gettext("Refused: %(reason)s", reason=_reason(c)) for c in reasons]])
    for kind, rows in (("manager", report["managers"]), ("team", report["teams"])):
        for row in rows:
            writer.writerow([kind, row["name"], row["team"] if kind == "manager" else row["name"],
                             *[_csv_value(row, key) for key, _ in CSV_COLUMNS],
                             *[row["refused_by_reason"].get(c, 0) for c in reasons]])
    period = report["period"]
    name = f"leadhub-managers-{period['date_from']}-{period['date_to']}.csv"
    return Response(out.getvalue(), content_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _csv_value(row: dict[str, Any], key: str) -> Any:
    for speed in ("speed_to_lead", "to_first_attempt"):
        if key.startswith(speed + "_"):
            part = key.removeprefix(speed + "_").removesuffix("_s")
            return row[speed][part]
    return row[key]
