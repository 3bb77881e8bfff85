"""The funnel per channel: received → taken → converted by first and by last touch, cost per lead and per client."""

from __future__ import annotations

import io
from typing import Any

from flask import Response, render_template, request
from flask_babel import gettext

from hub.desk.export import SafeCsvWriter
from hub.desk.period import Period
from hub.desk.report_funnel import ATTRIBUTIONS, GROUPINGS, funnel_report
from hub.i18n import N_
from hub.store.db import transaction
from hub.store.users import Role
from hub.web.common import allow, current_hub
from hub.web.pages.blueprint import CHART_COLOURS, choice_arg, pages, period_arg
from hub.web.pages.report_statuses import zone_label

# Who reads the funnel: channel-level numbers, no person's, so the marketer too; a team lead reads every
# channel (a channel's spend is the company's: cost per client over one team's leads would be wrong).
READERS = (Role.ADMIN, Role.LEAD, Role.MARKETER)
STAGE_LABELS = {"received": N_("Leads"), "taken": N_("Taken"), "converted": N_("Converted")}
KIND_BADGES = {"inbound": N_("inbound"), "cold_base": N_("cold base")}
KIND_LABELS = {"inbound": N_("Inbound channels"), "cold_base": N_("Cold base (CSV import)"), "all": N_("All")}
# The CSV's columns after row, attribution, kind and the group: stable machine names, and the reader's words.
CSV_COLUMNS = (
    ("received", N_("Leads")), ("taken", N_("Taken")), ("converted", N_("Converted")), ("refused", N_("Refused")),
    ("open", N_("Open")), ("taken_rate", N_("Taken, %%")), ("conversion", N_("Converted, %%")),
    ("spend", N_("Spend")), ("cost_per_lead", N_("Cost per lead")), ("cost_per_client", N_("Cost per client")),
    ("revenue", N_("Revenue")), ("return_on_spend", N_("Return on spend")),
)


def _report() -> tuple[dict[str, Any], Period]:
    """The funnel for the period and grouping in the query string (the page and its CSV)."""
    hub = current_hub()
    period = period_arg()
    group_by = choice_arg("group_by", GROUPINGS) or "source"
    with transaction(hub.engine, read_only=True) as session:
        return funnel_report(session, hub.config, period, group_by), period


def side_by_side(report: dict[str, Any]) -> list[dict[str, Any]]:
    """A row per group (kind and key) with its first-touch and last-touch numbers next to each other (None
    where the group has no lead by that attribution); most leads by first touch first."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for attribution in ATTRIBUTIONS:
        for row in report[attribution] or []:
            entry = rows.setdefault((row["kind"], row["key"]), {"key": row["key"], "kind": row["kind"],
                                                                "spend": row["spend"]})
            entry[attribution] = row
    empty = {"received": 0}
    return sorted(rows.values(), key=lambda r: (-r.get("first_touch", empty)["received"],
                                                -r.get("last_touch", empty)["received"], r["kind"], r["key"]))


def funnel_picture(rows: list[dict[str, Any]], top: int = 5, width: int = 600) -> dict[str, Any]:
    """Three bars per group (received, taken, converted) under the group's name, for the groups with most
    leads, scaled to the biggest group's leads. Names go above the bars, so a long campaign keeps its name."""
    groups = [r for r in rows if r["received"]][:top]
    peak = max([r["received"] for r in groups] + [1])
    label_h, bar_h, gap, group_gap = 24, 18, 3, 14
    plot_w = width - 60                       # room for the count after the longest bar
    out, y = [], 0
    for row in groups:
        bars = []
        for i, (stage, colour) in enumerate(zip(("received", "taken", "converted"), CHART_COLOURS, strict=False)):
            n = row[stage]
            bars.append({"stage": stage, "count": n, "colour": colour, "y": y + label_h + i * (bar_h + gap),
                         "w": max(round(plot_w * n / peak, 1), 1) if n else 0})
        out.append({"key": row["key"], "kind": row["kind"], "label_y": y + label_h - 7, "bars": bars})
        y += label_h + 3 * (bar_h + gap) + group_gap
    return {"width": width, "height": max(y - group_gap, 1), "bar_h": bar_h, "groups": out,
            "legend": list(zip(("received", "taken", "converted"), CHART_COLOURS, strict=False))}


@pages.get("/report/funnel")
@allow(*READERS)
def report_funnel():
    hub = current_hub()
    report, period = _report()
    touch = "last_touch" if request.args.get("touch") == "last" and report["last_touch"] is not None \
        else "first_touch"
    return render_template("report_funnel.html", report=report, period=report["period"],
                           rows=side_by_side(report), detail=report[touch], touch=touch,
                           picture=funnel_picture(report["first_touch"]), currency=hub.config.web.currency,
                           kind_labels=KIND_LABELS, kind_badges=KIND_BADGES, stage_labels=STAGE_LABELS,
                           zone=zone_label(period))


@pages.get("/report/funnel.csv")
@allow(*READERS)
def report_funnel_csv():
    report, _ = _report()
    group_by, period = report["group_by"], report["period"]
    out = io.StringIO()
    writer = SafeCsvWriter(out)      # a campaign or a tag is whatever someone typed: keep it text
    # Stable machine column names first; ?header=local adds a row of the same columns in the reader's language.
    writer.writerow(["row", "attribution", "kind", group_by] + [name for name, _ in CSV_COLUMNS])
    if request.args.get("header") == "local":
        group_label = {"source": gettext("source"), "utm_campaign": "utm_campaign", "tag": gettext("tag")}[group_by]
        writer.writerow([gettext("Row"), gettext("Attribution"), gettext("Kind"), group_label] +
                        [gettext(text).replace("%%", "%") for _, text in CSV_COLUMNS])
    for attribution in ATTRIBUTIONS:
        for row in report[attribution] or []:
            writer.writerow(["group", attribution, row["kind"], row["key"]] + [row[name] for name, _ in CSV_COLUMNS])
    for attribution in ATTRIBUTIONS:
        for row in report["totals"][attribution]:
            writer.writerow(["total", attribution, row["kind"], ""] + [row[name] for name, _ in CSV_COLUMNS])
    name = f"leadhub-funnel-{group_by}-{period['date_from']}-{period['date_to']}.csv"
    return Response(out.getvalue(), content_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
