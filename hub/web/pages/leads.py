"""The sales pages: the inbox (search, filters, a live refresh, assigning a batch) and its export, the lead
card and the work done on it (take, attempts, notes, tags, call-backs, converted or refused after a
confirmation), the incoming-call pop-up."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from flask import Response, flash, g, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext, ngettext

from hub.desk.access import timezone_of
from hub.desk.queries import (
    CLOSED_VIEW,
    DUE,
    NEWEST,
    NO_WARMTH,
    OPEN_VIEW,
    ORDERS,
    WARMTHS,
    LeadFilter,
    get_lead,
    inbox_arrivals,
    is_overdue,
    list_leads,
    owners_of_visible,
    tags_in_use,
)
from hub.i18n import Msg
from hub.pipeline.routing.lifecycle import RoutingError, count_attempt, reassign, set_status, take
from hub.pipeline.worklog import add_note, add_task, complete_task, set_tags
from hub.store.db import transaction
from hub.store.models import Lead, LeadStatus, utcnow
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

# A batch is what a team lead ticks on one page of the inbox; the cap bounds one transaction's locks.
BATCH_MAX = 200
# The inbox's status choices: the open leads (the default: closed ones do not crowd the work), the closed
# ones, all, then each status.
ALL_VIEW = "all"
STATUS_VIEWS = (OPEN_VIEW, CLOSED_VIEW, ALL_VIEW, *LeadStatus.ALL)
MAX_AMOUNT = Decimal("1e12")            # Lead.amount is Numeric(14, 2)

# -- calls: the screen-pop ------------------------------------------------------------------------------

@pages.get("/calls/poll")
@allow(*SALES)
def calls_poll():
    """A manager's open page asks twice a second: any known client calling? (JSON; also marks them online,
    so that calls show here instead of by Telegram)."""
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


# -- the inbox ------------------------------------------------------------------------------------------

def _owner_choices(hub, actor) -> list[str]:
    owners = actor.managers_visible(hub.config)
    return owners if owners is not None else [m.name for m in hub.config.managers]


def _inbox_filter(hub, owner_choices: list[str], quiet: bool = False) -> LeadFilter:
    """The inbox's filters from the query string (the inbox, its live refresh and its export read the same
    ones). No status asked for: the open leads."""
    status = choice_arg("status", STATUS_VIEWS) or OPEN_VIEW
    return LeadFilter(status=None if status == ALL_VIEW else status,
                      warmth=choice_arg("warmth", (*WARMTHS, NO_WARMTH)),
                      source=choice_arg("source", list(hub.sources) + ["import"]),
                      owner=choice_arg("owner", [*owner_choices, "-"]),
                      date_from=date_arg("date_from", quiet), date_to=date_arg("date_to", quiet),
                      overdue=request.args.get("overdue") == "1",
                      q=(request.args.get("q") or "").strip()[:200] or None,
                      tag=(request.args.get("tag") or "").strip()[:64] or None)


def _inbox_order(actor) -> str:
    """A manager works what is due first; the others look at what came in."""
    return choice_arg("order", ORDERS) or (DUE if actor.role == Role.MANAGER else NEWEST)


def _rows(leads: list[Lead], arrivals: dict[int, int], now: datetime) -> list[dict[str, Any]]:
    return [{"lead": lead, "phones": [k.value for k in lead.person.keys if k.kind == "phone"],
             "overdue": is_overdue(lead, now), "arrival": arrivals.get(lead.id, 0)} for lead in leads]


@pages.get("/leads")
@allow(*SALES)
def inbox():
    hub = current_hub()
    actor = g.actor
    owner_choices = _owner_choices(hub, actor)
    f = _inbox_filter(hub, owner_choices)
    order = _inbox_order(actor)
    before = request.args.get("before", type=int)
    if before is not None and not 0 < before < 2**63:
        before = None
    now = utcnow()
    with transaction(hub.engine, read_only=True) as session:
        page = list_leads(session, hub.config, actor, f, PAGE_SIZE, before, order=order)
        # The live refresh starts from here: what arrived lately is known to this page already.
        live = inbox_arrivals(session, hub.config, actor, f, None, now) if before is None else None
        rows = _rows(page.leads, live.arrival_of if live else {}, now)
        tags = sorted({*hub.config.desk.tags, *tags_in_use(session, hub.config, actor)}, key=str.casefold)
    args = {k: v for k, v in request.args.items() if k != "before" and v}
    status_view = choice_arg("status", STATUS_VIEWS) or OPEN_VIEW
    return render_template("inbox.html", rows=rows, page=page, f=f, args=args, owners=owner_choices,
                           sources=list(hub.sources), status_view=status_view, status_views=STATUS_VIEWS,
                           order=order, warmths=(*WARMTHS, NO_WARMTH), tags=tags, live=live,
                           can_assign=actor.role in (Role.ADMIN, Role.LEAD))


@pages.get("/leads/poll")
@allow(*SALES)
def inbox_poll():
    """The open inbox asks every few seconds (static/inbox.js): the leads that arrived in its view since
    ``after`` (new, back, or handed to this user by someone else), as rows to put on top."""
    hub, actor = current_hub(), g.actor
    after = request.args.get("after", type=int)
    if after is None or not 0 <= after < 2**63:
        return jsonify(error="bad_request", message="after: the cursor the page was given"), 400
    f = _inbox_filter(hub, _owner_choices(hub, actor), quiet=True)
    now = utcnow()
    with transaction(hub.engine, read_only=True) as session:
        live = inbox_arrivals(session, hub.config, actor, f, after, now)
        rows = _rows(live.leads, live.arrival_of, now)
        html = render_template("lead_rows.html", rows=rows, can_assign=actor.role in (Role.ADMIN, Role.LEAD),
                               partial=True)
    return jsonify(cursor=live.cursor, rows=html, count=len(rows))


@pages.post("/leads/assign")
@allow(Role.ADMIN, Role.LEAD)
def leads_assign():
    """Hand the leads ticked in the inbox to one manager: one transaction, each in the handover log; any
    that cannot be handed over (closed meanwhile, not visible) stops the whole batch, saying which."""
    hub, actor = current_hub(), g.actor
    inbox_args: dict[str, Any] = request.args.to_dict()        # the inbox's filters, to go back to them
    back = redirect(url_for("pages.inbox", **inbox_args))
    to = request.form.get("owner") or ""
    if to not in _owner_choices(hub, actor):
        flash(gettext("Choose whom to hand the leads to."), "error")
        return back
    ids = list(dict.fromkeys(int(v) for v in request.form.getlist("lead_id")
                             if v.isascii() and v.isdigit() and 0 < int(v) < 2**63))
    if not ids:
        flash(gettext("Tick the leads to hand over first."), "error")
        return back
    if len(ids) > BATCH_MAX:
        flash(gettext("At most %(count)s leads at a time.", count=BATCH_MAX), "error")
        return back
    moved = 0
    try:
        with transaction(hub.engine) as session:
            owners = owners_of_visible(session, hub.config, actor, ids)
            now = utcnow()
            for lead_id in ids:
                if lead_id not in owners:
                    raise RoutingError(Msg("no lead %(id)s", id=lead_id))
                if owners[lead_id] == to:
                    continue
                reassign(session, hub.config, lead_id, to, Msg("reassigned by hand, in a batch"), actor.name, now)
                moved += 1
    except RoutingError as exc:
        flash(gettext("Nothing was handed over: %(why)s.", why=exc.msg.translate(gettext)), "error")
        return back
    hub.notification_queued.set()
    if moved:
        flash(ngettext("%(num)d lead handed over to %(name)s.", "%(num)d leads handed over to %(name)s.", moved,
                       name=to), "ok")
    else:
        flash(gettext("Nothing to hand over: the leads ticked are %(name)s's already.", name=to), "ok")
    return back


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


# -- the lead card --------------------------------------------------------------------------------------

def _proposed_reason(config, lead: dict[str, Any]):
    """The refusal the lead's contact attempts now allow and that needed them (e.g. "no answer after 5
    attempts"), else None: the card preselects a reason only then."""
    return next((r for r in config.refuse_reasons
                 if r.min_attempts and lead["contact_attempts"] >= r.min_attempts), None)


