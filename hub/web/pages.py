"""The web app's pages: sign-in, the sales inbox and lead card, the channel report, channel health with
replay, the mapping tester, and the managers' switches. Server-rendered; every asset is served by the hub.

Pages read through hub.desk.queries and act through hub.pipeline.routing — the same functions as the API and the CLI.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, flash, g, redirect, render_template, request, url_for
from flask_babel import format_decimal, get_locale, get_timezone, gettext, refresh
from flask_login import login_user, logout_user

from hub.config import config_flag
from hub.desk.access import actor_of, allow, authenticate, set_language, timezone_of
from hub.desk.queries import (
    NO_WARMTH,
    WARMTHS,
    LeadFilter,
    channel_health,
    channel_report,
    get_lead,
    is_overdue,
    list_leads,
    managers_overview,
    recent_events,
    set_spend,
)
from hub.errors import PayloadError
from hub.i18n import LANGUAGES, N_, WARMTH_LABELS, Msg, format_day, format_moment, label, reason_label, why_of
from hub.intake.dryrun import try_payload
from hub.intake.replay import replay_events
from hub.pipeline.routing.lifecycle import RoutingError, count_attempt, reassign, set_manager_state, set_status, take
from hub.store.db import transaction
from hub.store.models import EventStatus, InboundEvent, LeadStatus, Role, User, utcnow
from hub.store.serialize import lead_to_dict

pages = Blueprint("pages", __name__, template_folder="templates", static_folder="static",
                  static_url_path="/static")

SALES = (Role.ADMIN, Role.LEAD, Role.MANAGER)
MARKETING = (Role.ADMIN, Role.MARKETER)
PAGE_SIZE = 50
CSV_WARMTH_COLUMNS = (N_("%(warmth)s: leads"), N_("%(warmth)s: converted"), N_("%(warmth)s: converted, %%"))
CHART_COLOURS = ("#2f6fde", "#e8833a", "#3aa655", "#c94f7c", "#8a63d2", "#7f8c8d")


def _hub():
    from hub.web.app import current_hub
    return current_hub()


@pages.app_context_processor
def _globals():
    lang = str(get_locale())
    config = _hub().config

    def reason(code: str | None) -> str:
        rr = config.refuse_reason(code) if code else None
        return reason_label(rr, lang, gettext) if rr else (code or "")

    return {"actor": g.get("actor"), "Role": Role, "now": utcnow(), "lang": lang,
            "status_label": lambda code: label("status", code, gettext),
            "warmth_label": lambda code: label("warmth", code, gettext),
            "history_label": lambda code: label("history", code, gettext),
            "role_label": lambda code: label("role", code, gettext),
            "why_text": lambda entry: why_of(entry, gettext),
            "event_label": lambda code: label("event", code, gettext),
            "reason_label": reason}


@pages.app_template_filter("moment")
def _moment(value, fmt: str = "short") -> str:
    """A stored UTC moment in the reader's language and time zone."""
    return format_moment(value, str(get_locale()), str(get_timezone()), fmt)


@pages.app_template_filter("day")
def _day(value, fmt: str = "medium") -> str:
    return format_day(value, str(get_locale()), fmt)


@pages.app_template_filter("number")
def _number(value, digits: int = 0) -> str:
    if value is None:
        return "—"
    return format_decimal(value, format=f"#,##0.{'0' * digits}" if digits else "#,##0")


# -- sign-in ------------------------------------------------------------------------------------------

def _safe_next(target: str | None) -> str | None:
    """Only a path on this hub: never an absolute URL (an open redirect would help phishing)."""
    if not target:
        return None
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc and target.startswith("/") \
        and not target.startswith("//") else None


