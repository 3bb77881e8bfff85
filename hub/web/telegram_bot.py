"""``POST /telegram/manager-bot``: the manager bot's updates by webhook (``[notify.telegram] updates = "webhook"``).

Telegram calls it with the ``secret_token`` given to setWebhook in ``X-Telegram-Bot-Api-Secret-Token``; anything
else is refused before the body is read. The update is handled like a polled one (hub/desk/manager_bot_updates.py)
and answered 200 once done; a failure answers 500, and Telegram's retry is harmless (an update is handled once).
"""

from __future__ import annotations

import hmac
import json
import logging
import threading

from flask import Blueprint, Response, jsonify, request

from hub.desk.manager_bot_updates import process
from hub.telegram_api import TelegramApi
from hub.web.common import current_hub

log = logging.getLogger("hub.web.telegram_bot")
telegram_bot = Blueprint("telegram_bot", __name__)
# An update (a button press, a /link) is a few KB; Telegram's largest, a long message with entities, is well
# under this.
MAX_UPDATE_BYTES = 65_536
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# One Bot API client per web thread: a TelegramApi is for one thread at a time (its event loop).
_clients = threading.local()


def _api(token: str, api_url: str, timeout: float) -> TelegramApi:
    api: TelegramApi | None = getattr(_clients, "api", None)
    if api is None or getattr(_clients, "key", None) != (token, api_url):
        _clients.api, _clients.key = TelegramApi(token, api_url, timeout), (token, api_url)
        api = _clients.api
    return api


@telegram_bot.post("/telegram/manager-bot")
def webhook() -> tuple[Response, int]:
    hub = current_hub()
    tg = hub.config.notify.telegram
    if tg is None or tg.updates != "webhook" or not tg.webhook_secret:
        return jsonify(error="not_found", message="the manager bot's updates come by polling here"), 404
    given = request.headers.get(SECRET_HEADER, "")
    if not hmac.compare_digest(given.encode(), tg.webhook_secret.encode()):
        return jsonify(error="forbidden", message=f"wrong or missing {SECRET_HEADER}"), 403
    if request.content_length is not None and request.content_length > MAX_UPDATE_BYTES:
        return jsonify(error="too_large", message=f"an update is at most {MAX_UPDATE_BYTES} bytes"), 413
    raw = request.stream.read(MAX_UPDATE_BYTES + 1)
    if len(raw) > MAX_UPDATE_BYTES:
        return jsonify(error="too_large", message=f"an update is at most {MAX_UPDATE_BYTES} bytes"), 413
    try:
        update = json.loads(raw)
    except ValueError:
        update = None
    if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
        return jsonify(error="bad_request", message="not a Telegram update"), 400
    process(hub, _api(tg.bot_token, tg.api_url, hub.config.notify.timeout_seconds), update)
    return jsonify(ok=True), 200
