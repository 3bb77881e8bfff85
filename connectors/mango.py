"""Mango Office VPBX (Integrations → API connector; give it the hub URL as the "external system" address).

Mango POSTs urlencoded ``vpbx_api_key``, ``sign`` and ``json`` to ``<url>/events/call``, ``/events/summary``,
``/events/recording``…; ``sign = sha256(api_key + json + api_salt)`` in lowercase hex over the raw json
string, compared in constant time. Only the HTTP status of the answer is read. The call summary of an
incoming call (``call_direction`` 1) is the lead: a missed call (``entry_result`` 0) from an unknown number
is a new lead, any call from a known number a touch on their lead. A recording event's
``recording_id`` is kept on that call's touch (``mango:<recording_id>``, to fetch by API). Call-state events
come in out of order and say nothing the summary does not: answered 200, not stored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hub.connector import (
    InboundRequest,
    LiveCall,
    OutboundRequest,
    RawEvent,
    WebhookConnector,
    WebhookReply,
    WebhookResult,
    form_fields,
    parse_json,
    signed_form_fields,
)
from hub.errors import PayloadError, SignatureError

EMPTY = WebhookReply(200, "")
KNOWN_PATHS = ("events/call", "events/summary", "events/recording", "events/record/added", "events/dtmf",
               "events/sms", "events/callback", "ping")


class MangoSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    api_key: str = Field(min_length=8, description="the VPBX unique code (vpbx_api_key)")
    api_salt: str = Field(min_length=4, description="the signature key (salt)")
    # Put a known client's ringing call through to their manager with the VPBX's route command (the
    # account must allow call routing by API); off: the VPBX's own scheme always stands.
    route_calls: bool = False
    api_url: str = Field("https://app.mango-office.ru/vpbx", pattern=r"^https?://")


def signed_form(settings: MangoSettings, payload: dict[str, Any]) -> dict[str, str]:
    """What every VPBX command carries: the key, the JSON, and sha256(key + json + salt)."""
    raw = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return {"vpbx_api_key": settings.api_key, "json": raw,
            "sign": hashlib.sha256((settings.api_key + raw + settings.api_salt).encode()).hexdigest()}


def _form(request: InboundRequest) -> dict[str, str]:
    return form_fields(request, "Mango event")


class MangoConnector(WebhookConnector[MangoSettings]):
    name = "mango"
    config_schema = MangoSettings
    default_mapping = "mango"

    def verify(self, request: InboundRequest) -> None:
        form = signed_form_fields(request, "Mango event")
        given_key, sign, raw_json = form.get("vpbx_api_key", b""), form.get("sign", b""), form.get("json", b"")
        if not sign or not given_key:
            raise SignatureError("no vpbx_api_key/sign", status=401)
        key, salt = self.settings.api_key.encode(), self.settings.api_salt.encode()
        expected = hashlib.sha256(key + raw_json + salt).hexdigest()
        key_ok = hmac.compare_digest(given_key, key)
        if not (hmac.compare_digest(sign.lower(), expected.encode()) and key_ok):
            raise SignatureError("wrong Mango sign", status=403)

    def receive(self, request: InboundRequest, received_at: datetime) -> WebhookResult:
        path = request.subpath.strip("/")
        if path not in KNOWN_PATHS:
            raise PayloadError(f"unknown Mango event path /{path}", status=404)
        if path not in ("events/summary", "events/recording"):
            return WebhookResult(reply=EMPTY)
        summary = parse_json(_form(request).get("json", ""), "json field")
        if path == "events/recording":
            if not isinstance(summary, dict) or not summary.get("recording_id") or not summary.get("entry_id"):
                raise PayloadError("recording event without recording_id/entry_id", status=400)
            # Kept on the touch of the call's summary, which may come before or after it.
            return WebhookResult(events=[RawEvent(
                external_id=f"recording:{summary['recording_id']}",
                payload={**summary, "_annotates": f"summary:{summary['entry_id']}"})], reply=EMPTY)
        if not isinstance(summary, dict) or not summary.get("entry_id"):
            raise PayloadError("summary without entry_id", status=400)
        if summary.get("call_direction") != 1:
            return WebhookResult(reply=EMPTY)        # internal and outgoing calls are not leads
        return WebhookResult(events=[RawEvent(external_id=f"summary:{summary['entry_id']}", payload=summary)],
                             reply=EMPTY)

    def live_call(self, request: InboundRequest) -> LiveCall | None:
        """A call-state event of an incoming call that has just appeared (from outside, no extension yet)."""
        if request.subpath.strip("/") != "events/call":
            return None
        try:
            event = parse_json(_form(request).get("json", ""), "json field")
        except PayloadError:
            return None
        if not isinstance(event, dict) or event.get("call_state") != "Appeared" or not event.get("call_id"):
            return None
        caller = found if isinstance(found := event.get("from"), dict) else {}
        if not caller.get("number") or caller.get("extension"):
            return None                                   # an internal or outgoing call
        return LiveCall(phone=str(caller["number"]), call_id=str(event["call_id"]), routable=self.settings.route_calls)

    def route_request(self, call: LiveCall, extension: str) -> OutboundRequest:
        command = {"command_id": f"leadhub-route-{call.call_id}"[:100], "call_id": call.call_id,
                   "to_number": extension}
        return OutboundRequest("POST", f"{self.settings.api_url.rstrip('/')}/commands/route",
                               form=signed_form(self.settings, command))

    def fields(self, payload: dict[str, Any]) -> dict[str, Any]:
        if payload.get("recording_id"):
            # Fetch it by API: /vpbx/queries/recording/post with this recording_id
            return {"recording": f"mango:{payload['recording_id']}"}
        caller = found if isinstance(found := payload.get("from"), dict) else {}
        answered = payload.get("entry_result") == 1
        talk, end = payload.get("talk_time"), payload.get("end_time")   # unix times, 0 when never reached
        talked = end - talk if isinstance(talk, int) and isinstance(end, int) and talk > 0 and end >= talk else None
        out: dict[str, Any] = {
            "phone": caller.get("number"), "line_number": payload.get("line_number"),
            "call_result": "answered" if answered else "missed",
            "message": f"{'answered' if answered else 'missed'} call to {payload.get('line_number', '?')}"
                       + (f", talked {talked} s" if talked is not None else ""),
        }
        created = payload.get("create_time")
        if isinstance(created, (int, float)) and not isinstance(created, bool):
            try:
                out["occurred_at"] = datetime.fromtimestamp(created, UTC).isoformat()
            except (OverflowError, OSError, ValueError):
                raise PayloadError(f"create_time {created!r} is not a time") from None
        return out