@pages.route("/login", methods=["GET", "POST"])
def login():
    hub = _hub()
    with transaction(hub.engine, read_only=True) as session:
        no_users = session.query(User.id).first() is None
    error = None
    if request.method == "POST":
        login_name = (request.form.get("login") or "").strip().casefold()[:320]
        throttle = current_app.extensions["login_throttle"]
        now = utcnow()
        if throttle.blocked(login_name, now):
            return render_template("login.html", error=gettext("Too many failed sign-ins: wait 15 minutes."),
                                   no_users=no_users, config_flag=config_flag(hub.config)), 429
        with transaction(hub.engine) as session:
            user = authenticate(session, login_name, request.form.get("password") or "")
            loaded = (actor_of(user), user.session_version) if user else None
        if loaded is None:
            throttle.failed(login_name, now)
            error = gettext("Wrong login or password.")
        else:
            from hub.web.app import SessionUser
            throttle.succeeded(login_name)
            login_user(SessionUser(*loaded))
            return redirect(_safe_next(request.args.get("next")) or url_for("pages.home"))
    return render_template("login.html", error=error, no_users=no_users,
                           config_flag=config_flag(hub.config)), 401 if error else 200


@pages.post("/logout")
@allow(*Role.ALL)
def logout():
    logout_user()
    return redirect(url_for("pages.login"))


@pages.route("/profile", methods=["GET", "POST"])
@allow(*Role.ALL)
def profile():
    """The user's own settings: the language of the pages (and of their notifications)."""
    hub = _hub()
    if request.method == "POST":
        language = request.form.get("language") or None
        if language not in (None, *LANGUAGES):
            flash(gettext("Choose a language from the list."), "error")
            return redirect(url_for("pages.profile"))
        with transaction(hub.engine) as session:
            set_language(session, g.actor.login, language)
        g.actor = replace(g.actor, language=language)
        refresh()                                    # the next message is already in the new language
        flash(gettext("Saved."), "ok")
        return redirect(url_for("pages.profile"))
    return render_template("profile.html", timezone=timezone_of(g.actor, hub.config))


@pages.get("/")
@allow(*Role.ALL)
def home():
    target = {Role.MARKETER: "pages.report", Role.TELEPHONY: "pages.profile"}.get(g.actor.role, "pages.inbox")
    return redirect(url_for(target))


# -- calls: the screen-pop ------------------------------------------------------------------------------

@pages.get("/calls/poll")
@allow(*SALES)
def calls_poll():
    """A manager's open page asks twice a second: any known client calling? (JSON; also marks them online,
    so that calls show here instead of by Telegram)."""
    from flask import jsonify

    from hub.pipeline.calls import alerts_for, latest_alert_id, seen_online

    hub, actor = _hub(), g.actor
    if not actor.manager:
        return jsonify(alerts=[], last=0)
    now = utcnow()
    after = request.args.get("after", type=int)
    with transaction(hub.engine) as session:
        seen_online(session, actor.manager, now)
        if after is None or after < 0:              # a page just opened: only what comes from now on
            return jsonify(alerts=[], last=latest_alert_id(session, actor.manager))
        alerts = alerts_for(session, actor.manager, after, now)
    for a in alerts:
        a["text"] = gettext("%(name)s is calling", name=a["name"] or a["caller"])
        a["url"] = url_for("pages.lead_card", lead_id=a["lead_id"]) if a["lead_id"] else None
    return jsonify(alerts=alerts, last=alerts[-1]["id"] if alerts else after)


# -- inbox and lead card --------------------------------------------------------------------------------

def _date_arg(name: str) -> date | None:
    value = request.args.get(name) or ""
    try:
        day = date.fromisoformat(value) if value else None
    except ValueError:
        flash(gettext("%(value)s is not a date (YYYY-MM-DD); ignored", value=value), "error")
        return None
    return day if day is None or date(2000, 1, 1) <= day <= date(2100, 12, 31) else None


def _choice_arg(name: str, choices) -> str | None:
    value = request.args.get(name) or None
    return value if value in choices else None


def _owner_choices(hub, actor) -> list[str]:
    owners = actor.managers_visible(hub.config)
    return owners if owners is not None else [m.name for m in hub.config.managers]


