"""Channel health with its dead letters and replay, and the mapping tester."""

from __future__ import annotations

import json

from flask import flash, g, redirect, render_template, request, url_for
from flask_babel import gettext

from hub.desk.redact import Redactor
from hub.desk.reports import channel_health, recent_events
from hub.errors import PayloadError
from hub.i18n import reason_text
from hub.intake.dryrun import try_payload
from hub.intake.replay import replay_events
from hub.store.db import transaction
from hub.store.models import EventStatus, InboundEvent
from hub.web.common import allow, current_hub
from hub.web.pages.blueprint import (
    MARKETING,
    pages,
)

# -- channels ---------------------------------------------------------------------------------------------

# The last delivery's raw body is shown up to this many characters: enough to read a form or a JSON event,
# not a megabyte of page. (Cut after its secrets are hidden, so a secret is never cut in half and shown.)
LAST_BODY_CHARS = 8192

@pages.get("/channels")
@allow(*MARKETING)
def channels():
    hub = current_hub()
    with transaction(hub.engine, read_only=True) as session:
        rows = Redactor(hub, g.actor.role).health(channel_health(session, hub))
    return render_template("channels.html", rows=rows)


@pages.get("/channels/<source_name>")
@allow(*MARKETING)
def channel(source_name: str):
    hub = current_hub()
    if source_name not in hub.sources:
        return render_template("error.html", status=404, message=gettext("No source %(name)s.", name=source_name)), 404
    redactor = Redactor(hub, g.actor.role)
    with transaction(hub.engine, read_only=True) as session:
        health = next(r for r in redactor.health(channel_health(session, hub)) if r["name"] == source_name)
        dead = [redactor.event(e) for e in recent_events(session, source_name, EventStatus.DEAD, 50)]
        rejected = [{**redactor.event(e), "replayable": e.payload is not None}
                    for e in recent_events(session, source_name, EventStatus.REJECTED, 20)]
        latest = [redactor.event(e, with_body=True) for e in recent_events(session, source_name, None, 1)]
    last = latest[0] if latest else None
    if last is None:
        shown = None
    elif last["body"] is not None:
        shown = last["body"][:LAST_BODY_CHARS]
    else:       # a reader who may not see contacts: the payload's shape, its values masked
        shown = json.dumps(last["payload"], ensure_ascii=False, indent=1) if last["payload"] is not None else ""
    return render_template("channel.html", h=health, dead=dead, rejected=rejected, last=last, last_shown=shown)


@pages.post("/events/<int:event_id>/replay")
@allow(*MARKETING)
def event_replay(event_id: int):
    hub = current_hub()
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
    hub = current_hub()
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
    hub = current_hub()
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
            redactor = Redactor(hub, g.actor.role)
            try:
                result = redactor.tried(source, try_payload(hub, source, form["payload"].strip().encode(),
                                                            form["content_type"] or None, form["path"]))
            except (ValueError, PayloadError) as exc:
                error = gettext("The connector refuses this payload: %(why)s",
                                why=reason_text(redactor.text(str(exc)), gettext))
    return render_template("mapping.html", sources=webhook_sources, form=form, result=result, error=error)


