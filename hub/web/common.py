"""What the web app's blueprints share: the running hub, the signed-in user, the access rule every route
declares, and how an error is answered (JSON for machines, a page for people).

Every route states the roles it admits with ``@allow(...)`` (or is named in ``PUBLIC_ENDPOINTS``); a route
with neither is refused to everyone (hub/web/app.py checks it before the view runs), so a new route cannot
be reachable by accident.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Response, current_app, jsonify, render_template, request
from flask_login import UserMixin

from hub.desk.access import Actor
from hub.runtime import Hub
from hub.store.users import Role

# Endpoints anyone may call: the sign-in page, provider webhooks (they carry their own secrets), health,
# Prometheus metrics (counts only, no personal data), the OpenAPI document, static files.
PUBLIC_ENDPOINTS = frozenset({"pages.login", "hooks.webhook", "health.healthz", "health.metrics",
                              "api.openapi", "static",
                              "telegram_bot.webhook"})    # Telegram's secret header, checked by the view

F = TypeVar("F", bound=Callable[..., Any])


def allow(*roles: str) -> Callable[[F], F]:
    """Declare which roles may call this view. Checked before the view runs (see hub/web/app.py)."""
    unknown = set(roles) - set(Role.ALL)
    if unknown or not roles:
        raise ValueError(f"allow(): unknown roles {sorted(unknown)}" if unknown else "allow(): name a role")

    def mark(view: F) -> F:
        view.hub_roles = frozenset(roles)  # type: ignore[attr-defined]  # a mark on any function, read by the app
        return view
    return mark


def roles_of(view: Callable[..., Any] | None) -> frozenset[str] | None:
    return getattr(view, "hub_roles", None)


def current_hub() -> Hub:
    hub: Hub = current_app.extensions["hub"]
    return hub


class SessionUser(UserMixin):
    """flask-login's view of a signed-in browser. Its id, which flask-login keeps in the signed cookie, is the
    session's random token: the server looks the session up by it on every request (hub/desk/access.py
    user_for_session), so signing out, or a change to the user, ends it even for a copy of the cookie."""

    def __init__(self, actor: Actor, session_token: str):
        self.actor = actor
        self.id = session_token


def wants_json() -> bool:
    return request.blueprint in ("api", "hooks", "health") or request.endpoint == "openapi"


def json_error(status: int, code: str, message: str, **extra: Any) -> tuple[Response, int]:
    return jsonify(error=code, message=message, **extra), status


def deny(status: int, code: str, message: str, page_message: str | None = None) -> Any:
    """JSON for machines (English, like every API message); a page in the reader's language for people."""
    if wants_json():
        return json_error(status, code, message)
    return render_template("error.html", status=status, message=page_message), status