def _inbox_filter(hub, owner_choices: list[str]) -> LeadFilter:
    """The inbox's filters from the query string (the inbox and its export read the same ones)."""
    return LeadFilter(status=_choice_arg("status", LeadStatus.ALL),
                      warmth=_choice_arg("warmth", (*WARMTHS, NO_WARMTH)),
                      source=_choice_arg("source", list(hub.sources) + ["import"]),
                      owner=_choice_arg("owner", [*owner_choices, "-"]),
                      date_from=_date_arg("date_from"), date_to=_date_arg("date_to"),
                      overdue=request.args.get("overdue") == "1")


@pages.get("/leads")
@allow(*SALES)
def inbox():
    hub = _hub()
    actor = g.actor
    owner_choices = _owner_choices(hub, actor)
    f = _inbox_filter(hub, owner_choices)
    before = request.args.get("before", type=int)
    if before is not None and not 0 < before < 2**63:
        before = None
    with transaction(hub.engine, read_only=True) as session:
        page = list_leads(session, hub.config, actor, f, PAGE_SIZE, before)
        now = utcnow()
        rows = [{"lead": lead, "phones": [k.value for k in lead.person.keys if k.kind == "phone"],
                 "overdue": is_overdue(lead, now)} for lead in page.leads]
    args = {k: v for k, v in request.args.items() if k != "before" and v}
    return render_template("inbox.html", rows=rows, page=page, f=f, args=args, owners=owner_choices,
                           sources=list(hub.sources), statuses=LeadStatus.ALL, warmths=(*WARMTHS, NO_WARMTH))


@pages.get("/leads/export")
@allow(Role.ADMIN)
def leads_export():
    """The inbox's filters, every matching lead, as CSV or Excel (admins only: contact details inside)."""
    import tempfile

    from hub.desk.export import export_leads

    hub = _hub()
    fmt = "xlsx" if request.args.get("format") == "xlsx" else "csv"
    f = _inbox_filter(hub, _owner_choices(hub, g.actor))
    with tempfile.NamedTemporaryFile(suffix=f".{fmt}") as tmp:
        export_leads(hub, f, fmt, tmp.name)
        with open(tmp.name, "rb") as written:
            data = written.read()
    mimetype = "text/csv; charset=utf-8" if fmt == "csv" else \
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    return Response(data, content_type=mimetype,
                    headers={"Content-Disposition": f'attachment; filename="leads-{utcnow():%Y%m%d-%H%M}.{fmt}"'})


@pages.get("/leads/<int:lead_id>")
@allow(*SALES)
def lead_card(lead_id: int):
    hub = _hub()
    if lead_id >= 2**63:
        return render_template("error.html", status=404, message=gettext("No lead %(id)s here.", id=lead_id)), 404
    with transaction(hub.engine, read_only=True) as session:
        lead = get_lead(session, hub.config, g.actor, lead_id)
        if lead is None:
            return render_template("error.html", status=404,
                                   message=gettext("No lead %(id)s here (or not yours to see).", id=lead_id)), 404
        data = lead_to_dict(lead)
        overdue = is_overdue(lead, utcnow())
    owners = g.actor.managers_visible(hub.config)
    return render_template("lead.html", lead=data, overdue=overdue, reasons=hub.config.refuse_reasons,
                           owners=owners if owners is not None else [m.name for m in hub.config.managers])


def _lead_action(lead_id: int, action, done: str):
    """Run a lead operation for a lead this user may see; say what happened on the card."""
    hub = _hub()
    with transaction(hub.engine, read_only=True) as session:
        visible = lead_id < 2**63 and get_lead(session, hub.config, g.actor, lead_id) is not None
    if not visible:
        return render_template("error.html", status=404, message=gettext("No lead %(id)s here.", id=lead_id)), 404
    try:
        with transaction(hub.engine) as session:
            action(session, hub.config, utcnow())
        flash(done, "ok")
        hub.notification_queued.set()
    except RoutingError as exc:
        flash(exc.msg.translate(gettext), "error")
    return redirect(url_for("pages.lead_card", lead_id=lead_id))


