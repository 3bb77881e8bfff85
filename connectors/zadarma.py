"""Zadarma PBX notifications (Settings → Integrations and API → Notifications in your PBX).

Adding the URL, Zadarma calls ``GET ?zd_echo=X`` and expects X back. Notifications are POSTed urlencoded
with a ``Signature`` header: base64 of the hex HMAC-SHA1, keyed by the API secret, of the event's fields
(``caller_id + called_did + call_start`` for NOTIFY_START/END, …). An incoming call (NOTIFY_START) becomes a
lead at once — the manager hears of it while it rings; its end (NOTIFY_END) adds the outcome: answered, or
missed ("no answer", busy, cancel); its recording (NOTIFY_RECORD) is kept on the call's touch as
``zadarma:<call_id_with_rec>``, to fetch by API. Answers are empty 200s.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hub.connector import (
    InboundRequest,
    LiveCall,
    RawEvent,
    WebhookConnector,
    WebhookReply,
    WebhookResult,
    form_fields,
    signed_form_fields,
)
from hub.errors import PayloadError, SignatureError

# The fields each event's signature covers, in order.
SIGNED_FIELDS = {
    "NOTIFY_START": ("caller_id", "called_did", "call_start"),
    "NOTIFY_INTERNAL": ("caller_id", "called_did", "call_start"),
    "NOTIFY_END": ("caller_id", "called_did", "call_start"),
    "NOTIFY_IVR": ("caller_id", "called_did", "call_start"),
    "NOTIFY_ANSWER": ("caller_id", "destination", "call_start"),
    "NOTIFY_OUT_START": ("internal", "destination", "call_start"),
    "NOTIFY_OUT_END": ("internal", "destination", "call_start"),
    "NOTIFY_RECORD": ("pbx_call_id", "call_id_with_rec"),
}
LEAD_EVENTS = ("NOTIFY_START", "NOTIFY_END")
EMPTY = WebhookReply(200, "")


class ZadarmaSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    secret: str = Field(min_length=8, description="the API secret key (Settings → API)")
    # Put a known client's call straight through to their manager's extension (answering NOTIFY_START and
    # NOTIFY_IVR with {"redirect": <extension>}); off: the PBX's own scenario always stands.
    route_calls: bool = False
    # Seconds the extension rings before the call returns to the PBX's menu; 0: it does not return.
    return_timeout: int = Field(20, ge=0)


def _form(request: InboundRequest) -> dict[str, str]:
    return form_fields(request, "notification")


def _sign(secret: str, signed: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), signed, hashlib.sha1).hexdigest().encode()).decode()


def signature(secret: str, fields: dict[str, str]) -> str | None:
    """What Zadarma signs a notification of these fields with; None for an event it does not sign."""
    names = SIGNED_FIELDS.get(fields.get("event", ""))
    return None if names is None else _sign(secret, "".join(fields.get(n, "") for n in names).encode())


class ZadarmaConnector(WebhookConnector[ZadarmaSettings]):
    name = "zadarma"
    config_schema = ZadarmaSettings
    default_mapping = "zadarma"
    methods = ("GET", "POST")

    def verify(self, request: InboundRequest) -> None:
        if request.method == "GET":
            return                                   # the zd_echo handshake carries nothing to trust
        # The signed fields' bytes: a signed notification that is not UTF-8 is then rejected by receive(), stored.
        fields = signed_form_fields(request, "notification")
        event = fields.get("event", b"").decode("utf-8", "replace")
        names = SIGNED_FIELDS.get(event)
        if names is None:
            raise PayloadError(f"unknown Zadarma event {event!r}", status=400)
        expected = _sign(self.settings.secret, b"".join(fields.get(n, b"") for n in names))
        given = request.headers.get("signature", "")
        if not given:
            raise SignatureError("no Signature header", status=401)
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise SignatureError("wrong Zadarma signature", status=403)

    def receive(self, request: InboundRequest, received_at: datetime) -> WebhookResult:
        if request.method == "GET":
            echo = (request.query.get("zd_echo") or [""])[0]
            if not echo:
                raise PayloadError("GET without zd_echo", status=400)
            return WebhookResult(reply=WebhookReply(200, echo))
        fields = _form(request)
        event = fields["event"]
        if event == "NOTIFY_RECORD" and fields.get("pbx_call_id") and fields.get("call_id_with_rec"):
            # The recording of a call already stored at NOTIFY_START: it goes onto that call's touch.
            return WebhookResult(events=[RawEvent(
                external_id=f"record:{fields['pbx_call_id']}",
                payload={**fields, "_annotates": f"notify_start:{fields['pbx_call_id']}"})], reply=EMPTY)
        if event not in LEAD_EVENTS or not fields.get("caller_id"):
            return WebhookResult(reply=EMPTY)        # outgoing, internal, IVR and record events are not leads
        call = fields.get("pbx_call_id") or f"{fields['caller_id']}@{fields.get('call_start')}"
        return WebhookResult(events=[RawEvent(external_id=f"{event.lower()}:{call}", payload=fields)], reply=EMPTY)

    def live_call(self, request: InboundRequest) -> LiveCall | None:
        if request.method != "POST":
            return None
        fields = _form(request)
        if fields.get("event") not in ("NOTIFY_START", "NOTIFY_IVR") or not fields.get("caller_id"):
            return None
        return LiveCall(phone=fields["caller_id"], call_id=fields.get("pbx_call_id") or "",
                        routable=self.settings.route_calls)

    def route_reply(self, extension: str) -> WebhookReply:
        # Zadarma reads a JSON answer to NOTIFY_START/NOTIFY_IVR: "redirect" is a scenario or an extension.
        body = json.dumps({"redirect": extension, "return_timeout": self.settings.return_timeout})
        return WebhookReply(200, body, "application/json")

    def fields(self, payload: dict[str, Any]) -> dict[str, Any]:
        out = dict(payload)
        if payload.get("event") == "NOTIFY_RECORD":
            # Fetch it by API: GET /v1/pbx/record/request/?call_id=<call_id_with_rec>
            return {"recording": f"zadarma:{payload.get('call_id_with_rec')}"}
        if payload.get("event") == "NOTIFY_START":
            out["message"] = f"incoming call to {payload.get('called_did', '?')}"
        else:
            disposition = payload.get("disposition", "?")
            out["call_result"] = "answered" if disposition == "answered" else "missed"
            out["message"] = f"call {disposition}, {payload.get('duration', '0')} s"
        return out
