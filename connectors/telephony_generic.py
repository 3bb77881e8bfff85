"""Any other PBX (UIS, Sipuni, Beeline, Asterisk scripts…): a webhook described by config alone.

Where each value sits in the provider's JSON or form body is given as dotted paths (``caller_path =
"call.from"``). A signature is optional: an HMAC (SHA-256 or SHA-1, hex or base64) of the raw body — or of
``<timestamp>.<body>`` when the provider sends a timestamp header, and then a delivery older than
``max_age_seconds`` is refused as stale (a replayed request). A missed call makes a lead; an answered one
too (or, with ``only_missed``, only a touch on a known person's lead… which the identity step decides).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hub.connector import (
    InboundRequest,
    LiveCall,
    RawEvent,
    WebhookConnector,
    WebhookReply,
    WebhookResult,
    decode_body,
    form_fields,
    parse_json,
)
from hub.errors import PayloadError, SignatureError


class GenericTelephonySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    secret: str | None = Field(None, min_length=8, description="HMAC key; none: no signature (then use a token)")
    signature_header: str = "X-Signature"
    algorithm: Literal["hmac-sha256", "hmac-sha1"] = "hmac-sha256"
    encoding: Literal["hex", "base64"] = "hex"
    timestamp_header: str | None = None
    max_age_seconds: int = Field(300, ge=1)
    id_path: str = "call_id"
    caller_path: str = "caller"
    called_path: str = "called"
    status_path: str = "status"
    duration_path: str = "duration"
    recording_path: str = "recording_url"
    missed_statuses: list[str] = ["no answer", "noanswer", "missed", "busy", "cancel", "failed"]
    reply_body: str = "ok"
    # Live routing: events whose status is one of these are ringing calls; the answer that puts one through
    # is route_reply with {extension} replaced (e.g. '{"action": "transfer", "to": "{extension}"}').
    ringing_statuses: list[str] = ["ringing", "incoming", "start"]
    route_reply: str | None = None
    route_reply_content_type: str = "application/json"


def _body(request: InboundRequest) -> dict[str, Any]:
    if request.mimetype == "application/x-www-form-urlencoded":
        return form_fields(request, "call event")
    data = parse_json(decode_body(request.body, request.charset), "call event")
    if not isinstance(data, dict):
        raise PayloadError("a call event must be a JSON object or a form", status=400)
    return data


def at_path(data: Any, path: str) -> Any:
    for part in path.split(".") if path else []:
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


class GenericTelephonyConnector(WebhookConnector[GenericTelephonySettings]):
    name = "telephony_generic"
    config_schema = GenericTelephonySettings
    default_mapping = "telephony_generic"

    def signature(self, body: bytes, timestamp: str | None) -> str:
        """What the PBX signs this body with; only a source with a ``secret`` has one."""
        if self.settings.secret is None:
            raise ValueError(f"source {self.source!r} has no secret: its deliveries are not signed")
        signed = (timestamp.encode() + b"." + body) if timestamp is not None else body
        algo = hashlib.sha256 if self.settings.algorithm == "hmac-sha256" else hashlib.sha1
        digest = hmac.new(self.settings.secret.encode(), signed, algo).digest()
        return digest.hex() if self.settings.encoding == "hex" else base64.b64encode(digest).decode()

    def verify(self, request: InboundRequest) -> None:
        if self.settings.secret is None:
            return
        given = request.headers.get(self.settings.signature_header.lower(), "")
        if not given:
            raise SignatureError(f"no {self.settings.signature_header} header", status=401)
        timestamp = None
        if self.settings.timestamp_header:
            timestamp = request.headers.get(self.settings.timestamp_header.lower(), "")
            if not timestamp.isdigit():
                raise SignatureError(f"no {self.settings.timestamp_header} header", status=401)
            if abs(time.time() - int(timestamp)) > self.settings.max_age_seconds:
                raise SignatureError("stale delivery: its timestamp is outside max_age_seconds", status=403)
        if not hmac.compare_digest(given.strip().encode(), self.signature(request.body, timestamp).encode()):
            raise SignatureError("wrong signature", status=403)

    def receive(self, request: InboundRequest, received_at: datetime) -> WebhookResult:
        data = _body(request)
        call_id = at_path(data, self.settings.id_path)
        if call_id in (None, ""):
            raise PayloadError(f"no call id at {self.settings.id_path!r}", status=400)
        return WebhookResult(events=[RawEvent(external_id=f"call:{call_id}", payload=data)],
                             reply=WebhookReply(200, self.settings.reply_body))

    def live_call(self, request: InboundRequest) -> LiveCall | None:
        s = self.settings
        try:
            data = _body(request)
        except PayloadError:
            return None
        status = str(at_path(data, s.status_path) or "").strip().lower()
        caller = at_path(data, s.caller_path)
        if status not in {r.lower() for r in s.ringing_statuses} or not caller:
            return None
        return LiveCall(phone=str(caller), call_id=str(at_path(data, s.id_path) or ""),
                        routable=s.route_reply is not None)

    def route_reply(self, extension: str) -> WebhookReply | None:
        if self.settings.route_reply is None:
            return None
        return WebhookReply(200, self.settings.route_reply.replace("{extension}", extension),
                            self.settings.route_reply_content_type)

    def fields(self, payload: dict[str, Any]) -> dict[str, Any]:
        s = self.settings
        status = str(at_path(payload, s.status_path) or "")
        missed = status.strip().lower() in {m.lower() for m in s.missed_statuses}
        called, recording = at_path(payload, s.called_path), at_path(payload, s.recording_path)
        duration = at_path(payload, s.duration_path)
        message = f"{'missed' if missed else 'answered'} call to {called or '?'}"
        if not missed and duration not in (None, ""):
            message += f", {duration} s"
        return {"phone": at_path(payload, s.caller_path), "called": called, "call_status": status,
                "call_result": "missed" if missed else "answered", "recording_url": recording, "message": message}
