"""The channel report: leads per day per source or campaign, conversion per warmth, spend and cost per lead."""

from __future__ import annotations

import io
import re
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation

from flask import Response, flash, g, redirect, render_template, request, url_for
from flask_babel import get_locale, gettext

from hub.desk.export import SafeCsvWriter
from hub.desk.queries import NO_WARMTH, WARMTHS
from hub.desk.reports import channel_report, set_spend
from hub.i18n import AXIS_DAY_FORMATS, WARMTH_LABELS
from hub.store.db import transaction
from hub.store.models import utcnow
from hub.store.users import Role
from hub.web.common import allow, current_hub
from hub.web.pages.blueprint import (
    CHART_COLOURS,
    CSV_WARMTH_COLUMNS,
    MARKETING,
    date_arg,
    pages,
)

# -- channel report ---------------------------------------------------------------------------------------

def _report_range() -> tuple[date, date]:
    today = utcnow().date()
    date_to = date_arg("date_to") or today
    date_from = date_arg("date_from") or date_to - timedelta(days=29)
    if date_from > date_to:
        date_from, date_to = date_to, date_from
    if (date_to - date_from).days > 366:
        date_from = date_to - timedelta(days=366)
        flash(gettext("At most 367 days at a time: the range was shortened."), "error")
    return date_from, date_to


def chart(report: dict, width: int = 900, height: int = 260) -> dict:
    """Stacked bars of leads per day, one colour per group (the five biggest, then "other")."""
    top = [grp["key"] for grp in report["groups"][:5]]
    series = top + (["other"] if len(report["groups"]) > 5 else [])
    days = report["days"]
    peak = max([d["total"] for d in days] + [1])
    left, bottom, plot_h = 40, 24, height - 34
    step = (width - left - 10) / max(len(days), 1)
    bar_w = max(step * 0.75, 1)
    bars = []
    for i, d in enumerate(days):
        y = height - bottom
        for key, colour in zip(series, CHART_COLOURS, strict=False):   # at most as many groups as colours
            n = d["counts"].get(key, 0) if key != "other" else \
                sum(v for k, v in d["counts"].items() if k not in top)
            if not n:
                continue
            h = plot_h * n / peak
            y -= h
            bars.append({"x": round(left + i * step, 1), "y": round(y, 1), "w": round(bar_w, 1), "h": round(h, 1),
                         "colour": colour, "day": d["day"], "group": key, "count": n})
    ticks = sorted({0, peak, peak // 2})
    labels = [{"x": round(left + i * step + bar_w / 2, 1), "day": d["day"]}
              for i, d in enumerate(days) if i % max(1, len(days) // 10) == 0]
    return {"width": width, "height": height, "bars": bars, "peak": peak, "left": left, "bottom": bottom,
            "ticks": [{"value": t, "y": round(height - bottom - plot_h * t / peak, 1)} for t in ticks],
            "labels": labels, "legend": list(zip(series, CHART_COLOURS, strict=False)),
            "total": sum(d["total"] for d in days)}


def _report_data(hub) -> dict:
    """The channel report for the range and grouping in the query string (the page and its CSV)."""
    date_from, date_to = _report_range()
    group_by = "utm_campaign" if request.args.get("group_by") == "utm_campaign" else "source"
    with transaction(hub.engine, read_only=True) as session:
        return channel_report(session, date_from, date_to, group_by)


@pages.get("/report")
@allow(Role.ADMIN, Role.MARKETER, Role.LEAD)
def report():
    hub = current_hub()
    data = _report_data(hub)
    return render_template("report.html", report=data, chart=chart(data), warmths=(*WARMTHS, NO_WARMTH),
                           sources=list(hub.sources), currency=hub.config.web.currency,
                           this_month=utcnow().strftime("%Y-%m"), axis_day_format=AXIS_DAY_FORMATS[str(get_locale())])


@pages.get("/report.csv")
@allow(Role.ADMIN)
def report_csv():
    data = _report_data(current_hub())
    group_by, date_from, date_to = data["group_by"], data["date_from"], data["date_to"]
    out = io.StringIO()
    writer = SafeCsvWriter(out)      # a campaign name is whatever an ad link said: keep it text
    # Stable machine column names first; ?header=local adds a row of the same columns in the reader's language.
    writer.writerow([group_by, "leads", "conversion_%"] +
                    [f"{w}_{k}" for w in (*WARMTHS, NO_WARMTH) for k in ("leads", "converted", "conversion_%")])
    if request.args.get("header") == "local":
        writer.writerow([gettext("source") if group_by == "source" else "utm_campaign", gettext("Leads"),
                         gettext("Converted, %%").replace("%%", "%")] +
                        [gettext(text, warmth=gettext(WARMTH_LABELS[w])).replace("%%", "%")
                         for w in (*WARMTHS, NO_WARMTH) for text in CSV_WARMTH_COLUMNS])
    for grp in data["groups"]:
        writer.writerow([grp["key"], grp["leads"], grp["conversion"]] +
                        [grp["warmth"][w][k] for w in (*WARMTHS, NO_WARMTH)
                         for k in ("leads", "converted", "conversion")])
    name = f"leadhub-{group_by}-{date_from}-{date_to}.csv"
    return Response(out.getvalue(), content_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@pages.post("/report/spend")
@allow(*MARKETING)
def report_spend():
    hub = current_hub()
    source, month = request.form.get("source") or "", request.form.get("month") or ""
    try:
        amount = Decimal((request.form.get("amount") or "").replace(",", ".").replace(" ", ""))
        if not amount.is_finite() or not 0 <= amount < Decimal("1e12"):
            raise InvalidOperation
    except InvalidOperation:
        flash(gettext("Spend: write an amount like 15000 or 15000.50."), "error")
        return redirect(url_for("pages.report"))
    if source not in hub.sources or not re.match(r"^20\d\d-(0[1-9]|1[0-2])$", month):
        flash(gettext("Spend: choose a source and a month (YYYY-MM)."), "error")
        return redirect(url_for("pages.report"))
    with transaction(hub.engine) as session:
        set_spend(session, source, month, amount.quantize(Decimal("0.01")), g.actor.name)
    flash(gettext("Spend of %(source)s for %(month)s saved.", source=source, month=month), "ok")
    first = date(int(month[:4]), int(month[5:]), 1)
    last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    return redirect(url_for("pages.report", date_from=first.isoformat(), date_to=last.isoformat()))


