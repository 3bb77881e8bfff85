"""Leads by status and refusal reason, per source and per manager, and the handover log — the page and its
CSV. A team lead reads their teams' leads and the queue's; a marketer the per-source part only: no manager's
row, name or handover anywhere on the page or in its CSV."""

from __future__ import annotations

import io
from datetime import datetime, time
from typing import Any

from flask import Response, g, render_template, request
from flask_babel import get_locale, gettext

from hub.desk.export import SafeCsvWriter
from hub.desk.period import Period, managers_in_scope
from hub.desk.report_statuses import NO_REASON, STATUSES, handover_log, statuses_report
from hub.i18n import Names, label, reason_label, why_of
from hub.store.db import transaction
from hub.store.users import Role
from hub.web.common import allow, current_hub
from hub.web.pages.blueprint import pages, period_arg

HANDOVERS_PER_PAGE = 50
HANDOVERS_IN_CSV = 100_000        # a year of a big team's handovers; the API pages through more


def _statuses(period: Period) -> dict[str, Any]:
    hub, actor = current_hub(), g.actor
    marketer = actor.role == Role.MARKETER
    managers = None if marketer else managers_in_scope(actor, hub.config)
    with transaction(hub.engine, read_only=True) as session:
        return statuses_report(session, hub.config, period, managers, by_owner=not marketer)


def _handovers(period: Period, limit: int, offset: int) -> dict[str, Any]:
    hub = current_hub()
    with transaction(hub.engine, read_only=True) as session:
        return handover_log(session, hub.config, period, managers_in_scope(g.actor, hub.config), limit, offset)


def zone_label(period: Period) -> str:
    """The team's time zone as its offset on the period's last day ("UTC+3"): readable in any language, where
    "Europe/Moscow" would be English on a Russian page."""
    offset = period.zone.utcoffset(datetime.combine(period.date_to, time(12)))
    minutes = int(offset.total_seconds() // 60) if offset else 0
    if not minutes:
        return "UTC"
    sign, minutes = ("+" if minutes > 0 else "−"), abs(minutes)
    return f"UTC{sign}{minutes // 60}" + (f":{minutes % 60:02d}" if minutes % 60 else "")


def _page_arg() -> int:
    value = request.args.get("page") or "1"
    return min(int(value), 1_000_000) if value.isascii() and value.isdigit() and int(value) > 0 else 1


@pages.get("/report/statuses")
@allow(Role.ADMIN, Role.MARKETER, Role.LEAD)
def report_statuses():
    period = period_arg()
    report = _statuses(period)
    log, page = None, _page_arg()
    if g.actor.role != Role.MARKETER:
        log = _handovers(period, HANDOVERS_PER_PAGE, (page - 1) * HANDOVERS_PER_PAGE)
    pages_count = max(1, -(-log["total"] // HANDOVERS_PER_PAGE)) if log else 1
    return render_template("report_statuses.html", report=report, period=period.as_dict(), log=log,
                           page=page, pages_count=pages_count, NO_REASON=NO_REASON,
                           zone=zone_label(period))


def _reason_text(code: str) -> str:
    if code == NO_REASON:
        return gettext("(none)")
    rr = current_hub().config.refuse_reason(code)
    return reason_label(rr, str(get_locale()), gettext) if rr else code


def csv_answer(rows: list[list[Any]], name: str) -> Response:
    """A CSV download (formula-injection safe): machine column names first, then with ``?header=local``
    the same columns in the reader's language, then ``rows[2:]``; ``rows[1]`` is that local header."""
    out = io.StringIO()
    writer = SafeCsvWriter(out)
    writer.writerow(rows[0])
    if request.args.get("header") == "local":
        writer.writerow(rows[1])
    for row in rows[2:]:
        writer.writerow(row)
    return Response(out.getvalue(), content_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@pages.get("/report/statuses.csv")
@allow(Role.ADMIN, Role.MARKETER, Role.LEAD)
def report_statuses_csv():
    """One row per source, then (not for a marketer) one per owner: the statuses, the shares, the refusals
    per reason."""
    period = period_arg()
    report = _statuses(period)
    reasons = report["reasons"]
    head = ["group", "name", "leads", *STATUSES, "conversion_%", "refusal_%", *[f"refused_{r}" for r in reasons]]
    local = [gettext("Grouped by"), gettext("Name"), gettext("Leads"),
             *[label("status", s, gettext) for s in STATUSES], gettext("Converted, %%").replace("%%", "%"),
             gettext("Refused, %%").replace("%%", "%"),
             *[gettext("Refused: %(reason)s", reason=_reason_text(r)) for r in reasons]]

    def line(group: str, name: str, row: dict[str, Any]) -> list[Any]:
        return [group, name, row["leads"], *[row[s] for s in STATUSES], row["conversion"], row["refusal"],
                *[row["refused_by_reason"].get(r, 0) for r in reasons]]
    rows = [head, local] + [line("source", r["source"], r) for r in report["by_source"]]
    rows += [line("owner", r["owner"] or "(queue)", r) for r in report.get("by_owner") or []]
    rows.append(line("total", "", report["total"]))
    return csv_answer(rows, f"leadhub-statuses-{period.date_from}-{period.date_to}.csv")


@pages.get("/report/handovers.csv")
@allow(Role.ADMIN, Role.LEAD)
def report_handovers_csv():
    """Every handover of the period, newest first; times in the team's time zone, reasons in the reader's
    language."""
    period = period_arg()
    log = _handovers(period, HANDOVERS_IN_CSV, 0)
    names = Names(current_hub().config, str(get_locale()))

    def local_time(value: str | None) -> str:
        return datetime.fromisoformat(value).astimezone(period.zone).isoformat(timespec="minutes") if value else ""
    head = ["lead_id", "at", "kind", "from", "to", "by", "why", "came_back_at"]
    local = [gettext("Lead"), gettext("When"), gettext("What"), gettext("From whom"), gettext("To whom"),
             gettext("By whom"), gettext("Why"), gettext("Came back")]
    rows = [head, local] + [
        [e["lead_id"], local_time(e["at"]), e["kind"], e["from"] or "", e["to"] or "", e["by"],
         why_of(e, gettext, names), local_time(e["came_back_at"])] for e in log["items"]]
    return csv_answer(rows, f"leadhub-handovers-{period.date_from}-{period.date_to}.csv")
