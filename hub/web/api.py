"""REST API ``/api/v1`` (its shapes: api_models.py): Bearer tokens (``hub users token add``), JSON in and out, errors as
``{"error": code, "message": text}``. The OpenAPI document at ``/openapi.json`` is generated from the
pydantic models and routes below by spectree; nothing of it is written by hand."""

from __future__ import annotations

import json
from datetime import UTC, date
from decimal import Decimal
from typing import Any

from flask import Blueprint, Response, g, jsonify, request
from spectree import Response as Resp, SecurityScheme, SpecTree
from spectree.models import SecureType, SecuritySchemeData

from hub.desk.access import Actor
from hub.desk.queries import LeadFilter, get_lead, list_leads, owners_of_visible
from hub.desk.redact import Redactor
from hub.desk.reports import channel_health, channel_report, managers_overview, set_spend
from hub.errors import PayloadError
from hub.i18n import Msg
from hub.intake.dryrun import try_payload
from hub.intake.replay import replay_events
from hub.pipeline.routing.lifecycle import RoutingError, count_attempt, reassign, set_manager_state, set_status, take
from hub.pipeline.worklog import add_note, add_task, complete_task, set_tags
from hub.store.db import transaction
from hub.store.models import InboundEvent, LeadStatus, LeadTask, utcnow
from hub.store.serialize import lead_to_dict
from hub.store.users import Role
from hub.web.api_models import (
    MAX_ID,
    AssignIn,
    AssignOut,
    CostRow,
    Error,
    EventList,
    EventOut,
    EventQuery,
    LeadFull,
    LeadList,
    LeadQuery,
    LookupOut,
    LookupQuery,
    ManagerIn,
    ManagerList,
    ManagerOut,
    Me,
    NoteIn,
    OwnerIn,
    ReplayOut,
    Report,
    ReportQuery,
    SourceList,
    SpendIn,
    StatusIn,
    TagsIn,
    TaskIn,
    TryIn,
    TryOut,
)
from hub.web.common import allow, current_hub

api = Blueprint("api", __name__, url_prefix="/api/v1")

def _validation_error(req: Any, resp: Any, req_error: Any, _instance: Any, _adapter: Any) -> None:
    """spectree's hook: turn its list of pydantic errors into our error shape."""
    if req_error is None or resp is None:
        return
    details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in req_error.errors()]
    first = details[0] if details else {"loc": [], "msg": "invalid"}
    message = f"{'.'.join(map(str, first['loc'])) or 'request'}: {first['msg']}"
    resp.set_data(json.dumps({"error": "invalid_request", "message": message, "details": details}))


spec = SpecTree(
    "flask", title="lead hub API", version="1", mode="strict", annotations=True,
    validation_error_status=422, validation_error_model=Error,
    security_schemes=[SecurityScheme(name="bearer", data=SecuritySchemeData(type=SecureType.HTTP, scheme="bearer"))],
    security={"bearer": []}, before=_validation_error,
    description="Leads, events, channel report and health, managers. Authenticate with "
                "`Authorization: Bearer <token>` (create one with `hub users token add LOGIN`); a token acts with "
                "its user's role: a manager sees only their own leads.")




def error(status: int, code: str, message: str) -> tuple[Response, int]:
    return jsonify(error=code, message=message), status


def _not_found(what: str) -> tuple[Response, int]:
    return error(404, "not_found", f"no {what} here (or not yours to see)")


def actor() -> Actor:
    return g.actor


def _lead_json(lead_id: int) -> dict[str, Any] | None:
    hub = current_hub()
    with transaction(hub.engine, read_only=True) as session:
        lead = get_lead(session, hub.config, actor(), lead_id)
        return lead_to_dict(lead) if lead is not None else None


@api.get("/me")
@allow(*Role.ALL)
@spec.validate(resp=Resp(HTTP_200=Me, HTTP_401=Error), tags=["session"])
def me():
    """Who this token acts as."""
    a = actor()
    return jsonify(login=a.login, role=a.role, manager=a.manager)


@api.get("/leads")
@allow(Role.ADMIN, Role.LEAD, Role.MANAGER)
@spec.validate(query=LeadQuery, resp=Resp(HTTP_200=LeadList, HTTP_401=Error, HTTP_403=Error, HTTP_422=Error),
               tags=["leads"])
