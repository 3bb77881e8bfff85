"""VK communities: Callback API (Manage community → API usage → Callback API).

VK posts JSON. ``confirmation`` is answered with the configured confirmation string as plain text; every
other event is answered exactly ``ok`` — anything else and VK re-sends it (``X-Retry-Counter``) and
eventually pauses delivery. ``secret`` is compared in constant time; ``event_id`` is the external id, so a
re-sent event is stored once. Lead ads arrive as ``lead_forms_new`` (answers by key and question),
community messages as ``message_new`` (the VK user id identifies the person; a phone written in the text
is picked up).
"""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Any

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field

from hub.connector import (
    InboundRequest,
    RawEvent,
    WebhookConnector,
    WebhookReply,
    WebhookResult,
    decode_body,
    parse_json,
)
from hub.errors import PayloadError, SignatureError

LEAD_EVENTS = ("lead_forms_new", "message_new")
OK = WebhookReply(200, "ok")


class VkSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    secret: str = Field(min_length=8, description="the community's Callback API secret key")
    confirmation: str = Field(min_length=1, description="the string VK asks the server to return")
    group_id: int | None = Field(None, description="if set, events of other communities are refused")
    region: str = Field("RU", description="phone region for numbers found in message text")


def _body(request: InboundRequest) -> dict[str, Any]:
    data = parse_json(decode_body(request.body, request.charset))
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise PayloadError("not a VK Callback API event: no \"type\"", status=400)
    return data


def phones_in_text(text: str, region: str) -> list[str]:
    return [m.raw_string for m in phonenumbers.PhoneNumberMatcher(text, region)]


def event_fields(payload: dict[str, Any], region: str) -> dict[str, Any]:
    """An event's fields for the mapping (the Callback API and the long poll send events alike); ``region``
    reads phones written in a message."""
    obj = found if isinstance(found := payload.get("object"), dict) else {}
    out: dict[str, Any] = {"vk_event": payload.get("type")}
    if payload.get("type") == "lead_forms_new":
        out.update(vk_user_id=obj.get("user_id"), form_name=obj.get("form_name"), form_id=obj.get("form_id"),
                   ad_id=obj.get("ad_id"))
        answers = obj.get("answers")
        for answer in answers if isinstance(answers, list) else []:
            if isinstance(answer, dict):
                for name in (answer.get("key"), answer.get("question")):
                    if name:
                        out.setdefault(str(name), answer.get("answer"))
    elif payload.get("type") == "message_new":
        message = found if isinstance(found := obj.get("message"), dict) else {}
        text = str(message.get("text") or "")
        out.update(vk_user_id=message.get("from_id"), message=text,
                   phone_in_text=phones_in_text(text, region))
    return out


class VkConnector(WebhookConnector[VkSettings]):
    name = "vk"
    config_schema = VkSettings
    default_mapping = "vk"

    def verify(self, request: InboundRequest) -> None:
        try:
            data = _body(request)
        except PayloadError:
            return                      # receive() rejects it, visibly
        if data["type"] == "confirmation" and "secret" not in data:
            return                      # VK omits the secret from confirmation when none is set on its side
        given = str(data.get("secret") or "")
        if not given:
            raise SignatureError("VK event without its secret", status=401)
        if not hmac.compare_digest(given.encode(), self.settings.secret.encode()):
            raise SignatureError("wrong VK secret", status=403)

    def receive(self, request: InboundRequest, received_at: datetime) -> WebhookResult:
        data = _body(request)
        if self.settings.group_id is not None and data.get("group_id") != self.settings.group_id:
            raise PayloadError(f"event of community {data.get('group_id')}, not {self.settings.group_id}", status=403)
        if data["type"] == "confirmation":
            return WebhookResult(reply=WebhookReply(200, self.settings.confirmation))
        if data["type"] not in LEAD_EVENTS:
            return WebhookResult(reply=OK)     # other events (typing, replies, …) are not leads; VK wants "ok"
        event_id = str(data.get("event_id") or "")
        if not event_id:
            raise PayloadError("VK event without event_id", status=400)
        payload = {k: v for k, v in data.items() if k != "secret"}
        return WebhookResult(events=[RawEvent(external_id=f"event:{event_id}", payload=payload)], reply=OK)

    def fields(self, payload: dict[str, Any]) -> dict[str, Any]:
        return event_fields(payload, self.settings.region)
