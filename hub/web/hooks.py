"""The door providers knock on — ``/hooks/<source>`` — and the health endpoints (``/healthz``, ``/metrics``).

The door does only what must happen before the provider's answer: find the source, keep it under its rate
limit and body cap, and hand the body to hub/intake/webhook.py, which verifies, stores and commits. The
common case never reaches this view: hub/web/door.py answers it in front of Flask, through the same
``deliver``; what it does not take (404, 405, 413, 429, chunked bodies) is answered here.
"""

from __future__ import annotations

import logging
import threading
import time

from flask import Blueprint, Response, current_app, jsonify, request
from flask.blueprints import BlueprintSetupState
from sqlalchemy import func, select, text

from hub.connector import InboundRequest, WebhookConnector
from hub.errors import FailureLog
from hub.store.db import transaction
from hub.store.models import EventStatus, InboundEvent
from hub.web.common import current_hub, json_error
from hub.web.door import deliver
from hub.web.metrics import render as render_metrics

log = logging.getLogger("hub.web.hooks")
hooks = Blueprint("hooks", __name__)
health = Blueprint("health", __name__)


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


def _too_large(source_name: str, cap: int) -> tuple[Response, int]:
    return json_error(413, "request_entity_too_large",
                      f"body larger than source {source_name!r} accepts ({cap} bytes)")


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
        return json_error(404, "unknown_source", f"no webhook source named {source_name!r} is configured here")
    if request.method not in source.connector.methods:
        allowed = ", ".join(source.connector.methods)
        resp, status = json_error(405, "method_not_allowed", f"source {source_name!r} accepts {allowed}")
        resp.headers["Allow"] = allowed
        return resp, status
    if source.config.rate_limit_per_minute:
        wait = current_app.extensions["rate_limits"].take(source_name, source.config.rate_limit_per_minute)
        if wait:
            resp, status = json_error(429, "rate_limited", f"more than {source.config.rate_limit_per_minute} "
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
    answer = deliver(hub, source, _inbound_request(subpath, body), request.remote_addr,
                     current_app.extensions["ack_latency"], _store_failures(), started)
    return Response(answer.body, status=answer.status, content_type=answer.content_type,
                    headers=list(answer.headers))


@hooks.record_once
def _failure_logs(state: BlueprintSetupState) -> None:
    # While the store is down: one log line per kind of failure a minute, not a traceback a request.
    state.app.extensions["store_failures"] = FailureLog(log, "storing deliveries")
    state.app.extensions["health_failures"] = FailureLog(log, "healthz: the database")


def _store_failures() -> FailureLog:
    failures: FailureLog = current_app.extensions["store_failures"]
    return failures


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
        current_app.extensions["health_failures"].failed(exc)
        return jsonify(status="error", database="unreachable"), 503
    return jsonify(status="ok", database="ok", queue=counts.get(EventStatus.PENDING, 0) +
                   counts.get(EventStatus.PROCESSING, 0), dead=counts.get(EventStatus.DEAD, 0))