def leads_list(query: LeadQuery):
    """Leads this user may see, newest first (or what is due first). A manager sees their own; a team lead
    their teams' and the unassigned queue. ``q`` finds a client by phone (any spelling), or by part of their
    name or e-mail."""
    hub = current_hub()
    f = LeadFilter(status=query.status, warmth=query.warmth, source=query.source, owner=query.owner,
                   date_from=query.date_from, date_to=query.date_to, overdue=query.overdue, q=query.q,
                   tag=query.tag)
    before = query.before if query.order == "newest" else None
    with transaction(hub.engine, read_only=True) as session:
        page = list_leads(session, hub.config, actor(), f, query.limit, before, with_touches=True,
                          order=query.order)
        items = [lead_to_dict(lead, with_touches=False) for lead in page.leads]
    return jsonify(items=items, total=page.total, total_is_exact=page.total_is_exact, next_before=page.next_before)


@api.get("/leads/<int:lead_id>")
@allow(Role.ADMIN, Role.LEAD, Role.MANAGER)
@spec.validate(resp=Resp(HTTP_200=LeadFull, HTTP_401=Error, HTTP_403=Error, HTTP_404=Error), tags=["leads"])
def leads_show(lead_id: int):
    """One lead with every touch (UTM marks included) and its timeline."""
    data = _lead_json(lead_id) if lead_id <= MAX_ID else None
    return jsonify(data) if data else _not_found(f"lead {lead_id}")


def _lead_action(lead_id: int, action) -> tuple[Response, int] | Response:
    """Run ``action(session, config, now)`` on a lead this user may see; 404 if not, 409 if refused."""
    hub = current_hub()
    if lead_id > MAX_ID or _lead_json(lead_id) is None:
        return _not_found(f"lead {lead_id}")
    try:
        with transaction(hub.engine) as session:
            action(session, hub.config, utcnow())
    except RoutingError as exc:
        return error(409, "conflict", str(exc))
    hub.notification_queued.set()
    return jsonify(_lead_json(lead_id))


@api.post("/leads/<int:lead_id>/status")
@allow(Role.ADMIN, Role.LEAD, Role.MANAGER)
@spec.validate(json=StatusIn, resp=Resp(HTTP_200=LeadFull, HTTP_401=Error, HTTP_403=Error, HTTP_404=Error,
                                        HTTP_409=Error, HTTP_422=Error), tags=["leads"])
def leads_status(lead_id: int, json: StatusIn):
    """Take a lead into work (in_work), or close it: converted, or refused with a reason code. Nothing is
    deleted; every change lands in the lead's history."""
    a = actor()
    if json.status == LeadStatus.IN_WORK:
        if not a.manager:
            return error(409, "conflict", "only a manager takes a lead; reassign it to one instead")
        if json.amount is not None:
            return error(409, "conflict", "an amount goes with converted only")
        return _lead_action(lead_id, lambda s, c, now: take(s, c, lead_id, a.manager, now))
    amount = Decimal(str(json.amount)).quantize(Decimal("0.01")) if json.amount is not None else None
    return _lead_action(lead_id, lambda s, c, now: set_status(s, c, lead_id, json.status, json.reason, a.name, now,
                                                              amount=amount))


@api.post("/leads/<int:lead_id>/attempts")
@allow(Role.ADMIN, Role.LEAD, Role.MANAGER)
@spec.validate(resp=Resp(HTTP_200=LeadFull, HTTP_401=Error, HTTP_403=Error, HTTP_404=Error, HTTP_409=Error),
               tags=["leads"])
def leads_attempt(lead_id: int):
    """Count one contact attempt (some refusal reasons need several)."""
    return _lead_action(lead_id, lambda s, c, now: count_attempt(s, c, lead_id, actor().name, now))


@api.post("/leads/<int:lead_id>/notes")
@allow(Role.ADMIN, Role.LEAD, Role.MANAGER)
@spec.validate(json=NoteIn, resp=Resp(HTTP_200=LeadFull, HTTP_401=Error, HTTP_403=Error, HTTP_404=Error,
                                      HTTP_409=Error, HTTP_422=Error), tags=["leads"])
def leads_note(lead_id: int, json: NoteIn):
    """Write a note on the lead (kept in its history, never edited)."""
    return _lead_action(lead_id, lambda s, c, now: add_note(s, c, lead_id, json.text, actor().name, now))


@api.post("/leads/<int:lead_id>/tags")
@allow(Role.ADMIN, Role.LEAD, Role.MANAGER)
@spec.validate(json=TagsIn, resp=Resp(HTTP_200=LeadFull, HTTP_401=Error, HTTP_403=Error, HTTP_404=Error,
                                      HTTP_409=Error, HTTP_422=Error), tags=["leads"])