@pages.get("/leads/<int:lead_id>")
@allow(*SALES)
def lead_card(lead_id: int):
    hub, actor = current_hub(), g.actor
    if lead_id >= 2**63:
        return render_template("error.html", status=404, message=gettext("No lead %(id)s here.", id=lead_id)), 404
    now = utcnow()
    with transaction(hub.engine, read_only=True) as session:
        lead = get_lead(session, hub.config, actor, lead_id)
        if lead is None:
            return render_template("error.html", status=404,
                                   message=gettext("No lead %(id)s here (or not yours to see).", id=lead_id)), 404
        data = lead_to_dict(lead)
        overdue = is_overdue(lead, now)
        known_tags = tags_in_use(session, hub.config, actor)
    open_lead = data["status"] in LeadStatus.OPEN
    tz = ZoneInfo(timezone_of(actor, hub.config))
    return render_template(
        "lead.html", lead=data, overdue=overdue, reasons=hub.config.refuse_reasons,
        proposed=_proposed_reason(hub.config, data) if open_lead else None, owners=_owner_choices(hub, actor),
        offered_tags=[t for t in hub.config.desk.tags if t not in data["tags"]],
        known_tags=sorted(set(known_tags) - set(data["tags"]) - set(hub.config.desk.tags), key=str.casefold),
        task_texts={t["id"]: t["text"] for t in data["tasks"]},
        today=now.astimezone(tz).date().isoformat(), currency=hub.config.web.currency)


