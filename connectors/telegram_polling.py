"""Telegram bots without a public URL: polling getUpdates.

The same conversation and fields as the webhook connector (connectors/telegram.py). The offset is the
hub's cursor: Telegram forgets an update only when asked for a higher offset, which happens on the poll
after the one whose updates were committed — so nothing is lost between fetching and storing. The replies
(ask for the phone, thanks) are sent after the updates are stored. A bot with a webhook set cannot be
polled (Telegram answers 409): delete the webhook, or use the webhook connector. The Bot API is reached through
python-telegram-bot, by the hub's synchronous client (hub/telegram_api.py), as every Telegram call of the hub.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from connectors.telegram import BotTexts, conversation_reply, message_of, update_fields
from hub.connector import PollingConnector, PollResult, RawEvent
from hub.errors import RetriableError
from hub.telegram_api import TelegramApi, TelegramError


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
        self.api = TelegramApi(settings.bot_token, settings.api_url, timeout=settings.timeout_seconds)

    def _failed(self, method: str, exc: TelegramError) -> RetriableError:
        if "webhook" in exc.message.lower() and "conflict" in exc.message.lower():
            return RetriableError("Telegram answered 409: this bot has a webhook set; delete it (deleteWebhook) "
                                  "to poll, or use the telegram (webhook) connector")
        return RetriableError(f"Telegram {method}: {exc.message}")

    def poll(self, state: dict[str, Any]) -> PollResult:
        offset = int(state.get("offset", 0))
        try:
            updates = self.api.get_updates(offset, timeout=0, allowed_updates=("message",))
        except TelegramError as exc:
            raise self._failed("getUpdates", exc) from None
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
            try:
                self.api.send_message(call["chat_id"], call["text"], reply_keyboard=call["reply_markup"])
            except TelegramError as exc:
                raise self._failed("sendMessage", exc) from None

    def fields(self, payload: dict[str, Any]) -> dict[str, Any]:
        return update_fields(payload)