def leads_tags(lead_id: int, json: TagsIn):
    """Set the lead's tags: the whole list (the configured ones or any other)."""
    return _lead_action(lead_id, lambda s, c, now: set_tags(s, c, lead_id, json.tags, actor().name, now))


@api.post("/leads/<int:lead_id>/tasks")
@allow(Role.ADMIN, Role.LEAD, Role.MANAGER)
@spec.validate(json=TaskIn, resp=Resp(HTTP_200=LeadFull, HTTP_401=Error, HTTP_403=Error, HTTP_404=Error,
                                      HTTP_409=Error, HTTP_422=Error), tags=["leads"])
def leads_task(lead_id: int, json: TaskIn):
    """Set a call-back: the lead's owner is reminded when it is due, and it shows as overdue until done."""
    try:
        due_at = json.due_at.astimezone(UTC)
    except OverflowError:
        return error(409, "conflict", "due_at: out of range")
    return _lead_action(lead_id, lambda s, c, now: add_task(s, c, lead_id, due_at, json.text, actor().name, now))


@api.post("/leads/<int:lead_id>/tasks/<int:task_id>/done")
@allow(Role.ADMIN, Role.LEAD, Role.MANAGER)
@spec.validate(resp=Resp(HTTP_200=LeadFull, HTTP_401=Error, HTTP_403=Error, HTTP_404=Error, HTTP_409=Error),
               tags=["leads"])
def leads_task_done(lead_id: int, task_id: int):
    """Mark a call-back task done (again: no change)."""
    hub = current_hub()
    if lead_id > MAX_ID or task_id > MAX_ID or _lead_json(lead_id) is None:
        return _not_found(f"lead {lead_id}")
    with transaction(hub.engine, read_only=True) as session:
        found = session.get(LeadTask, task_id)
    if found is None or found.lead_id != lead_id:
        return _not_found(f"task {task_id} on lead {lead_id}")
    return _lead_action(lead_id, lambda s, c, now: complete_task(s, c, lead_id, task_id, actor().name, now))


@api.post("/leads/assign")
@allow(Role.ADMIN, Role.LEAD)
@spec.validate(json=AssignIn, resp=Resp(HTTP_200=AssignOut, HTTP_401=Error, HTTP_403=Error, HTTP_404=Error,
                                        HTTP_409=Error, HTTP_422=Error), tags=["leads"])
def leads_assign(json: AssignIn):
    """Hand several leads to one manager: all of them or, if one cannot be (closed, not yours to see), none —
    in one transaction, each a handover in the log. A team lead hands over within their teams."""
    a, hub = actor(), current_hub()
    visible = a.managers_visible(hub.config)
    if visible is not None and json.to not in visible:
        return error(409, "conflict", f"{json.to!r} is not in your teams")
    why = json.why or Msg("reassigned by hand")
    lead_ids = sorted(set(json.lead_ids))       # one order of locks for every batch: no deadlock between two
    try:
        with transaction(hub.engine) as session:
            owners = owners_of_visible(session, hub.config, a, lead_ids)
            unseen = [str(i) for i in lead_ids if i not in owners]
            if unseen:
                return _not_found(f"lead {', '.join(unseen)}")
            moving = [i for i in lead_ids if owners[i] != json.to]
            now = utcnow()
            for lead_id in moving:
                reassign(session, hub.config, lead_id, json.to, why, a.name, now)
    except RoutingError as exc:
        return error(409, "conflict", f"nothing reassigned: {exc}")
    hub.notification_queued.set()
    return jsonify(to=json.to, reassigned=moving, unchanged=[i for i in lead_ids if i not in moving])


@api.post("/leads/<int:lead_id>/owner")
@allow(Role.ADMIN, Role.LEAD)
@spec.validate(json=OwnerIn, resp=Resp(HTTP_200=LeadFull, HTTP_401=Error, HTTP_403=Error, HTTP_404=Error,
                                       HTTP_409=Error, HTTP_422=Error), tags=["leads"])
def leads_reassign(lead_id: int, json: OwnerIn):
    """Hand the lead to another manager (logged as a handover). A team lead hands over within their teams."""
    a, config = actor(), current_hub().config
    visible = a.managers_visible(config)
    if visible is not None and json.owner not in visible:
        return error(409, "conflict", f"{json.owner!r} is not in your teams")
    return _lead_action(lead_id, lambda s, c, now: reassign(s, c, lead_id, json.owner, json.why, a.name, now))


