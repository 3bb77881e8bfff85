"""The WSGI app: ``create_app(config)`` in the Flask-tutorial way, one blueprint per concern (hooks.py: the
webhook door and health; api.py; pages/), and what runs around every request: the access check, the
language and time zone, error pages, security headers."""

from __future__ import annotations

import logging
import os
from datetime import timedelta

from flask import Flask, Response, current_app, g, redirect, render_template, request, url_for
from flask_babel import Babel, gettext
from flask_login import LoginManager, current_user
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException

from hub.config import Config, load_config
from hub.desk.access import Actor, actor_of, session_secret, timezone_of, user_for_session, user_for_token
from hub.i18n import TRANSLATIONS_DIR, best_language
from hub.runtime import Hub
from hub.web import api_reports  # noqa: F401  (adds the reports' routes to the api blueprint)
from hub.web.api import api, openapi, spec
from hub.web.common import PUBLIC_ENDPOINTS, SessionUser, current_hub, deny, json_error, roles_of, wants_json
from hub.web.door import JSON_CSP, PAGE_CSP, SECURITY_HEADERS, HookDoor
from hub.web.hooks import RateLimits, health, hooks
from hub.web.metrics import AckLatency
from hub.web.pages import pages
from hub.web.telegram_bot import telegram_bot

log = logging.getLogger("hub.web.app")


def create_app(config: Config | str | os.PathLike[str] | None = None, hub: Hub | None = None) -> Flask:
    """Build the app from a Config, a config file path, or $HUB_CONFIG. Pass ``hub`` to share one runtime
    (engine, wake-up signal) with workers in the same process."""
    if hub is None:
        hub = Hub(config if isinstance(config, Config) else load_config(config))
    app = Flask(__name__)
    web = hub.config.web
    app.config.update(
        MAX_CONTENT_LENGTH=hub.config.server.max_body_bytes,
        SECRET_KEY=session_secret(hub.engine, hub.config),
        SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_SECURE=web.secure_cookies,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=web.session_hours),
        WTF_CSRF_TIME_LIMIT=None,           # the token lives as long as the session
    )
    app.extensions["hub"] = hub
    app.extensions["ack_latency"] = AckLatency()
    app.extensions["rate_limits"] = RateLimits()
    app.register_blueprint(hooks)
    app.register_blueprint(health)
    app.register_blueprint(api)
    app.register_blueprint(pages)
    app.add_url_rule("/openapi.json", "openapi", openapi)
    spec.app = app                          # spectree reads the routes from the app's URL map
    csrf = CSRFProtect(app)
    csrf.exempt(hooks)                      # providers sign their own deliveries
    csrf.exempt(api)                        # Bearer tokens: a browser never sends one by itself
    app.register_blueprint(telegram_bot)
    csrf.exempt(telegram_bot)               # Telegram's secret header instead
    Babel(app, locale_selector=_locale, timezone_selector=_timezone,
          default_translation_directories=str(TRANSLATIONS_DIR))
    login = LoginManager(app)
    login.session_protection = "basic"
    login.user_loader(lambda token: _load_session_user(hub, token))
    app.before_request(_guard)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(CSRFError, _csrf_error)
    app.after_request(_security_headers)
    # Deliveries are answered in front of Flask (hub/web/door.py); what the fast lane does not take reaches
    # the app as before.
    app.wsgi_app = HookDoor(app.wsgi_app, hub, app.extensions, app.config["MAX_CONTENT_LENGTH"])  # type: ignore[method-assign]
    return app


def _locale() -> str:
    """The signed-in user's language, else the browser's, else [ui] default_language."""
    actor = g.get("actor")
    return best_language(actor.language if actor else None, request.accept_languages,
                         current_hub().config.ui.default_language)


def _timezone() -> str:
    return timezone_of(g.get("actor"), current_hub().config)


def _load_session_user(hub: Hub, token: str) -> SessionUser | None:
    """The cookie's session, looked up on the server: signed out, expired or ended sessions are refused."""
    user = user_for_session(hub.engine, token)
    return SessionUser(actor_of(user), token) if user else None


def _guard():
    """Every request to a route passes here before its view: public, or signed in with an allowed role."""
    endpoint = request.endpoint
    if endpoint is None or endpoint in PUBLIC_ENDPOINTS or endpoint == "openapi":
        return None                          # 404/405 answered by Flask; public routes
    roles = roles_of(current_app.view_functions.get(endpoint))
    if roles is None:
        # A route nobody declared access for is closed: forgetting a rule must not open a door.
        log.error("route %s has no access rule; refused", endpoint)
        return deny(403, "forbidden", "this route has no access rule")
    actor = _api_actor() if request.blueprint == "api" else (
        current_user.actor if current_user.is_authenticated else None)
    if actor is None:
        if request.blueprint == "api":
            resp, status = json_error(401, "unauthorized", "send Authorization: Bearer <token> "
                                                        "(create one with `hub users token add LOGIN`)")
            resp.headers["WWW-Authenticate"] = 'Bearer realm="lead hub"'
            return resp, status
        return redirect(url_for("pages.login", next=request.full_path.rstrip("?")))
    if actor.role not in roles:
        return deny(403, "forbidden", f"a {actor.role} may not do this",
                     gettext("Your role does not allow this page."))
    if request.blueprint == "api" and request.method in ("POST", "PUT", "PATCH") and request.content_length \
            and request.mimetype != "application/json":
        return json_error(415, "unsupported_media_type", "send the body as application/json")
    g.actor = actor
    return None


def _api_actor() -> Actor | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    user = user_for_token(current_hub().engine, token.strip())
    return actor_of(user) if user else None


def _csrf_error(exc: CSRFError):
    return deny(400, "csrf_failed", f"{exc.description} Reload the page and try again.",
                 gettext("The form had expired. Reload the page and try again."))


def _security_headers(response: Response) -> Response:
    # Nothing the hub answers is to be sniffed, framed, cached or sent on as a referrer.
    # The same headers as the webhook door's fast lane sets (one list, in hub/web/door.py).
    for name, value in SECURITY_HEADERS:
        response.headers.setdefault(name, value)
    # Pages load only the hub's own CSS and JS, post forms only to the hub; everything else: nothing.
    response.headers.setdefault("Content-Security-Policy", PAGE_CSP if response.mimetype == "text/html" else JSON_CSP)
    return response


def _http_error(exc: HTTPException):
    """Errors as JSON for machines (API, hooks) and as a page for people."""
    if hasattr(exc, "response") and exc.response is not None:   # spectree's validation answer, already made
        return exc.response
    messages = {413: f"body larger than this hub accepts ({current_hub().config.server.max_body_bytes} bytes)"}
    code = (exc.name or "error").lower().replace(" ", "_")
    message = messages.get(exc.code or 0, exc.description or exc.name)
    if wants_json() or request.blueprint is None and request.path.startswith(("/hooks/", "/api/")):
        response, status = json_error(exc.code or 500, code, message)
    else:
        response = Response(render_template("error.html", status=exc.code, message=None), exc.code or 500,
                            mimetype="text/html")
        status = exc.code or 500
    # Keep what the exception says in headers: Allow on a 405 (RFC 9110), WWW-Authenticate on a 401.
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response, status


