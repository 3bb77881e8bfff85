"""The WSGI app: ``create_app(config)`` in the Flask-tutorial way, one blueprint per concern."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, jsonify, redirect, render_template, request, url_for
from flask_babel import Babel, gettext
from flask_login import LoginManager, UserMixin, current_user
from flask_wtf.csrf import CSRFError, CSRFProtect
from sqlalchemy import func, select, text
from werkzeug.exceptions import HTTPException

from hub.config import Config, load_config
from hub.connector import InboundRequest, WebhookConnector
from hub.desk.access import (
    PUBLIC_ENDPOINTS,
    Actor,
    LoginThrottle,
    actor_of,
    roles_of,
    session_secret,
    session_user,
    timezone_of,
    user_for_token,
)
from hub.errors import SignatureError
from hub.i18n import TRANSLATIONS_DIR, best_language
from hub.intake.webhook import handle_webhook
from hub.runtime import Hub
from hub.store.db import transaction
from hub.store.models import EventStatus, InboundEvent
from hub.web.metrics import AckLatency, render as render_metrics

log = logging.getLogger("hub.web.app")
hooks = Blueprint("hooks", __name__)
health = Blueprint("health", __name__)


def create_app(config: Config | str | os.PathLike[str] | None = None, hub: Hub | None = None) -> Flask:
    """Build the app from a Config, a config file path, or $HUB_CONFIG. Pass ``hub`` to share one runtime
    (engine, wake-up signal) with workers in the same process."""
    if hub is None:
        hub = Hub(config if isinstance(config, Config) else load_config(config))
    from datetime import timedelta

    from hub.web.api import api, openapi, spec
    from hub.web.pages import pages

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
    app.extensions["login_throttle"] = LoginThrottle(web.max_failed_logins)
    app.register_blueprint(hooks)
    app.register_blueprint(health)
    app.register_blueprint(api)
    app.register_blueprint(pages)
    app.add_url_rule("/openapi.json", "openapi", openapi)
    spec.app = app                          # spectree reads the routes from the app's URL map
    csrf = CSRFProtect(app)
    csrf.exempt(hooks)                      # providers sign their own deliveries
    csrf.exempt(api)                        # Bearer tokens: a browser never sends one by itself
    Babel(app, locale_selector=_locale, timezone_selector=_timezone,
          default_translation_directories=str(TRANSLATIONS_DIR))
    login = LoginManager(app)
    login.session_protection = "basic"
    login.user_loader(lambda session_id: _load_session_user(hub, session_id))
    app.before_request(_guard)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(CSRFError, _csrf_error)
    app.after_request(_security_headers)
    return app


def _locale() -> str:
    """The signed-in user's language, else the browser's, else [ui] default_language."""
    actor = g.get("actor")
    return best_language(actor.language if actor else None, request.accept_languages,
                         current_hub().config.ui.default_language)


def _timezone() -> str:
    return timezone_of(g.get("actor"), current_hub().config)


class SessionUser(UserMixin):
    """flask-login's view of a user: the session id carries the session version, so a password change,
    role change or disable signs out every open session."""

    def __init__(self, actor: Actor, session_version: int):
        self.actor = actor
        self.id = f"{actor.id}:{session_version}"


def _load_session_user(hub: Hub, session_id: str) -> SessionUser | None:
    with transaction(hub.engine, read_only=True) as session:
        user = session_user(session, session_id)
        return SessionUser(actor_of(user), user.session_version) if user else None


def wants_json() -> bool:
    return request.blueprint in ("api", "hooks", "health") or request.endpoint == "openapi"


def _guard():
    """Every request to a route passes here before its view: public, or signed in with an allowed role."""
    endpoint = request.endpoint
    if endpoint is None or endpoint in PUBLIC_ENDPOINTS or endpoint == "openapi":
        return None                          # 404/405 answered by Flask; public routes
    roles = roles_of(current_app.view_functions.get(endpoint))
    if roles is None:
        # A route nobody declared access for is closed: forgetting a rule must not open a door.
        log.error("route %s has no access rule; refused", endpoint)
        return _deny(403, "forbidden", "this route has no access rule")
    actor = _api_actor() if request.blueprint == "api" else (
        current_user.actor if current_user.is_authenticated else None)
    if actor is None:
        if request.blueprint == "api":
            resp, status = _error(401, "unauthorized", "send Authorization: Bearer <token> "
                                                        "(create one with `hub users token add LOGIN`)")
            resp.headers["WWW-Authenticate"] = 'Bearer realm="lead hub"'
            return resp, status
        return redirect(url_for("pages.login", next=request.full_path.rstrip("?")))
    if actor.role not in roles:
        return _deny(403, "forbidden", f"a {actor.role} may not do this",
                     gettext("Your role does not allow this page."))
    if request.blueprint == "api" and request.method in ("POST", "PUT", "PATCH") and request.content_length \
            and request.mimetype != "application/json":
        return _error(415, "unsupported_media_type", "send the body as application/json")
    g.actor = actor
    return None


def _api_actor() -> Actor | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    user = user_for_token(current_hub().engine, token.strip())
    return actor_of(user) if user else None


def _deny(status: int, code: str, message: str, page_message: str | None = None):
    """JSON for machines (English, like every API message); a page in the reader's language for people."""
    if wants_json():
        return _error(status, code, message)
    return render_template("error.html", status=status, message=page_message), status


