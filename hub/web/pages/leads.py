"""The sales pages: the inbox and its export, the lead card and its actions, the incoming-call pop-up."""

from __future__ import annotations

from flask import Response, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext

from hub.desk.queries import (
    NO_WARMTH,
    WARMTHS,
    LeadFilter,
    get_lead,
    is_overdue,
    list_leads,
)
from hub.i18n import Msg
from hub.pipeline.routing.lifecycle import RoutingError, count_attempt, reassign, set_status, take
from hub.store.db import transaction
from hub.store.models import LeadStatus, utcnow
from hub.store.serialize import lead_to_dict
from hub.store.users import Role
from hub.web.common import allow, current_hub
from hub.web.pages.blueprint import (
    PAGE_SIZE,
    SALES,
    choice_arg,
    date_arg,
    pages,
)

# -- calls: the screen-pop ------------------------------------------------------------------------------

@pages.get("/calls/poll")
@allow(*SALES)
def calls_poll():
    """A manager's open page asks twice a second: any known client calling? (JSON; also marks them online,
    so that calls show here instead of by Telegram)."""
    from flask import jsonify

    from hub.pipeline.calls import alerts_for, latest_alert_id, seen_online

    hub, actor = current_hub(), g.actor
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

def _owner_choices(hub, actor) -> list[str]:
    owners = actor.managers_visible(hub.config)
    return owners if owners is not None else [m.name for m in hub.config.managers]


def _inbox_filter(hub, owner_choices: list[str]) -> LeadFilter:
    """The inbox's filters from the query string (the inbox and its export read the same ones)."""
    return LeadFilter(status=choice_arg("status", LeadStatus.ALL),
                      warmth=choice_arg("warmth", (*WARMTHS, NO_WARMTH)),
                      source=choice_arg("source", list(hub.sources) + ["import"]),
                      owner=choice_arg("owner", [*owner_choices, "-"]),
                      date_from=date_arg("date_from"), date_to=date_arg("date_to"),
                      overdue=request.args.get("overdue") == "1")


@pages.get("/leads")
@allow(*SALES)
def inbox():
    hub = current_hub()
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

    hub = current_hub()
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
    hub = current_hub()
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
    hub = current_hub()
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
    return _lead_action(lead_id, lambda s, c, now: count_attempt(s, c, lead_id, g.actor.name, now),
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
    visible = g.actor.managers_visible(current_hub().config)
    if visible is not None and to not in visible:
        flash(gettext("%(name)s is not in your teams.", name=to), "error")
        return redirect(url_for("pages.lead_card", lead_id=lead_id))
    why = (request.form.get("why") or "").strip()[:200] or Msg("reassigned by hand")
    return _lead_action(lead_id, lambda s, c, now: reassign(s, c, lead_id, to, why, g.actor.name, now),
                        gettext("Handed over to %(name)s.", name=to))