@pages.post("/leads/<int:lead_id>/take")
@allow(*SALES)
def lead_take(lead_id: int):
    manager = g.actor.manager
    if not manager:
        flash(gettext("Only a manager takes a lead; reassign it to one instead."), "error")
        return redirect(url_for("pages.lead_card", lead_id=lead_id))
    return _lead_action(lead_id, lambda s, c, now: take(s, c, lead_id, manager, now),
                        gettext("Taken into work."))


@pages.post("/leads/<int:lead_id>/attempt")
@allow(*SALES)
def lead_attempt(lead_id: int):
    return _lead_action(lead_id, lambda s, c, now: count_attempt(s, lead_id, g.actor.name, now),
                        gettext("Contact attempt counted."))


@pages.post("/leads/<int:lead_id>/status")
@allow(*SALES)
def lead_status(lead_id: int):
    status = request.form.get("status")
    reason = request.form.get("reason") or None
    if status not in (LeadStatus.CONVERTED, LeadStatus.REFUSED):
        flash(gettext("Choose converted or refused."), "error")
        return redirect(url_for("pages.lead_card", lead_id=lead_id))
    done = gettext("Converted.") if status == LeadStatus.CONVERTED else gettext("Refused.")
    return _lead_action(lead_id, lambda s, c, now: set_status(s, c, lead_id, status,
                                                              reason if status == LeadStatus.REFUSED else None,
                                                              g.actor.name, now), done)


@pages.post("/leads/<int:lead_id>/owner")
@allow(Role.ADMIN, Role.LEAD)
def lead_reassign(lead_id: int):
    to = request.form.get("owner") or ""
    visible = g.actor.managers_visible(_hub().config)
    if visible is not None and to not in visible:
        flash(gettext("%(name)s is not in your teams.", name=to), "error")
        return redirect(url_for("pages.lead_card", lead_id=lead_id))
    why = (request.form.get("why") or "").strip()[:200] or Msg("reassigned by hand")
    return _lead_action(lead_id, lambda s, c, now: reassign(s, c, lead_id, to, why, g.actor.name, now),
                        gettext("Handed over to %(name)s.", name=to))


# -- channel report ---------------------------------------------------------------------------------------

def _report_range() -> tuple[date, date]:
    today = utcnow().date()
    date_to = _date_arg("date_to") or today
    date_from = _date_arg("date_from") or date_to - timedelta(days=29)
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
    hub = _hub()
    data = _report_data(hub)
    return render_template("report.html", report=data, chart=chart(data), warmths=(*WARMTHS, NO_WARMTH),
                           sources=list(hub.sources), currency=hub.config.web.currency,
                           this_month=utcnow().strftime("%Y-%m"))


@pages.get("/report.csv")
@allow(Role.ADMIN)
def report_csv():
    data = _report_data(_hub())
    group_by, date_from, date_to = data["group_by"], data["date_from"], data["date_to"]
    out = io.StringIO()
    writer = csv.writer(out)
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
    hub = _hub()
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


# -- channels ---------------------------------------------------------------------------------------------

@pages.get("/channels")
@allow(*MARKETING)
def channels():
    hub = _hub()
    with transaction(hub.engine, read_only=True) as session:
        rows = channel_health(session, hub)
    return render_template("channels.html", rows=rows)


@pages.get("/channels/<source_name>")
@allow(*MARKETING)
def channel(source_name: str):
    hub = _hub()
    if source_name not in hub.sources:
        return render_template("error.html", status=404, message=gettext("No source %(name)s.", name=source_name)), 404
    with transaction(hub.engine, read_only=True) as session:
        health = next(r for r in channel_health(session, hub) if r["name"] == source_name)
        dead = recent_events(session, source_name, EventStatus.DEAD, 50)
        rejected = recent_events(session, source_name, EventStatus.REJECTED, 20)
        latest = recent_events(session, source_name, None, 1)
    last_body = (latest[0].body or b"")[:8192].decode("utf-8", "replace") if latest else None
    return render_template("channel.html", h=health, dead=dead, rejected=rejected,
                           last=latest[0] if latest else None, last_body=last_body)


