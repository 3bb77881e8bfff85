"""Telegram bots without a public URL: polling getUpdates.

The same conversation and fields as the webhook connector (connectors/telegram.py). The offset is the
hub's cursor: Telegram forgets an update only when asked for a higher offset, which happens on the poll
after the one whose updates were committed — so nothing is lost between fetching and storing. The replies
(ask for the phone, thanks) are sent after the updates are stored. A bot with a webhook set cannot be
polled (Telegram answers 409): delete the webhook, or use the webhook connector.
"""

from __future__ import annotations

from typing import Any

import requests
from pydantic import Field

from connectors.telegram import BotTexts, conversation_reply, message_of, update_fields
from hub.connector import PollingConnector, PollResult, RawEvent
from hub.errors import RetriableError


class TelegramPollingSettings(BotTexts):
    bot_token: str = Field(min_length=10)
    api_url: str = "https://api.telegram.org"
    poll_seconds: float = Field(5, ge=1)
    timeout_seconds: float = Field(10, gt=0)


class TelegramPollingConnector(PollingConnector[TelegramPollingSettings]):
    name = "telegram_polling"
    config_schema = TelegramPollingSettings
    default_mapping = "telegram"

    def __init__(self, source: str, settings: TelegramPollingSettings):
        super().__init__(source, settings)
        self.http = requests.Session()

    def _call(self, method: str, payload: dict[str, Any]) -> Any:
        url = f"{self.settings.api_url.rstrip('/')}/bot{self.settings.bot_token}/{method}"
        try:
            resp = self.http.post(url, json=payload, timeout=self.settings.timeout_seconds)
        except requests.RequestException as exc:
            raise RetriableError(f"Telegram unreachable: {type(exc).__name__}") from None
        body = resp.json() if resp.headers.get("content-type", "").startswith("application/json") else {}
        if resp.status_code == 409:
            raise RetriableError("Telegram answered 409: this bot has a webhook set; delete it (deleteWebhook) "
                                 "to poll, or use the telegram (webhook) connector")
        if not body.get("ok"):
            raise RetriableError(f"Telegram {method}: {body.get('description') or f'HTTP {resp.status_code}'}")
        return body["result"]

    def poll(self, state: dict[str, Any]) -> PollResult:
        offset = int(state.get("offset", 0))
        updates = self._call("getUpdates", {"offset": offset, "timeout": 0, "allowed_updates": ["message"]})
        events = []
        for update in updates:
            offset = max(offset, int(update["update_id"]) + 1)
            message = message_of(update)
            if message is None or (message.get("chat") or {}).get("type", "private") != "private":
                continue
            events.append(RawEvent(external_id=f"update:{update['update_id']}", payload=update))
        return PollResult(events=events, state={"offset": offset})

    def acknowledge(self, events: list[RawEvent]) -> None:
        for event in events:
            call = conversation_reply(message_of(event.payload) or {}, self.settings)
            del call["method"]
            self._call("sendMessage", call)

    def fields(self, payload: dict[str, Any]) -> dict[str, Any]:
        return update_fields(payload)