@api.get("/events")
@allow(Role.ADMIN, Role.MARKETER)
@spec.validate(query=EventQuery, resp=Resp(HTTP_200=EventList, HTTP_401=Error, HTTP_403=Error, HTTP_422=Error),
               tags=["events"])
def events_list(query: EventQuery):
    """Raw deliveries, newest first: what each became (lead, touch), or why it was rejected or died. A role that
    may not see contact details (the marketer) gets them masked, and ``contacts_hidden`` set."""
    from sqlalchemy import select
    hub = current_hub()
    redactor = Redactor(hub, actor().role)
    q = select(InboundEvent).order_by(InboundEvent.id.desc()).limit(query.limit + 1)
    if query.status:
        q = q.where(InboundEvent.status == query.status)
    if query.source:
        q = q.where(InboundEvent.source == query.source)
    if query.before:
        q = q.where(InboundEvent.id < query.before)
    with transaction(hub.engine, read_only=True) as session:
        rows = list(session.scalars(q))
        items = [redactor.event(e) for e in rows[:query.limit]]
    return jsonify(items=items, next_before=items[-1]["id"] if len(rows) > query.limit else None)


@api.get("/events/<int:event_id>")
@allow(Role.ADMIN, Role.MARKETER)
@spec.validate(resp=Resp(HTTP_200=EventOut, HTTP_401=Error, HTTP_403=Error, HTTP_404=Error), tags=["events"])
def events_show(event_id: int):
    """One delivery with its headers, parsed payload and raw body; never the secrets it carried (signatures,
    tokens). A role that may not see contact details (the marketer) gets the payload's values masked, no
    raw body (``body`` null), and ``contacts_hidden`` set."""
    hub = current_hub()
    with transaction(hub.engine, read_only=True) as session:
        event = session.get(InboundEvent, event_id) if event_id <= MAX_ID else None
        return jsonify(Redactor(hub, actor().role).event(event, with_body=True)) if event \
            else _not_found(f"event {event_id}")


@api.post("/events/<int:event_id>/replay")
@allow(Role.ADMIN, Role.MARKETER)
@spec.validate(resp=Resp(HTTP_200=ReplayOut, HTTP_401=Error, HTTP_403=Error, HTTP_404=Error, HTTP_409=Error),
               tags=["events"])
def events_replay(event_id: int):
    """Queue a dead or rejected delivery again; it is mapped with today's mapping."""
    hub = current_hub()
    if event_id > MAX_ID:
        return _not_found(f"event {event_id}")
    with transaction(hub.engine) as session:
        replayed, refused = replay_events(session, [event_id])
    if not replayed:
        reason = refused[0]["reason"]
        return _not_found(f"event {event_id}") if reason == "no such event" else error(409, "conflict", reason)
    hub.event_stored.set()
    return jsonify(replayed=replayed, refused=refused)


@api.get("/reports/channels")
@allow(Role.ADMIN, Role.MARKETER, Role.LEAD)
@spec.validate(query=ReportQuery, resp=Resp(HTTP_200=Report, HTTP_401=Error, HTTP_403=Error, HTTP_422=Error),
               tags=["reports"])
def report_channels(query: ReportQuery):
    """Leads per day per source (or per first-touch utm_campaign), conversion per warmth group, and cost
    per lead by month from the spend entered per source."""
    hub = current_hub()
    date_to = query.date_to or utcnow().date()
    if date_to.toordinal() < query.days:
        return error(422, "invalid_request", "date_to: too early for that many days")
    date_from = date.fromordinal(date_to.toordinal() - query.days + 1)
    with transaction(hub.engine, read_only=True) as session:
        return jsonify(channel_report(session, date_from, date_to, query.group_by))


@api.get("/sources")
@allow(Role.ADMIN, Role.MARKETER)
@spec.validate(resp=Resp(HTTP_200=SourceList, HTTP_401=Error, HTTP_403=Error), tags=["sources"])
def sources_list():
    """Channel health: per source its URL, last delivery, today's deliveries and rejections, queue, dead."""
    hub = current_hub()
    with transaction(hub.engine, read_only=True) as session:
        return jsonify(items=Redactor(hub, actor().role).health(channel_health(session, hub)))


@api.put("/sources/<source_name>/spend")
@allow(Role.ADMIN, Role.MARKETER)
@spec.validate(json=SpendIn, resp=Resp(HTTP_200=CostRow, HTTP_401=Error, HTTP_403=Error, HTTP_404=Error,
                                       HTTP_422=Error), tags=["sources"])
