"""Telegram bots, webhook mode (setWebhook with a ``secret_token``).

Telegram sends each Update as JSON with the header ``X-Telegram-Bot-Api-Secret-Token`` (compared in constant
time); ``update_id`` is the external id. The conversation is short and needs no outbound call: the answer
to a webhook may itself be a Bot API method, so the hub answers ``/start`` or a message without a phone
with a request for the contact (a "share my number" button), and a shared contact with thanks. The Telegram
user id identifies the person until the phone arrives; a contact is trusted as the sender's phone only when
``contact.user_id == from.id`` (anyone can forward someone else's card). ``/start <payload>`` deep links
carry the campaign: map them to UTM marks in the mapping (``[utm] payload_map``).
"""

from __future__ import annotations

import hmac
import json
from datetime import datetime
from typing import Any

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

SECRET_HEADER = "x-telegram-bot-api-secret-token"
EMPTY = WebhookReply(200, "")


class BotTexts(BaseModel):
    """What the bot says; the webhook and the polling connector hold the same conversation."""

    model_config = ConfigDict(extra="forbid")
    ask_phone: str = "Здравствуйте! Поделитесь, пожалуйста, номером телефона — менеджер свяжется с вами."
    share_button: str = "📱 Поделиться номером"
    thanks: str = "Спасибо! Менеджер скоро свяжется с вами."


class TelegramSettings(BotTexts):
    secret_token: str = Field(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9_-]+$",
                              description="the secret_token given to setWebhook")
    # The webhook itself needs no token (its answers ride on the webhook's reply); the hub's own messages to
    # the client ([sources.answer]) are sent by this bot through the Bot API.
    bot_token: str | None = Field(None, min_length=10, description="the bot's token, for [sources.answer]")
    api_url: str = "https://api.telegram.org"


def message_of(update: dict[str, Any]) -> dict[str, Any] | None:
    """The update's message from a user (the webhook and the polling connector read updates alike); None
    for any other update."""
    message = update.get("message")
    return message if isinstance(message, dict) and isinstance(message.get("from"), dict) else None


def _start_payload(text: str) -> str | None:
    if not text.startswith("/start"):
        return None
    parts = text.split(maxsplit=1)
    return parts[1].strip()[:64] if len(parts) == 2 and parts[0] in ("/start",) else None


def _own_contact(message: dict[str, Any]) -> dict[str, Any] | None:
    contact = message.get("contact")
    if isinstance(contact, dict) and contact.get("user_id") == message["from"].get("id"):
        return contact
    return None


def conversation_reply(message: dict[str, Any], texts: BotTexts) -> dict[str, Any]:
    """The bot's next line as a Bot API sendMessage call: ask for the phone, or thank for it."""
    own_contact = _own_contact(message) is not None
    return {"method": "sendMessage", "chat_id": (message.get("chat") or {}).get("id"),
            "text": texts.thanks if own_contact else texts.ask_phone,
            "reply_markup": {"remove_keyboard": True} if own_contact else {
                "keyboard": [[{"text": texts.share_button, "request_contact": True}]],
                "resize_keyboard": True, "one_time_keyboard": True}}


def update_fields(payload: dict[str, Any]) -> dict[str, Any]:
    """A stored Update's fields for the mapping."""
    message = message_of(payload) or {}
    sender = message.get("from") or {}
    text = str(message.get("text") or "")
    contact = _own_contact(message) if message else None
    out: dict[str, Any] = {
        "telegram_user_id": sender.get("id"),
        "name": " ".join(str(n) for n in (sender.get("first_name"), sender.get("last_name"))
                         if isinstance(n, str) and n) or None,
        "username": sender.get("username"),
        "start_payload": _start_payload(text),
        "message": None if text.startswith("/start") else (text or None),
    }
    if contact:
        phone = str(contact.get("phone_number") or "")
        out["phone"] = phone if phone.startswith("+") else f"+{phone}"    # Telegram omits the "+"
    elif isinstance(message.get("contact"), dict):
        out["message"] = "shared someone else's contact card (not taken as the sender's phone)"
    return out


class TelegramConnector(WebhookConnector[TelegramSettings]):
    name = "telegram"
    config_schema = TelegramSettings
    default_mapping = "telegram"

    def verify(self, request: InboundRequest) -> None:
        given = request.headers.get(SECRET_HEADER, "")
        if not given:
            raise SignatureError("no X-Telegram-Bot-Api-Secret-Token header", status=401)
        if not hmac.compare_digest(given.encode(), self.settings.secret_token.encode()):
            raise SignatureError("wrong Telegram secret token", status=403)

    def receive(self, request: InboundRequest, received_at: datetime) -> WebhookResult:
        update = parse_json(decode_body(request.body, None), "Telegram Update")     # Telegram sends only UTF-8
        if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
            raise PayloadError("not a Telegram Update: no update_id", status=400)
        message = message_of(update)
        if message is None or (message.get("chat") or {}).get("type", "private") != "private":
            return WebhookResult(reply=EMPTY)       # edits, button presses, group chatter: not leads
        reply = WebhookReply(200, json.dumps(conversation_reply(message, self.settings), ensure_ascii=False),
                             "application/json; charset=utf-8")
        return WebhookResult(events=[RawEvent(external_id=f"update:{update['update_id']}", payload=update)],
                             reply=reply)

    def fields(self, payload: dict[str, Any]) -> dict[str, Any]:
        return update_fields(payload)