@pages.post("/events/<int:event_id>/replay")
@allow(*MARKETING)
def event_replay(event_id: int):
    hub = _hub()
    with transaction(hub.engine) as session:
        event = session.get(InboundEvent, event_id) if event_id < 2**63 else None
        source = event.source if event else None
        replayed, refused = replay_events(session, [event_id]) if event else ([], [])
    if replayed:
        hub.event_stored.set()
        flash(gettext("Event %(id)s queued again.", id=event_id), "ok")
    else:
        flash(gettext("Event %(id)s not replayed: %(why)s.", id=event_id,
                      why=refused[0]["reason"] if refused else gettext("no such event")), "error")
    return redirect(url_for("pages.channel", source_name=source) if source else url_for("pages.channels"))


@pages.post("/channels/<source_name>/replay-dead")
@allow(*MARKETING)
def channel_replay_dead(source_name: str):
    hub = _hub()
    if source_name not in hub.sources:
        return render_template("error.html", status=404, message=gettext("No source %(name)s.", name=source_name)), 404
    with transaction(hub.engine) as session:
        replayed, _ = replay_events(session, all_dead=True, source=source_name)
    hub.event_stored.set()
    flash(gettext("Dead events of %(source)s queued again: %(count)s.", source=source_name, count=len(replayed)),
          "ok")
    return redirect(url_for("pages.channel", source_name=source_name))


# -- mapping tester ---------------------------------------------------------------------------------------

@pages.route("/mapping-tester", methods=["GET", "POST"])
@allow(*MARKETING)
def mapping_tester():
    hub = _hub()
    webhook_sources = [name for name, s in hub.sources.items() if hasattr(s.connector, "receive")]
    result, error = None, None
    form = {"source": request.form.get("source") or (webhook_sources[0] if webhook_sources else ""),
            "payload": request.form.get("payload") or "", "content_type": request.form.get("content_type") or "",
            "path": request.form.get("path") or ""}
    if request.method == "POST":
        source = hub.sources.get(form["source"])
        if source is None:
            error = gettext("Choose a source.")
        elif not form["payload"].strip():
            error = gettext("Paste a payload.")
        else:
            try:
                result = try_payload(hub, source, form["payload"].strip().encode(), form["content_type"] or None,
                                     form["path"])
            except (ValueError, PayloadError) as exc:
                error = gettext("The connector refuses this payload: %(why)s", why=exc)
    return render_template("mapping.html", sources=webhook_sources, form=form, result=result, error=error)


# -- managers ---------------------------------------------------------------------------------------------

@pages.get("/managers")
@allow(Role.ADMIN, Role.LEAD)
def managers():
    hub = _hub()
    with transaction(hub.engine, read_only=True) as session:
        rows = managers_overview(session, hub.config, g.actor.managers_visible(hub.config), translate=gettext)
    return render_template("managers.html", rows=rows)


@pages.post("/managers/<name>")
@allow(Role.ADMIN, Role.LEAD)
def manager_update(name: str):
    hub = _hub()
    visible = g.actor.managers_visible(hub.config)
    if hub.config.manager(name) is None or (visible is not None and name not in visible):
        return render_template("error.html", status=404,
                               message=gettext("No manager %(name)s in your teams.", name=name)), 404
    change: dict = {}
    if request.form.get("duty") in ("on", "off"):
        change["on_duty"] = request.form["duty"] == "on"
    if request.form.get("vacation") == "clear":
        change["clear_vacation"] = True
    elif request.form.get("vacation_until"):
        try:
            until = datetime.fromisoformat(request.form["vacation_until"]).replace(tzinfo=UTC)
        except ValueError:
            flash(gettext("Vacation: give a date (YYYY-MM-DD)."), "error")
            return redirect(url_for("pages.managers"))
        change["vacation_until"] = until
    with transaction(hub.engine) as session:
        set_manager_state(session, hub.config, name, g.actor.name, utcnow(), **change)
    flash(gettext("%(name)s updated.", name=name), "ok")
    return redirect(url_for("pages.managers"))
