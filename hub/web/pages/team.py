"""The managers' switches: on duty, on vacation, and who can take a lead now."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import flash, g, redirect, render_template, request, url_for
from flask_babel import gettext

from hub.desk.reports import managers_overview
from hub.pipeline.routing.lifecycle import set_manager_state
from hub.store.db import transaction
from hub.store.models import utcnow
from hub.store.users import Role
from hub.web.common import allow, current_hub
from hub.web.pages.blueprint import (
    pages,
)

# -- managers ---------------------------------------------------------------------------------------------

@pages.get("/managers")
@allow(Role.ADMIN, Role.LEAD)
def managers():
    hub = current_hub()
    with transaction(hub.engine, read_only=True) as session:
        rows = managers_overview(session, hub.config, g.actor.managers_visible(hub.config), translate=gettext)
    return render_template("managers.html", rows=rows)


@pages.post("/managers/<name>")
@allow(Role.ADMIN, Role.LEAD)
def manager_update(name: str):
    hub = current_hub()
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
