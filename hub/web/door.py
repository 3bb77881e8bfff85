"""The webhook door's fast lane: ``POST /hooks/<source>`` answered at the WSGI level, in front of Flask.

A provider's delivery needs none of what Flask runs around a request for people — the request and app
contexts, the session cookie, the sign-in and CSRF checks, the language, URL routing through the whole map
(measured: ~0.4 ms of CPU a request, as much as the rest of the delivery). ``HookDoor`` wraps the Flask
app's ``wsgi_app`` and takes the common case itself: a configured, enabled webhook source, an allowed
method, a body with a declared length under the caps, and a free token in the source's rate limit. It
answers with the same status, body and headers as the Flask view (``hub/web/hooks.py``), through the same
``deliver``: verify → store raw idempotently → commit → answer.

Everything else — an unknown source, a 405, a 413, a 429, a chunked body, a path Flask would redirect —
goes on to Flask untouched (before any byte of the body is read), where the view and the error handlers
answer it as they always did.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from werkzeug.http import HTTP_STATUS_CODES, parse_options_header
from werkzeug.wrappers import Request as WerkzeugRequest

from hub.connector import InboundRequest, WebhookConnector, WebhookReply
from hub.errors import FailureLog, SignatureError
from hub.intake.webhook import handle_webhook
from hub.runtime import Hub, Source
from hub.web.metrics import AckLatency

log = logging.getLogger("hub.web.hooks")

# What every answer of the hub carries (hub/web/app.py, _security_headers), as Flask's after_request sets
# them on a JSON answer; "Vary: Cookie" is Flask's, since the session is looked at for every request.
JSON_CSP = "default-src 'none'; frame-ancestors 'none'"
PAGE_CSP = ("default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; connect-src 'self'; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = [("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"),
                   ("Referrer-Policy", "no-referrer"), ("Cache-Control", "no-store")]
_STATUS_LINES = {code: f"{code} {name.upper()}" for code, name in HTTP_STATUS_CODES.items()}


@dataclass
class Answer:
    status: int
    body: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...] = ()


def json_body(**fields: Any) -> bytes:
    """The bytes Flask's jsonify makes of ``fields`` (sorted keys, compact, ASCII, a newline)."""
    return (json.dumps(fields, ensure_ascii=True, sort_keys=True, separators=(",", ":")) + "\n").encode()


def json_error_answer(status: int, code: str, message: str) -> Answer:
    return Answer(status, json_body(error=code, message=message), "application/json")


def deliver(hub: Hub, source: Source, request: InboundRequest, remote_addr: str | None,
            latency: AckLatency, failures: FailureLog, started: float) -> Answer:
    """The delivery's answer, from the Flask view or the fast lane alike: the connector's reply after the
    commit, 401/403 on a bad signature (nothing stored), 503 when the store failed (the provider retries)."""
    try:
        outcome: WebhookReply | Exception = handle_webhook(hub, source, request)
    except Exception as exc:  # noqa: BLE001 — sorted out by answer_of
        outcome = exc
    return answer_of(hub, source, outcome, remote_addr, latency, failures, started)


def answer_of(hub: Hub, source: Source, outcome: WebhookReply | Exception, remote_addr: str | None,
              latency: AckLatency, failures: FailureLog, started: float) -> Answer:
    """What the intake came to — the connector's reply, or what it raised — as the answer, counted."""
    if isinstance(outcome, SignatureError):
        log.warning("source=%s signature check failed: %s (from %s)", source.name, outcome, remote_addr)
        answer = json_error_answer(outcome.status, "unauthorized", str(outcome))
    elif isinstance(outcome, Exception):   # not stored means not acknowledged: the provider must retry
        try:
            raise outcome
        except Exception as exc:  # noqa: BLE001 — raised again so that the failure log has its traceback
            failures.failed(exc, f" (source {source.name})")
        answer = json_error_answer(503, "store_unavailable", "the delivery could not be stored; please retry")
    else:
        body = outcome.body.encode() if isinstance(outcome.body, str) else outcome.body
        answer = Answer(outcome.status, body, outcome.content_type)
        failures.recovered()
    latency.observe(source.name, answer.status, time.perf_counter() - started)
    return answer


def unfinished_body(status: int) -> Answer:
    """A 400 when the sender went away mid-body (werkzeug: ClientDisconnected), a 408 when it did not send
    the whole body in time."""
    return json_error_answer(status, "bad_request" if status == 400 else "request_timeout",
                             "the client disconnected before sending the whole body" if status == 400
                             else "the body did not arrive in time")


