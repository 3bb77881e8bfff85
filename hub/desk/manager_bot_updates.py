"""How the manager bot hears Telegram: long polling (``[notify.telegram] updates = "polling"``, the default) in one
process of the deployment, or the webhook route (hub/web/telegram_bot.py). Either hands each update to
hub.desk.manager_bot.handle_update and then performs its Reply through hub.telegram_api.

One poller for the whole deployment: Telegram answers a second concurrent getUpdates with 409 Conflict, so the
``hub run`` / ``hub worker`` processes take turns by a lease row (the scheduler's table, its own name), renewed
before every poll. The offset lives in the store with each update's action (manager_bot._first_time), so a
restart neither replays nor skips one.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine

from hub.desk.manager_bot import Reply, handle_update, mark_handled, stored_offset
from hub.runtime import Hub
from hub.store.leases import take_lease
from hub.store.models import utcnow
from hub.telegram_api import TelegramApi, TelegramError

log = logging.getLogger("hub.desk.manager_bot")
LEASE = "telegram-updates"
# getUpdates waits this long for an update (a press is answered at once either way): 10 s is 6 idle requests a
# minute, and `hub run` stopping waits at most this long for the poll it is in.
POLL_SECONDS = 10
# Longer than a poll plus its network timeout, so the holder renews well before it lapses; a dead holder is
# replaced within this.
LEASE_SECONDS = 90.0
# A process that is not the holder looks again this often; one that failed to reach Telegram waits this long.
STANDBY_SECONDS, PAUSE_AFTER_ERROR_SECONDS = 15.0, 5.0


def perform(api: TelegramApi, reply: Reply) -> None:
    """Tell Telegram what the update's handling decided. A failure is logged, never raised: the store is right
    already, and a message left undrawn is redrawn by the next press."""
    def attempt(call: Callable[..., object], *args: object, **kwargs: object) -> None:
        try:
            call(*args, **kwargs)
        except TelegramError as exc:
            log.warning("manager bot: telegram: %s", exc.message)

    if reply.callback_id:
        attempt(api.answer_callback, reply.callback_id, reply.toast, alert=reply.alert)
    for edit in reply.edits:
        attempt(api.edit_message, edit.chat_id, edit.message_id, edit.text, edit.buttons)
    for chat_id, text in reply.messages:
        attempt(api.send_message, chat_id, text)


def process(hub: Hub, api: TelegramApi, update: dict, now: datetime | None = None) -> Reply:
    try:
        reply = handle_update(hub.engine, hub.config, update, now or utcnow())
    except Exception as exc:  # noqa: BLE001 - one bad update must not block the bot (its offset would never move)
        log.error("manager bot: update %s failed: %s", update.get("update_id"), type(exc).__name__)
        reply = mark_handled(hub.engine, update, hub.config)
    if reply.changed:
        hub.notification_queued.set()
    perform(api, reply)
    return reply


def holds_lease(engine: Engine, holder: str, now: datetime, seconds: float = LEASE_SECONDS) -> bool:
    """Take the lease if it is free or expired, renew it if ours (the scheduler's kind of lease, its own row)."""
    return take_lease(engine, LEASE, holder, now, seconds)


class UpdatesPoller:
    """The thread that long-polls getUpdates while this process holds the lease."""

    def __init__(self, hub: Hub, holder: str | None = None, poll_seconds: int = POLL_SECONDS):
        tg = hub.config.notify.telegram
        assert tg is not None, "the poller runs only with [notify.telegram]"
        self.hub, self.poll_seconds = hub, poll_seconds
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
        self.api = TelegramApi(tg.bot_token, tg.api_url, hub.config.notify.timeout_seconds)

    def poll_once(self) -> int | None:
        """One getUpdates and its updates handled; None when another process holds the lease."""
        if not holds_lease(self.hub.engine, self.holder, utcnow()):
            return None
        updates = self.api.get_updates(stored_offset(self.hub.engine), self.poll_seconds)
        for done, one in enumerate(updates):
            # Renewed before each: a long batch with a slow Telegram (an answer and redraws per press) must not
            # outlive the lease while another process starts polling. Lost: the rest is the new holder's.
            if done and not holds_lease(self.hub.engine, self.holder, utcnow()):
                return done
            process(self.hub, self.api, one)
        return len(updates)

    def run_forever(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    handled = self.poll_once()
                except TelegramError as exc:
                    log.warning("manager bot: getUpdates failed: %s", exc.message)
                    stop.wait(exc.retry_after or PAUSE_AFTER_ERROR_SECONDS)
                    continue
                except Exception:
                    log.exception("manager bot: polling")
                    stop.wait(PAUSE_AFTER_ERROR_SECONDS)
                    continue
                if handled is None:
                    stop.wait(STANDBY_SECONDS)
        finally:
            self.api.close()