def _visible(hub, lead_id: int) -> bool:
    with transaction(hub.engine, read_only=True) as session:
        return lead_id < 2**63 and get_lead(session, hub.config, g.actor, lead_id) is not None


def _lead_action(lead_id: int, action: Callable[..., Any], done: str):
    """Run a lead operation for a lead this user may see; say what happened on the card."""
    hub = current_hub()
    if not _visible(hub, lead_id):
        return render_template("error.html", status=404, message=gettext("No lead %(id)s here.", id=lead_id)), 404
    try:
        with transaction(hub.engine) as session:
            action(session, hub.config, utcnow())
        flash(done, "ok")
        hub.notification_queued.set()
    except RoutingError as exc:
        flash(exc.msg.translate(gettext), "error")
    return redirect(url_for("pages.lead_card", lead_id=lead_id))


def _to_card(lead_id: int, message: str):
    flash(message, "error")
    return redirect(url_for("pages.lead_card", lead_id=lead_id))


@pages.post("/leads/<int:lead_id>/take")
@allow(*SALES)
def lead_take(lead_id: int):
    manager = g.actor.manager
    if not manager:
        return _to_card(lead_id, gettext("Only a manager takes a lead; reassign it to one instead."))
    return _lead_action(lead_id, lambda s, c, now: take(s, c, lead_id, manager, now),
                        gettext("Taken into work."))


@pages.post("/leads/<int:lead_id>/attempt")
@allow(*SALES)
def lead_attempt(lead_id: int):
    return _lead_action(lead_id, lambda s, c, now: count_attempt(s, c, lead_id, g.actor.name, now),
                        gettext("Contact attempt counted."))


def _amount(raw: str) -> Decimal | None:
    """A deal amount as people type it: "12 000", "12000,50"; None for nothing; ValueError otherwise."""
    cleaned = "".join(raw.split()).replace("\u202f", "").replace(",", ".")
    if not cleaned:
        return None
    try:
        amount = Decimal(cleaned)
    except InvalidOperation:
        raise ValueError(raw) from None
    if not amount.is_finite() or not 0 <= amount < MAX_AMOUNT or amount != amount.quantize(Decimal("0.01")):
        raise ValueError(raw)
    return amount


class _DryRun(Exception):
    """Rolls back the transaction of a status change that was only tried, to ask for confirmation."""