def sources_spend(source_name: str, json: SpendIn):
    """Enter what a source cost in a month; the report divides it by that month's leads."""
    hub = current_hub()
    if source_name not in hub.sources:
        return _not_found(f"source {source_name!r}")
    with transaction(hub.engine) as session:
        set_spend(session, source_name, json.month, Decimal(str(json.amount)).quantize(Decimal("0.01")),
                  actor().name)
    first = date(int(json.month[:4]), int(json.month[5:]), 1)
    with transaction(hub.engine, read_only=True) as session:
        rows = channel_report(session, first, first, "source")["cost"]
    return jsonify(next(r for r in rows if r["source"] == source_name and r["month"] == json.month))


@api.post("/sources/<source_name>/try")
@allow(Role.ADMIN, Role.MARKETER)
@spec.validate(json=TryIn, resp=Resp(HTTP_200=TryOut, HTTP_401=Error, HTTP_403=Error, HTTP_404=Error,
                                     HTTP_422=Error), tags=["sources"])
def sources_try(source_name: str, json: TryIn):
    """The mapping tester: what this payload would become. Stores nothing, checks no signature. A role that
    may not see contact details (the marketer) gets the lead's contacts masked, and ``contacts_hidden`` set."""
    hub = current_hub()
    source = hub.sources.get(source_name)
    if source is None:
        return _not_found(f"source {source_name!r}")
    redactor = Redactor(hub, actor().role)
    try:
        result = try_payload(hub, source, json.payload.encode(), json.content_type, json.path)
    except ValueError as exc:
        return error(422, "invalid_request", str(exc))
    except PayloadError as exc:
        # The dry run worked: its answer is that this payload would be refused (and with which status).
        return jsonify(events=[], reply=None, refused=f"{redactor.text(str(exc))} (answered {exc.status})")
    return jsonify(redactor.tried(source, result))


@api.get("/managers")
@allow(Role.ADMIN, Role.LEAD)
@spec.validate(resp=Resp(HTTP_200=ManagerList, HTTP_401=Error, HTTP_403=Error), tags=["managers"])
def managers_list():
    """Managers (a team lead: their teams') with state, open leads and whether they can take a lead now."""
    hub = current_hub()
    with transaction(hub.engine, read_only=True) as session:
        return jsonify(items=managers_overview(session, hub.config, actor().managers_visible(hub.config)))


@api.patch("/managers/<name>")
@allow(Role.ADMIN, Role.LEAD)
@spec.validate(json=ManagerIn, resp=Resp(HTTP_200=ManagerOut, HTTP_401=Error, HTTP_403=Error, HTTP_404=Error,
                                         HTTP_422=Error), tags=["managers"])
def managers_update(name: str, json: ManagerIn):
    """Put a manager on or off duty, or on vacation until a date (or back)."""
    hub = current_hub()
    if not request.get_json(silent=True):
        return error(422, "invalid_request", "give on_duty, vacation_until or clear_vacation")
    visible = actor().managers_visible(hub.config)
    if hub.config.manager(name) is None or (visible is not None and name not in visible):
        return _not_found(f"manager {name!r}")
    until = json.vacation_until
    if until is not None:
        until = until.replace(tzinfo=UTC) if until.tzinfo is None else until.astimezone(UTC)
    with transaction(hub.engine) as session:
        set_manager_state(session, hub.config, name, actor().name, utcnow(), on_duty=json.on_duty,
                          vacation_until=until, clear_vacation=json.clear_vacation)
    with transaction(hub.engine, read_only=True) as session:
        return jsonify(managers_overview(session, hub.config, [name])[0])


@api.get("/lookup")
@allow(Role.ADMIN, Role.TELEPHONY)
@spec.validate(query=LookupQuery, resp=Resp(HTTP_200=LookupOut, HTTP_401=Error, HTTP_403=Error, HTTP_404=Error,
                                            HTTP_422=Error), tags=["calls"])
def lookup_caller(query: LookupQuery):
    """Who is calling: the person, their open lead, its owner and extension, the last touches. Unknown
    numbers answer 404. Answered from the identity index, in a few milliseconds."""
    from hub.pipeline.calls import lookup
    hub = current_hub()
    source = hub.sources.get(query.source) if query.source else None
    region = source.region if source else hub.config.default_region
    with transaction(hub.engine, read_only=True) as session:
        found = lookup(session, hub.config, query.phone, region)
    return jsonify(found) if found else error(404, "not_found", "no person with this phone number")


def openapi():
    """The OpenAPI document of /api/v1, served at /openapi.json (public: it holds no data)."""
    return jsonify(spec.spec)


__all__ = ["api", "spec", "openapi"]