def _csrf_error(exc: CSRFError):
    return _deny(400, "csrf_failed", f"{exc.description} Reload the page and try again.",
                 gettext("The form had expired. Reload the page and try again."))


PAGE_CSP = ("default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; connect-src 'self'; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


def _security_headers(response: Response) -> Response:
    # Nothing the hub answers is to be sniffed, framed, cached or sent on as a referrer.
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("Cache-Control", "no-store")
    # Pages load only the hub's own CSS and JS, post forms only to the hub; everything else: nothing.
    csp = (PAGE_CSP if response.mimetype == "text/html" else "default-src 'none'; frame-ancestors 'none'")
    response.headers.setdefault("Content-Security-Policy", csp)
    return response


class RateLimits:
    """A token bucket per source, in this process: refilled at rate_limit_per_minute, holding that many."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}     # source -> (tokens, last refill)

    def take(self, source: str, per_minute: int) -> float:
        """0 when the delivery may pass; else the seconds until a token is free."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(source, (float(per_minute), now))
            tokens = min(float(per_minute), tokens + (now - last) * per_minute / 60)
            if tokens >= 1:
                self._buckets[source] = (tokens - 1, now)
                return 0.0
            self._buckets[source] = (tokens, now)
            return (1 - tokens) * 60 / per_minute


def current_hub() -> Hub:
    return current_app.extensions["hub"]


def _error(status: int, code: str, message: str, **extra: Any) -> tuple[Response, int]:
    return jsonify(error=code, message=message, **extra), status


def _too_large(source_name: str, cap: int) -> tuple[Response, int]:
    return _error(413, "request_entity_too_large", f"body larger than source {source_name!r} accepts ({cap} bytes)")


def _http_error(exc: HTTPException):
    """Errors as JSON for machines (API, hooks) and as a page for people."""
    if hasattr(exc, "response") and exc.response is not None:   # spectree's validation answer, already made
        return exc.response
    messages = {413: f"body larger than this hub accepts ({current_hub().config.server.max_body_bytes} bytes)"}
    code = (exc.name or "error").lower().replace(" ", "_")
    message = messages.get(exc.code or 0, exc.description or exc.name)
    if wants_json() or request.blueprint is None and request.path.startswith(("/hooks/", "/api/")):
        response, status = _error(exc.code or 500, code, message)
    else:
        response = Response(render_template("error.html", status=exc.code, message=None), exc.code or 500,
                            mimetype="text/html")
        status = exc.code or 500
    # Keep what the exception says in headers: Allow on a 405 (RFC 9110), WWW-Authenticate on a 401.
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response, status


def _inbound_request(subpath: str, body: bytes) -> InboundRequest:
    return InboundRequest(
        method=request.method, subpath=subpath,
        query={k: request.args.getlist(k) for k in request.args},
        headers={k.lower(): v for k, v in request.headers.items()},
        body=body, mimetype=request.mimetype or "", charset=request.mimetype_params.get("charset"))


@hooks.route("/hooks/<source_name>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], defaults={"subpath": ""})
@hooks.route("/hooks/<source_name>/<path:subpath>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def webhook(source_name: str, subpath: str):
    hub = current_hub()
    source = hub.sources.get(source_name)
    if source is None or not source.config.enabled or not isinstance(source.connector, WebhookConnector):
        return _error(404, "unknown_source", f"no webhook source named {source_name!r} is configured here")
    if request.method not in source.connector.methods:
        allowed = ", ".join(source.connector.methods)
        resp, status = _error(405, "method_not_allowed", f"source {source_name!r} accepts {allowed}")
        resp.headers["Allow"] = allowed
        return resp, status
    if source.config.rate_limit_per_minute:
        wait = current_app.extensions["rate_limits"].take(source_name, source.config.rate_limit_per_minute)
        if wait:
            resp, status = _error(429, "rate_limited", f"more than {source.config.rate_limit_per_minute} "
                                                       f"deliveries a minute for {source_name!r}; retry later")
            resp.headers["Retry-After"] = str(max(1, round(wait)))
            return resp, status
    cap = source.config.max_body_bytes
    if cap and (request.content_length or 0) > cap:
        return _too_large(source_name, cap)
    started = time.perf_counter()
    body = request.get_data(cache=False)   # raises 413 past MAX_CONTENT_LENGTH, chunked bodies included
    if cap and len(body) > cap:           # chunked bodies carry no Content-Length
        return _too_large(source_name, cap)
    response: Response | tuple[Response, int]
    try:
        reply = handle_webhook(hub, source, _inbound_request(subpath, body))
        response = Response(reply.body, status=reply.status, content_type=reply.content_type)
    except SignatureError as exc:
        log.warning("source=%s signature check failed: %s (from %s)", source_name, exc, request.remote_addr)
        response = _error(exc.status, "unauthorized", str(exc))
    except Exception:  # not stored means not acknowledged: the provider must retry
        log.exception("source=%s: could not store the delivery", source_name)
        response = _error(503, "store_unavailable", "the delivery could not be stored; please retry")
    status = response[1] if isinstance(response, tuple) else response.status_code
    current_app.extensions["ack_latency"].observe(source_name, status, time.perf_counter() - started)
    return response


@health.route("/metrics")
def metrics():
    return Response(render_metrics(current_hub(), current_app.extensions["ack_latency"]),
                    content_type="text/plain; version=0.0.4; charset=utf-8")


@health.route("/healthz")
def healthz():
    hub = current_hub()
    try:
        with transaction(hub.engine, read_only=True) as session:
            session.execute(text("SELECT 1"))
            counts = dict(session.execute(
                select(InboundEvent.status, func.count()).where(
                    InboundEvent.status.in_([EventStatus.PENDING, EventStatus.PROCESSING, EventStatus.DEAD]))
                .group_by(InboundEvent.status)).all())
    except Exception as exc:  # noqa: BLE001 — health must answer, whatever is wrong
        log.error("healthz: database unreachable: %s", exc)
        return jsonify(status="error", database="unreachable"), 503
    return jsonify(status="ok", database="ok", queue=counts.get(EventStatus.PENDING, 0) +
                   counts.get(EventStatus.PROCESSING, 0), dead=counts.get(EventStatus.DEAD, 0))