@pages.post("/leads/<int:lead_id>/status")
@allow(*SALES)
def lead_status(lead_id: int):
    """Converted or refused, after a confirmation: a request without ``confirmed=1`` changes nothing. It
    tries the change in a transaction that is rolled back, so a refusal the lead cannot have yet (too few
    attempts) is said at once, and otherwise answers a page that asks (static/lead.js asks in a dialog
    instead and sends the confirmed form)."""
    hub = current_hub()
    status = request.form.get("status")
    if status not in (LeadStatus.CONVERTED, LeadStatus.REFUSED):
        return _to_card(lead_id, gettext("Choose converted or refused."))
    reason = (request.form.get("reason") or None) if status == LeadStatus.REFUSED else None
    if status == LeadStatus.REFUSED and reason is None:
        return _to_card(lead_id, gettext("Choose the refusal reason first: none is chosen for you."))
    try:
        amount = _amount(request.form.get("amount") or "") if status == LeadStatus.CONVERTED else None
    except ValueError as exc:
        return _to_card(lead_id, gettext("%(value)s is not an amount: write it like 15000 or 15000.50.",
                                         value=str(exc)[:40]))

    def act(session, config, now):
        set_status(session, config, lead_id, status, reason, g.actor.name, now, amount=amount)

    if request.form.get("confirmed") != "1":
        if not _visible(hub, lead_id):
            return render_template("error.html", status=404,
                                   message=gettext("No lead %(id)s here.", id=lead_id)), 404
        try:
            with transaction(hub.engine) as session:
                act(session, hub.config, utcnow())
                raise _DryRun
        except _DryRun:
            pass
        except RoutingError as exc:
            return _to_card(lead_id, exc.msg.translate(gettext))
        with transaction(hub.engine, read_only=True) as session:
            lead = get_lead(session, hub.config, g.actor, lead_id)
            name = lead.person.name if lead else None
        return render_template("confirm.html", lead_id=lead_id, name=name, status=status, reason=reason,
                               amount=amount, currency=hub.config.web.currency)
    done = gettext("Converted.") if status == LeadStatus.CONVERTED else gettext("Refused.")
    return _lead_action(lead_id, act, done)


@pages.post("/leads/<int:lead_id>/owner")
@allow(Role.ADMIN, Role.LEAD)
def lead_reassign(lead_id: int):
    to = request.form.get("owner") or ""
    visible = g.actor.managers_visible(current_hub().config)
    if visible is not None and to not in visible:
        return _to_card(lead_id, gettext("%(name)s is not in your teams.", name=to))
    why = (request.form.get("why") or "").strip()[:200] or Msg("reassigned by hand")
    return _lead_action(lead_id, lambda s, c, now: reassign(s, c, lead_id, to, why, g.actor.name, now),
                        gettext("Handed over to %(name)s.", name=to))


@pages.post("/leads/<int:lead_id>/notes")
@allow(*SALES)
def lead_note(lead_id: int):
    text = request.form.get("text") or ""
    return _lead_action(lead_id, lambda s, c, now: add_note(s, c, lead_id, text, g.actor.name, now),
                        gettext("Note added."))


@pages.post("/leads/<int:lead_id>/tags")
@allow(*SALES)
def lead_tags(lead_id: int):
    """The card's tag form: the ticked tags and a new one make the lead's whole list (unticked: taken off)."""
    tags = [*request.form.getlist("tag"), *(request.form.get("new_tags") or "").split(",")]
    return _lead_action(lead_id, lambda s, c, now: set_tags(s, c, lead_id, tags, g.actor.name, now),
                        gettext("Tags saved."))


def _local_moment(day: str, clock: str, tz: str) -> datetime:
    """A date and a time typed in the reader's time zone, as an aware UTC moment; ValueError if not one."""
    local = datetime.combine(date.fromisoformat(day), time.fromisoformat(clock), tzinfo=ZoneInfo(tz))
    return local.astimezone(UTC)


@pages.post("/leads/<int:lead_id>/tasks")
@allow(*SALES)
def lead_task(lead_id: int):
    """A call-back at a date and time of the user's own time zone (a manager's [[managers]] timezone)."""
    tz = timezone_of(g.actor, current_hub().config)
    try:
        due_at = _local_moment(request.form.get("due_date") or "", request.form.get("due_time") or "", tz)
    except ValueError:
        return _to_card(lead_id, gettext("Give the call-back's date and time."))
    text = request.form.get("text") or ""
    return _lead_action(lead_id, lambda s, c, now: add_task(s, c, lead_id, due_at, text, g.actor.name, now),
                        gettext("Call-back set."))


@pages.post("/leads/<int:lead_id>/tasks/<int:task_id>/done")
@allow(*SALES)
def lead_task_done(lead_id: int, task_id: int):
    if task_id >= 2**63:
        return _to_card(lead_id, gettext("No such call-back."))
    return _lead_action(lead_id, lambda s, c, now: complete_task(s, c, lead_id, task_id, g.actor.name, now),
                        gettext("Call-back done."))
