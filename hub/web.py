"""The WSGI app: ``create_app(config)`` in the Flask-tutorial way, one blueprint per concern."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from sqlalchemy import func, select, text
from werkzeug.exceptions import HTTPException

from hub.config import Config, load_config
from hub.db import transaction
from hub.connector import InboundRequest, WebhookConnector
from hub.errors import SignatureError
from hub.intake import handle_webhook
from hub.metrics import AckLatency, render as render_metrics
from hub.models import EventStatus, InboundEvent
from hub.runtime import Hub

log = logging.getLogger("hub.web")
hooks = Blueprint("hooks", __name__)
health = Blueprint("health", __name__)


def create_app(config: Config | str | os.PathLike[str] | None = None, hub: Hub | None = None) -> Flask:
    """Build the app from a Config, a config file path, or $HUB_CONFIG. Pass ``hub`` to share one runtime
    (engine, wake-up signal) with workers in the same process."""
    if hub is None:
        hub = Hub(config if isinstance(config, Config) else load_config(config))
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = hub.config.server.max_body_bytes
    app.extensions["hub"] = hub
    app.extensions["ack_latency"] = AckLatency()
    app.extensions["rate_limits"] = RateLimits()
    app.register_blueprint(hooks)
    app.register_blueprint(health)
    app.register_error_handler(HTTPException, _http_error_as_json)
    app.after_request(_security_headers)
    return app


def _security_headers(response: Response) -> Response:
    # Nothing the hub answers is to be sniffed, framed, cached or sent on as a referrer.
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
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


def _http_error_as_json(exc: HTTPException) -> tuple[Response, int]:
    messages = {413: f"body larger than this hub accepts ({current_hub().config.server.max_body_bytes} bytes)"}
    code = (exc.name or "error").lower().replace(" ", "_")
    return _error(exc.code or 500, code, messages.get(exc.code or 0, exc.description or exc.name))


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
    try:
        reply = handle_webhook(hub, source, _inbound_request(subpath, body))
        response = Response(reply.body, status=reply.status, content_type=reply.content_type)
    except SignatureError as exc:
        log.warning("source=%s signature check failed: %s (from %s)", source_name, exc, request.remote_addr)
        response = _error(exc.status, "unauthorized", str(exc))
    except Exception:  # noqa: BLE001 — not stored means not acknowledged: the provider must retry
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