def answer_headers(answer: Answer) -> list[tuple[str, str]]:
    """The headers Flask's view and after_request would give the answer."""
    mimetype = answer.content_type.partition(";")[0].strip().lower()
    return [("Content-Type", answer.content_type), ("Content-Length", str(len(answer.body))),
            *answer.headers, *SECURITY_HEADERS,
            ("Content-Security-Policy", PAGE_CSP if mimetype == "text/html" else JSON_CSP),
            ("Vary", "Cookie")]


def _header_name(key: str) -> str:
    return key[5:].replace("_", "-").lower()


def _headers(environ: dict[str, Any]) -> dict[str, str]:
    # As werkzeug's request.headers, lower-cased: HTTP_* less the two CGI ones, then CONTENT_TYPE/LENGTH.
    headers = {_header_name(k): v for k, v in environ.items()
               if k.startswith("HTTP_") and k not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH")}
    for key, name in (("CONTENT_TYPE", "content-type"), ("CONTENT_LENGTH", "content-length")):
        if environ.get(key):
            headers[name] = environ[key]
    return headers


def _query(environ: dict[str, Any]) -> dict[str, list[str]]:
    if not environ.get("QUERY_STRING"):
        return {}
    args = WerkzeugRequest(environ).args          # parsed as the view's request.args is
    return {k: args.getlist(k) for k in args}


class HookDoor:
    """WSGI middleware: ``app.wsgi_app = HookDoor(app.wsgi_app, hub, app.extensions, max_body)``."""

    def __init__(self, flask_wsgi: Callable[..., Iterable[bytes]], hub: Hub, extensions: dict[str, Any],
                 max_content_length: int | None):
        self.flask = flask_wsgi
        self.hub = hub
        self.extensions = extensions
        self.max_content_length = max_content_length

    def fast_lane(self, environ: dict[str, Any]) -> tuple[Source, str, int] | None:
        """The source, subpath and body length when the fast lane may take the request, else None."""
        path: str = environ.get("PATH_INFO", "")
        if not path.startswith("/hooks/") or "//" in path or environ.get("HTTP_TRANSFER_ENCODING"):
            return None
        name, slash, subpath = path[7:].partition("/")
        if not name or (slash and not subpath):
            return None
        source = self.hub.sources.get(name)
        if source is None or not source.config.enabled or not isinstance(source.connector, WebhookConnector) \
                or environ.get("REQUEST_METHOD") not in source.connector.methods:
            return None
        declared = environ.get("CONTENT_LENGTH") or "0"
        if not declared.isdigit():
            return None
        length = int(declared)
        cap = source.config.max_body_bytes
        if (cap and length > cap) or (self.max_content_length is not None and length > self.max_content_length):
            return None
        if source.config.rate_limit_per_minute and \
                self.extensions["rate_limits"].take(name, source.config.rate_limit_per_minute):
            return None       # Flask's view takes again, finds no token either, and answers the 429
        # PATH_INFO is latin-1 by WSGI's rule; werkzeug reads it as UTF-8, and so does the view's subpath.
        return source, subpath.encode("latin-1").decode("utf-8", "replace"), length

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        found = self.fast_lane(environ)
        if found is None:
            return self.flask(environ, start_response)
        source, subpath, length = found
        started = time.perf_counter()
        body = environ["wsgi.input"].read(length) if length else b""
        if len(body) < length:
            answer = unfinished_body(400)
        else:
            answer = deliver(self.hub, source, hook_request(environ, subpath, body), environ.get("REMOTE_ADDR"),
                             self.extensions["ack_latency"], self.extensions["store_failures"], started)
        start_response(_STATUS_LINES.get(answer.status, f"{answer.status} UNKNOWN"), answer_headers(answer))
        return [answer.body]


def hook_request(environ: dict[str, Any], subpath: str, body: bytes) -> InboundRequest:
    """The connector's view of a delivery, read from a WSGI environ as the Flask view reads its request."""
    mimetype, params = parse_options_header(environ.get("CONTENT_TYPE", ""))
    return InboundRequest(method=environ["REQUEST_METHOD"], subpath=subpath, query=_query(environ),
                          headers=_headers(environ), body=body, mimetype=mimetype.lower(),
                          charset=params.get("charset"))
